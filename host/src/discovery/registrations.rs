//! Services that register themselves in a pool: each registration an
//! endpoint for as long as it is renewed within its TTL, drained and
//! removed (with an event) when it lapses. Registrations are kept by a
//! [`RegistrationStore`] — a file beside the config — so a restart keeps a
//! live one and drops one that lapsed meanwhile.
//!
//! Writes are coalesced: a heartbeat is written only when the expiry
//! stored is within half a TTL of now, so a service renewing every third
//! of its TTL writes about every other heartbeat, and what is stored is
//! never more than half a TTL short of the truth. After a restart a
//! registration lapses at its stored expiry unless it is renewed before.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Found, Update};
use crate::engine::{unix_ms, Events, Source};
use crate::reload::Reloader;

/// The shortest TTL a registration may have.
pub const MIN_TTL_MS: u64 = 100;
/// The longest: a day.
pub const MAX_TTL_MS: u64 = 86_400_000;
/// The most metadata entries a registration may carry.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// The longest metadata key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 64;
/// The longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 256;
/// How often lapsed registrations are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(50);

/// One registration, as kept and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Registration {
    /// Its id, given at registration.
    pub id: String,
    /// The pool it is an endpoint of.
    pub pool: String,
    /// `host:port` of the service.
    pub address: String,
    /// What the service says of itself; plugins see it as the endpoint's
    /// labels.
    pub metadata: BTreeMap<String, String>,
    /// How long it lives without a heartbeat, in ms.
    pub ttl_ms: u64,
    /// When it lapses unless renewed, in ms since the Unix epoch.
    pub expires_at_unix_ms: u64,
}

/// Why the store could not keep the registrations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be read or written.
    #[error("registrations file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a list of registrations.
    #[error("registrations file {path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// Where registrations are kept across restarts: every registration, written
/// whole. A fleet's shared store can stand in for the file.
pub trait RegistrationStore: Send + Sync + std::fmt::Debug {
    /// Every registration kept.
    fn load(&self) -> Result<Vec<Registration>, StoreError>;
    /// Keeps exactly `all`.
    fn save(&self, all: &[Registration]) -> Result<(), StoreError>;
    /// Whether every heartbeat must be written: a store others read (a
    /// fleet's) must hold each renewal, or they would see it lapse early.
    fn writes_every_heartbeat(&self) -> bool {
        false
    }
}

/// Registrations kept in memory only: a process run from a config in
/// memory, without a file to put them beside.
#[derive(Debug, Default)]
pub struct MemoryStore;

impl RegistrationStore for MemoryStore {
    fn load(&self) -> Result<Vec<Registration>, StoreError> {
        Ok(Vec::new())
    }

    fn save(&self, _all: &[Registration]) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Registrations in a JSON file, replaced whole by writing a file beside it,
/// syncing it and renaming it over: a crash leaves the old file or the new.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// The store beside `config`: `switchyard.toml` keeps its registrations
    /// in `switchyard.registrations.json`.
    pub fn beside(config: &Path) -> FileStore {
        let stem = config
            .file_stem()
            .map_or_else(|| "switchyard".into(), |s| s.to_string_lossy().into_owned());
        FileStore {
            path: config.with_file_name(format!("{stem}.registrations.json")),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

impl RegistrationStore for FileStore {
    fn load(&self) -> Result<Vec<Registration>, StoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    fn save(&self, all: &[Registration]) -> Result<(), StoreError> {
        use std::io::Write as _;
        let text = serde_json::to_string_pretty(all).expect("registrations serialize");
        let temporary = self.path.with_extension("json.new");
        let mut file = std::fs::File::create(&temporary).map_err(|e| self.io(e))?;
        file.write_all(text.as_bytes()).map_err(|e| self.io(e))?;
        file.sync_all().map_err(|e| self.io(e))?;
        std::fs::rename(&temporary, &self.path).map_err(|e| self.io(e))?;
        // The rename itself is durable once the folder is synced.
        if let Some(folder) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(folder)
                .and_then(|f| f.sync_all())
                .map_err(|e| self.io(e))?;
        }
        Ok(())
    }
}

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The pool does not exist.
    #[error("no pool is named `{0}`")]
    NoSuchPool(String),
    /// No registration of that id in that pool.
    #[error("pool `{pool}` has no registration `{id}`")]
    NoSuchRegistration {
        /// The pool.
        pool: String,
        /// The id asked for.
        id: String,
    },
    /// A field is out of range.
    #[error("`{field}`: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The store failed; nothing was changed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The pool could not be rebuilt with it.
    #[error("{0}")]
    Apply(String),
}

/// A registration and the expiry its store holds.
#[derive(Debug, Clone)]
struct Kept {
    registration: Registration,
    stored_expiry_ms: u64,
}

/// The registrations of every pool, and what applies them.
#[derive(Debug)]
pub struct Registry {
    reloader: Arc<Reloader>,
    events: Arc<Events>,
    store: std::sync::Mutex<Box<dyn RegistrationStore>>,
    kept: tokio::sync::Mutex<HashMap<String, Kept>>,
}

impl Registry {
    /// A registry kept in memory until [`Registry::keep_in`] gives it a
    /// store.
    pub fn new(reloader: Arc<Reloader>, events: Arc<Events>) -> Registry {
        Registry {
            reloader,
            events,
            store: std::sync::Mutex::new(Box::new(MemoryStore)),
            kept: tokio::sync::Mutex::default(),
        }
    }

    /// Keeps the registrations in `store` from now on.
    pub fn keep_in(&self, store: Box<dyn RegistrationStore>) {
        *self.store.lock().unwrap() = store;
    }

    /// Takes back the registrations the store kept: those still live serve
    /// again, those that lapsed while the process was down are dropped
    /// (each with an event).
    pub async fn restore(&self) -> Result<(), RegistrationError> {
        let loaded = self.store.lock().unwrap().load()?;
        let now = unix_ms();
        let mut kept = self.kept.lock().await;
        let mut dropped = false;
        for registration in loaded {
            if registration.expires_at_unix_ms <= now {
                self.announce("lapsed", &registration);
                dropped = true;
                continue;
            }
            kept.insert(
                registration.id.clone(),
                Kept {
                    stored_expiry_ms: registration.expires_at_unix_ms,
                    registration,
                },
            );
        }
        if dropped {
            self.save(&mut kept)?;
        }
        let pools: Vec<String> = kept.values().map(|k| k.registration.pool.clone()).collect();
        self.apply(&kept, pools).await
    }

    /// Registers `address` in `pool` for `ttl_ms`; a registration of the
    /// same address in that pool is replaced (a service that restarted).
    pub async fn register(
        &self,
        pool: &str,
        address: String,
        metadata: BTreeMap<String, String>,
        ttl_ms: u64,
    ) -> Result<Registration, RegistrationError> {
        self.require_pool(pool)?;
        if let Err(message) = check_address(&address) {
            return Err(RegistrationError::Invalid {
                field: "address",
                message,
            });
        }
        if let Err(message) = check_metadata(&metadata) {
            return Err(RegistrationError::Invalid {
                field: "metadata",
                message,
            });
        }
        if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&ttl_ms) {
            return Err(RegistrationError::Invalid {
                field: "ttl_ms",
                message: format!("must be from {MIN_TTL_MS} to {MAX_TTL_MS}, got {ttl_ms}"),
            });
        }
        let registration = Registration {
            id: format!("{:016x}", fastrand::u64(..)),
            pool: pool.to_string(),
            address,
            metadata,
            ttl_ms,
            expires_at_unix_ms: unix_ms() + ttl_ms,
        };
        let mut kept = self.kept.lock().await;
        let before = kept.clone();
        kept.retain(|_, k| {
            k.registration.pool != registration.pool
                || k.registration.address != registration.address
        });
        kept.insert(
            registration.id.clone(),
            Kept {
                registration: registration.clone(),
                stored_expiry_ms: registration.expires_at_unix_ms,
            },
        );
        if let Err(error) = self.save(&mut kept) {
            *kept = before;
            return Err(error.into());
        }
        self.apply(&kept, vec![pool.to_string()]).await?;
        self.announce("registered", &registration);
        Ok(registration)
    }

    /// Renews registration `id` of `pool` for its TTL from now.
    pub async fn heartbeat(&self, pool: &str, id: &str) -> Result<Registration, RegistrationError> {
        self.require_pool(pool)?;
        let mut kept = self.kept.lock().await;
        let now = unix_ms();
        let entry = match kept.get_mut(id) {
            Some(entry) if entry.registration.pool == pool => entry,
            _ => return Err(no_such(pool, id)),
        };
        entry.registration.expires_at_unix_ms = now + entry.registration.ttl_ms;
        let registration = entry.registration.clone();
        let stored_left = entry.stored_expiry_ms.saturating_sub(now);
        let every = self.store.lock().unwrap().writes_every_heartbeat();
        if every || stored_left < registration.ttl_ms / 2 {
            self.save(&mut kept)?;
        }
        Ok(registration)
    }

    /// Removes registration `id` of `pool`: it takes no new requests, and
    /// those in flight finish.
    pub async fn deregister(&self, pool: &str, id: &str) -> Result<(), RegistrationError> {
        self.require_pool(pool)?;
        let mut kept = self.kept.lock().await;
        let removed = match kept.get(id) {
            Some(entry) if entry.registration.pool == pool => kept.remove(id).unwrap(),
            _ => return Err(no_such(pool, id)),
        };
        if let Err(error) = self.save(&mut kept) {
            kept.insert(id.to_string(), removed);
            return Err(error.into());
        }
        self.apply(&kept, vec![pool.to_string()]).await?;
        self.announce("deregistered", &removed.registration);
        Ok(())
    }

    /// Takes in what another instance of the fleet changed: `upserts`
    /// (registered or renewed there) and the ids of those `removed`
    /// there. They are kept (and stored) as if made here; the pools whose
    /// endpoints changed are rebuilt, and the changes announced.
    pub async fn merge(
        &self,
        upserts: Vec<Registration>,
        removed: Vec<String>,
    ) -> Result<(), RegistrationError> {
        let mut kept = self.kept.lock().await;
        let mut pools = Vec::new();
        let mut announced = Vec::new();
        for registration in upserts {
            let same_endpoint = kept.get(&registration.id).is_some_and(|k| {
                k.registration.address == registration.address
                    && k.registration.metadata == registration.metadata
                    && k.registration.pool == registration.pool
            });
            if !same_endpoint {
                pools.push(registration.pool.clone());
                announced.push(("registered", registration.clone()));
            }
            kept.insert(
                registration.id.clone(),
                Kept {
                    stored_expiry_ms: registration.expires_at_unix_ms,
                    registration,
                },
            );
        }
        for id in removed {
            if let Some(entry) = kept.remove(&id) {
                pools.push(entry.registration.pool.clone());
                announced.push(("deregistered", entry.registration));
            }
        }
        if pools.is_empty() {
            return Ok(());
        }
        self.save(&mut kept)?;
        self.apply(&kept, pools).await?;
        for (what, registration) in &announced {
            self.announce(what, registration);
        }
        Ok(())
    }

    /// Every registration kept, in id order.
    pub async fn all(&self) -> Vec<Registration> {
        let kept = self.kept.lock().await;
        let mut all: Vec<Registration> = kept.values().map(|k| k.registration.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// The registrations of `pool`, by address.
    pub async fn list(&self, pool: &str) -> Result<Vec<Registration>, RegistrationError> {
        self.require_pool(pool)?;
        let kept = self.kept.lock().await;
        let mut all: Vec<Registration> = kept
            .values()
            .filter(|k| k.registration.pool == pool)
            .map(|k| k.registration.clone())
            .collect();
        all.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(all)
    }

    /// Removes the registrations that lapsed, and those of pools that no
    /// longer exist, until the process ends.
    pub async fn sweep(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(SWEEP_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = self.sweep_once().await {
                tracing::error!("lapsed registrations: {error}");
            }
        }
    }

    async fn sweep_once(&self) -> Result<(), RegistrationError> {
        let now = unix_ms();
        let topology = self.reloader.topology().load_full();
        let mut kept = self.kept.lock().await;
        let gone: Vec<(String, &'static str)> = kept
            .iter()
            .filter_map(|(id, k)| {
                if topology.pool(&k.registration.pool).is_none() {
                    Some((id.clone(), "pool_removed"))
                } else if k.registration.expires_at_unix_ms <= now {
                    Some((id.clone(), "lapsed"))
                } else {
                    None
                }
            })
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        let mut removed = Vec::new();
        for (id, why) in gone {
            if let Some(entry) = kept.remove(&id) {
                removed.push((why, entry.registration));
            }
        }
        self.save(&mut kept)?;
        let pools = removed.iter().map(|(_, r)| r.pool.clone()).collect();
        self.apply(&kept, pools).await?;
        // Announced once the pools no longer serve them.
        for (why, registration) in &removed {
            tracing::warn!(
                pool = %registration.pool,
                "registration {} of {} removed: {why}",
                registration.id,
                registration.address
            );
            self.announce(why, registration);
        }
        Ok(())
    }

    /// Writes every registration, each with its expiry now. The write
    /// (a sync or two) lets the runtime move other tasks off this thread.
    fn save(&self, kept: &mut HashMap<String, Kept>) -> Result<(), StoreError> {
        let mut all: Vec<Registration> = kept.values().map(|k| k.registration.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let write = || self.store.lock().unwrap().save(&all);
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(write)?;
        } else {
            write()?;
        }
        for entry in kept.values_mut() {
            entry.stored_expiry_ms = entry.registration.expires_at_unix_ms;
        }
        Ok(())
    }

    /// Sets the registered endpoints of `pools` to what `kept` holds.
    async fn apply(
        &self,
        kept: &HashMap<String, Kept>,
        mut pools: Vec<String>,
    ) -> Result<(), RegistrationError> {
        pools.sort();
        pools.dedup();
        let updates = pools
            .into_iter()
            .map(|pool| {
                let mut found: Vec<Found> = kept
                    .values()
                    .filter(|k| k.registration.pool == pool)
                    .map(|k| Found {
                        address: k.registration.address.clone(),
                        weight: 1,
                        tier: 0,
                        labels: k.registration.metadata.clone(),
                    })
                    .collect();
                found.sort_by(|a, b| a.address.cmp(&b.address));
                Update {
                    pool,
                    source: Source::Registration,
                    found,
                }
            })
            .collect();
        self.reloader
            .set_found(updates)
            .await
            .map(drop)
            .map_err(|e| RegistrationError::Apply(e.to_string()))
    }

    fn require_pool(&self, pool: &str) -> Result<(), RegistrationError> {
        match self.reloader.topology().load().pool(pool) {
            Some(_) => Ok(()),
            None => Err(RegistrationError::NoSuchPool(pool.to_string())),
        }
    }

    /// Publishes a `registration` event.
    fn announce(&self, what: &str, registration: &Registration) {
        self.events.publish(
            "registration",
            serde_json::json!({
                "pool": registration.pool,
                "id": registration.id,
                "address": registration.address,
                "change": what,
            }),
        );
    }
}

fn no_such(pool: &str, id: &str) -> RegistrationError {
    RegistrationError::NoSuchRegistration {
        pool: pool.to_string(),
        id: id.to_string(),
    }
}

/// Metadata within [`MAX_METADATA_ENTRIES`] entries of keys and values
/// within their lengths: it is shown to plugins with every pick.
fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), String> {
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(format!(
            "has {} entries; at most {MAX_METADATA_ENTRIES}",
            metadata.len()
        ));
    }
    for (key, value) in metadata {
        if key.is_empty() || key.len() > MAX_METADATA_KEY_BYTES {
            return Err(format!(
                "key `{key}` must be 1 to {MAX_METADATA_KEY_BYTES} bytes"
            ));
        }
        if value.len() > MAX_METADATA_VALUE_BYTES {
            return Err(format!(
                "the value of `{key}` is over {MAX_METADATA_VALUE_BYTES} bytes"
            ));
        }
    }
    Ok(())
}

/// An endpoint address as a registration gives it: `host:port`.
fn check_address(address: &str) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("`{address}` is not `host:port`"));
    };
    if host.is_empty() || address.parse::<http::uri::Authority>().is_err() {
        return Err(format!("`{address}` is not `host:port`"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{address}` has no valid port (1-65535)")),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_store_writes_whole_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::beside(&dir.path().join("switchyard.toml"));
        assert_eq!(
            store.path(),
            dir.path().join("switchyard.registrations.json")
        );
        assert!(store.load().unwrap().is_empty());
        let one = Registration {
            id: "1".into(),
            pool: "api".into(),
            address: "127.0.0.1:80".into(),
            metadata: BTreeMap::from([("zone".into(), "a".into())]),
            ttl_ms: 1000,
            expires_at_unix_ms: 5,
        };
        store.save(std::slice::from_ref(&one)).unwrap();
        assert_eq!(store.load().unwrap(), vec![one]);
        assert!(!store.path().with_extension("json.new").exists());
    }

    #[test]
    fn metadata_is_bounded() {
        let many: BTreeMap<String, String> =
            (0..40).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(check_metadata(&many).is_err());
        let long = BTreeMap::from([("k".to_string(), "v".repeat(300))]);
        assert!(check_metadata(&long).is_err());
        let fine = BTreeMap::from([("version".to_string(), "2.4.1".into())]);
        assert!(check_metadata(&fine).is_ok());
    }

    #[test]
    fn addresses_need_a_host_and_a_port() {
        assert!(check_address("10.0.0.1:80").is_ok());
        assert!(check_address("[::1]:80").is_ok());
        assert!(check_address("10.0.0.1").is_err());
        assert!(check_address(":80").is_err());
        assert!(check_address("10.0.0.1:0").is_err());
    }
}
