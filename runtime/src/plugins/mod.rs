//! Loading connector libraries and the registry of connector classes.
//!
//! Invariant: a library that cannot be used (not a Sluice plugin, another ABI
//! version, a layout mismatch, a duplicate class, a panic while describing
//! itself) is rejected with its path and the reason, and loading goes on with
//! the next one. Libraries are never unloaded (abi_stable leaks them).

mod class;

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use abi_stable::library::{lib_header_from_path, LibraryError, RawLibrary};
use connector_api::{
    ext::{self, ExtensionsExport, PluginExtensionsRef, EXTENSIONS_SYMBOL},
    ffi::{ConnectorDescriptor, PluginModuleRef, ABI_CHANGES, ABI_VERSION},
};

pub use class::{ConnectorClass, Kind, SinkTask};

/// A library the loader refused, and why.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {} refused: {}", self.path.display(), self.reason)
    }
}

/// Every connector class the worker can run, by class name and alias.
#[derive(Default)]
pub struct PluginRegistry {
    classes: Vec<Arc<ConnectorClass>>,
    by_name: BTreeMap<String, usize>,
    rejections: Vec<Rejection>,
}

fn is_library(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("so" | "dylib" | "dll"))
}

impl PluginRegistry {
    /// Loads every library found directly in the given directories.
    pub fn load(dirs: &[PathBuf]) -> PluginRegistry {
        let mut registry = PluginRegistry::default();
        for dir in dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) => {
                    registry
                        .rejections
                        .push(Rejection { path: dir.clone(), reason: format!("cannot read directory: {e}") });
                    continue;
                }
            };
            let mut paths: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_library(p)).collect();
            paths.sort();
            for path in paths {
                registry.load_library(&path);
            }
        }
        registry
    }

    /// Loads one library; a failure is recorded, never returned.
    pub fn load_library(&mut self, path: &Path) {
        if let Err(reason) = self.try_load(path) {
            tracing::warn!(path = %path.display(), %reason, "plugin refused");
            self.rejections.push(Rejection { path: path.to_path_buf(), reason });
        }
    }

    fn try_load(&mut self, path: &Path) -> Result<(), String> {
        let header = lib_header_from_path(path).map_err(describe_library_error)?;
        let module = header.init_root_module::<PluginModuleRef>().map_err(describe_library_error)?;
        let abi = module.abi_version();
        if abi != ABI_VERSION {
            return Err(abi_mismatch(abi));
        }
        let descriptors: Vec<ConnectorDescriptor> = module.connectors()()
            .into_result()
            .map_err(|e| format!("it failed to describe its connectors: {e}"))?
            .into_vec();
        for d in &descriptors {
            for name in std::iter::once(&d.class).chain(d.aliases.iter()) {
                if let Some(&i) = self.by_name.get(name.as_str()) {
                    return Err(format!(
                        "duplicate connector class {name}: already provided by {}",
                        self.classes[i].library().display()
                    ));
                }
            }
        }
        let extensions = extensions_of(path);
        for d in descriptors {
            let class = ConnectorClass::new(d, module, extensions, path.to_path_buf())?;
            let index = self.classes.len();
            for name in class.names() {
                self.by_name.insert(name.to_string(), index);
            }
            tracing::info!(
                class = class.name(),
                kind = class.kind().name(),
                extensions = class.has_extensions(),
                path = %path.display(),
                "connector class loaded"
            );
            self.classes.push(Arc::new(class));
        }
        Ok(())
    }

    /// The class registered under `name`: its class name, an alias, or, as
    /// Kafka Connect's plugin aliases allow, the simple name of a Java
    /// class alias with or without its `Connector` suffix
    /// (`S3SinkConnector`, `S3Sink`) when exactly one class answers to it.
    pub fn class(&self, name: &str) -> Option<Arc<ConnectorClass>> {
        if let Some(&i) = self.by_name.get(name) {
            return Some(self.classes[i].clone());
        }
        let names = self.by_name.iter().map(|(n, &i)| (n.as_str(), i));
        simple_alias(names, name).map(|i| self.classes[i].clone())
    }

    pub fn classes(&self) -> &[Arc<ConnectorClass>] {
        &self.classes
    }

    pub fn rejections(&self) -> &[Rejection] {
        &self.rejections
    }
}

/// The plugin extensions of a library whose root module loaded, if it has
/// usable ones: a library built before them has no such symbol; one whose
/// extensions lack what this worker calls is run on its root module alone.
fn extensions_of(path: &Path) -> Option<PluginExtensionsRef> {
    // Opened again: the same handle as abi_stable's (the loader counts
    // references), and leaked like it, since the module lives as long as the process.
    let library = RawLibrary::load_at(path).ok()?;
    let symbol = format!("{EXTENSIONS_SYMBOL}\0");
    // SAFETY: export_plugin! defines this symbol, and only it, with this
    // signature; the name carries the version of that signature.
    let export: ExtensionsExport =
        unsafe { library.get::<extern "C" fn() -> ExtensionsExport>(symbol.as_bytes()) }.ok().map(|f| (*f)())?;
    std::mem::forget(library);
    match ext::check(&export) {
        Ok(()) => Some(export.module),
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                "plugin extensions not used (status messages, failure detail headers): their layout does not match \
                 this worker's connector-api; the plugin runs without them"
            );
            tracing::debug!(path = %path.display(), error = %e, "plugin extensions layout");
            None
        }
    }
}

/// The class index a short name stands for: the last dotted segment of a
/// registered name equals `name` or `name` + "Connector"; `None` when no class
/// or more than one answers (an ambiguous short name must be spelled out).
fn simple_alias<'a>(names: impl Iterator<Item = (&'a str, usize)>, name: &str) -> Option<usize> {
    if name.is_empty() || name.contains('.') {
        return None;
    }
    let mut found: Option<usize> = None;
    for (registered, index) in names {
        let Some((_, simple)) = registered.rsplit_once('.') else { continue };
        if simple == name || simple.strip_suffix("Connector") == Some(name) {
            match found {
                Some(other) if other != index => return None,
                _ => found = Some(index),
            }
        }
    }
    found
}

fn describe_library_error(e: LibraryError) -> String {
    match e {
        LibraryError::OpenError { .. } => format!("it cannot be opened as a shared library: {e}"),
        LibraryError::GetSymbolError { .. } => {
            "it is not a Sluice plugin (it exports no sluice_plugin root module)".to_string()
        }
        // abi_stable compares the layouts before our version field can be
        // read: a plugin built for another ABI version usually lands here.
        other => format!(
            "it is not compatible with this worker (most likely it was built for another plugin ABI version; this \
             worker's is {ABI_VERSION}: {}; rebuild it against this worker's connector-api): {other}",
            ABI_CHANGES.last().copied().unwrap_or_default()
        ),
    }
}

/// The refusal of a plugin built for another ABI version: both versions,
/// and what changed between them.
fn abi_mismatch(abi: u32) -> String {
    let changes: Vec<String> = (abi.min(ABI_VERSION) + 1..=abi.max(ABI_VERSION))
        .filter_map(|v| ABI_CHANGES.get(v as usize - 1).map(|c| format!("version {v}: {c}")))
        .collect();
    let changed = if changes.is_empty() { String::new() } else { format!(" (what changed: {})", changes.join("; ")) };
    format!(
        "it was built for plugin ABI version {abi}, but this worker supports ABI version {ABI_VERSION}{changed}; \
         rebuild it against this worker's connector-api"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_names_of_java_aliases_resolve_when_unambiguous() {
        let names = [
            ("s3-sink", 0),
            ("io.confluent.connect.s3.S3SinkConnector", 0),
            ("example-file-sink", 1),
            ("org.apache.kafka.connect.file.FileStreamSinkConnector", 1),
            ("com.acme.FileStreamSinkConnector", 2),
        ];
        let find = |n: &str| super::simple_alias(names.iter().copied(), n);
        // (requested, index)
        let cases = [
            ("S3SinkConnector", Some(0)),
            ("S3Sink", Some(0)),
            ("FileStreamSinkConnector", None), // two classes answer: spell it out
            ("s3", None),
            ("", None),
            ("io.confluent.S3SinkConnector", None),
        ];
        for (requested, expected) in cases {
            assert_eq!(find(requested), expected, "{requested}");
        }
    }
}
