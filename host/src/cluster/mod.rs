//! A fleet of instances sharing their pools and routes through etcd.
//!
//! With `[cluster]` set, the config file splits in two. Its `[[pools]]` and
//! `[[routes]]` — all that an API write or a reload changes — live in etcd
//! under `PREFIX/config`, one TOML text shared by every instance (seeded
//! from the first instance's file when etcd has none). The rest of the file
//! (`[proxy]`, `[control]`, `[plugins]`, `[[listeners]]`, `[cluster]`) is
//! this machine's: read at start, never shared.
//!
//! Each instance serves a *working copy*, `STATE_DIR/config.toml`: its own
//! tables, a marker line, then the shared text at the revision it applied
//! (kept in `STATE_DIR/revision`). It watches the key and applies each
//! revision as a local reload applies a file; an API write on any instance
//! is an etcd transaction on the key's revision, so a stale write fails
//! instead of overwriting another. The key's revision is the config version
//! (`ETag`). When etcd cannot be reached the instance serves its working
//! copy (a restart included), refuses writes, and catches up when etcd
//! returns.
//!
//! Each instance keeps its entry under `PREFIX/members/NAME`, on a lease it
//! renews every heartbeat: `GET /v1/cluster` lists the fleet from them.

pub mod etcd;
mod plugins;
pub mod registrations;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::config::store::{version_of, ConfigFile, StoreError};
use crate::config::ClusterConfig;
use crate::engine::{Alerts, Severity};
use crate::reload::Reloader;
use etcd::{Etcd, EtcdError, EtcdSettings, WatchEvent};

/// The line between an instance's own tables and the fleet's shared text
/// in its working copy.
const MARKER: &str = "# ---- fleet: the [[pools]] and [[routes]] below are shared through etcd; change them through the API ----";

/// The alerts' "pool" for the fleet's own.
const ALERT_SCOPE: &str = "(fleet)";

/// Versions remembered to translate between file versions and revisions.
const KNOWN_VERSIONS: usize = 64;

/// An instance's entry is written again at least every this many
/// heartbeats (the lease is renewed at each).
const ENTRY_EVERY: u32 = 10;

/// How soon a revision that could not be applied is tried again.
const RETRY_REFUSED: Duration = Duration::from_millis(500);

/// The longest wait between two tries of a refused revision.
const MAX_RETRY_REFUSED: Duration = Duration::from_secs(30);

/// The longest wait between two attempts to reach etcd.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// This instance in a fleet.
#[derive(Debug)]
pub struct Fleet {
    settings: ClusterConfig,
    name: String,
    etcd: Etcd,
    config_key: String,
    members_prefix: String,
    working: PathBuf,
    revision_file: PathBuf,
    /// This machine's tables, from the config file.
    machine: String,
    state: Mutex<FleetState>,
    /// The applied revision, for writers waiting to see it move.
    applied: tokio::sync::watch::Sender<i64>,
    alerts: OnceLock<Arc<Alerts>>,
    started_unix_ms: u64,
    /// The proxy's and the control endpoint's addresses, once bound.
    addresses: OnceLock<(String, String)>,
    /// The plugin folder (`[plugins] dir`).
    plugin_dir: PathBuf,
    /// Where plugin versions are announced as they load.
    events: OnceLock<Arc<crate::engine::Events>>,
    /// Each plugin file's hash when the folder was last in step with the
    /// fleet for it.
    synced: Mutex<std::collections::HashMap<String, String>>,
}

#[derive(Debug, Default)]
struct FleetState {
    /// The revision of the shared text applied here (0: none from etcd yet).
    revision: i64,
    /// The working copy's version at that revision.
    version: Option<String>,
    /// Recent (version, revision) pairs, newest last.
    known: VecDeque<(String, i64)>,
    /// The newest revision of the key seen in etcd.
    latest: i64,
    /// Since when etcd has not answered (ms since the Unix epoch).
    unreachable_since: Option<u64>,
    /// Why, last.
    last_error: Option<String>,
    /// A revision that could not be applied, and why.
    refused: Option<(i64, String)>,
    /// Its shared text, to try again (a plugin it names may arrive later).
    unapplied: Option<(String, i64)>,
}

/// An instance's entry in the fleet's list.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MemberView {
    /// Its `[cluster] name`.
    pub name: String,
    /// Its proxy's address.
    pub proxy: String,
    /// Its control endpoint's address.
    pub control: String,
    /// The Switchyard version it runs.
    pub version: String,
    /// The revision of the shared config it serves.
    pub applied_revision: i64,
    /// A revision it could not apply, and why.
    pub refused: Option<String>,
    /// When it started, in ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// When its entry was last written, in ms since the Unix epoch: when
    /// it changed, and at least every 10 heartbeats (its lease, renewed
    /// at each, keeps it listed).
    pub heartbeat_unix_ms: u64,
    /// How long ago that was, in ms (as this instance's clock sees it).
    #[serde(default)]
    pub heartbeat_age_ms: u64,
    /// Whether it serves an older revision than the newest.
    #[serde(default)]
    pub lagging: bool,
}

/// The fleet as `GET /v1/cluster` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// Whether this instance is in a fleet (`[cluster]` set).
    pub enabled: bool,
    /// This instance's name.
    pub name: Option<String>,
    /// The key the shared config lives at.
    pub config_key: Option<String>,
    /// The revision of the shared config this instance serves.
    pub applied_revision: i64,
    /// The newest revision seen in etcd.
    pub latest_revision: i64,
    /// Whether etcd answers now.
    pub etcd_reachable: bool,
    /// Since when it has not, in ms since the Unix epoch.
    pub etcd_unreachable_since_unix_ms: Option<u64>,
    /// Why, last.
    pub last_error: Option<String>,
    /// Every instance with a live entry, this one included; from this
    /// instance's memory alone while etcd cannot be reached.
    pub members: Vec<MemberView>,
}

impl ClusterView {
    /// The view of an instance that is in no fleet.
    pub fn alone() -> ClusterView {
        ClusterView {
            enabled: false,
            name: None,
            config_key: None,
            applied_revision: 0,
            latest_revision: 0,
            etcd_reachable: false,
            etcd_unreachable_since_unix_ms: None,
            last_error: None,
            members: Vec::new(),
        }
    }
}

/// Splits a config file's text into this machine's tables and the fleet's
/// `[[pools]]` and `[[routes]]`.
pub fn split(text: &str) -> Result<(String, String), String> {
    let mut machine: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let mut shared = toml_edit::DocumentMut::new();
    for key in ["pools", "routes"] {
        if let Some(item) = machine.remove(key) {
            shared.insert(key, item);
        }
    }
    Ok((machine.to_string(), shared.to_string()))
}

/// The shared part of a working copy: what follows the marker.
pub fn shared_part(working: &str) -> Option<&str> {
    let at = working.find(MARKER)?;
    let rest = &working[at + MARKER.len()..];
    Some(rest.strip_prefix('\n').unwrap_or(rest))
}

/// A working copy: this machine's tables, the marker, the shared text.
fn compose(machine: &str, shared: &str) -> String {
    let mut text = machine.trim_end().to_string();
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str(MARKER);
    text.push('\n');
    text.push_str(shared);
    text
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn tls_config(settings: &ClusterConfig) -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let Some(tls) = &settings.tls else {
        return Ok(None);
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("the TLS provider lacks TLS 1.2 or 1.3")?;
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect())
                .map_err(|e| anyhow::anyhow!("cluster.tls.ca = {}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            anyhow::ensure!(
                added > 0,
                "cluster.tls.ca = {}: holds no usable certificate",
                path.display()
            );
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let builder = builder.with_root_certificates(roots);
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect())
                .map_err(|e| anyhow::anyhow!("cluster.tls.cert = {}: {e}", cert.display()))?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| anyhow::anyhow!("cluster.tls.key = {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .context("cluster.tls: the certificate and key do not go together")?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

impl Fleet {
    /// Joins the fleet `settings` names, from the config file at
    /// `local_file` (whose text is `local_text`): reads the shared config
    /// from etcd (seeding it from this file's pools and routes when etcd
    /// has none), or, when etcd cannot be reached, takes the working copy
    /// kept from the last run (or this file's pools and routes, the first
    /// time). Writes the working copy the server is then built from.
    pub async fn join(
        local_file: &Path,
        local_text: &str,
        settings: &ClusterConfig,
        control_port: u16,
        plugin_dir: &Path,
    ) -> anyhow::Result<Arc<Fleet>> {
        let (machine, seed) = split(local_text)
            .map_err(|e| anyhow::anyhow!("config {}: {e}", local_file.display()))?;
        let credentials = match (&settings.user, &settings.password_file) {
            (Some(user), Some(file)) => {
                let password = std::fs::read_to_string(file).with_context(|| {
                    format!("cluster.password_file = {}: cannot read it", file.display())
                })?;
                let password = password.lines().next().unwrap_or("").to_string();
                Some((user.clone(), password))
            }
            _ => None,
        };
        let etcd = Etcd::new(EtcdSettings {
            endpoints: settings.etcd.clone(),
            request_timeout: Duration::from_millis(settings.request_timeout_ms),
            credentials,
            tls: tls_config(settings)?,
        })
        .map_err(|e| anyhow::anyhow!("cluster.etcd: {e}"))?;
        let name = settings.name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "switchyard".into());
            format!("{host}-{control_port}")
        });
        let state_dir = settings.state_dir.clone().unwrap_or_else(|| {
            let stem = local_file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "switchyard".into());
            local_file
                .parent()
                .unwrap_or(Path::new("."))
                .join(format!("{stem}.fleet"))
        });
        std::fs::create_dir_all(&state_dir).with_context(|| {
            format!(
                "cluster.state_dir = {}: cannot create it",
                state_dir.display()
            )
        })?;
        let fleet = Fleet {
            settings: settings.clone(),
            name,
            etcd,
            config_key: format!("{}/config", settings.prefix),
            members_prefix: format!("{}/members/", settings.prefix),
            working: state_dir.join("config.toml"),
            revision_file: state_dir.join("revision"),
            machine,
            state: Mutex::new(FleetState::default()),
            applied: tokio::sync::watch::channel(0).0,
            alerts: OnceLock::new(),
            started_unix_ms: unix_ms(),
            addresses: OnceLock::new(),
            plugin_dir: plugin_dir.to_path_buf(),
            events: OnceLock::new(),
            synced: Mutex::default(),
        };
        // A working copy kept from an earlier run is newer than the file's
        // pools: it seeds an etcd that lost its data.
        let kept = fleet.kept_copy();
        let seed_from = match &kept {
            Some(_) => fleet.working.clone(),
            None => local_file.to_path_buf(),
        };
        let seed_text = kept
            .as_ref()
            .map_or(seed.clone(), |(shared, _)| shared.clone());
        let (shared, revision) = match fleet.read_or_seed(&seed_text, &seed_from).await {
            Ok(found) => {
                // The fleet's plugins are in the folder before the pools
                // that name them are built.
                if std::fs::create_dir_all(plugin_dir).is_ok() {
                    if let Err(error) = fleet.sync_plugins().await {
                        tracing::warn!("the fleet's plugins: {error}");
                    }
                }
                found
            }
            Err(error) => {
                fleet.state.lock().unwrap().unreachable_since = Some(unix_ms());
                fleet.state.lock().unwrap().last_error = Some(error.to_string());
                match kept {
                    Some((shared, revision)) => {
                        tracing::warn!(
                            "{error}; serving the working copy kept at revision {revision} ({})",
                            fleet.working.display()
                        );
                        (shared, revision)
                    }
                    None => {
                        tracing::warn!(
                            "{error}; no working copy is kept yet: serving the pools and routes of {} until etcd answers",
                            local_file.display()
                        );
                        (seed, 0)
                    }
                }
            }
        };
        let text = compose(&fleet.machine, &shared);
        if !fleet.working.exists() {
            std::fs::write(&fleet.working, "")
                .with_context(|| format!("cannot create {}", fleet.working.display()))?;
        }
        ConfigFile::new(fleet.working.clone())
            .write(&text)
            .with_context(|| format!("cannot write {}", fleet.working.display()))?;
        fleet.record(&version_of(&text), revision);
        Ok(Arc::new(fleet))
    }

    /// The shared text and its revision from etcd, written there from
    /// `seed` first when the key is not set.
    async fn read_or_seed(
        &self,
        seed: &str,
        local_file: &Path,
    ) -> Result<(String, i64), EtcdError> {
        loop {
            if let Some(kv) = self.etcd.get(&self.config_key).await? {
                return Ok((
                    String::from_utf8_lossy(&kv.value).into_owned(),
                    kv.mod_revision,
                ));
            }
            if let Some(revision) = self
                .etcd
                .put_if(&self.config_key, 0, seed.as_bytes())
                .await?
            {
                tracing::info!(
                    "the fleet's shared config {} was empty: seeded from the pools and routes of {} (revision {revision})",
                    self.config_key,
                    local_file.display()
                );
                return Ok((seed.to_string(), revision));
            }
            // Seeded by another instance meanwhile: read that.
        }
    }

    /// The shared text and revision of the working copy a previous run
    /// kept, if any.
    fn kept_copy(&self) -> Option<(String, i64)> {
        let text = std::fs::read_to_string(&self.working).ok()?;
        let shared = shared_part(&text)?.to_string();
        let revision = std::fs::read_to_string(&self.revision_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Some((shared, revision))
    }

    /// The working copy the server serves and writes.
    pub fn working_path(&self) -> &Path {
        &self.working
    }

    /// This instance's name in the fleet.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Raises the fleet's alerts there, and shares the plugins of its
    /// folder as they load (announced on the alerts' events).
    pub fn set_server_parts(&self, alerts: Arc<Alerts>) {
        let _ = self.events.set(Arc::clone(alerts.events()));
        let _ = self.alerts.set(alerts);
    }

    fn alert(&self, severity: Severity, message: String) {
        match self.alerts.get() {
            Some(alerts) => alerts.raise(severity, ALERT_SCOPE, None, message),
            None => tracing::warn!("{message}"),
        }
    }

    /// Notes that the working copy at `version` is the shared config at
    /// `revision`; kept on disk, so a restart without etcd serves it.
    pub fn record(&self, version: &str, revision: i64) {
        let mut state = self.state.lock().unwrap();
        state.known.retain(|(known, _)| known != version);
        state.known.push_back((version.to_string(), revision));
        if state.known.len() > KNOWN_VERSIONS {
            state.known.pop_front();
        }
        state.version = Some(version.to_string());
        state.latest = state.latest.max(revision);
        if revision != state.revision {
            state.revision = revision;
            if state.refused.as_ref().is_some_and(|(r, _)| *r <= revision) {
                state.refused = None;
            }
            if state
                .unapplied
                .as_ref()
                .is_some_and(|(_, r)| *r <= revision)
            {
                state.unapplied = None;
            }
            drop(state);
            if let Err(error) = write_atomically(&self.revision_file, &revision.to_string()) {
                tracing::warn!("cannot keep the applied revision: {error}");
            }
            self.applied.send_replace(revision);
        }
    }

    /// The config version an API client sees for the working copy at
    /// `version`: its revision, when known.
    pub fn tag_of(&self, version: &str) -> String {
        let state = self.state.lock().unwrap();
        state
            .known
            .iter()
            .rev()
            .find(|(known, _)| known == version)
            .map(|(_, revision)| revision.to_string())
            .unwrap_or_else(|| version.to_string())
    }

    /// The working copy's version a client's `If-Match` revision stands
    /// for; `None` when it is not the revision served here.
    pub fn version_of_tag(&self, tag: &str) -> Option<String> {
        let revision: i64 = tag.trim_matches('"').parse().ok()?;
        let state = self.state.lock().unwrap();
        state
            .known
            .iter()
            .rev()
            .find(|(_, known)| *known == revision)
            .map(|(version, _)| version.clone())
    }

    /// The revision served here.
    pub fn revision(&self) -> i64 {
        self.state.lock().unwrap().revision
    }

    /// Waits until the revision served here is past `revision`, or
    /// `timeout` has passed: whether it is.
    pub async fn wait_past(&self, revision: i64, timeout: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(timeout, applied.wait_for(|now| *now > revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Writes the working copy `text`, edited from `base` (the version of
    /// the copy the edit began from), to etcd: an etcd transaction that
    /// holds only if the shared key is still at the revision `base` is.
    /// Returns the new revision. Called on the thread applying API edits.
    pub fn commit(&self, base: &str, text: &str) -> Result<i64, StoreError> {
        let (revision, at_base) = {
            let state = self.state.lock().unwrap();
            (state.revision, state.version.as_deref() == Some(base))
        };
        if !at_base {
            return Err(StoreError::FleetMoved { revision });
        }
        let shared = shared_part(text).ok_or_else(|| {
            StoreError::Parse(format!(
                "{}: the fleet's marker line is gone: restart to write it again",
                self.working.display()
            ))
        })?;
        let handle = tokio::runtime::Handle::current();
        let written = handle.block_on(self.etcd.put_if(
            &self.config_key,
            revision,
            shared.as_bytes(),
        ));
        match written {
            Ok(Some(new)) => Ok(new),
            Ok(None) => Err(StoreError::FleetMoved { revision }),
            Err(error) => {
                let mut state = self.state.lock().unwrap();
                state.last_error = Some(error.to_string());
                Err(StoreError::FleetUnavailable(error.to_string()))
            }
        }
    }

    /// Follows the shared config and keeps this instance's entry in the
    /// fleet's list, until the process ends.
    pub fn spawn(self: &Arc<Self>, reloader: Arc<Reloader>, proxy: String, control: String) {
        let _ = self.addresses.set((proxy.clone(), control.clone()));
        let follower = Arc::clone(self);
        let retrying = Arc::clone(&reloader);
        tokio::spawn(async move { follower.follow(reloader).await });
        let retrier = Arc::clone(self);
        tokio::spawn(async move { retrier.retry_refused(retrying).await });
        let beating = Arc::clone(self);
        tokio::spawn(async move { beating.heartbeat(proxy, control).await });
        if let Some(events) = self.events.get() {
            tokio::spawn(Arc::clone(self).share_loaded_plugins(Arc::clone(events)));
        }
    }

    fn reached(&self) {
        let since = {
            let mut state = self.state.lock().unwrap();
            state.last_error = None;
            state.unreachable_since.take()
        };
        if let Some(since) = since {
            self.alert(
                Severity::P4,
                format!(
                    "etcd answers again, after {:.1} s: catching up with the fleet",
                    unix_ms().saturating_sub(since) as f64 / 1000.0
                ),
            );
        }
    }

    fn unreachable(&self, error: &EtcdError) {
        let first = {
            let mut state = self.state.lock().unwrap();
            state.last_error = Some(error.to_string());
            if state.unreachable_since.is_none() {
                state.unreachable_since = Some(unix_ms());
                true
            } else {
                false
            }
        };
        if first {
            self.alert(
                Severity::P2,
                format!(
                    "{error}: serving revision {} as kept; API writes are refused until it answers",
                    self.revision()
                ),
            );
        }
    }

    /// Applies the shared text at `revision`, unless it is served already.
    async fn apply(&self, reloader: &Reloader, shared: &str, revision: i64) {
        {
            let mut state = self.state.lock().unwrap();
            state.latest = state.latest.max(revision);
            if revision <= state.revision {
                return;
            }
        }
        let text = compose(&self.machine, shared);
        match reloader
            .apply_fleet_text(text, |version| self.record(version, revision))
            .await
        {
            Ok(_) => {}
            Err(error) => {
                let message = format!("{error}");
                let repeated = {
                    let mut state = self.state.lock().unwrap();
                    let repeated = state.refused.as_ref().is_some_and(|(_, m)| *m == message);
                    state.refused = Some((revision, message.clone()));
                    if state.unapplied.as_ref().is_none_or(|(_, r)| *r <= revision) {
                        state.unapplied = Some((shared.to_string(), revision));
                    }
                    repeated
                };
                if !repeated {
                    self.alert(
                        Severity::P2,
                        format!("the fleet's config at revision {revision} was not applied here: {message}"),
                    );
                }
            }
        }
    }

    /// Tries a refused revision again, first after [`RETRY_REFUSED`]: what
    /// made it fail (a plugin not arrived yet, say) may have passed. The
    /// wait doubles while the same revision keeps failing, up to
    /// [`MAX_RETRY_REFUSED`] (one that needs a restart fails until then).
    async fn retry_refused(&self, reloader: Arc<Reloader>) {
        let mut wait = RETRY_REFUSED;
        let mut tried: Option<i64> = None;
        loop {
            tokio::time::sleep(wait).await;
            let unapplied = self.state.lock().unwrap().unapplied.clone();
            let Some((shared, revision)) = unapplied else {
                (wait, tried) = (RETRY_REFUSED, None);
                continue;
            };
            if tried == Some(revision) {
                wait = (wait * 2).min(MAX_RETRY_REFUSED);
            } else {
                (wait, tried) = (RETRY_REFUSED, Some(revision));
            }
            self.apply(&reloader, &shared, revision).await;
        }
    }

    async fn follow(&self, reloader: Arc<Reloader>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let start = match self.catch_up(&reloader).await {
                Ok(start) => start,
                Err(error) => {
                    self.unreachable(&error);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            // The config and its plugins' map (`PREFIX/config.plugins`).
            let mut watch = match self.etcd.watch(&self.config_key, start).await {
                Ok(watch) => watch,
                Err(EtcdError::Compacted(_)) => continue,
                Err(error) => {
                    self.unreachable(&error);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            self.reached();
            backoff = Duration::from_millis(100);
            loop {
                match watch.next().await {
                    Ok((events, _)) => {
                        for event in events {
                            let WatchEvent::Put(kv) = event else { continue };
                            if kv.key == self.config_key {
                                let shared = String::from_utf8_lossy(&kv.value).into_owned();
                                self.apply(&reloader, &shared, kv.mod_revision).await;
                            } else if kv.key == self.plugins_key() {
                                let map = serde_json::from_slice(&kv.value).unwrap_or_default();
                                self.take_plugins(&map).await;
                            }
                        }
                    }
                    Err(EtcdError::Compacted(_)) => break,
                    Err(error) => {
                        // The member went away: another is tried at once.
                        tracing::debug!("fleet watch on {}: {error}", watch.member());
                        break;
                    }
                }
            }
        }
    }

    /// Reads the key and applies it if it moved (seeding it if it is
    /// gone): the revision to watch from.
    async fn catch_up(&self, reloader: &Reloader) -> Result<i64, EtcdError> {
        let (found, read_at) = self.etcd.get_prefix(&self.config_key).await?;
        match found.into_iter().find(|kv| kv.key == self.config_key) {
            Some(kv) => {
                let shared = String::from_utf8_lossy(&kv.value).into_owned();
                self.apply(reloader, &shared, kv.mod_revision).await;
            }
            None => {
                // Never seeded (etcd was down at the first start), or
                // deleted: the shared text served here goes back.
                let text = std::fs::read_to_string(&self.working).unwrap_or_default();
                if let Some(shared) = shared_part(&text) {
                    if let Some(revision) = self
                        .etcd
                        .put_if(&self.config_key, 0, shared.as_bytes())
                        .await?
                    {
                        tracing::info!(
                            "the fleet's shared config {} was empty: seeded from this instance's (revision {revision})",
                            self.config_key
                        );
                        self.record(&version_of(&text), revision);
                    }
                }
            }
        }
        self.sync_plugins().await?;
        self.reached();
        Ok(read_at + 1)
    }

    fn entry(&self, proxy: &str, control: &str) -> MemberView {
        let state = self.state.lock().unwrap();
        MemberView {
            name: self.name.clone(),
            proxy: proxy.to_string(),
            control: control.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            applied_revision: state.revision,
            refused: state
                .refused
                .as_ref()
                .map(|(revision, why)| format!("revision {revision}: {why}")),
            started_unix_ms: self.started_unix_ms,
            heartbeat_unix_ms: unix_ms(),
            heartbeat_age_ms: 0,
            lagging: false,
        }
    }

    /// Renews the lease every heartbeat; writes the entry when what it says
    /// changes, and every [`ENTRY_EVERY`] heartbeats so its time stays
    /// fresh (each write is an etcd revision kept until etcd compacts).
    async fn heartbeat(&self, proxy: String, control: String) {
        let key = format!("{}{}", self.members_prefix, self.name);
        let ttl = Duration::from_millis(self.settings.lease_ttl_ms);
        let every = Duration::from_millis(self.settings.heartbeat_ms);
        let mut lease = 0;
        let mut written: Option<(i64, Option<String>)> = None;
        let mut beats = 0u32;
        loop {
            let beat = async {
                if lease == 0 || !self.etcd.keep_alive(lease).await? {
                    lease = self.etcd.grant_lease(ttl).await?;
                    written = None;
                }
                let entry = self.entry(&proxy, &control);
                let says = Some((entry.applied_revision, entry.refused.clone()));
                if written != says || beats % ENTRY_EVERY == 0 {
                    let value = serde_json::to_vec(&entry).unwrap_or_default();
                    self.etcd.put(&key, &value, lease).await?;
                    written = says;
                }
                Ok::<(), EtcdError>(())
            };
            if let Err(error) = beat.await {
                tracing::debug!("fleet heartbeat: {error}");
                lease = 0;
            }
            beats = beats.wrapping_add(1);
            tokio::time::sleep(every).await;
        }
    }

    /// The fleet as this instance sees it.
    pub async fn view(&self) -> ClusterView {
        let (proxy, control) = self.addresses.get().cloned().unwrap_or_default();
        let (proxy, control) = (proxy.as_str(), control.as_str());
        let listed = self.etcd.get_prefix(&self.members_prefix).await;
        let mut members: Vec<MemberView> = match &listed {
            Ok((kvs, _)) => kvs
                .iter()
                .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
                .collect(),
            Err(_) => vec![self.entry(proxy, control)],
        };
        if listed.is_ok() {
            self.reached();
        }
        let state = self.state.lock().unwrap();
        let latest = members
            .iter()
            .map(|m| m.applied_revision)
            .chain([state.latest, state.revision])
            .max()
            .unwrap_or(0);
        let now = unix_ms();
        for member in &mut members {
            member.heartbeat_age_ms = now.saturating_sub(member.heartbeat_unix_ms);
            member.lagging = member.applied_revision < latest;
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        ClusterView {
            enabled: true,
            name: Some(self.name.clone()),
            config_key: Some(self.config_key.clone()),
            applied_revision: state.revision,
            latest_revision: latest,
            etcd_reachable: state.unreachable_since.is_none() && listed.is_ok(),
            etcd_unreachable_since_unix_ms: state.unreachable_since,
            last_error: state.last_error.clone(),
            members,
        }
    }
}

/// Writes `text` to `path` through a temporary file renamed over it.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_splits_into_the_machine_s_tables_and_the_shared_pools_and_routes() {
        let text = "[proxy]\nlisten = \"127.0.0.1:0\"\n\n# the web pool\n[[pools]]\nname = \"web\"\nendpoints = [\"127.0.0.1:1\"]\n\n[[routes]]\npool = \"web\"\n\n[cluster]\netcd = [\"http://127.0.0.1:2379\"]\n";
        let (machine, shared) = split(text).unwrap();
        assert!(
            machine.contains("[proxy]") && machine.contains("[cluster]"),
            "{machine}"
        );
        assert!(
            !machine.contains("pools") && !machine.contains("routes"),
            "{machine}"
        );
        assert!(
            shared.contains("[[pools]]") && shared.contains("[[routes]]"),
            "{shared}"
        );
        assert!(
            !shared.contains("[proxy]") && !shared.contains("[cluster]"),
            "{shared}"
        );
        let working = compose(&machine, &shared);
        assert_eq!(shared_part(&working), Some(shared.as_str()));
        // The working copy is the same config as the file.
        let whole: toml::Value = toml::from_str(text).unwrap();
        let again: toml::Value = toml::from_str(&working).unwrap();
        assert_eq!(whole, again);
    }
}
