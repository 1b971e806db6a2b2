//! One connector class of a loaded library: the safe, idiomatic face of the
//! plugin's root module for the rest of the worker.

use std::path::{Path, PathBuf};

use abi_stable::std_types::{RResult, RSlice, RVec};
use connector_api::{
    config::ConfigEntry,
    context::FfiSinkContextBox,
    ext::{FfiFailureDetailsBox, FfiTaskStatusBox, PluginExtensionsRef},
    ffi::{ConnectorDescriptor, FfiSinkTaskBox, FfiSourceTaskBox, PluginModuleRef, KIND_SINK, KIND_SOURCE},
    host::FfiHostBox,
    record::{SinkRecord, TopicPartition, TopicPartitionOffset},
    ConfigIssue, ConfigKeyInfo, ConnectorError, PutOutcome,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sink,
    Source,
}

impl Kind {
    /// Kafka Connect's spelling in REST responses.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sink => "sink",
            Kind::Source => "source",
        }
    }
}

pub struct ConnectorClass {
    descriptor: ConnectorDescriptor,
    kind: Kind,
    module: PluginModuleRef,
    /// Absent for a plugin built before them (`connector_api::ext`).
    extensions: Option<PluginExtensionsRef>,
    library: PathBuf,
}

/// A running sink task of a plugin: the root module's task, and with
/// extensions the details of its failed records.
pub struct SinkTask {
    task: FfiSinkTaskBox,
    details: Option<FfiFailureDetailsBox>,
}

impl SinkTask {
    pub fn open(&mut self, partitions: RSlice<'_, TopicPartition>) -> RResult<(), ConnectorError> {
        self.task.open(partitions)
    }
    /// The plugin's `put`, with the details it gave for its failures.
    pub fn put(&mut self, records: RSlice<'_, SinkRecord<'_>>) -> RResult<PutOutcome, ConnectorError> {
        let result = self.task.put(records).into_result();
        let details = match (&result, &mut self.details) {
            (Ok(outcome), Some(details)) if !outcome.failures.is_empty() => details.take().into_vec(),
            _ => Vec::new(),
        };
        result.map(|outcome| PutOutcome::from_parts(outcome, details)).into()
    }
    pub fn pre_commit(
        &mut self,
        delivered: RSlice<'_, TopicPartitionOffset>,
    ) -> RResult<RVec<TopicPartitionOffset>, ConnectorError> {
        self.task.pre_commit(delivered)
    }
    pub fn close(&mut self, partitions: RSlice<'_, TopicPartition>) -> RResult<(), ConnectorError> {
        self.task.close(partitions)
    }
    pub fn stop(&mut self) -> RResult<(), ConnectorError> {
        self.task.stop()
    }
}

fn entries<'a>(config: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<ConfigEntry> {
    config.into_iter().map(|(k, v)| ConfigEntry { key: k.into(), value: v.into() }).collect()
}

impl ConnectorClass {
    pub(super) fn new(
        descriptor: ConnectorDescriptor,
        module: PluginModuleRef,
        extensions: Option<PluginExtensionsRef>,
        library: PathBuf,
    ) -> Result<Self, String> {
        let kind = match descriptor.kind {
            KIND_SINK => Kind::Sink,
            KIND_SOURCE => Kind::Source,
            other => return Err(format!("connector {} has unknown kind {other}", descriptor.class)),
        };
        Ok(ConnectorClass { descriptor, kind, module, extensions, library })
    }

    pub fn name(&self) -> &str {
        self.descriptor.class.as_str()
    }
    /// The class name and its aliases.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.descriptor.class.as_str()).chain(self.descriptor.aliases.iter().map(|a| a.as_str()))
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn version(&self) -> &str {
        self.descriptor.version.as_str()
    }
    pub fn documentation(&self) -> &str {
        self.descriptor.documentation.as_str()
    }
    pub fn library(&self) -> &Path {
        &self.library
    }
    /// Whether its library exports plugin extensions (status messages,
    /// failure details); one built before them does not.
    pub fn has_extensions(&self) -> bool {
        self.extensions.is_some()
    }
    pub fn config_keys(&self) -> &[ConfigKeyInfo] {
        self.descriptor.config.as_slice()
    }
    /// True when `key` is a password-typed key of this class.
    pub fn is_password(&self, key: &str) -> bool {
        self.config_keys().iter().any(|k| k.name.as_str() == key && k.is_password())
    }

    pub fn validate<'a>(
        &self,
        config: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Vec<ConfigIssue>, ConnectorError> {
        let entries = entries(config);
        self.module.validate()(self.name().into(), entries.as_slice().into()).into_result().map(|v| v.into_vec())
    }

    pub fn task_configs<'a>(
        &self,
        config: impl IntoIterator<Item = (&'a str, &'a str)>,
        max_tasks: u32,
    ) -> Result<Vec<Vec<(String, String)>>, ConnectorError> {
        let entries = entries(config);
        let tasks =
            self.module.task_configs()(self.name().into(), entries.as_slice().into(), max_tasks).into_result()?;
        Ok(tasks
            .into_iter()
            .map(|task| task.into_iter().map(|e| (e.key.into_string(), e.value.into_string())).collect())
            .collect())
    }

    /// A sink task; `status` is the line its status messages go to (unused
    /// by a plugin without extensions).
    pub fn create_sink_task<'a>(
        &self,
        config: impl IntoIterator<Item = (&'a str, &'a str)>,
        host: FfiHostBox,
        context: FfiSinkContextBox,
        status: FfiTaskStatusBox,
    ) -> Result<SinkTask, ConnectorError> {
        let entries = entries(config);
        let (name, entries) = (self.name().into(), entries.as_slice().into());
        match self.extensions {
            Some(ext) => ext.create_sink_task()(name, entries, host, context, status)
                .into_result()
                .map(|parts| SinkTask { task: parts.task, details: Some(parts.details) }),
            None => self.module.create_sink_task()(name, entries, host, context)
                .into_result()
                .map(|task| SinkTask { task, details: None }),
        }
    }

    pub fn create_source_task<'a>(
        &self,
        config: impl IntoIterator<Item = (&'a str, &'a str)>,
        host: FfiHostBox,
    ) -> Result<FfiSourceTaskBox, ConnectorError> {
        let entries = entries(config);
        self.module.create_source_task()(self.name().into(), entries.as_slice().into(), host).into_result()
    }
}
