//! The ABI proper: the root module every plugin exports and the task trait
//! objects. Connector authors never use these directly (see [`crate::export_plugin`]).
//!
//! Evolution rules: nothing reachable from [`PluginModule`] changes, not
//! even a field appended after a `last_prefix_field`: abi_stable lets a
//! newer library into an older host, but refuses a library whose prefix
//! types have fewer fields than the host's, so a growing vtable would refuse
//! every plugin already built. Additions go to [`crate::ext`], found by
//! their own symbol (docs/decisions/0043). Nothing is removed or renamed (a
//! type's name is part of its checked layout); no exhaustive enum crosses
//! the boundary (kinds travel as bytes). A change that breaks these bumps
//! [`ABI_VERSION`].

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

use crate::{
    config::{ConfigEntry, ConfigIssue, ConfigKeyInfo},
    context::FfiSinkContextBox,
    host::FfiHostBox,
    record::{SinkRecord, SourceOffset, SourceRecord, TopicPartition, TopicPartitionOffset},
    ConnectorError,
};

/// The plugin ABI version this crate implements; the loader refuses a plugin
/// that exports another.
pub const ABI_VERSION: u32 = 2;

/// What each ABI version changed, for the loader's refusal of a plugin
/// built for another one (index 0 is version 1).
pub const ABI_CHANGES: &[&str] = &[
    "the first plugin ABI",
    "sink records carry the key's and value's schema; SinkConnector::create_task takes a SinkContext; \
     SinkTask::pre_commit is handed the delivered offsets; SinkRecord::new takes topic, partition and offset \
     (the rest through with_* methods)",
];

/// `ConnectorDescriptor::kind` of a sink.
pub const KIND_SINK: u8 = 1;
/// `ConnectorDescriptor::kind` of a source.
pub const KIND_SOURCE: u8 = 2;

/// How a connector class describes itself.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct ConnectorDescriptor {
    /// The class users put in `connector.class`, e.g. `s3-sink`.
    pub class: RString,
    /// Other accepted names, e.g. `io.confluent.connect.s3.S3SinkConnector`.
    pub aliases: RVec<RString>,
    /// [`KIND_SINK`] or [`KIND_SOURCE`].
    pub kind: u8,
    pub version: RString,
    pub documentation: RString,
    pub config: RVec<ConfigKeyInfo>,
}

pub use crate::record::abi::PutOutcome;

/// A sink task as the worker sees it.
#[sabi_trait]
pub trait FfiSinkTask: Send {
    fn open(&mut self, partitions: RSlice<'_, TopicPartition>) -> RResult<(), ConnectorError>;
    fn put(&mut self, records: RSlice<'_, SinkRecord<'_>>) -> RResult<PutOutcome, ConnectorError>;
    fn pre_commit(
        &mut self,
        delivered: RSlice<'_, TopicPartitionOffset>,
    ) -> RResult<RVec<TopicPartitionOffset>, ConnectorError>;
    fn close(&mut self, partitions: RSlice<'_, TopicPartition>) -> RResult<(), ConnectorError>;
    #[sabi(last_prefix_field)]
    fn stop(&mut self) -> RResult<(), ConnectorError>;
}

/// A source task as the worker sees it.
#[sabi_trait]
pub trait FfiSourceTask: Send {
    fn start(&mut self, offsets: RVec<SourceOffset>) -> RResult<(), ConnectorError>;
    fn poll(&mut self, max_records: u32) -> RResult<RVec<SourceRecord>, ConnectorError>;
    fn commit(&mut self, offsets: RVec<SourceOffset>) -> RResult<(), ConnectorError>;
    #[sabi(last_prefix_field)]
    fn stop(&mut self) -> RResult<(), ConnectorError>;
}

pub type FfiSinkTaskBox = FfiSinkTask_TO<'static, RBox<()>>;
pub type FfiSourceTaskBox = FfiSourceTask_TO<'static, RBox<()>>;

/// The root module a plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// Must equal the loader's [`ABI_VERSION`].
    pub abi_version: u32,
    /// The connector classes in this library.
    pub connectors: extern "C" fn() -> RResult<RVec<ConnectorDescriptor>, ConnectorError>,
    /// Checks a config; an empty list means valid.
    pub validate: extern "C" fn(RStr<'_>, RSlice<'_, ConfigEntry>) -> RResult<RVec<ConfigIssue>, ConnectorError>,
    /// Splits a connector config into at most `max_tasks` task configs.
    pub task_configs:
        extern "C" fn(RStr<'_>, RSlice<'_, ConfigEntry>, u32) -> RResult<RVec<RVec<ConfigEntry>>, ConnectorError>,
    pub create_sink_task: extern "C" fn(
        RStr<'_>,
        RSlice<'_, ConfigEntry>,
        FfiHostBox,
        FfiSinkContextBox,
    ) -> RResult<FfiSinkTaskBox, ConnectorError>,
    #[sabi(last_prefix_field)]
    pub create_source_task:
        extern "C" fn(RStr<'_>, RSlice<'_, ConfigEntry>, FfiHostBox) -> RResult<FfiSourceTaskBox, ConnectorError>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "sluice_plugin";
    const NAME: &'static str = "sluice_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
