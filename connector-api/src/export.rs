//! What [`crate::export_plugin`] expands to: adapters from the idiomatic
//! traits to the ABI, with every call guarded by `catch_unwind` so a panic in
//! connector code becomes a `Fatal` error instead of aborting the worker.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{Arc, Mutex},
};

use abi_stable::{
    prefix_type::WithMetadata,
    sabi_trait::TD_Opaque,
    std_types::{RResult, RSlice, RStr, RVec},
    StableAbi,
};

use crate::{
    config::{ConfigEntry, ConfigIssue, ConnectorConfig},
    context::{FfiSinkContextBox, SinkContext},
    ext::{
        ExtensionsExport, FfiFailureDetails, FfiFailureDetails_TO, FfiTaskStatusBox, PluginExtensions,
        PluginExtensionsRef, SinkTaskParts,
    },
    ffi::PutOutcome,
    ffi::{
        ConnectorDescriptor, FfiSinkTask, FfiSinkTaskBox, FfiSinkTask_TO, FfiSourceTask, FfiSourceTaskBox,
        FfiSourceTask_TO, PluginModule, PluginModuleRef, KIND_SINK, KIND_SOURCE,
    },
    host::{FfiHostBox, Host},
    record::{FailureDetail, SinkRecord, SourceOffset, SourceRecord, TopicPartition, TopicPartitionOffset},
    traits::{ConnectorInfo, SinkConnector, SinkTask, SourceConnector, SourceTask},
    ConnectorError,
};

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-text payload".to_string())
}

/// Runs `f`, turning a panic into a `Fatal` error that carries its message.
pub fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, ConnectorError>) -> RResult<T, ConnectorError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.into(),
        Err(payload) => {
            RResult::RErr(ConnectorError::fatal(format!("connector panicked in {what}: {}", panic_message(&*payload))))
        }
    }
}

/// A connector class, erased over sink and source.
pub trait ErasedConnector: Send + Sync {
    fn descriptor(&self) -> ConnectorDescriptor;
    fn matches(&self, class: &str) -> bool;
    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigIssue>;
    fn task_configs(&self, config: &ConnectorConfig, max_tasks: usize) -> Result<Vec<ConnectorConfig>, ConnectorError>;
    fn create_sink_task(
        &self,
        config: &ConnectorConfig,
        host: Host,
        context: SinkContext,
    ) -> Result<SinkTaskParts, ConnectorError>;
    fn create_source_task(&self, config: &ConnectorConfig, host: Host) -> Result<FfiSourceTaskBox, ConnectorError>;
}

fn descriptor(info: ConnectorInfo, kind: u8, def: crate::ConfigDef) -> ConnectorDescriptor {
    ConnectorDescriptor {
        class: info.class.into(),
        aliases: info.aliases.iter().map(|a| (*a).into()).collect(),
        kind,
        version: info.version.into(),
        documentation: info.documentation.into(),
        config: def.infos(),
    }
}

fn class_matches(info: &ConnectorInfo, class: &str) -> bool {
    info.class == class || info.aliases.contains(&class)
}

/// Wraps a [`SinkConnector`] for the registry.
pub struct SinkEntry<C>(pub C);
/// Wraps a [`SourceConnector`] for the registry.
pub struct SourceEntry<C>(pub C);

impl<C: SinkConnector> ErasedConnector for SinkEntry<C> {
    fn descriptor(&self) -> ConnectorDescriptor {
        descriptor(self.0.info(), KIND_SINK, self.0.config_def())
    }
    fn matches(&self, class: &str) -> bool {
        class_matches(&self.0.info(), class)
    }
    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigIssue> {
        self.0.validate(config)
    }
    fn task_configs(&self, config: &ConnectorConfig, max_tasks: usize) -> Result<Vec<ConnectorConfig>, ConnectorError> {
        self.0.task_configs(config, max_tasks)
    }
    fn create_sink_task(
        &self,
        config: &ConnectorConfig,
        host: Host,
        context: SinkContext,
    ) -> Result<SinkTaskParts, ConnectorError> {
        let task = self.0.create_task(config, host, context)?;
        let details = LastDetails::default();
        Ok(SinkTaskParts {
            task: FfiSinkTask_TO::from_value(SinkTaskAdapter { task, details: details.clone() }, TD_Opaque),
            details: FfiFailureDetails_TO::from_value(details, TD_Opaque),
        })
    }
    fn create_source_task(&self, _: &ConnectorConfig, _: Host) -> Result<FfiSourceTaskBox, ConnectorError> {
        Err(ConnectorError::config(format!("{} is a sink connector, not a source", self.0.info().class)))
    }
}

impl<C: SourceConnector> ErasedConnector for SourceEntry<C> {
    fn descriptor(&self) -> ConnectorDescriptor {
        descriptor(self.0.info(), KIND_SOURCE, self.0.config_def())
    }
    fn matches(&self, class: &str) -> bool {
        class_matches(&self.0.info(), class)
    }
    fn validate(&self, config: &ConnectorConfig) -> Vec<ConfigIssue> {
        self.0.validate(config)
    }
    fn task_configs(&self, config: &ConnectorConfig, max_tasks: usize) -> Result<Vec<ConnectorConfig>, ConnectorError> {
        self.0.task_configs(config, max_tasks)
    }
    fn create_sink_task(&self, _: &ConnectorConfig, _: Host, _: SinkContext) -> Result<SinkTaskParts, ConnectorError> {
        Err(ConnectorError::config(format!("{} is a source connector, not a sink", self.0.info().class)))
    }
    fn create_source_task(&self, config: &ConnectorConfig, host: Host) -> Result<FfiSourceTaskBox, ConnectorError> {
        let task = self.0.create_task(config, host)?;
        Ok(FfiSourceTask_TO::from_value(SourceTaskAdapter(task), TD_Opaque))
    }
}

/// The details of the last `put`'s failures, shared by the task adapter
/// (which replaces them on every `put`) and the worker's side (which takes
/// them after it). Replaced, never appended: a worker that never takes them
/// (one without extensions) holds at most one batch's.
#[derive(Clone, Default)]
struct LastDetails(Arc<Mutex<Vec<FailureDetail>>>);

impl LastDetails {
    fn set(&self, details: Vec<FailureDetail>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = details;
    }
}

impl FfiFailureDetails for LastDetails {
    fn take(&mut self) -> RVec<FailureDetail> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner())).into()
    }
}

struct SinkTaskAdapter<T> {
    task: T,
    details: LastDetails,
}

impl<T: SinkTask> FfiSinkTask for SinkTaskAdapter<T> {
    fn open(&mut self, partitions: RSlice<'_, TopicPartition>) -> RResult<(), ConnectorError> {
        guard("open", || self.task.open(partitions.as_slice()))
    }
    fn put(&mut self, records: RSlice<'_, SinkRecord<'_>>) -> RResult<PutOutcome, ConnectorError> {
        let result = guard("put", || self.task.put(records.as_slice()));
        let (result, details) = match result {
            RResult::ROk(outcome) => {
                let (outcome, details) = outcome.into_parts();
                (RResult::ROk(outcome), details)
            }
            RResult::RErr(e) => (RResult::RErr(e), Vec::new()),
        };
        self.details.set(details);
        result
    }
    fn pre_commit(
        &mut self,
        delivered: RSlice<'_, TopicPartitionOffset>,
    ) -> RResult<RVec<TopicPartitionOffset>, ConnectorError> {
        guard("pre_commit", || self.task.pre_commit(delivered.as_slice()).map(RVec::from))
    }
    fn close(&mut self, partitions: RSlice<'_, TopicPartition>) -> RResult<(), ConnectorError> {
        guard("close", || self.task.close(partitions.as_slice()))
    }
    fn stop(&mut self) -> RResult<(), ConnectorError> {
        guard("stop", || self.task.stop())
    }
}

struct SourceTaskAdapter<T>(T);

impl<T: SourceTask> FfiSourceTask for SourceTaskAdapter<T> {
    fn start(&mut self, offsets: RVec<SourceOffset>) -> RResult<(), ConnectorError> {
        guard("start", || self.0.start(offsets.as_slice()))
    }
    fn poll(&mut self, max_records: u32) -> RResult<RVec<SourceRecord>, ConnectorError> {
        guard("poll", || self.0.poll(max_records as usize).map(RVec::from))
    }
    fn commit(&mut self, offsets: RVec<SourceOffset>) -> RResult<(), ConnectorError> {
        guard("commit", || self.0.commit(offsets.as_slice()))
    }
    fn stop(&mut self) -> RResult<(), ConnectorError> {
        guard("stop", || self.0.stop())
    }
}

/// The connector classes of one library. Built lazily on the first call so
/// that a panicking constructor is caught like any other panic.
pub struct PluginRegistry {
    connectors: Vec<Box<dyn ErasedConnector>>,
}

impl PluginRegistry {
    pub fn new(connectors: Vec<Box<dyn ErasedConnector>>) -> Self {
        PluginRegistry { connectors }
    }
    fn find(&self, class: &str) -> Result<&dyn ErasedConnector, ConnectorError> {
        self.connectors
            .iter()
            .find(|c| c.matches(class))
            .map(|c| &**c)
            .ok_or_else(|| ConnectorError::config(format!("this plugin has no connector class {class}")))
    }
}

/// Implemented by the type [`crate::export_plugin`] generates.
pub trait RegistryProvider: 'static {
    fn registry() -> &'static PluginRegistry;
}

extern "C" fn connectors<R: RegistryProvider>() -> RResult<RVec<ConnectorDescriptor>, ConnectorError> {
    guard("connectors", || Ok(R::registry().connectors.iter().map(|c| c.descriptor()).collect()))
}

extern "C" fn validate<R: RegistryProvider>(
    class: RStr<'_>,
    config: RSlice<'_, ConfigEntry>,
) -> RResult<RVec<ConfigIssue>, ConnectorError> {
    guard("validate", || {
        let config = ConnectorConfig::from_entries(config.as_slice());
        Ok(R::registry().find(class.as_str())?.validate(&config).into())
    })
}

extern "C" fn task_configs<R: RegistryProvider>(
    class: RStr<'_>,
    config: RSlice<'_, ConfigEntry>,
    max_tasks: u32,
) -> RResult<RVec<RVec<ConfigEntry>>, ConnectorError> {
    guard("task_configs", || {
        let config = ConnectorConfig::from_entries(config.as_slice());
        let tasks = R::registry().find(class.as_str())?.task_configs(&config, max_tasks as usize)?;
        Ok(tasks.iter().map(ConnectorConfig::to_entries).collect())
    })
}

extern "C" fn create_sink_task<R: RegistryProvider>(
    class: RStr<'_>,
    config: RSlice<'_, ConfigEntry>,
    host: FfiHostBox,
    context: FfiSinkContextBox,
) -> RResult<FfiSinkTaskBox, ConnectorError> {
    guard("create_task", || {
        let config = ConnectorConfig::from_entries(config.as_slice());
        let parts = R::registry().find(class.as_str())?.create_sink_task(
            &config,
            Host::from_ffi(host),
            SinkContext::from_ffi(context),
        )?;
        Ok(parts.task)
    })
}

/// `PluginExtensions::create_sink_task`: with the worker's status line, and
/// the failure details handed back.
extern "C" fn create_sink_task_with_extensions<R: RegistryProvider>(
    class: RStr<'_>,
    config: RSlice<'_, ConfigEntry>,
    host: FfiHostBox,
    context: FfiSinkContextBox,
    status: FfiTaskStatusBox,
) -> RResult<SinkTaskParts, ConnectorError> {
    guard("create_task", || {
        let config = ConnectorConfig::from_entries(config.as_slice());
        R::registry().find(class.as_str())?.create_sink_task(
            &config,
            Host::from_ffi(host),
            SinkContext::from_ffi_with_status(context, status),
        )
    })
}

extern "C" fn create_source_task<R: RegistryProvider>(
    class: RStr<'_>,
    config: RSlice<'_, ConfigEntry>,
    host: FfiHostBox,
) -> RResult<FfiSourceTaskBox, ConnectorError> {
    guard("create_task", || {
        let config = ConnectorConfig::from_entries(config.as_slice());
        R::registry().find(class.as_str())?.create_source_task(&config, Host::from_ffi(host))
    })
}

/// Builds the root module for registry `R`, declaring ABI version `abi_version`.
pub fn root_module<R: RegistryProvider>(abi_version: u32) -> PluginModuleRef {
    let module = PluginModule {
        abi_version,
        connectors: connectors::<R>,
        validate: validate::<R>,
        task_configs: task_configs::<R>,
        create_sink_task: create_sink_task::<R>,
        create_source_task: create_source_task::<R>,
    };
    // Leaked once per library load: root modules live as long as the process.
    let leaked: &'static WithMetadata<PluginModule> = Box::leak(Box::new(WithMetadata::new(module)));
    PluginModuleRef(leaked.static_as_prefix())
}

/// Builds the extensions for registry `R` (`crate::ext`).
pub fn extensions<R: RegistryProvider>() -> ExtensionsExport {
    let module = PluginExtensions { create_sink_task: create_sink_task_with_extensions::<R> };
    // Leaked once per call; the worker calls it once per library load.
    let leaked: &'static WithMetadata<PluginExtensions> = Box::leak(Box::new(WithMetadata::new(module)));
    ExtensionsExport {
        layout: <PluginExtensionsRef as StableAbi>::LAYOUT,
        module: PluginExtensionsRef(leaked.static_as_prefix()),
    }
}

/// Exports a plugin library's connector classes. Use once per `cdylib`:
///
/// ```text
/// connector_api::export_plugin! {
///     sinks: [MySink],
///     sources: [MySource],
/// }
/// ```
///
/// Each entry is an expression building the connector value. The macro
/// generates the abi_stable root module the worker loads; the plugin crate
/// must therefore depend on `abi_stable` (0.11) itself, because abi_stable's
/// export attribute names it by absolute path.
#[macro_export]
macro_rules! export_plugin {
    (sinks: [$($sink:expr),* $(,)?], sources: [$($source:expr),* $(,)?] $(,)?) => {
        $crate::__export_plugin_with_abi_version! {
            abi_version: $crate::ffi::ABI_VERSION, sinks: [$($sink),*], sources: [$($source),*]
        }
        /// The plugin's extensions (`connector_api::ext`).
        #[no_mangle]
        #[allow(improper_ctypes_definitions)]
        pub extern "C" fn sluice_plugin_extensions_v1() -> $crate::ext::ExtensionsExport {
            $crate::export::extensions::<__SluiceRegistry>()
        }
    };
}

/// Like [`export_plugin!`] without the extensions: what a plugin built
/// before them exports. Only for the tests that check such a plugin still
/// runs.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin_without_extensions {
    (sinks: [$($sink:expr),* $(,)?], sources: [$($source:expr),* $(,)?] $(,)?) => {
        $crate::__export_plugin_with_abi_version! {
            abi_version: $crate::ffi::ABI_VERSION, sinks: [$($sink),*], sources: [$($source),*]
        }
    };
}

/// Like [`export_plugin!`] with an explicit ABI version: only for the tests
/// that check the loader refuses a mismatched plugin.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin_with_abi_version {
    (abi_version: $abi:expr, sinks: [$($sink:expr),* $(,)?], sources: [$($source:expr),* $(,)?] $(,)?) => {
        struct __SluiceRegistry;
        impl $crate::export::RegistryProvider for __SluiceRegistry {
            fn registry() -> &'static $crate::export::PluginRegistry {
                static REGISTRY: ::std::sync::OnceLock<$crate::export::PluginRegistry> = ::std::sync::OnceLock::new();
                REGISTRY.get_or_init(|| {
                    #[allow(unused_mut)]
                    let mut connectors: ::std::vec::Vec<::std::boxed::Box<dyn $crate::export::ErasedConnector>> =
                        ::std::vec::Vec::new();
                    $(connectors.push(::std::boxed::Box::new($crate::export::SinkEntry($sink)));)*
                    $(connectors.push(::std::boxed::Box::new($crate::export::SourceEntry($source)));)*
                    $crate::export::PluginRegistry::new(connectors)
                })
            }
        }
        #[::abi_stable::export_root_module]
        pub fn sluice_plugin_root() -> $crate::ffi::PluginModuleRef {
            $crate::export::root_module::<__SluiceRegistry>($abi)
        }
    };
}
