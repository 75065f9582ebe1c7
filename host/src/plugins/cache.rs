//! Compiled plugins on disk, keyed by the file's content hash and the
//! engine's compatibility hash, so a restart does not recompile.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

/// The compiled-artifact cache in one folder.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: PathBuf) -> Self {
        ArtifactCache { dir }
    }

    fn path(&self, engine: &Engine, content_hash: &str) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{content_hash}-{:016x}.cwasm", hasher.finish()))
    }

    /// Compiles `bytes`, or loads the artifact compiled earlier from the same
    /// content by a compatible engine. A damaged cache file is recompiled.
    pub fn component(
        &self,
        engine: &Engine,
        content_hash: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, bool)> {
        let path = self.path(engine, content_hash);
        if path.exists() {
            match deserialize(engine, &path) {
                Ok(component) => return Ok((component, true)),
                Err(error) => tracing::warn!(
                    path = %path.display(),
                    "compiled plugin cache entry unusable, recompiling: {error:#}"
                ),
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(error) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), "cannot cache compiled plugin: {error:#}");
        }
        Ok((component, false))
    }

    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        // A name of its own: hosts sharing a cache folder may store the same
        // entry at once, and each renames a whole file into place.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let temporary = path.with_extension(format!(
            "{}.{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&temporary, component.serialize()?)?;
        std::fs::rename(&temporary, path)?;
        Ok(())
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file is one this cache wrote with `Component::serialize`,
    // under a name carrying the engine's compatibility hash; wasmtime checks
    // the header and version again. The cache folder must be writable only
    // by the host's user, as the docs of `plugins.cache_dir` say.
    unsafe { Component::deserialize_file(engine, path) }
}
