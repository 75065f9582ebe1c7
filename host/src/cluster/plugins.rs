//! Plugins travel with the fleet's config. A plugin file that loads on one
//! instance (dropped in its folder, or uploaded through the API) is stored
//! in etcd by its SHA-256, in chunks under etcd's value limit
//! (`PREFIX/blobs/HASH/NNNN`, then `PREFIX/blobs/HASH/meta`), and
//! `PREFIX/config.plugins` — a JSON map from file stem to hash, changed by
//! transaction like the config — names the version each name serves. Every
//! instance writes the file a name maps to into its own plugin folder, where
//! it is loaded through the usual checks; the folder is the copy it serves
//! from when etcd cannot be reached. A candidate (`NAME.canary`) travels
//! the same way, so a rollout runs on every instance, and leaves the map
//! when its rollout ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest as _;

use super::etcd::EtcdError;
use super::Fleet;
use crate::engine::Events;

/// The bytes of one chunk of a plugin in etcd (its default request limit
/// is 1.5 MiB).
pub const CHUNK_BYTES: usize = 512 * 1024;

/// The largest plugin that travels: as large as the API takes.
pub const MAX_PLUGIN_BYTES: usize = 128 * 1024 * 1024;

/// File stems to the hash each serves.
pub type PluginMap = BTreeMap<String, String>;

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// The stems that travel: plugin names, and their candidates.
fn travels(stem: &str) -> bool {
    let name = stem.strip_suffix(".canary").unwrap_or(stem);
    crate::config::is_valid_name(name)
}

impl Fleet {
    pub(super) fn plugins_key(&self) -> String {
        format!("{}.plugins", self.config_key)
    }

    fn blob_prefix(&self, hash: &str) -> String {
        format!("{}/blobs/{hash}/", self.settings.prefix)
    }

    /// The map and its revision (0: not set yet).
    async fn plugin_map(&self) -> Result<(PluginMap, i64), EtcdError> {
        Ok(match self.etcd.get(&self.plugins_key()).await? {
            Some(kv) => (
                serde_json::from_slice(&kv.value).unwrap_or_default(),
                kv.mod_revision,
            ),
            None => (PluginMap::new(), 0),
        })
    }

    /// Changes the map with `change` until the transaction holds.
    async fn change_map(&self, change: impl Fn(&mut PluginMap) -> bool) -> Result<(), EtcdError> {
        loop {
            let (mut map, revision) = self.plugin_map().await?;
            if !change(&mut map) {
                return Ok(());
            }
            let value = serde_json::to_vec(&map).unwrap_or_default();
            if self
                .etcd
                .put_if(&self.plugins_key(), revision, &value)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
    }

    /// Stores `bytes` (the file of `stem`, at `hash`) and maps `stem` to it.
    async fn publish(&self, stem: &str, bytes: &[u8], hash: &str) -> Result<(), EtcdError> {
        if bytes.len() > MAX_PLUGIN_BYTES {
            tracing::warn!(
                "plugin {stem} ({} MiB) is over the {} MiB a plugin may travel with: it serves here only",
                bytes.len() >> 20,
                MAX_PLUGIN_BYTES >> 20
            );
            return Ok(());
        }
        let prefix = self.blob_prefix(hash);
        let meta = format!("{prefix}meta");
        if self.etcd.get(&meta).await?.is_none() {
            for (index, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
                self.etcd
                    .put(&format!("{prefix}{index:04}"), chunk, 0)
                    .await?;
            }
            let chunks = bytes.len().div_ceil(CHUNK_BYTES);
            let summary = serde_json::json!({ "bytes": bytes.len(), "chunks": chunks });
            self.etcd
                .put(&meta, summary.to_string().as_bytes(), 0)
                .await?;
        }
        let replaced = std::sync::Mutex::new(None);
        self.change_map(|map| {
            if map.get(stem).map(String::as_str) == Some(hash) {
                return false;
            }
            *replaced.lock().unwrap() = map.insert(stem.to_string(), hash.to_string());
            true
        })
        .await?;
        self.synced(stem, hash);
        if let Some(old) = replaced.into_inner().unwrap() {
            self.forget_unmapped(&old).await;
        }
        tracing::info!("plugin {stem} ({}) shared with the fleet", &hash[..12]);
        Ok(())
    }

    /// Deletes the stored plugin at `hash` if no name maps to it any more,
    /// so etcd holds the versions that serve, not every one that did. An
    /// instance still fetching it fetches what its name maps to next.
    async fn forget_unmapped(&self, hash: &str) {
        let Ok((map, _)) = self.plugin_map().await else {
            return;
        };
        if map.values().any(|mapped| mapped == hash) {
            return;
        }
        if let Err(error) = self.etcd.delete_prefix(&self.blob_prefix(hash)).await {
            tracing::debug!("the fleet keeps plugin {hash} a while longer: {error}");
        }
    }

    /// Notes that the folder's `stem` is in step with the fleet at `hash`.
    fn synced(&self, stem: &str, hash: &str) {
        self.synced
            .lock()
            .unwrap()
            .insert(stem.to_string(), hash.to_string());
    }

    /// The plugin stored at `hash`, checked against it.
    async fn fetch(&self, hash: &str) -> Result<Vec<u8>, String> {
        let prefix = self.blob_prefix(hash);
        let (parts, _) = self
            .etcd
            .get_prefix(&prefix)
            .await
            .map_err(|e| e.to_string())?;
        let mut chunks: Vec<_> = parts
            .into_iter()
            .filter(|kv| !kv.key.ends_with("/meta"))
            .collect();
        chunks.sort_by(|a, b| a.key.cmp(&b.key));
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|kv| kv.value).collect();
        if sha256(&bytes) != hash {
            return Err(format!(
                "the plugin stored at {hash} is incomplete or altered ({} bytes)",
                bytes.len()
            ));
        }
        Ok(bytes)
    }

    /// Writes into the plugin folder every file the map names that it does
    /// not hold yet; the folder's watcher loads them.
    pub(super) async fn take_plugins(&self, map: &PluginMap) {
        let dir = &self.plugin_dir;
        for (stem, hash) in map {
            if !travels(stem) {
                continue;
            }
            let path = dir.join(format!("{stem}.wasm"));
            let held = std::fs::read(&path).ok().map(|bytes| sha256(&bytes));
            if held.as_deref() == Some(hash.as_str()) {
                self.synced(stem, hash);
                continue;
            }
            // A file that changed here since it was last in step with the
            // fleet is a newer drop: it is shared once it loads, not
            // overwritten.
            let known = self.synced.lock().unwrap().get(stem).cloned();
            if let (Some(held), Some(known)) = (&held, &known) {
                if held != known {
                    continue;
                }
            }
            match self.fetch(hash).await {
                Ok(bytes) => {
                    let temporary = dir.join(format!(".{stem}.fleet"));
                    let written = std::fs::write(&temporary, &bytes)
                        .and_then(|()| std::fs::rename(&temporary, &path));
                    match written {
                        Ok(()) => {
                            self.synced(stem, hash);
                            tracing::info!(
                                "plugin {stem} ({}) arrived from the fleet",
                                &hash[..12.min(hash.len())]
                            )
                        }
                        Err(error) => tracing::warn!("cannot write {}: {error}", path.display()),
                    }
                }
                Err(error) => tracing::warn!("plugin {stem} from the fleet: {error}"),
            }
        }
    }

    /// Shares every plugin of the folder the map does not name yet (the
    /// first instance of a fleet, or one that loaded files while etcd was
    /// away), then takes what the map names.
    pub(super) async fn sync_plugins(&self) -> Result<(), EtcdError> {
        let dir = &self.plugin_dir;
        let (map, _) = self.plugin_map().await?;
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "wasm") {
                continue;
            }
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if !travels(stem) || map.contains_key(stem) {
                continue;
            }
            if let Ok(bytes) = std::fs::read(&path) {
                self.publish(stem, &bytes, &sha256(&bytes)).await?;
            }
        }
        let (map, _) = self.plugin_map().await?;
        self.take_plugins(&map).await;
        Ok(())
    }

    /// Shares each plugin version that loads here from its file, and drops
    /// a candidate from the map when its rollout ends.
    pub(super) async fn share_loaded_plugins(self: Arc<Self>, events: Arc<Events>) {
        let (_, mut receiver) = events.since(Some(u64::MAX));
        loop {
            let event = match receiver.recv().await {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if event.kind != "plugin" {
                continue;
            }
            let data = &event.data;
            let (Some(plugin), Some(what)) = (data["plugin"].as_str(), data["event"].as_str())
            else {
                continue;
            };
            let (stem, hash) = match what {
                "loaded" => (plugin.to_string(), data["hash"].as_str()),
                "rollout-started" => (format!("{plugin}.canary"), data["candidate"].as_str()),
                "rollout-promoted" | "rollout-rolled-back" | "rollout-aborted" => {
                    let stem = format!("{plugin}.canary");
                    let removed = self.change_map(|map| map.remove(&stem).is_some()).await;
                    if let Err(error) = removed {
                        tracing::warn!(
                            "cannot end plugin {plugin}'s candidate in the fleet: {error}"
                        );
                    }
                    continue;
                }
                _ => continue,
            };
            let Some(hash) = hash else {
                continue;
            };
            // Only what the file holds travels (not a last good version
            // kept from an earlier run).
            let Ok(bytes) = std::fs::read(self.plugin_dir.join(format!("{stem}.wasm"))) else {
                continue;
            };
            if sha256(&bytes) != hash {
                continue;
            }
            for attempt in 0..20 {
                match self.publish(&stem, &bytes, hash).await {
                    Ok(()) => break,
                    Err(error) => {
                        if attempt == 0 {
                            tracing::warn!(
                                "plugin {stem} is not shared with the fleet yet: {error}"
                            );
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_and_their_candidates_travel_and_nothing_else() {
        assert!(travels("peak-ewma"));
        assert!(travels("peak-ewma.canary"));
        assert!(!travels(".hidden"));
        assert!(!travels("a.b.c"));
    }
}
