//! The same sink as `test-plugin-details`, exported as a plugin built
//! before the extensions was: the root module alone, no extensions symbol.
//! The worker must run it as before, without status messages or details.

use connector_api::*;

const CLASS: &str = "test-pre-extensions-sink";

include!("../../details-sink/src/task.rs");

connector_api::__export_plugin_without_extensions! { sinks: [DetailsSink], sources: [] }
