//! Plugin extensions: what a task and the worker exchange beyond
//! [`crate::ffi::PluginModule`], exported under a symbol of their own so
//! that plugins without them keep loading.
//!
//! Why not new methods on the ABI's trait objects: abi_stable checks the
//! whole layout reachable from the root module at load and refuses a
//! library whose prefix types have *fewer* fields than the worker's (it
//! only lets a newer library into an older host). A method added to
//! `FfiSinkTask` or `FfiSinkContext` would therefore refuse every plugin
//! built before it (docs/decisions/0043-task-status-and-error-details.md).
//! So the root module stays as it is, and a plugin built with this
//! connector-api also exports [`EXTENSIONS_SYMBOL`]; the worker looks for
//! it, checks its layout the way abi_stable checks the root module, and
//! otherwise uses the root module alone:
//!
//! | plugin \ worker | before extensions | with extensions |
//! |---|---|---|
//! | before extensions | as ever | as ever: no status message, no detail headers |
//! | with extensions | loads; `report_status` does nothing, details dropped (the error message stays) | both |
//!
//! Evolution: [`PluginExtensions`] is a prefix type that grows at the end,
//! which abi_stable accepts from a newer plugin in an older worker; a worker
//! that needs more than an older plugin's extensions have treats them as
//! absent (logging why) and runs the plugin on the root module alone.

use abi_stable::{
    sabi_trait,
    std_types::{RBox, RResult, RSlice, RStr, RVec},
    type_layout::TypeLayout,
    StableAbi,
};

// The status line is the context's (`context::FfiTaskStatus`); it travels
// only through these extensions.
pub use crate::context::{FfiTaskStatus, FfiTaskStatusBox, FfiTaskStatus_TO};
use crate::{
    config::ConfigEntry, context::FfiSinkContextBox, ffi::FfiSinkTaskBox, host::FfiHostBox, record::FailureDetail,
    ConnectorError,
};

/// The symbol a plugin exports its extensions under: an
/// `extern "C" fn() -> ExtensionsExport`.
pub const EXTENSIONS_SYMBOL: &str = "sluice_plugin_extensions_v1";

/// What [`EXTENSIONS_SYMBOL`] returns. Fixed for good under this symbol
/// name (two pointers); everything that may change is behind `module`,
/// whose layout the worker checks against `layout` before using it.
#[repr(C)]
pub struct ExtensionsExport {
    /// `<PluginExtensionsRef as StableAbi>::LAYOUT` as the plugin was built.
    pub layout: &'static TypeLayout,
    pub module: PluginExtensionsRef,
}

/// The extensions a plugin offers.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginExtensionsRef)))]
#[sabi(missing_field(panic))]
pub struct PluginExtensions {
    /// `PluginModule::create_sink_task` with the task's status line, giving
    /// back the task and the details of its failed records.
    #[sabi(last_prefix_field)]
    pub create_sink_task: extern "C" fn(
        RStr<'_>,
        RSlice<'_, ConfigEntry>,
        FfiHostBox,
        FfiSinkContextBox,
        FfiTaskStatusBox,
    ) -> RResult<SinkTaskParts, ConnectorError>,
}

/// A sink task and its failure details, sharing the task's state.
#[repr(C)]
#[derive(StableAbi)]
pub struct SinkTaskParts {
    pub task: FfiSinkTaskBox,
    pub details: FfiFailureDetailsBox,
}

/// The plugin's side of failure details: what the last `put` gave with its
/// failures ([`crate::PutOutcome::fail_with_details`]).
#[sabi_trait]
pub trait FfiFailureDetails: Send {
    /// The details of the failures the last `put` returned (empty after
    /// one call, and after a `put` that gave none).
    #[sabi(last_prefix_field)]
    fn take(&mut self) -> RVec<FailureDetail>;
}

pub type FfiFailureDetailsBox = FfiFailureDetails_TO<'static, RBox<()>>;

/// Checks a plugin's extensions against this crate's: `Ok` when the worker
/// may call every field it knows of.
pub fn check(export: &ExtensionsExport) -> Result<(), String> {
    abi_stable::abi_stability::check_layout_compatibility(<PluginExtensionsRef as StableAbi>::LAYOUT, export.layout)
        .into_result()
        .map_err(|e| e.to_string())
}
