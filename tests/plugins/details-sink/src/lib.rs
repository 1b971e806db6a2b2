//! A test sink with the plugin extensions (`connector_api::ext`): status
//! messages and error details reach the worker.

use connector_api::*;

const CLASS: &str = "test-details-sink";

include!("task.rs");

export_plugin! { sinks: [DetailsSink], sources: [] }
