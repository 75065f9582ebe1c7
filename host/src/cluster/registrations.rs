//! A fleet's registrations: each one at `PREFIX/registrations/ID` in etcd,
//! so a service registered (or renewed) through any instance is an
//! endpoint on every instance, and one that lapses or deregisters leaves
//! them all. Every instance sweeps the lapsed ones itself (by the expiry
//! written with the last renewal; deleting a key twice is harmless) and
//! follows the others' changes with a watch.
//!
//! Each instance also keeps them in a file beside its working copy: when
//! etcd cannot be reached it serves and changes what it holds, and pushes
//! it when etcd answers again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::etcd::{EtcdError, KeyValue, WatchEvent};
use super::Fleet;
use crate::discovery::registrations::{
    FileStore, Registration, RegistrationStore, Registry, StoreError,
};

/// Registrations kept in etcd for the fleet, and in a file for this
/// instance.
#[derive(Debug)]
pub struct FleetRegistrations {
    fleet: Arc<Fleet>,
    local: FileStore,
    /// What etcd holds, as this instance last wrote or saw it, with the
    /// revision of each key's last change.
    written: Mutex<HashMap<String, (Registration, i64)>>,
    /// A change could not reach etcd: it is pushed when etcd answers.
    behind: AtomicBool,
}

/// Runs `future` to its end from synchronous code on the runtime.
fn block<T>(future: impl std::future::Future<Output = T>) -> T {
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| handle.block_on(future))
}

impl FleetRegistrations {
    /// The fleet's registrations, kept locally in `local` too.
    pub fn new(fleet: Arc<Fleet>, local: FileStore) -> Arc<FleetRegistrations> {
        Arc::new(FleetRegistrations {
            fleet,
            local,
            written: Mutex::default(),
            behind: AtomicBool::new(false),
        })
    }

    fn prefix(&self) -> String {
        format!("{}/registrations/", self.fleet.settings.prefix)
    }

    fn parse(kv: &KeyValue) -> Option<Registration> {
        serde_json::from_slice(&kv.value).ok()
    }

    /// Writes to etcd what differs from what it holds.
    async fn push(&self, all: &[Registration]) -> Result<(), EtcdError> {
        let (changed, gone): (Vec<Registration>, Vec<(String, i64)>) = {
            let written = self.written.lock().unwrap();
            let changed = all
                .iter()
                .filter(|r| written.get(&r.id).map(|(w, _)| w) != Some(*r))
                .cloned()
                .collect();
            let gone = written
                .iter()
                .filter(|(id, _)| !all.iter().any(|r| &r.id == *id))
                .map(|(id, (_, revision))| (id.clone(), *revision))
                .collect();
            (changed, gone)
        };
        for registration in changed {
            let value = serde_json::to_vec(&registration).unwrap_or_default();
            let key = format!("{}{}", self.prefix(), registration.id);
            let revision = self.fleet.etcd.put(&key, &value, 0).await?;
            self.written
                .lock()
                .unwrap()
                .insert(registration.id.clone(), (registration, revision));
        }
        // Only as last seen: a registration renewed through another
        // instance meanwhile is not deleted by this one's sweep (the
        // renewal's event brings it back here).
        for (id, revision) in gone {
            let key = format!("{}{id}", self.prefix());
            self.fleet.etcd.delete_if(&key, revision).await?;
            self.written.lock().unwrap().remove(&id);
        }
        Ok(())
    }

    /// Reads every registration etcd holds, and brings `registry` in step
    /// with them (after pushing what changed here while etcd was away):
    /// the revision to watch from.
    async fn catch_up(&self, registry: &Registry) -> Result<i64, EtcdError> {
        if self.behind.load(Ordering::Relaxed) {
            self.push(&registry.all().await).await?;
            self.behind.store(false, Ordering::Relaxed);
        }
        let (kvs, revision) = self.fleet.etcd.get_prefix(&self.prefix()).await?;
        let remote: HashMap<String, (Registration, i64)> = kvs
            .iter()
            .filter_map(|kv| Some((Self::parse(kv)?, kv.mod_revision)))
            .map(|(r, revision)| (r.id.clone(), (r, revision)))
            .collect();
        let local = registry.all().await;
        let removed = local
            .iter()
            .filter(|r| !remote.contains_key(&r.id))
            .map(|r| r.id.clone())
            .collect();
        let upserts = remote
            .values()
            .map(|(r, _)| r)
            .filter(|r| !local.contains(r))
            .cloned()
            .collect();
        *self.written.lock().unwrap() = remote;
        if let Err(error) = registry.merge(upserts, removed).await {
            tracing::warn!("the fleet's registrations: {error}");
        }
        Ok(revision + 1)
    }

    /// Follows the other instances' registrations until the process ends.
    pub async fn follow(self: Arc<Self>, registry: Arc<Registry>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let start = match self.catch_up(&registry).await {
                Ok(start) => start,
                Err(_) => {
                    // The config's follower says so; this one waits.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(super::MAX_BACKOFF);
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            let Ok(mut watch) = self.fleet.etcd.watch(&self.prefix(), start).await else {
                continue;
            };
            while let Ok((events, _)) = watch.next().await {
                let (mut upserts, mut removed) = (Vec::new(), Vec::new());
                for event in events {
                    match event {
                        WatchEvent::Put(kv) => {
                            let Some(registration) = Self::parse(&kv) else {
                                continue;
                            };
                            let mut written = self.written.lock().unwrap();
                            let known = written.get(&registration.id).map(|(r, _)| r);
                            if known != Some(&registration) {
                                upserts.push(registration.clone());
                            }
                            written
                                .insert(registration.id.clone(), (registration, kv.mod_revision));
                        }
                        WatchEvent::Delete { key, .. } => {
                            let id = key.trim_start_matches(&self.prefix()).to_string();
                            if self.written.lock().unwrap().remove(&id).is_some() {
                                removed.push(id);
                            }
                        }
                    }
                }
                if upserts.is_empty() && removed.is_empty() {
                    continue;
                }
                if let Err(error) = registry.merge(upserts, removed).await {
                    tracing::warn!("the fleet's registrations: {error}");
                }
            }
        }
    }
}

impl RegistrationStore for Arc<FleetRegistrations> {
    fn load(&self) -> Result<Vec<Registration>, StoreError> {
        match block(self.fleet.etcd.get_prefix(&self.prefix())) {
            Ok((kvs, _)) => {
                let found: Vec<(Registration, i64)> = kvs
                    .iter()
                    .filter_map(|kv| Some((FleetRegistrations::parse(kv)?, kv.mod_revision)))
                    .collect();
                let all: Vec<Registration> = found.iter().map(|(r, _)| r.clone()).collect();
                *self.written.lock().unwrap() = found
                    .into_iter()
                    .map(|(r, revision)| (r.id.clone(), (r, revision)))
                    .collect();
                self.local.save(&all)?;
                Ok(all)
            }
            Err(error) => {
                tracing::warn!("{error}: the registrations kept here serve until etcd answers");
                self.behind.store(true, Ordering::Relaxed);
                self.local.load()
            }
        }
    }

    fn save(&self, all: &[Registration]) -> Result<(), StoreError> {
        self.local.save(all)?;
        if let Err(error) = block(self.push(all)) {
            tracing::warn!("{error}: a registration change waits here until etcd answers");
            self.behind.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn writes_every_heartbeat(&self) -> bool {
        true
    }
}
