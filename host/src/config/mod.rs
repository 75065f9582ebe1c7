//! The TOML configuration: its shape, its defaults, and validation that names
//! every problem by key path and line.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod locate;

/// Where the proxy listens unless `proxy.listen` says otherwise.
pub const DEFAULT_PROXY_LISTEN: &str = "127.0.0.1:8080";
/// Where the control endpoint listens unless `control.listen` says otherwise.
pub const DEFAULT_CONTROL_LISTEN: &str = "127.0.0.1:9090";
/// Time allowed to open a connection to an endpoint.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1_000;
/// A discovery name's longest wait between answers.
pub const DEFAULT_DISCOVERY_REFRESH_MS: u64 = 30_000;
/// A discovery name's shortest wait between answers, and after a failure.
pub const DEFAULT_DISCOVERY_MIN_REFRESH_MS: u64 = 1_000;
/// The least a discovery wait may be set to.
pub const MIN_DISCOVERY_REFRESH_MS: u64 = 10;
/// The most a discovery wait may be set to: a day.
pub const MAX_DISCOVERY_REFRESH_MS: u64 = 86_400_000;
/// Time allowed from forwarding a request to its response headers.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// How long an idle keep-alive connection to an endpoint is kept.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 90_000;
/// How long shutdown waits for in-flight requests.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
/// The plugin folder, relative to the working directory.
pub const DEFAULT_PLUGIN_DIR: &str = "plugins";
/// Budget of one plugin call; a call past it is cut off within one more ms.
pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 1;
/// Linear-memory cap of one plugin instance.
pub const DEFAULT_MEMORY_LIMIT_MIB: u32 = 32;
/// Consecutive faults after which a plugin version is quarantined.
pub const DEFAULT_QUARANTINE_AFTER: u32 = 10;
/// Quiet time after a file event before the file is loaded.
pub const DEFAULT_DEBOUNCE_MS: u64 = 10;
/// Upper bound of live plugin instances (pools × workers, plus validation).
pub const DEFAULT_MAX_INSTANCES: u32 = 512;
/// Bytes of a plugin's log line kept; the rest is cut.
pub const DEFAULT_LOG_LINE_BYTES: u32 = 1024;
/// Log lines a plugin (all its instances together) may write a second.
pub const DEFAULT_LOG_LINES_PER_SECOND: u32 = 50;
/// Entries of one pool's plugin store (`switchyard:plugin/store`).
pub const DEFAULT_STORE_ENTRIES: u32 = 4096;
/// Bytes of a plugin store entry's name at most.
pub const DEFAULT_STORE_NAME_BYTES: u32 = 64;
/// Default `[plugins] recycle_at_percent`.
pub const DEFAULT_RECYCLE_AT_PERCENT: u32 = 75;
/// Below this available share of its serving tier, a pool balances over all of it.
pub const DEFAULT_PANIC_THRESHOLD: f64 = 0.5;
/// A tier serves while at least this share of it is available.
pub const DEFAULT_FAILOVER_THRESHOLD: f64 = 0.5;
/// Consecutive failed responses that eject an endpoint.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
/// First ejection time; the n-th lasts n times this.
pub const DEFAULT_BASE_EJECTION_MS: u64 = 30_000;
/// Longest ejection.
pub const DEFAULT_MAX_EJECTION_MS: u64 = 300_000;
/// Most of a pool that passive detection may eject at once, in percent.
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 50;
/// How often success rates are judged.
pub const DEFAULT_OUTLIER_INTERVAL_MS: u64 = 10_000;
/// Below this success rate in one interval an endpoint is ejected.
pub const DEFAULT_MIN_SUCCESS_RATE: f64 = 0.5;
/// Responses needed in an interval for the success rate to count.
pub const DEFAULT_MIN_REQUESTS: u32 = 20;
/// Time between active checks of one endpoint.
pub const DEFAULT_CHECK_INTERVAL_MS: u64 = 5_000;
/// Time one active check may take.
pub const DEFAULT_CHECK_TIMEOUT_MS: u64 = 1_000;
/// Largest request body kept so the request can be retried.
pub const DEFAULT_MAX_REPLAY_BODY_BYTES: u64 = 64 * 1024;
/// Retries allowed as a share of requests, in percent.
pub const DEFAULT_RETRY_BUDGET_PERCENT: u32 = 20;
/// Retries allowed per second whatever the share.
pub const DEFAULT_MIN_RETRIES_PER_SECOND: u32 = 10;
/// `pools[].recovery.budget_window_ms` unless set: Linkerd's `ttl`.
pub const DEFAULT_BUDGET_WINDOW_MS: u64 = 10_000;
/// `control.audit_max_bytes` unless set: 10 MiB.
pub const DEFAULT_AUDIT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// `pools[].connect_failure_hold_ms` unless set.
pub const DEFAULT_CONNECT_FAILURE_HOLD_MS: u64 = 1_000;
/// `proxy.max_header_bytes` unless set: a request head larger than this
/// is answered 431 (NGINX allows 4 × 8 KiB lines, HAProxy 16 KiB in all).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// `proxy.max_header_fields` unless set: more fields are answered 431
/// (HAProxy's `tune.http.maxhdr` and hyper's default).
pub const DEFAULT_MAX_HEADER_FIELDS: usize = 100;
/// `proxy.header_read_timeout_ms` unless set: a request head begun but not
/// finished by then is answered 408 and the connection closed (HAProxy's
/// usual `timeout http-request`).
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// `proxy.keepalive_timeout_ms` unless set: an idle client connection is
/// closed after this (NGINX's `keepalive_timeout`).
pub const DEFAULT_KEEPALIVE_TIMEOUT_MS: u64 = 75_000;
/// `proxy.max_connections` unless set: client connections open at once;
/// more wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// `proxy.upstream_read_timeout_ms` unless set: an endpoint that sends no
/// byte of a response body for this long has the exchange cut (NGINX's
/// `proxy_read_timeout`).
pub const DEFAULT_UPSTREAM_READ_TIMEOUT_MS: u64 = 60_000;
/// `proxy.client_write_timeout_ms` unless set: a client that takes no byte
/// of its response for this long is closed (NGINX's `send_timeout`).
pub const DEFAULT_CLIENT_WRITE_TIMEOUT_MS: u64 = 60_000;
/// `routes[].rate_limit.keys` unless set.
pub const DEFAULT_RATE_LIMIT_KEYS: usize = 4096;
/// The most `routes[].rate_limit.keys`: 8 MiB of buckets.
pub const MAX_RATE_LIMIT_KEYS: usize = 1 << 20;
/// The highest `routes[].rate_limit.per_second`: the interval between
/// requests stays at least 1 µs, so rounding it to whole nanoseconds
/// changes the rate by 0.1% at most.
pub const MAX_RATE_PER_SECOND: u32 = 1_000_000;
/// Passing checks that bring an endpoint back.
pub const DEFAULT_RISE: u32 = 2;
/// Failing checks that take an endpoint down.
pub const DEFAULT_FALL: u32 = 3;

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[proxy]`: the data-plane listener.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// `[control]`: the control endpoint.
    #[serde(default)]
    pub control: ControlConfig,
    /// `[plugins]`: where plugins live and the sandbox they run in.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// `[[pools]]`: groups of endpoints and the policy that balances them.
    #[serde(default)]
    pub pools: Vec<PoolConfig>,
    /// `[[routes]]`: which requests go to which pool; none sends everything to
    /// the only pool.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// `[[listeners]]`: more addresses to accept traffic on, each plain or
    /// with TLS, beside `proxy.listen`.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// `[cluster]`: share the pools and routes with a fleet through etcd.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`: the instances of a fleet share their `[[pools]]` and
/// `[[routes]]` through etcd; the rest of the file is this machine's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `etcd = ["http://10.0.0.1:2379", ...]`: the members of the etcd
    /// cluster (`https://` with `tls`).
    pub etcd: Vec<String>,
    /// `prefix = "/switchyard"`: where the fleet's keys live.
    #[serde(default = "default_cluster_prefix")]
    pub prefix: String,
    /// `name = "edge-1"`: this instance in the fleet; its host name and
    /// control port unless set.
    #[serde(default)]
    pub name: Option<String>,
    /// `state_dir = "/var/lib/switchyard"`: where the last applied revision
    /// is kept, to serve from when etcd cannot be reached; beside the
    /// config file (`NAME.fleet/`) unless set.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// `request_timeout_ms = 1000`: how long one call to one etcd member
    /// may take before the next member is tried.
    #[serde(default = "default_cluster_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// `lease_ttl_ms = 10000`: an instance that stops renewing its entry in
    /// the fleet's list for this long leaves it.
    #[serde(default = "default_cluster_lease_ttl_ms")]
    pub lease_ttl_ms: u64,
    /// `heartbeat_ms = 1000`: how often the instance renews its entry.
    #[serde(default = "default_cluster_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// `tls = { ca = "ca.pem", cert = "client.pem", key = "client.key" }`:
    /// for `https://` members; `cert` and `key` when etcd asks for a
    /// client certificate.
    #[serde(default)]
    pub tls: Option<ClusterTlsConfig>,
    /// `user = "switchyard"`: etcd's auth, with `password_file`.
    #[serde(default)]
    pub user: Option<String>,
    /// `password_file = "/etc/switchyard/etcd-password"`: the user's
    /// password (the file's first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// `[cluster] tls`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsConfig {
    /// The CA that signed etcd's certificates; the system's roots unless set.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// This instance's client certificate chain (PEM).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub key: Option<PathBuf>,
}

fn default_cluster_prefix() -> String {
    "/switchyard".into()
}
fn default_cluster_request_timeout_ms() -> u64 {
    1_000
}
fn default_cluster_lease_ttl_ms() -> u64 {
    10_000
}
fn default_cluster_heartbeat_ms() -> u64 {
    1_000
}

impl ClusterConfig {
    fn problems(&self, report: &mut impl FnMut(String, String)) {
        if self.etcd.is_empty() {
            report("cluster.etcd".into(), "names no etcd member".into());
        }
        for (index, member) in self.etcd.iter().enumerate() {
            let https = member.starts_with("https://");
            if !https && !member.starts_with("http://") {
                report(
                    format!("cluster.etcd[{index}]"),
                    format!("`{member}` must be http://host:port or https://host:port"),
                );
            } else if https && self.tls.is_none() {
                report(
                    format!("cluster.etcd[{index}]"),
                    format!("`{member}` is https: set cluster.tls (its `ca` at least)"),
                );
            }
        }
        if !self.prefix.starts_with('/') || self.prefix.ends_with('/') {
            report(
                "cluster.prefix".into(),
                format!("`{}` must start with `/` and not end with one", self.prefix),
            );
        }
        if let Some(name) = &self.name {
            if name.is_empty() || name.contains('/') {
                report(
                    "cluster.name".into(),
                    format!("`{name}` must be non-empty, without `/`"),
                );
            }
        }
        if self.request_timeout_ms == 0 {
            report(
                "cluster.request_timeout_ms".into(),
                "must be at least 1".into(),
            );
        }
        if self.lease_ttl_ms < 2_000 {
            report(
                "cluster.lease_ttl_ms".into(),
                format!("must be at least 2000, got {}", self.lease_ttl_ms),
            );
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms * 2 > self.lease_ttl_ms {
            report(
                "cluster.heartbeat_ms".into(),
                format!(
                    "must be from 1 to half of lease_ttl_ms ({}), got {}",
                    self.lease_ttl_ms / 2,
                    self.heartbeat_ms
                ),
            );
        }
        if let Some(tls) = &self.tls {
            if tls.cert.is_some() != tls.key.is_some() {
                report(
                    "cluster.tls".into(),
                    "`cert` and `key` go together: set both, or neither".into(),
                );
            }
        }
        if self.user.is_some() != self.password_file.is_some() {
            report(
                "cluster.user".into(),
                "`user` and `password_file` go together: set both, or neither".into(),
            );
        }
    }
}

/// One `[[listeners]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `listen = "0.0.0.0:443"`: address and port.
    pub listen: SocketAddr,
    /// `tls = { certificates = [...] }`: terminate TLS here; none: plain.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// A listener's `tls` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// `certificates = [{ cert = "a.pem", key = "a.key" }]`: each served to
    /// the names it holds (SNI, wildcards included); the first also to
    /// clients that name none or a name no certificate holds.
    pub certificates: Vec<CertificateConfig>,
}

/// One certificate of a TLS listener: PEM files, read again when they change.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// `cert = "/etc/switchyard/a.pem"`: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// `key = "/etc/switchyard/a.key"`: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[proxy]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `listen = "127.0.0.1:8080"`: address and port to accept traffic on.
    #[serde(default = "default_proxy_listen")]
    pub listen: SocketAddr,
    /// `workers = 2`: proxy worker threads, each with its own runtime and
    /// upstream connections; default: one per core.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// `connect_timeout_ms = 1000`: a connection not open by then fails with 502.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// `request_timeout_ms = 30000`: no response headers by then fails with 504.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// `idle_timeout_ms = 90000`: idle upstream keep-alive connections are closed after this.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// `shutdown_grace_ms = 30000`: on SIGTERM, in-flight requests get this long to finish.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// `fast_path = true`: requests from HTTP/1.1 clients without a body or
    /// with a `Content-Length` one, to pools without a recovery policy, are
    /// forwarded by parsing heads in place; `false` serves every request
    /// through hyper.
    #[serde(default = "default_true")]
    pub fast_path: bool,
    /// `max_header_bytes = 32768`: a request head (request line and
    /// fields) larger than this is answered 431 and not forwarded.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// `max_header_fields = 100`: a request with more header fields is
    /// answered 431 and not forwarded.
    #[serde(default = "default_max_header_fields")]
    pub max_header_fields: usize,
    /// `header_read_timeout_ms = 10000`: a client that has begun a request
    /// head and not finished it by then is answered 408 and closed.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// `keepalive_timeout_ms = 75000`: a client connection idle between
    /// requests this long is closed.
    #[serde(default = "default_keepalive_timeout_ms")]
    pub keepalive_timeout_ms: u64,
    /// `max_body_bytes = 0`: a request body larger than this is answered
    /// 413; 0 allows any size. A route's `max_body_bytes` overrides it.
    #[serde(default)]
    pub max_body_bytes: u64,
    /// `max_connections = 10000`: client connections open at once, over
    /// every listener; further ones wait in the listen backlog until one
    /// closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// `upstream_read_timeout_ms = 60000`: an endpoint that sends nothing of
    /// a response body for this long has the exchange cut, and the client
    /// connection closed.
    #[serde(default = "default_upstream_read_timeout_ms")]
    pub upstream_read_timeout_ms: u64,
    /// `client_write_timeout_ms = 60000`: a client that takes nothing of
    /// its response for this long is closed, and the endpoint's connection
    /// with it.
    #[serde(default = "default_client_write_timeout_ms")]
    pub client_write_timeout_ms: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: default_proxy_listen(),
            workers: default_workers(),
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            fast_path: true,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_header_fields: DEFAULT_MAX_HEADER_FIELDS,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            keepalive_timeout_ms: DEFAULT_KEEPALIVE_TIMEOUT_MS,
            max_body_bytes: 0,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            upstream_read_timeout_ms: DEFAULT_UPSTREAM_READ_TIMEOUT_MS,
            client_write_timeout_ms: DEFAULT_CLIENT_WRITE_TIMEOUT_MS,
        }
    }
}

/// `[control]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// `listen = "127.0.0.1:9090"`: address of the control endpoint.
    #[serde(default = "default_control_listen")]
    pub listen: SocketAddr,
    /// `watch_config = true`: reload the config file when it changes (as on
    /// SIGHUP), once it has been quiet for 100 ms; content already applied
    /// is not applied again.
    #[serde(default = "default_true")]
    pub watch_config: bool,
    /// `[[control.tokens]]`: who may use the API. With none, the API is
    /// open, which is allowed only on a loopback `listen`.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// `audit_log = "/var/log/switchyard/audit.jsonl"`: every API write,
    /// accepted or refused, appended as a JSON line and synced before the
    /// answer; none: kept in memory only (`GET /v1/audit` shows the last
    /// 1,000 either way).
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    /// `per_endpoint_metrics = true`: `/metrics` has six series per
    /// endpoint (requests, failures, cuts, in flight, latency, success
    /// ratio); `false` leaves them out, for configs with so many endpoints
    /// that the series would swamp the scraper (100,000 endpoints: 600,000
    /// series). The pool, plugin and proxy series stay.
    #[serde(default = "default_true")]
    pub per_endpoint_metrics: bool,
    /// `audit_max_bytes = 10485760`: past this size the audit log is
    /// renamed to `FILE.1` (replacing the one before) and a new one begun.
    #[serde(default = "default_audit_max_bytes")]
    pub audit_max_bytes: u64,
}

/// One `[[control.tokens]]` entry: a bearer token, by its hash.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// `name = "deploy-bot"`: who holds it, for logs and the audit trail.
    pub name: String,
    /// `role = "operator"`: `viewer` (reads), `operator` (endpoints,
    /// drains, reloads) or `admin` (everything).
    pub role: Role,
    /// `sha256 = "9f86d0…"`: the SHA-256 of the token, in hex (`printf %s
    /// TOKEN | sha256sum`), so the file holds no secret.
    pub sha256: String,
}

/// What a token may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads, endpoint changes, drains, reloads.
    Operator,
    /// Everything.
    Admin,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            listen: default_control_listen(),
            watch_config: true,
            tokens: Vec::new(),
            audit_log: None,
            per_endpoint_metrics: true,
            audit_max_bytes: DEFAULT_AUDIT_MAX_BYTES,
        }
    }
}

/// `[plugins]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// `dir = "plugins"`: the folder watched for `NAME.wasm` files.
    #[serde(default = "default_plugin_dir")]
    pub dir: PathBuf,
    /// `cache_dir = "plugins/.cache"`: compiled plugins, keyed by content hash.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// `call_timeout_ms = 1`: budget of one call into a plugin.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// `memory_limit_mib = 32`: linear-memory cap of one instance.
    #[serde(default = "default_memory_limit_mib")]
    pub memory_limit_mib: u32,
    /// `quarantine_after = 10`: consecutive faults before a version is set aside.
    #[serde(default = "default_quarantine_after")]
    pub quarantine_after: u32,
    /// `watch = true`: reload files when they change.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// `debounce_ms = 10`: quiet time after a file event before loading.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    /// `max_instances = 512`: live plugin instances at most.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// `log_line_bytes = 1024`: bytes of a plugin's log line written; a
    /// longer line is cut on a character boundary and marked
    /// `… [cut: KEPT of LEN bytes kept]`. From 64 to 65536.
    #[serde(default = "default_log_line_bytes")]
    pub log_line_bytes: u32,
    /// `log_lines_per_second = 50`: log lines one plugin, all its instances
    /// together, may write a second, after a burst of as many; the excess is
    /// dropped, counted, and summarised in one line at most once a second.
    /// From 1 to 10000.
    #[serde(default = "default_log_lines_per_second")]
    pub log_lines_per_second: u32,
    /// `recycle_at_percent = 75`: an instance whose linear memory has
    /// reached this share of its cap is replaced, after the call, by a fresh
    /// one made from the compiled plugin (counted as a recycle, not a fault),
    /// so a guest that leaks a little per call is renewed before the cap
    /// stops it. From 10 to 100; 100 never recycles.
    #[serde(default = "default_recycle_at_percent")]
    pub recycle_at_percent: u32,
    /// `store_entries = 4096`: entries at most in the store a plugin's
    /// instances share for one pool (`switchyard:plugin/store`); a full
    /// store refuses new entries. Each entry costs about 100 bytes of host
    /// memory. From 16 to 1048576.
    #[serde(default = "default_store_entries")]
    pub store_entries: u32,
    /// `store_name_bytes = 64`: the longest name of a store entry, in bytes.
    /// From 8 to 1024.
    #[serde(default = "default_store_name_bytes")]
    pub store_name_bytes: u32,
    /// `[plugins.limits.NAME]`: the sandbox settings of one plugin, where
    /// they differ from the ones above (a Python plugin needs more memory
    /// than a Rust one).
    #[serde(default)]
    pub limits: BTreeMap<String, PluginLimitsConfig>,
    /// `[plugins.rollout.NAME]`: how a candidate version of plugin NAME
    /// (`NAME.canary.wasm`, or uploaded through the API) is tried on live
    /// traffic before it replaces the serving one; a plugin without its own
    /// table uses [`RolloutConfig::default`].
    #[serde(default)]
    pub rollout: BTreeMap<String, RolloutConfig>,
}

/// `record = { percent, file, max_bytes }`: a pool's recording of its
/// balancer plugin's picks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// `percent = 1`: the share of picks recorded, above 0 and up to 100.
    /// A policy that keeps state from pick to pick (a cursor) replays
    /// exactly only from a full recording (100).
    pub percent: f64,
    /// `file = "recordings/web.jsonl"`: JSON lines, appended.
    pub file: PathBuf,
    /// `max_bytes = 104857600`: recording stops when the file reaches it.
    #[serde(default = "default_record_max_bytes")]
    pub max_bytes: u64,
}

/// The default `record.max_bytes`: 100 MiB.
pub const DEFAULT_RECORD_MAX_BYTES: u64 = 100 * 1024 * 1024;

fn default_record_max_bytes() -> u64 {
    DEFAULT_RECORD_MAX_BYTES
}

/// `[plugins.rollout.NAME]`: a candidate is first called beside the live
/// version on `shadow_percent` of picks (its answer compared and
/// discarded), then answers `canary_percent / steps`, `2 × canary_percent /
/// steps`, ... up to `canary_percent` of picks, one step after another.
/// Each phase lasts until the candidate has made `promote_after_calls`
/// calls; it passes when every threshold holds over them, and the first
/// breach rolls the candidate back.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    /// `shadow_percent = 10`: share of picks on which the candidate is
    /// called too, in the shadow phase; 0 skips the phase.
    pub shadow_percent: f64,
    /// `canary_percent = 50`: share of picks the candidate answers in the
    /// last canary step; 0 promotes after the shadow phase.
    pub canary_percent: f64,
    /// `steps = 5`: canary steps, rising evenly to `canary_percent`.
    pub steps: u32,
    /// `promote_after_calls = 1000`: candidate calls each phase lasts.
    pub promote_after_calls: u64,
    /// `max_fault_rate = 0.001`: share of the candidate's calls that may
    /// trap, time out, decline or answer out of the set.
    pub max_fault_rate: f64,
    /// `max_cost_ratio = 2.0`: the candidate's cost per call (p50 and p99)
    /// at most this many times the live version's over the same phase.
    pub max_cost_ratio: f64,
    /// `max_disagreement = 0.2`: in the shadow phase, how far the
    /// candidate's picks may stray from the live version's on the same
    /// requests (see `agreement`), from 0 to 1.
    pub max_disagreement: f64,
    /// `agreement = "distribution"`: how picks are compared. `distribution`:
    /// the share of picks each endpoint got from either (total variation
    /// distance), right for balancers that count or draw at random;
    /// `exact`: the share of requests placed on a different endpoint, for
    /// deterministic ones (hashing).
    pub agreement: Agreement,
    /// `max_error_rate_increase = 0.01`: in canary steps, the error rate of
    /// the requests the candidate placed may exceed the live version's by
    /// at most this (absolute share).
    pub max_error_rate_increase: f64,
    /// `max_latency_ratio = 1.5`: in canary steps, the p99 latency of the
    /// requests the candidate placed at most this many times the live
    /// version's.
    pub max_latency_ratio: f64,
    /// `auto_promote = true`: promote when the last phase passes; `false`
    /// holds the candidate at its last step until an operator promotes or
    /// aborts it.
    pub auto_promote: bool,
}

impl RolloutConfig {
    /// Each key that is out of its range, with why.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let share = |key: &'static str, value: f64, problems: &mut Vec<(&'static str, String)>| {
            if !(0.0..=100.0).contains(&value) {
                problems.push((key, format!("must be from 0 to 100, got {value}")));
            }
        };
        share("shadow_percent", self.shadow_percent, &mut problems);
        share("canary_percent", self.canary_percent, &mut problems);
        if self.shadow_percent == 0.0 && self.canary_percent == 0.0 {
            problems.push((
                "canary_percent",
                "a rollout needs a shadow phase or canary steps: shadow_percent or canary_percent above 0".into(),
            ));
        }
        if !(1..=20).contains(&self.steps) {
            problems.push(("steps", format!("must be from 1 to 20, got {}", self.steps)));
        }
        if self.promote_after_calls < 10 {
            problems.push(("promote_after_calls", "must be at least 10".into()));
        }
        let rate = |key: &'static str, value: f64, problems: &mut Vec<(&'static str, String)>| {
            if !(0.0..=1.0).contains(&value) {
                problems.push((key, format!("must be from 0 to 1, got {value}")));
            }
        };
        rate("max_fault_rate", self.max_fault_rate, &mut problems);
        rate("max_disagreement", self.max_disagreement, &mut problems);
        rate(
            "max_error_rate_increase",
            self.max_error_rate_increase,
            &mut problems,
        );
        let ratio = |key: &'static str, value: f64, problems: &mut Vec<(&'static str, String)>| {
            if !(value >= 1.0 && value.is_finite()) {
                problems.push((key, format!("must be at least 1, got {value}")));
            }
        };
        ratio("max_cost_ratio", self.max_cost_ratio, &mut problems);
        ratio("max_latency_ratio", self.max_latency_ratio, &mut problems);
        problems
    }

    /// The share of picks the candidate answers in canary step `step`
    /// (1-based), in percent.
    pub fn canary_share(&self, step: u32) -> f64 {
        self.canary_percent * f64::from(step.min(self.steps)) / f64::from(self.steps.max(1))
    }
}

/// How a shadow phase compares the candidate's picks with the live
/// version's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Agreement {
    /// The share of picks each endpoint got.
    Distribution,
    /// The endpoint each request was placed on.
    Exact,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            shadow_percent: 10.0,
            canary_percent: 50.0,
            steps: 5,
            promote_after_calls: 1000,
            max_fault_rate: 0.001,
            max_cost_ratio: 2.0,
            max_disagreement: 0.2,
            agreement: Agreement::Distribution,
            max_error_rate_increase: 0.01,
            max_latency_ratio: 1.5,
            auto_promote: true,
        }
    }
}

/// `[plugins.limits.NAME]`: one plugin's own sandbox settings; each key left
/// out is taken from `[plugins]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLimitsConfig {
    /// `memory_limit_mib`: the linear-memory cap of one of its instances.
    pub memory_limit_mib: Option<u32>,
    /// `call_timeout_ms`: the budget of one call into it.
    pub call_timeout_ms: Option<u64>,
    /// `recycle_at_percent`: the share of its cap at which an instance is
    /// replaced by a fresh one.
    pub recycle_at_percent: Option<u32>,
}

/// The sandbox settings one plugin gets: `[plugins]`, overridden by its
/// `[plugins.limits.NAME]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectivePluginLimits {
    /// The linear-memory cap of one instance, in MiB.
    pub memory_limit_mib: u32,
    /// The budget of one call, in ms.
    pub call_timeout_ms: u64,
    /// The share of the cap at which an instance is recycled.
    pub recycle_at_percent: u32,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: default_plugin_dir(),
            cache_dir: None,
            call_timeout_ms: DEFAULT_CALL_TIMEOUT_MS,
            memory_limit_mib: DEFAULT_MEMORY_LIMIT_MIB,
            quarantine_after: DEFAULT_QUARANTINE_AFTER,
            watch: true,
            debounce_ms: DEFAULT_DEBOUNCE_MS,
            max_instances: DEFAULT_MAX_INSTANCES,
            log_line_bytes: DEFAULT_LOG_LINE_BYTES,
            log_lines_per_second: DEFAULT_LOG_LINES_PER_SECOND,
            recycle_at_percent: DEFAULT_RECYCLE_AT_PERCENT,
            store_entries: DEFAULT_STORE_ENTRIES,
            store_name_bytes: DEFAULT_STORE_NAME_BYTES,
            limits: BTreeMap::new(),
            rollout: BTreeMap::new(),
        }
    }
}

impl PluginsConfig {
    /// The compiled-plugin cache folder.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.dir.join(".cache"))
    }

    /// How a candidate of plugin `name` is rolled out.
    pub fn rollout_of(&self, name: &str) -> RolloutConfig {
        self.rollout.get(name).cloned().unwrap_or_default()
    }

    /// The settings plugin `name` runs with.
    pub fn limits_of(&self, name: &str) -> EffectivePluginLimits {
        let own = self.limits.get(name);
        EffectivePluginLimits {
            memory_limit_mib: own
                .and_then(|l| l.memory_limit_mib)
                .unwrap_or(self.memory_limit_mib),
            call_timeout_ms: own
                .and_then(|l| l.call_timeout_ms)
                .unwrap_or(self.call_timeout_ms),
            recycle_at_percent: own
                .and_then(|l| l.recycle_at_percent)
                .unwrap_or(self.recycle_at_percent),
        }
    }
}

/// `[[pools]]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// `name = "web"`: how routes, the API and metrics name the pool.
    pub name: String,
    /// `balancer = { plugin = "p2c", config = { ... } }`; none: the native
    /// round robin.
    #[serde(default)]
    pub balancer: Option<BalancerConfig>,
    /// `record = { percent = 1, file = "recordings/web.jsonl" }`: record a
    /// sample of the balancer plugin's picks for `switchyard plugin
    /// replay`; none: nothing is recorded.
    #[serde(default)]
    pub record: Option<RecordConfig>,
    /// `endpoints = [{ address = "10.0.0.1:80", weight = 1, tier = 0 }]`
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
    /// `discovery = { dns = "api.internal:8080", type = "a" }`: endpoints
    /// found in DNS as well as those listed; none: only those listed.
    #[serde(default)]
    pub discovery: Option<DiscoveryConfig>,
    /// `health = { plugin = "http-health", interval_ms = 5000, ... }`: active
    /// checks; none: no active checks.
    #[serde(default)]
    pub health: Option<HealthCheckConfig>,
    /// `recovery = { plugin = "retry-backoff", config = { ... } }`: what to do
    /// after a failed attempt; none: no retries.
    #[serde(default)]
    pub recovery: Option<RecoveryConfig>,
    /// `outlier = { consecutive_failures = 5, ... }`: ejection from live traffic.
    #[serde(default)]
    pub outlier: OutlierConfig,
    /// `panic_threshold = 0.5`: below this available share of its serving
    /// tier, the pool balances over all of the tier; 0 disables panic mode.
    #[serde(default = "default_panic_threshold")]
    pub panic_threshold: f64,
    /// `slow_start_ms = 0`: an endpoint that comes back (readmitted, or up
    /// again) or is discovered (DNS, a registration) while the pool serves
    /// ramps from 10% of its weight to all of it over this time, as
    /// weighted balancers see it; 0 disables slow start.
    #[serde(default)]
    pub slow_start_ms: u64,
    /// `failover_threshold = 0.5`: a tier serves while at least this share of
    /// it is available; below it, the next tier that meets it takes over.
    #[serde(default = "default_failover_threshold")]
    pub failover_threshold: f64,
    /// `connect_failure_hold_ms = 1000`: an endpoint that refuses a
    /// connection, or accepts none within `proxy.connect_timeout_ms`, takes
    /// no traffic — in panic mode neither — until an active check passes,
    /// or, in a pool without active checks, for this long (HAProxy's
    /// `observe layer4` with `on-error mark-down`); 0 disables the hold.
    #[serde(default = "default_connect_failure_hold_ms")]
    pub connect_failure_hold_ms: u64,
    /// `protocol = "http1"`: how the proxy speaks to the endpoints:
    /// `http1`; `h2`, HTTP/2 over TLS (ALPN `h2`; `tls` defaults apply when
    /// the table is absent); `h2c`, HTTP/2 in clear text with prior
    /// knowledge. One multiplexed connection per endpoint and worker for
    /// HTTP/2.
    #[serde(default)]
    pub protocol: UpstreamProtocolConfig,
    /// `tls = { server_name = "api.internal", ca = "ca.pem", verify = true }`:
    /// connect to the endpoints over TLS.
    #[serde(default)]
    pub tls: Option<UpstreamTlsConfig>,
    /// `max_in_flight = 200`: the pool's requests in flight at most; past
    /// it (or when every eligible endpoint is at its `capacity`) requests
    /// wait in the pool's `queue`. Default: no pool-wide maximum.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// `queue = { max_len = 1024, p0_ms = 1000, ... }`: where requests wait
    /// for room when the pool or its endpoints are at their limits.
    #[serde(default)]
    pub queue: QueueConfig,
    /// `adaptive_concurrency = { min_limit = 4, max_limit = 1000, ... }`:
    /// a pool-wide limit that follows the endpoints' latency; none: off.
    #[serde(default)]
    pub adaptive_concurrency: Option<AdaptiveConcurrencyConfig>,
}

/// A pool's `queue` table: requests waiting for room, served by class
/// (P0 first) then arrival, each class waiting at most its own time.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// `max_len = 1024`: waiters at most; when full, the least urgent
    /// waiter (or the newcomer, if it is the least urgent) is shed; 0:
    /// requests without room are shed at once.
    #[serde(default = "default_queue_len")]
    pub max_len: usize,
    /// `p0_ms = 1000`: how long a P0 request may wait.
    #[serde(default = "default_p0_wait_ms")]
    pub p0_ms: u64,
    /// `p1_ms = 1000`
    #[serde(default = "default_p1_wait_ms")]
    pub p1_ms: u64,
    /// `p2_ms = 500`
    #[serde(default = "default_p2_wait_ms")]
    pub p2_ms: u64,
    /// `p3_ms = 250`
    #[serde(default = "default_p3_wait_ms")]
    pub p3_ms: u64,
    /// `p4_ms = 100`
    #[serde(default = "default_p4_wait_ms")]
    pub p4_ms: u64,
    /// `retry_after_s = 1`: the `Retry-After` a shed request is answered with.
    #[serde(default = "default_retry_after_s")]
    pub retry_after_s: u32,
    /// `reserve_percent = 10`: the share of `max_in_flight` and of each
    /// endpoint's `capacity` that P4 requests leave free for more urgent
    /// ones, so a flood of background work never takes the last slots: P3
    /// leave three quarters of it, P2 half, P1 a quarter, P0 none.
    #[serde(default = "default_reserve_percent")]
    pub reserve_percent: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_len: default_queue_len(),
            p0_ms: default_p0_wait_ms(),
            p1_ms: default_p1_wait_ms(),
            p2_ms: default_p2_wait_ms(),
            p3_ms: default_p3_wait_ms(),
            p4_ms: default_p4_wait_ms(),
            retry_after_s: default_retry_after_s(),
            reserve_percent: default_reserve_percent(),
        }
    }
}

/// A pool's `adaptive_concurrency` table: a gradient controller (Envoy's
/// adaptive concurrency filter, Netflix's Gradient2) that lowers the pool's
/// limit as latency rises above the latency measured unloaded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConcurrencyConfig {
    /// `min_limit = 4`: the limit never goes below this; the unloaded
    /// latency is measured with this many in flight, at start and every
    /// minute.
    #[serde(default = "default_min_limit")]
    pub min_limit: u32,
    /// `max_limit = 1000`
    #[serde(default = "default_max_limit")]
    pub max_limit: u32,
    /// `initial_limit = 20`
    #[serde(default = "default_initial_limit")]
    pub initial_limit: u32,
    /// `tolerance = 1.5`: the latency may rise to this multiple of the
    /// unloaded latency before the limit shrinks.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// `smoothing = 0.2`: how far each adjustment (every 100 ms) moves
    /// toward its target, from 0 (never) to 1 (at once).
    #[serde(default = "default_smoothing")]
    pub smoothing: f64,
}

/// A pool's `protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocolConfig {
    /// HTTP/1.1, over TLS when the pool has a `tls` table.
    #[default]
    Http1,
    /// HTTP/2 over TLS.
    H2,
    /// HTTP/2 without TLS, with prior knowledge.
    H2c,
}

/// A pool's `tls` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// `server_name = "api.internal"`: the name sent (SNI) and verified;
    /// default: each endpoint's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// `ca = "/etc/ssl/internal-ca.pem"`: the authorities trusted; default:
    /// the system's (`/etc/ssl/certs`).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// `verify = true`: check the endpoint's certificate and name; `false`
    /// accepts any certificate (a test bed only).
    #[serde(default = "default_true")]
    pub verify: bool,
}

/// A pool's `health` table: active checks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// `plugin = "http-health"`: the health-check plugin; none: a native TCP
    /// connect check.
    #[serde(default)]
    pub plugin: Option<String>,
    /// `interval_ms = 5000`: time between checks of one endpoint.
    #[serde(default = "default_check_interval_ms")]
    pub interval_ms: u64,
    /// `timeout_ms = 1000`: a check still running after this fails.
    #[serde(default = "default_check_timeout_ms")]
    pub timeout_ms: u64,
    /// `jitter_ms = 0`: up to this much random delay added to each interval,
    /// so checks of many endpoints spread out.
    #[serde(default)]
    pub jitter_ms: u64,
    /// `rise = 2`: passing checks in a row that bring a down endpoint back.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// `fall = 3`: failing checks in a row that take an endpoint down.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// `config = { ... }`: handed to the plugin's `configure` as JSON.
    #[serde(default)]
    pub config: toml::Table,
}

/// A pool's or a route's `recovery` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryConfig {
    /// `plugin = "retry-backoff"`: the recovery plugin; none: the native
    /// policy, which retries a replayable request once on another endpoint.
    #[serde(default)]
    pub plugin: Option<String>,
    /// `config = { ... }`: handed to the plugin's `configure` as JSON.
    #[serde(default)]
    pub config: toml::Table,
    /// `max_replay_body_bytes = 65536`: larger request bodies are streamed
    /// and never retried.
    #[serde(default = "default_max_replay_body_bytes")]
    pub max_replay_body_bytes: u64,
    /// `budget_percent = 20`: retries allowed as a share of requests.
    #[serde(default = "default_retry_budget_percent")]
    pub budget_percent: u32,
    /// `min_retries_per_second = 10`: retries allowed per second whatever the share.
    #[serde(default = "default_min_retries_per_second")]
    pub min_retries_per_second: u32,
    /// `budget_window_ms = 10000`: the sliding window the budget counts
    /// over: retries in any such window are at most `budget_percent` of its
    /// requests plus `min_retries_per_second` for each of its seconds.
    #[serde(default = "default_budget_window_ms")]
    pub budget_window_ms: u64,
}

/// A pool's `outlier` table: passive ejection from live traffic.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierConfig {
    /// `enabled = true`
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `consecutive_failures = 5`: failed responses in a row (connect errors,
    /// timeouts, 5xx) that eject an endpoint.
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: u32,
    /// `base_ejection_ms = 30000`: the n-th ejection of an endpoint lasts n times this.
    #[serde(default = "default_base_ejection_ms")]
    pub base_ejection_ms: u64,
    /// `max_ejection_ms = 300000`: the longest one ejection lasts.
    #[serde(default = "default_max_ejection_ms")]
    pub max_ejection_ms: u64,
    /// `max_ejection_percent = 50`: at most this share of the pool is ejected at once.
    #[serde(default = "default_max_ejection_percent")]
    pub max_ejection_percent: u32,
    /// `interval_ms = 10000`: how often success rates are judged.
    #[serde(default = "default_outlier_interval_ms")]
    pub interval_ms: u64,
    /// `min_success_rate = 0.5`: below this share of successful responses
    /// in one interval an endpoint is ejected; 0 disables the check.
    #[serde(default = "default_min_success_rate")]
    pub min_success_rate: f64,
    /// `min_requests = 20`: responses an endpoint must have had in the
    /// interval for its success rate to count.
    #[serde(default = "default_min_requests")]
    pub min_requests: u32,
    /// `uneject_on_active_success = true`: an active check that passes ends
    /// an ejection at once (Envoy's `successful_active_health_check_uneject_host`),
    /// so an endpoint that came back serves again within one check.
    #[serde(default = "default_true")]
    pub uneject_on_active_success: bool,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            enabled: true,
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            base_ejection_ms: DEFAULT_BASE_EJECTION_MS,
            max_ejection_ms: DEFAULT_MAX_EJECTION_MS,
            max_ejection_percent: DEFAULT_MAX_EJECTION_PERCENT,
            interval_ms: DEFAULT_OUTLIER_INTERVAL_MS,
            min_success_rate: DEFAULT_MIN_SUCCESS_RATE,
            min_requests: DEFAULT_MIN_REQUESTS,
            uneject_on_active_success: true,
        }
    }
}

/// A pool's `balancer` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancerConfig {
    /// `plugin = "p2c"`: the file stem of `plugins/p2c.wasm`.
    pub plugin: String,
    /// `config = { ... }`: handed to the plugin's `configure` as JSON.
    #[serde(default)]
    pub config: toml::Table,
}

impl BalancerConfig {
    /// The plugin config as the JSON text `configure` receives.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).unwrap_or_else(|_| "{}".to_string())
    }
}

/// One entry of a pool's `endpoints`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `address = "127.0.0.1:8081"`: `host:port` of the endpoint.
    pub address: String,
    /// `weight = 1`: relative share of traffic, at least 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// `capacity = 0`: maximum in-flight requests; 0 means unlimited.
    #[serde(default)]
    pub capacity: u32,
    /// `tier = 0`: 0 is the primary tier; higher tiers are backups that take
    /// traffic when the tiers before them fall below `failover_threshold`.
    #[serde(default)]
    pub tier: u32,
    /// `zone = "eu-1"`: shown to plugins.
    #[serde(default)]
    pub zone: Option<String>,
    /// `labels = { rack = "r1" }`: shown to plugins.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `state = "draining"`: `active` (the default), `draining` (takes no
    /// new requests; those in flight finish, then it reports `drained`) or
    /// `disabled` (takes no requests). Neither counts toward its tier's
    /// share, so taking endpoints out never causes a failover or panic.
    #[serde(default)]
    pub state: EndpointState,
}

/// A pool's `discovery` table: a DNS name whose answers are endpoints of
/// the pool, asked again as their TTL runs out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// `dns = "api.internal:8080"`: the name and the port of every address
    /// it has (`a`, `aaaa`); `dns = "_http._tcp.api.internal"` for `srv`,
    /// whose records carry their own ports.
    pub dns: String,
    /// `type = "a"`: `a` (IPv4 addresses), `aaaa` (IPv6) or `srv` (targets
    /// with their ports, weights and priorities: each distinct priority a
    /// tier, the lowest the primary).
    #[serde(default, rename = "type")]
    pub record: DnsRecordType,
    /// `refresh_ms = 30000`: the answer is asked again when its TTL runs
    /// out, but at most this long after the last answer.
    #[serde(default = "default_discovery_refresh_ms")]
    pub refresh_ms: u64,
    /// `min_refresh_ms = 1000`: and at least this long after it (an answer
    /// with a TTL of 0 is asked again after this); also the wait before
    /// asking again after a failed answer.
    #[serde(default = "default_discovery_min_refresh_ms")]
    pub min_refresh_ms: u64,
    /// `resolvers = ["10.0.0.2:53"]`: the servers asked, over UDP (TCP for
    /// a truncated answer); none: those of `/etc/resolv.conf`.
    #[serde(default)]
    pub resolvers: Vec<String>,
}

impl DiscoveryConfig {
    /// The longest wait between two answers.
    pub fn max_refresh(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.refresh_ms)
    }

    /// The shortest wait between two answers, and the wait after a failure.
    pub fn min_refresh(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.min_refresh_ms.min(self.refresh_ms))
    }
}

/// The DNS records a pool's `discovery` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsRecordType {
    /// IPv4 addresses.
    #[default]
    A,
    /// IPv6 addresses.
    Aaaa,
    /// Service records: target, port, weight, priority.
    Srv,
}

/// An endpoint's state as operators set it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointState {
    /// Takes traffic as its health allows.
    #[default]
    Active,
    /// Takes no new requests; those in flight finish.
    Draining,
    /// Takes no requests.
    Disabled,
}

impl EndpointState {
    /// How the config and the API write it.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Active => "active",
            EndpointState::Draining => "draining",
            EndpointState::Disabled => "disabled",
        }
    }
}

/// `[[routes]]`: a request matches when every given field matches.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `host = "api.example.com"`: the request's host, without port, in any
    /// case; `host = "*.example.com"`: any host ending in `.example.com`
    /// (one or more labels before it, not `example.com` itself). Any host
    /// when absent.
    #[serde(default)]
    pub host: Option<String>,
    /// `path_prefix = "/api"`: the path starts with this; `/` when no path
    /// key is given. At most one of `path_prefix`, `path`, `path_regex`.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// `path = "/health"`: the path (without query) is exactly this.
    #[serde(default)]
    pub path: Option<String>,
    /// `path_regex = "/users/[0-9]+"`: the whole path (without query)
    /// matches this regex (`regex` crate syntax).
    #[serde(default)]
    pub path_regex: Option<String>,
    /// `methods = ["GET", "HEAD"]`: the request's method is one of these
    /// (compared as written: methods are case-sensitive). Any when absent.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// `headers = [{ name = "x-env", exact = "canary" }]`: header fields
    /// the request must have, all of them; none by default.
    #[serde(default)]
    pub headers: Vec<FieldMatchConfig>,
    /// `query = [{ name = "v", exact = "2" }]`: query parameters the
    /// request must have, all of them, compared as sent (not
    /// percent-decoded); none by default.
    #[serde(default)]
    pub query: Vec<FieldMatchConfig>,
    /// `name = "checkout"`: names the route in `/metrics`
    /// (`switchyard_route_request_duration_seconds{route}`); unnamed routes
    /// are counted only with their pool. Unique; none by default.
    #[serde(default)]
    pub name: Option<String>,
    /// `pool = "web"`: where matching requests go. A route has `pool` or
    /// `split`.
    #[serde(default)]
    pub pool: String,
    /// `split = [{ pool = "v1", weight = 90 }, { pool = "v2", weight = 10 }]`:
    /// matching requests are spread over these pools by weight, in place of
    /// `pool`; by the request's hash (the same pool for the same client,
    /// cookie or header) when the route sets `hash_key`, at random
    /// otherwise.
    #[serde(default)]
    pub split: Vec<SplitConfig>,
    /// `mirror = { pool = "shadow", percent = 10 }`: a copy of this share of
    /// the requests goes to another pool after the primary's response;
    /// its answer is discarded and it never delays or fails the primary.
    /// Only requests whose body the proxy holds whole are copied. None by
    /// default.
    #[serde(default)]
    pub mirror: Option<MirrorConfig>,
    /// `max_body_bytes = 1048576`: a request body larger than this is
    /// answered 413; 0 allows any size. Default: `proxy.max_body_bytes`.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// `priority = "p1"`: the class of its requests, `p0` (critical) to
    /// `p4` (background). Default `p2`.
    #[serde(default)]
    pub priority: PriorityClass,
    /// `priority_header = "x-priority"`: a request header this route trusts
    /// to name the class (`p0`..`p4` or `0`..`4`); a missing or other value
    /// leaves `priority`.
    #[serde(default)]
    pub priority_header: Option<String>,
    /// `request_headers = { add = { "x-a" = "1" }, remove = ["x-b"] }`:
    /// fields changed in requests sent upstream (`add` replaces a field of
    /// that name). None by default.
    #[serde(default)]
    pub request_headers: HeaderEditsConfig,
    /// `response_headers = { add = { "x-a" = "1" }, remove = ["x-b"] }`:
    /// fields changed in responses sent to the client. None by default.
    #[serde(default)]
    pub response_headers: HeaderEditsConfig,
    /// `strip_prefix = true`: the matched `path_prefix` is removed from the
    /// path sent upstream, keeping a leading `/`; the query is kept.
    /// Default `false`.
    #[serde(default)]
    pub strip_prefix: bool,
    /// `rewrite_prefix = "/v2/"`: the matched `path_prefix` is replaced by
    /// this in the path sent upstream; the query is kept. None by default.
    #[serde(default)]
    pub rewrite_prefix: Option<String>,
    /// `hash_key = "client"` (default), `"path"`, `{ header = "x-user" }`
    /// or `{ cookie = "session" }`: what the request is hashed by for
    /// balancing (`request-info`'s hash, which consistent hashing places
    /// by); a missing header or cookie falls back to the client's address.
    #[serde(default)]
    pub hash_key: Option<HashKeyConfig>,
    /// `request_timeout_ms = 5000`: time from the request's arrival to its
    /// response head, for this route's requests. Default:
    /// `proxy.request_timeout_ms`.
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
    /// `retries = false`: each request gets one attempt, even in a pool
    /// with a `recovery` policy. Default `true`.
    #[serde(default = "default_true")]
    pub retries: bool,
    /// `recovery = { plugin = "retry-backoff", config = { attempts = 3 } }`
    /// (or `recovery = {}`, the native policy): the recovery policy of this
    /// route's requests, in place of their pool's, with its own retry
    /// budget and replay limit; the same table as a pool's `recovery`.
    /// None by default: the pool's policy decides. Not with
    /// `retries = false` or `broadcast = true`.
    #[serde(default)]
    pub recovery: Option<RecoveryConfig>,
    /// `broadcast = true`: a matching request is sent to every eligible
    /// endpoint of the pool at once (its body read whole first) and
    /// answered with a JSON summary of each endpoint's status: 200 when
    /// all answered 2xx, else 502. Default `false`.
    #[serde(default)]
    pub broadcast: bool,
    /// `rate_limit = { per_second = 100, burst = 20, key = "client" }`:
    /// requests over the rate are answered 429 with `Retry-After` and not
    /// forwarded; none: no limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

/// One pool of a route's `split`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// `pool = "v2"`
    pub pool: String,
    /// `weight = 10`: its share, against the sum of the split's weights; 0
    /// takes nothing (a canary held back).
    pub weight: u32,
}

/// A route's `mirror`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// `pool = "shadow"`: where the copies go.
    pub pool: String,
    /// `percent = 10`: the share of requests copied, from 0 to 100.
    pub percent: f64,
}

/// One entry of a route's `headers` or `query`: a name and exactly one test.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMatchConfig {
    /// `name = "x-env"`: the header field (any case) or query parameter
    /// (exact case).
    pub name: String,
    /// `present = true`: sent, with any value.
    #[serde(default)]
    pub present: Option<bool>,
    /// `absent = true`: not sent.
    #[serde(default)]
    pub absent: Option<bool>,
    /// `exact = "canary"`: a value equal to this.
    #[serde(default)]
    pub exact: Option<String>,
    /// `regex = "canary-[0-9]+"`: a value matched whole by this regex.
    #[serde(default)]
    pub regex: Option<String>,
}

/// A route's `request_headers` or `response_headers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEditsConfig {
    /// `add = { "x-a" = "1" }`: fields set, replacing any of that name.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// `remove = ["x-b"]`: fields dropped.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A route's `hash_key`: `"client"`, `"path"`, `{ header = "..." }` or
/// `{ cookie = "..." }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum HashKeyConfig {
    /// `"client"` or `"path"` (checked by validation, which names the key).
    Named(String),
    /// `{ header = "x-user" }` or `{ cookie = "session" }`.
    Field(HashKeyField),
}

impl Default for HashKeyConfig {
    fn default() -> Self {
        HashKeyConfig::Named("client".into())
    }
}

/// `{ header = "x-user" }` or `{ cookie = "session" }`: exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashKeyField {
    /// `header = "x-user"`: the first value of this request header.
    #[serde(default)]
    pub header: Option<String>,
    /// `cookie = "session"`: this cookie's value.
    #[serde(default)]
    pub cookie: Option<String>,
}

/// A route's `rate_limit` table: a GCRA limit shared by every worker.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `per_second = 100`: requests a second admitted in the long run, per
    /// key; 1 to 1,000,000. Required.
    pub per_second: u32,
    /// `burst = 20`: requests admitted at once after a quiet spell; at
    /// least 1. Default: `per_second`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// `key = "route"`: what requests are counted by: `route` (one bucket
    /// for the route), `client` (the client's IP address, as the proxy's
    /// socket sees it) or `header:NAME` (that header's value; requests
    /// without it share one bucket).
    #[serde(default)]
    pub key: RateKeyConfig,
    /// `keys = 4096`: buckets of a `client` or `header:` limit, rounded up
    /// to a power of two, 8 bytes each; keys that hash to one bucket share
    /// it, which can only make the limit stricter for them. 1 to 1048576.
    #[serde(default = "default_rate_limit_keys")]
    pub keys: usize,
}

/// A rate limit's `key`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum RateKeyConfig {
    /// `"route"`: one bucket for the route.
    #[default]
    Route,
    /// `"client"`: one per client IP address.
    Client,
    /// `"header:x-api-key"`: one per value of that request header.
    Header(http::HeaderName),
}

impl TryFrom<String> for RateKeyConfig {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "route" => Ok(RateKeyConfig::Route),
            "client" => Ok(RateKeyConfig::Client),
            other => other
                .strip_prefix("header:")
                .and_then(|name| http::HeaderName::from_bytes(name.as_bytes()).ok())
                .map(RateKeyConfig::Header)
                .ok_or_else(|| {
                    format!(
                        "`{other}` is not a rate limit key: `route`, `client` or `header:NAME` with a valid header name"
                    )
                }),
        }
    }
}

/// A priority class in the config: `p0` (critical) to `p4` (background).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriorityClass {
    /// Critical.
    P0,
    /// High.
    P1,
    /// Normal.
    #[default]
    P2,
    /// Low.
    P3,
    /// Background.
    P4,
}

fn default_proxy_listen() -> SocketAddr {
    DEFAULT_PROXY_LISTEN.parse().expect("valid default")
}
fn default_control_listen() -> SocketAddr {
    DEFAULT_CONTROL_LISTEN.parse().expect("valid default")
}
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
fn default_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}
fn default_request_timeout_ms() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_MS
}
fn default_idle_timeout_ms() -> u64 {
    DEFAULT_IDLE_TIMEOUT_MS
}
fn default_shutdown_grace_ms() -> u64 {
    DEFAULT_SHUTDOWN_GRACE_MS
}
fn default_max_header_bytes() -> usize {
    DEFAULT_MAX_HEADER_BYTES
}
fn default_max_header_fields() -> usize {
    DEFAULT_MAX_HEADER_FIELDS
}
fn default_header_read_timeout_ms() -> u64 {
    DEFAULT_HEADER_READ_TIMEOUT_MS
}
fn default_keepalive_timeout_ms() -> u64 {
    DEFAULT_KEEPALIVE_TIMEOUT_MS
}
fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}
fn default_upstream_read_timeout_ms() -> u64 {
    DEFAULT_UPSTREAM_READ_TIMEOUT_MS
}
fn default_client_write_timeout_ms() -> u64 {
    DEFAULT_CLIENT_WRITE_TIMEOUT_MS
}
fn default_plugin_dir() -> PathBuf {
    PathBuf::from(DEFAULT_PLUGIN_DIR)
}
fn default_call_timeout_ms() -> u64 {
    DEFAULT_CALL_TIMEOUT_MS
}
fn default_memory_limit_mib() -> u32 {
    DEFAULT_MEMORY_LIMIT_MIB
}
fn default_quarantine_after() -> u32 {
    DEFAULT_QUARANTINE_AFTER
}
fn default_debounce_ms() -> u64 {
    DEFAULT_DEBOUNCE_MS
}
fn default_max_instances() -> u32 {
    DEFAULT_MAX_INSTANCES
}
fn default_log_line_bytes() -> u32 {
    DEFAULT_LOG_LINE_BYTES
}
fn default_log_lines_per_second() -> u32 {
    DEFAULT_LOG_LINES_PER_SECOND
}

fn default_recycle_at_percent() -> u32 {
    DEFAULT_RECYCLE_AT_PERCENT
}
fn default_store_entries() -> u32 {
    DEFAULT_STORE_ENTRIES
}
fn default_store_name_bytes() -> u32 {
    DEFAULT_STORE_NAME_BYTES
}
fn default_true() -> bool {
    true
}
fn default_queue_len() -> usize {
    1024
}
fn default_p0_wait_ms() -> u64 {
    1000
}
fn default_p1_wait_ms() -> u64 {
    1000
}
fn default_p2_wait_ms() -> u64 {
    500
}
fn default_p3_wait_ms() -> u64 {
    250
}
fn default_p4_wait_ms() -> u64 {
    100
}
fn default_retry_after_s() -> u32 {
    1
}
fn default_reserve_percent() -> u32 {
    10
}
fn default_min_limit() -> u32 {
    4
}
fn default_max_limit() -> u32 {
    1000
}
fn default_initial_limit() -> u32 {
    20
}
fn default_tolerance() -> f64 {
    1.5
}
fn default_smoothing() -> f64 {
    0.2
}
fn default_panic_threshold() -> f64 {
    DEFAULT_PANIC_THRESHOLD
}
fn default_failover_threshold() -> f64 {
    DEFAULT_FAILOVER_THRESHOLD
}
fn default_consecutive_failures() -> u32 {
    DEFAULT_CONSECUTIVE_FAILURES
}
fn default_base_ejection_ms() -> u64 {
    DEFAULT_BASE_EJECTION_MS
}
fn default_max_ejection_ms() -> u64 {
    DEFAULT_MAX_EJECTION_MS
}
fn default_max_ejection_percent() -> u32 {
    DEFAULT_MAX_EJECTION_PERCENT
}
fn default_max_replay_body_bytes() -> u64 {
    DEFAULT_MAX_REPLAY_BODY_BYTES
}
fn default_retry_budget_percent() -> u32 {
    DEFAULT_RETRY_BUDGET_PERCENT
}
fn default_min_retries_per_second() -> u32 {
    DEFAULT_MIN_RETRIES_PER_SECOND
}
fn default_audit_max_bytes() -> u64 {
    DEFAULT_AUDIT_MAX_BYTES
}
fn default_budget_window_ms() -> u64 {
    DEFAULT_BUDGET_WINDOW_MS
}
fn default_connect_failure_hold_ms() -> u64 {
    DEFAULT_CONNECT_FAILURE_HOLD_MS
}
fn default_outlier_interval_ms() -> u64 {
    DEFAULT_OUTLIER_INTERVAL_MS
}
fn default_min_success_rate() -> f64 {
    DEFAULT_MIN_SUCCESS_RATE
}
fn default_min_requests() -> u32 {
    DEFAULT_MIN_REQUESTS
}
fn default_check_interval_ms() -> u64 {
    DEFAULT_CHECK_INTERVAL_MS
}
fn default_check_timeout_ms() -> u64 {
    DEFAULT_CHECK_TIMEOUT_MS
}
fn default_rise() -> u32 {
    DEFAULT_RISE
}
fn default_fall() -> u32 {
    DEFAULT_FALL
}
fn default_rate_limit_keys() -> usize {
    DEFAULT_RATE_LIMIT_KEYS
}
fn default_weight() -> u32 {
    1
}
fn default_discovery_refresh_ms() -> u64 {
    DEFAULT_DISCOVERY_REFRESH_MS
}
fn default_discovery_min_refresh_ms() -> u64 {
    DEFAULT_DISCOVERY_MIN_REFRESH_MS
}

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key path, such as `pools[0].endpoints[1].weight`.
    pub key: String,
    /// The 1-based line of the key in the file, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: `{}`: {}", self.key, self.message),
            None => write!(f, "`{}`: {}", self.key, self.message),
        }
    }
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("config {origin}: {message}")]
    Parse {
        /// The file, or `<inline>`.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The file parsed but its values do not make sense together.
    #[error("config {origin} has {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file, or `<inline>`.
        origin: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

impl Config {
    /// Reads and validates a config file. Relative `plugins.dir` and
    /// `plugins.cache_dir` stay relative to the working directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|error| ConfigError::Parse {
            origin: origin.to_string(),
            message: error.to_string().trim_end().to_string(),
        })?;
        let mut problems = config.problems();
        if problems.is_empty() {
            return Ok(config);
        }
        for problem in &mut problems {
            problem.line = locate::line_of(text, &problem.key);
        }
        Err(ConfigError::Invalid {
            origin: origin.to_string(),
            problems,
        })
    }

    /// Every inconsistency in the config, each with its key path.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut report = |key: String, message: String| {
            problems.push(Problem {
                key,
                line: None,
                message,
            })
        };
        if self.proxy.workers == 0 {
            report("proxy.workers".into(), "must be at least 1".into());
        }
        if let Some(cluster) = &self.cluster {
            cluster.problems(&mut report);
        }
        if self.control.tokens.is_empty() && !self.control.listen.ip().is_loopback() {
            report(
                "control.listen".into(),
                format!(
                    "{} is not a loopback address, and no [[control.tokens]] are set: anyone who reaches it could change the config; add tokens, or listen on 127.0.0.1",
                    self.control.listen
                ),
            );
        }
        let mut token_names = HashSet::new();
        for (index, token) in self.control.tokens.iter().enumerate() {
            let key = format!("control.tokens[{index}]");
            if token.name.is_empty() || !token_names.insert(token.name.as_str()) {
                report(
                    format!("{key}.name"),
                    format!("`{}` is empty or used by another token", token.name),
                );
            }
            if token.sha256.len() != 64 || !token.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                report(
                    format!("{key}.sha256"),
                    "must be the token's SHA-256 as 64 hex digits (printf %s TOKEN | sha256sum)"
                        .into(),
                );
            }
        }
        let mut addresses = vec![("proxy.listen".to_string(), self.proxy.listen)];
        for (index, listener) in self.listeners.iter().enumerate() {
            let key = format!("listeners[{index}]");
            if let Some((other, _)) = addresses
                .iter()
                .find(|(_, seen)| *seen == listener.listen && seen.port() != 0)
            {
                report(
                    format!("{key}.listen"),
                    format!("{} is already {other}", listener.listen),
                );
            }
            addresses.push((format!("{key}.listen"), listener.listen));
            if let Some(tls) = &listener.tls {
                if tls.certificates.is_empty() {
                    report(
                        format!("{key}.tls.certificates"),
                        "needs at least one { cert, key }".into(),
                    );
                }
            }
        }
        if self.proxy.listen == self.control.listen && self.proxy.listen.port() != 0 {
            report(
                "control.listen".into(),
                format!(
                    "is the same address as proxy.listen ({})",
                    self.proxy.listen
                ),
            );
        }
        for (key, value) in [
            ("proxy.connect_timeout_ms", self.proxy.connect_timeout_ms),
            ("proxy.request_timeout_ms", self.proxy.request_timeout_ms),
            (
                "proxy.header_read_timeout_ms",
                self.proxy.header_read_timeout_ms,
            ),
            (
                "proxy.keepalive_timeout_ms",
                self.proxy.keepalive_timeout_ms,
            ),
            (
                "proxy.upstream_read_timeout_ms",
                self.proxy.upstream_read_timeout_ms,
            ),
            (
                "proxy.client_write_timeout_ms",
                self.proxy.client_write_timeout_ms,
            ),
            ("proxy.max_connections", self.proxy.max_connections as u64),
            ("plugins.call_timeout_ms", self.plugins.call_timeout_ms),
        ] {
            if value == 0 {
                report(key.into(), "must be at least 1".into());
            }
        }
        if !(1024..=1024 * 1024).contains(&self.proxy.max_header_bytes) {
            report(
                "proxy.max_header_bytes".into(),
                format!(
                    "must be from 1024 to 1048576, got {}",
                    self.proxy.max_header_bytes
                ),
            );
        }
        if !(8..=1000).contains(&self.proxy.max_header_fields) {
            report(
                "proxy.max_header_fields".into(),
                format!(
                    "must be from 8 to 1000, got {}",
                    self.proxy.max_header_fields
                ),
            );
        }
        if self.plugins.memory_limit_mib < 2 {
            report(
                "plugins.memory_limit_mib".into(),
                "must be at least 2 (a Rust plugin needs about 1.1 MiB to start)".into(),
            );
        }
        let recycle_range = 10..=100;
        if !recycle_range.contains(&self.plugins.recycle_at_percent) {
            report(
                "plugins.recycle_at_percent".into(),
                format!(
                    "must be from 10 to 100 (100: never recycle), got {}",
                    self.plugins.recycle_at_percent
                ),
            );
        }
        for (name, limits) in &self.plugins.limits {
            let key = format!("plugins.limits.{name}");
            if !is_valid_name(name) {
                report(
                    key.clone(),
                    format!("`{name}` is not a plugin name (letters, digits, `-`, `_`; 1 to 64 characters)"),
                );
            }
            if limits.memory_limit_mib.is_some_and(|mib| mib < 2) {
                report(
                    format!("{key}.memory_limit_mib"),
                    "must be at least 2 (a Rust plugin needs about 1.1 MiB to start)".into(),
                );
            }
            if limits.call_timeout_ms == Some(0) {
                report(
                    format!("{key}.call_timeout_ms"),
                    "must be at least 1".into(),
                );
            }
            if let Some(percent) = limits.recycle_at_percent {
                if !recycle_range.contains(&percent) {
                    report(
                        format!("{key}.recycle_at_percent"),
                        format!("must be from 10 to 100 (100: never recycle), got {percent}"),
                    );
                }
            }
        }
        for (name, rollout) in &self.plugins.rollout {
            let key = format!("plugins.rollout.{name}");
            if !is_valid_name(name) {
                report(
                    key.clone(),
                    format!("`{name}` is not a plugin name (letters, digits, `-`, `_`; 1 to 64 characters)"),
                );
            }
            for problem in rollout.problems() {
                report(format!("{key}.{}", problem.0), problem.1);
            }
        }
        if self.plugins.max_instances < 4 {
            report("plugins.max_instances".into(), "must be at least 4".into());
        }
        if !(64..=65_536).contains(&self.plugins.log_line_bytes) {
            report(
                "plugins.log_line_bytes".into(),
                format!(
                    "must be from 64 to 65536, got {}",
                    self.plugins.log_line_bytes
                ),
            );
        }
        if !(16..=1_048_576).contains(&self.plugins.store_entries) {
            report(
                "plugins.store_entries".into(),
                format!(
                    "must be from 16 to 1048576, got {}",
                    self.plugins.store_entries
                ),
            );
        }
        if !(8..=1024).contains(&self.plugins.store_name_bytes) {
            report(
                "plugins.store_name_bytes".into(),
                format!(
                    "must be from 8 to 1024, got {}",
                    self.plugins.store_name_bytes
                ),
            );
        }
        if !(1..=10_000).contains(&self.plugins.log_lines_per_second) {
            report(
                "plugins.log_lines_per_second".into(),
                format!(
                    "must be from 1 to 10000, got {}",
                    self.plugins.log_lines_per_second
                ),
            );
        }
        if self.plugins.quarantine_after == 0 {
            report(
                "plugins.quarantine_after".into(),
                "must be at least 1".into(),
            );
        }

        let mut names = HashSet::new();
        for (index, pool) in self.pools.iter().enumerate() {
            let key = format!("pools[{index}]");
            if !is_valid_name(&pool.name) {
                report(
                    format!("{key}.name"),
                    format!(
                        "`{}` is not a valid name (letters, digits, `-`, `_`; 1 to 64 characters)",
                        pool.name
                    ),
                );
            } else if !names.insert(pool.name.as_str()) {
                report(
                    format!("{key}.name"),
                    format!("pool `{}` is defined twice", pool.name),
                );
            }
            if let Some(balancer) = &pool.balancer {
                if !is_valid_name(&balancer.plugin) {
                    report(
                        format!("{key}.balancer.plugin"),
                        format!(
                            "`{}` is not a plugin name (the file stem of plugins/NAME.wasm)",
                            balancer.plugin
                        ),
                    );
                }
            }
            if let Some(record) = &pool.record {
                if pool.balancer.is_none() {
                    report(
                        format!("{key}.record"),
                        "records a balancer plugin's picks, and the pool has none (`balancer = { plugin = ... }`)".into(),
                    );
                }
                if !(record.percent > 0.0 && record.percent <= 100.0) {
                    report(
                        format!("{key}.record.percent"),
                        format!("must be above 0 and at most 100, got {}", record.percent),
                    );
                }
                if record.max_bytes < 4096 {
                    report(
                        format!("{key}.record.max_bytes"),
                        format!("must be at least 4096, got {}", record.max_bytes),
                    );
                }
            }
            for (name, value) in [
                ("panic_threshold", pool.panic_threshold),
                ("failover_threshold", pool.failover_threshold),
            ] {
                if !(0.0..=1.0).contains(&value) {
                    report(
                        format!("{key}.{name}"),
                        format!("must be from 0 to 1, got {value}"),
                    );
                }
            }
            if pool.max_in_flight == Some(0) {
                report(
                    format!("{key}.max_in_flight"),
                    "must be at least 1 (leave it out for no pool-wide maximum)".into(),
                );
            }
            if pool.queue.reserve_percent > 50 {
                report(
                    format!("{key}.queue.reserve_percent"),
                    format!("must be at most 50, got {}", pool.queue.reserve_percent),
                );
            }
            if let Some(adaptive) = &pool.adaptive_concurrency {
                let key = format!("{key}.adaptive_concurrency");
                if adaptive.min_limit == 0 {
                    report(format!("{key}.min_limit"), "must be at least 1".into());
                }
                if adaptive.max_limit < adaptive.min_limit {
                    report(
                        format!("{key}.max_limit"),
                        format!("must be at least min_limit ({})", adaptive.min_limit),
                    );
                }
                if !(adaptive.min_limit..=adaptive.max_limit).contains(&adaptive.initial_limit) {
                    report(
                        format!("{key}.initial_limit"),
                        format!(
                            "must be from min_limit to max_limit ({} to {}), got {}",
                            adaptive.min_limit, adaptive.max_limit, adaptive.initial_limit
                        ),
                    );
                }
                if !(adaptive.tolerance >= 1.0 && adaptive.tolerance.is_finite()) {
                    report(
                        format!("{key}.tolerance"),
                        format!("must be at least 1, got {}", adaptive.tolerance),
                    );
                }
                if !(adaptive.smoothing > 0.0 && adaptive.smoothing <= 1.0) {
                    report(
                        format!("{key}.smoothing"),
                        format!("must be above 0 and at most 1, got {}", adaptive.smoothing),
                    );
                }
            }
            let outlier = &pool.outlier;
            if outlier.consecutive_failures == 0 {
                report(
                    format!("{key}.outlier.consecutive_failures"),
                    "must be at least 1".into(),
                );
            }
            if outlier.base_ejection_ms == 0 {
                report(
                    format!("{key}.outlier.base_ejection_ms"),
                    "must be at least 1".into(),
                );
            }
            if outlier.max_ejection_ms < outlier.base_ejection_ms {
                report(
                    format!("{key}.outlier.max_ejection_ms"),
                    format!(
                        "must be at least base_ejection_ms ({})",
                        outlier.base_ejection_ms
                    ),
                );
            }
            if !(0.0..=1.0).contains(&outlier.min_success_rate) {
                report(
                    format!("{key}.outlier.min_success_rate"),
                    format!("must be from 0 to 1, got {}", outlier.min_success_rate),
                );
            }
            if outlier.interval_ms < 100 {
                report(
                    format!("{key}.outlier.interval_ms"),
                    "must be at least 100".into(),
                );
            }
            if outlier.max_ejection_percent > 100 {
                report(
                    format!("{key}.outlier.max_ejection_percent"),
                    "must be at most 100".into(),
                );
            }
            if let Some(health) = &pool.health {
                if health.interval_ms < 10 {
                    report(
                        format!("{key}.health.interval_ms"),
                        "must be at least 10".into(),
                    );
                }
                if health.timeout_ms == 0 {
                    report(
                        format!("{key}.health.timeout_ms"),
                        "must be at least 1".into(),
                    );
                } else if health.timeout_ms > health.interval_ms {
                    report(
                        format!("{key}.health.timeout_ms"),
                        format!("must not exceed interval_ms ({})", health.interval_ms),
                    );
                }
                for (name, value) in [("rise", health.rise), ("fall", health.fall)] {
                    if value == 0 {
                        report(format!("{key}.health.{name}"), "must be at least 1".into());
                    }
                }
                if let Some(plugin) = &health.plugin {
                    if !is_valid_name(plugin) {
                        report(
                            format!("{key}.health.plugin"),
                            format!("`{plugin}` is not a plugin name (the file stem of plugins/NAME.wasm)"),
                        );
                    }
                }
            }
            if let Some(recovery) = &pool.recovery {
                recovery_problems(recovery, &format!("{key}.recovery"), &mut report);
            }
            if pool.protocol == UpstreamProtocolConfig::H2c && pool.tls.is_some() {
                report(
                    format!("{key}.protocol"),
                    "`h2c` is HTTP/2 without TLS, but the pool has a `tls` table; use `h2`".into(),
                );
            }
            if let Some(name) = pool.tls.as_ref().and_then(|t| t.server_name.as_deref()) {
                if rustls_pki_types::ServerName::try_from(name).is_err() {
                    report(
                        format!("{key}.tls.server_name"),
                        format!("`{name}` is not a DNS name or IP address"),
                    );
                }
            }
            if let Some(discovery) = &pool.discovery {
                discovery_problems(discovery, &format!("{key}.discovery"), &mut report);
            }
            let mut addresses = HashSet::new();
            for (e, endpoint) in pool.endpoints.iter().enumerate() {
                let key = format!("{key}.endpoints[{e}]");
                if let Err(why) = check_address(&endpoint.address) {
                    report(format!("{key}.address"), why);
                } else if !addresses.insert(endpoint.address.as_str()) {
                    report(
                        format!("{key}.address"),
                        format!("`{}` is listed twice in this pool", endpoint.address),
                    );
                }
                if endpoint.weight == 0 {
                    report(format!("{key}.weight"), "must be at least 1".into());
                }
            }
        }
        let needed = self.plugin_instances_needed(|_| false);
        if needed > u64::from(self.plugins.max_instances) {
            report(
                "plugins.max_instances".into(),
                too_few_instances(self.plugins.max_instances, needed, &[]),
            );
        }
        if self.routes.is_empty() && self.pools.len() > 1 {
            report(
                "routes".into(),
                format!(
                    "with {} pools, [[routes]] must say which requests go where",
                    self.pools.len()
                ),
            );
        }
        let mut route_names = HashSet::new();
        for (index, route) in self.routes.iter().enumerate() {
            let key = format!("routes[{index}]");
            match (route.pool.is_empty(), route.split.is_empty()) {
                (true, true) => report(
                    format!("{key}.pool"),
                    "a route needs `pool` or `split`".into(),
                ),
                (false, false) => report(
                    format!("{key}.split"),
                    "give `pool` or `split`, not both".into(),
                ),
                _ => {}
            }
            if !route.pool.is_empty() && !names.contains(route.pool.as_str()) {
                report(
                    format!("{key}.pool"),
                    format!("no pool is named `{}`", route.pool),
                );
            }
            for (at, target) in route.split.iter().enumerate() {
                if !names.contains(target.pool.as_str()) {
                    report(
                        format!("{key}.split[{at}].pool"),
                        format!("no pool is named `{}`", target.pool),
                    );
                }
            }
            if !route.split.is_empty() && route.split.iter().all(|t| t.weight == 0) {
                report(
                    format!("{key}.split"),
                    "the weights add up to 0: no pool would take a request".into(),
                );
            }
            if let Some(mirror) = &route.mirror {
                if !names.contains(mirror.pool.as_str()) {
                    report(
                        format!("{key}.mirror.pool"),
                        format!("no pool is named `{}`", mirror.pool),
                    );
                }
                if !(0.0..=100.0).contains(&mirror.percent) {
                    report(
                        format!("{key}.mirror.percent"),
                        format!("must be from 0 to 100, got {}", mirror.percent),
                    );
                }
            }
            if let Some(name) = &route.name {
                if !is_valid_name(name) {
                    report(
                        format!("{key}.name"),
                        format!(
                            "`{name}` is not a valid name (letters, digits, `-`, `_`; 1 to 64 characters)"
                        ),
                    );
                } else if !route_names.insert(name.as_str()) {
                    report(
                        format!("{key}.name"),
                        format!("route `{name}` is named twice"),
                    );
                }
            }
            if let Some(header) = &route.priority_header {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    report(
                        format!("{key}.priority_header"),
                        format!("`{header}` is not a valid header name"),
                    );
                }
            }
            if let Some(limit) = &route.rate_limit {
                if !(1..=MAX_RATE_PER_SECOND).contains(&limit.per_second) {
                    report(
                        format!("{key}.rate_limit.per_second"),
                        format!(
                            "must be from 1 to {MAX_RATE_PER_SECOND}, got {}",
                            limit.per_second
                        ),
                    );
                }
                if limit.burst == Some(0) {
                    report(
                        format!("{key}.rate_limit.burst"),
                        "must be at least 1".into(),
                    );
                }
                if !(1..=MAX_RATE_LIMIT_KEYS).contains(&limit.keys) {
                    report(
                        format!("{key}.rate_limit.keys"),
                        format!(
                            "must be from 1 to {MAX_RATE_LIMIT_KEYS}, got {}",
                            limit.keys
                        ),
                    );
                }
            }
            if let Some(recovery) = &route.recovery {
                if route.broadcast {
                    report(
                        format!("{key}.recovery"),
                        "a broadcast gives each endpoint one attempt and asks no recovery policy: it takes no `recovery`".into(),
                    );
                }
                if !route.retries {
                    report(
                        format!("{key}.recovery"),
                        "a route with `retries = false` gives each request one attempt: it takes no `recovery` (remove one of them)".into(),
                    );
                }
                recovery_problems(recovery, &format!("{key}.recovery"), &mut report);
            }
            route_problems(route, &key, &mut report);
            // The body is held whole once for every endpoint it goes to.
            if route.broadcast && route.max_body_bytes.unwrap_or(self.proxy.max_body_bytes) == 0 {
                report(
                    format!("{key}.broadcast"),
                    "a broadcast reads the request body whole: give the route a `max_body_bytes` above 0 (0, any size, is the default from proxy.max_body_bytes)".into(),
                );
            }
            if route.broadcast && (!route.split.is_empty() || route.mirror.is_some()) {
                report(
                    format!("{key}.broadcast"),
                    "a broadcast goes to every endpoint of the route's `pool`: it takes no `split` or `mirror`".into(),
                );
            }
        }
        problems
    }
}

/// A route's regex as it is matched: whole, never a part.
pub fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

/// The first line a regex error gives that says what is wrong.
fn regex_error(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .find_map(|line| line.strip_prefix("error: "))
        .unwrap_or(text.lines().last().unwrap_or(""))
        .to_string()
}

/// The methods of RFC 9110 and PATCH, which a route names in upper case.
const STANDARD_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Header fields a route may not edit: those that frame the message or
/// stop at this hop, which the proxy writes itself.
const FIELDS_NOT_EDITED: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The problems of a pool's or a route's `recovery` table at `key`.
fn recovery_problems(
    recovery: &RecoveryConfig,
    key: &str,
    report: &mut impl FnMut(String, String),
) {
    if let Some(plugin) = &recovery.plugin {
        if !is_valid_name(plugin) {
            report(
                format!("{key}.plugin"),
                format!("`{plugin}` is not a plugin name (the file stem of plugins/NAME.wasm)"),
            );
        }
    }
    if recovery.budget_percent > 100 {
        report(
            format!("{key}.budget_percent"),
            "must be at most 100".into(),
        );
    }
    if !(100..=600_000).contains(&recovery.budget_window_ms) {
        report(
            format!("{key}.budget_window_ms"),
            format!(
                "must be from 100 to 600000 (ten minutes), got {}",
                recovery.budget_window_ms
            ),
        );
    }
}

/// The problems of one route other than its pool and priority header.
fn route_problems(route: &RouteConfig, key: &str, report: &mut impl FnMut(String, String)) {
    if let Some(host) = &route.host {
        let name = host.strip_prefix("*.").unwrap_or(host);
        let bad = |c: char| c == '*' || c == ':' || c == '/' || c.is_whitespace();
        if name.is_empty() || name.contains(bad) || name.starts_with('.') {
            report(
                format!("{key}.host"),
                format!("`{host}` must be a host name without port, or `*.` and a domain"),
            );
        }
    }
    let paths: Vec<&str> = [
        ("path_prefix", route.path_prefix.is_some()),
        ("path", route.path.is_some()),
        ("path_regex", route.path_regex.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    if paths.len() > 1 {
        report(
            format!("{key}.{}", paths[1]),
            format!(
                "give at most one of `path_prefix`, `path` and `path_regex` (this route has `{}`)",
                paths.join("`, `")
            ),
        );
    }
    for (name, value) in [("path_prefix", &route.path_prefix), ("path", &route.path)] {
        if let Some(value) = value {
            if !value.starts_with('/') {
                report(
                    format!("{key}.{name}"),
                    format!("`{value}` must start with `/`"),
                );
            }
        }
    }
    if let Some(pattern) = &route.path_regex {
        if let Err(error) = regex::Regex::new(&anchored(pattern)) {
            report(
                format!("{key}.path_regex"),
                format!("`{pattern}` is not a valid regex: {}", regex_error(&error)),
            );
        }
    }
    if let Some(methods) = &route.methods {
        if methods.is_empty() {
            report(
                format!("{key}.methods"),
                "must name at least one method (leave it out for any)".into(),
            );
        }
        for (index, method) in methods.iter().enumerate() {
            let upper = method.to_ascii_uppercase();
            if http::Method::from_bytes(method.as_bytes()).is_err() {
                report(
                    format!("{key}.methods[{index}]"),
                    format!("`{method}` is not a method"),
                );
            } else if upper != *method && STANDARD_METHODS.contains(&upper.as_str()) {
                // Methods are case-sensitive: `get` would never match a GET.
                report(
                    format!("{key}.methods[{index}]"),
                    format!("methods are case-sensitive: write `{upper}`"),
                );
            }
        }
    }
    for (list, fields) in [("headers", &route.headers), ("query", &route.query)] {
        for (index, field) in fields.iter().enumerate() {
            let key = format!("{key}.{list}[{index}]");
            let valid_name = if list == "headers" {
                http::HeaderName::from_bytes(field.name.as_bytes()).is_ok()
            } else {
                !field.name.is_empty() && !field.name.contains(['&', '='])
            };
            if !valid_name {
                report(
                    format!("{key}.name"),
                    format!("`{}` is not a valid name", field.name),
                );
            }
            let tests = [
                field.present.is_some(),
                field.absent.is_some(),
                field.exact.is_some(),
                field.regex.is_some(),
            ];
            if tests.iter().filter(|given| **given).count() != 1 {
                report(
                    key.clone(),
                    "give exactly one of `present = true`, `absent = true`, `exact` and `regex`"
                        .into(),
                );
            }
            for (test, value) in [("present", field.present), ("absent", field.absent)] {
                if value == Some(false) {
                    report(
                        format!("{key}.{test}"),
                        "can only be `true` (leave it out, or use the other of `present` and `absent`)"
                            .into(),
                    );
                }
            }
            if let Some(pattern) = &field.regex {
                if let Err(error) = regex::bytes::Regex::new(&anchored(pattern)) {
                    report(
                        format!("{key}.regex"),
                        format!("`{pattern}` is not a valid regex: {}", regex_error(&error)),
                    );
                }
            }
        }
    }
    for (table, edits) in [
        ("request_headers", &route.request_headers),
        ("response_headers", &route.response_headers),
    ] {
        let names = edits
            .add
            .keys()
            .map(|name| (format!("{key}.{table}.add.{name}"), name))
            .chain(
                edits
                    .remove
                    .iter()
                    .enumerate()
                    .map(|(index, name)| (format!("{key}.{table}.remove[{index}]"), name)),
            );
        for (field_key, name) in names {
            match http::HeaderName::from_bytes(name.as_bytes()) {
                Err(_) => report(field_key, format!("`{name}` is not a valid header name")),
                Ok(parsed) if FIELDS_NOT_EDITED.contains(&parsed.as_str()) => report(
                    field_key,
                    format!(
                        "`{name}` frames the message or stops at this hop: the proxy writes it"
                    ),
                ),
                Ok(_) => {}
            }
        }
        for (name, value) in &edits.add {
            if http::HeaderValue::from_str(value).is_err() {
                report(
                    format!("{key}.{table}.add.{name}"),
                    format!("`{value}` is not a valid header value"),
                );
            }
        }
    }
    if route.strip_prefix || route.rewrite_prefix.is_some() {
        let which = if route.strip_prefix {
            "strip_prefix"
        } else {
            "rewrite_prefix"
        };
        if route.path_prefix.is_none() {
            report(
                format!("{key}.{which}"),
                "needs the route's `path_prefix`: it rewrites the prefix matched".into(),
            );
        }
        if route.strip_prefix && route.rewrite_prefix.is_some() {
            report(
                format!("{key}.rewrite_prefix"),
                "give `strip_prefix` or `rewrite_prefix`, not both".into(),
            );
        }
    }
    if let Some(to) = &route.rewrite_prefix {
        let is_path = to.starts_with('/')
            && !to.contains(['?', '#'])
            && to.parse::<http::uri::PathAndQuery>().is_ok();
        if !is_path {
            report(
                format!("{key}.rewrite_prefix"),
                format!("`{to}` must be a path starting with `/`"),
            );
        }
    }
    match &route.hash_key {
        None => {}
        Some(HashKeyConfig::Named(name)) if name == "client" || name == "path" => {}
        Some(HashKeyConfig::Named(name)) => report(
            format!("{key}.hash_key"),
            format!("`{name}` is not `client`, `path`, `{{ header = \"...\" }}` or `{{ cookie = \"...\" }}`"),
        ),
        Some(HashKeyConfig::Field(field)) => match (&field.header, &field.cookie) {
            (Some(header), None) => {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    report(
                        format!("{key}.hash_key.header"),
                        format!("`{header}` is not a valid header name"),
                    );
                }
            }
            (None, Some(cookie)) => {
                if cookie.is_empty() || cookie.contains([';', '=', ' ']) {
                    report(
                        format!("{key}.hash_key.cookie"),
                        format!("`{cookie}` is not a valid cookie name"),
                    );
                }
            }
            _ => report(
                format!("{key}.hash_key"),
                "give exactly one of `header` and `cookie`".into(),
            ),
        },
    }
    if route.request_timeout_ms == Some(0) {
        report(
            format!("{key}.request_timeout_ms"),
            "must be at least 1".into(),
        );
    }
}

/// Instances a health plugin built against contract 0.2 has at most,
/// shared by every pool that uses it: as many of its checks run at once.
pub const HEALTH_PLUGIN_INSTANCES: u32 = 8;

impl Config {
    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The plugin instances this config can have live at once. A plugin
    /// built against contract 0.2 serves many pools from one instance: one
    /// per proxy worker for a balancer or recovery plugin,
    /// `HEALTH_PLUGIN_INSTANCES` for a health plugin, and one more to check
    /// new files and pools against. A plugin for which `per_pool` says so
    /// (contract 0.1) has one instance per pool instead: per worker for a
    /// balancer or recovery plugin. A route's recovery plugin counts as one
    /// more pool using it.
    pub fn plugin_instances_needed(&self, per_pool: impl Fn(&str) -> bool) -> u64 {
        let mut uses: BTreeMap<(&str, bool), u64> = BTreeMap::new();
        for pool in &self.pools {
            if let Some(balancer) = &pool.balancer {
                *uses.entry((&balancer.plugin, false)).or_default() += 1;
            }
            if let Some(plugin) = pool.recovery.as_ref().and_then(|r| r.plugin.as_deref()) {
                *uses.entry((plugin, false)).or_default() += 1;
            }
            if let Some(plugin) = pool.health.as_ref().and_then(|h| h.plugin.as_deref()) {
                *uses.entry((plugin, true)).or_default() += 1;
            }
        }
        // A route's recovery plugin is one more user, as a pool's is.
        for route in &self.routes {
            if let Some(plugin) = route.recovery.as_ref().and_then(|r| r.plugin.as_deref()) {
                *uses.entry((plugin, false)).or_default() += 1;
            }
        }
        instances_needed(
            self.proxy.workers as u32,
            uses.into_iter()
                .map(|((name, checks), pools)| (name, checks, pools)),
            per_pool,
        )
    }
}

/// The plugin instances needed by `uses`: each a plugin name, whether it is
/// a health check, and how many pools use it so (see
/// [`Config::plugin_instances_needed`]).
pub fn instances_needed<'a>(
    workers: u32,
    uses: impl IntoIterator<Item = (&'a str, bool, u64)>,
    per_pool: impl Fn(&str) -> bool,
) -> u64 {
    let workers = u64::from(workers);
    uses.into_iter()
        .map(|(name, checks, pools)| match (checks, per_pool(name)) {
            (false, true) => pools * workers + 1,
            (false, false) => workers + 1,
            (true, true) => pools + 1,
            (true, false) => u64::from(HEALTH_PLUGIN_INSTANCES) + 1,
        })
        .sum()
}

/// Why `max_instances` is too few for a config that needs `needed`
/// instances; `per_pool` names the plugins that take one per pool.
pub fn too_few_instances(max_instances: u32, needed: u64, per_pool: &[String]) -> String {
    let mut message = format!(
        "{max_instances} is too few for this config, which can use up to {needed} plugin \
         instances (one per worker for each balancer and recovery plugin, \
         {HEALTH_PLUGIN_INSTANCES} for each health plugin, one per plugin to check new files \
         and pools"
    );
    if !per_pool.is_empty() {
        message.push_str(&format!(
            "; {} built against contract 0.1, which takes one instance per pool \
             (per worker for a balancer or recovery plugin): rebuilding with \
             `switchyard plugin build` makes one instance serve every pool",
            per_pool.join(", ")
        ));
    }
    message.push_str(&format!("); raise it to at least {needed}"));
    message
}

/// The plugins a pool names, each with the config key that names it.
pub fn plugin_names(pool: &PoolConfig) -> Vec<(&'static str, &str)> {
    let mut names = Vec::new();
    if let Some(balancer) = &pool.balancer {
        names.push(("balancer.plugin", balancer.plugin.as_str()));
    }
    if let Some(plugin) = pool.health.as_ref().and_then(|h| h.plugin.as_deref()) {
        names.push(("health.plugin", plugin));
    }
    if let Some(plugin) = pool.recovery.as_ref().and_then(|r| r.plugin.as_deref()) {
        names.push(("recovery.plugin", plugin));
    }
    names
}

impl Config {
    /// Every plugin the config names, each with the key that names it
    /// (`pools[0].balancer.plugin`, `routes[3].recovery.plugin`).
    pub fn plugin_keys(&self) -> Vec<(String, &str)> {
        let pools = self.pools.iter().enumerate().flat_map(|(index, pool)| {
            plugin_names(pool)
                .into_iter()
                .map(move |(key, name)| (format!("pools[{index}].{key}"), name))
        });
        let routes = self.routes.iter().enumerate().filter_map(|(index, route)| {
            let plugin = route.recovery.as_ref()?.plugin.as_deref()?;
            Some((format!("routes[{index}].recovery.plugin"), plugin))
        });
        pools.chain(routes).collect()
    }
}

/// Pool and plugin names: what is safe as a file stem, a metric label and a
/// URL segment.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The problems of a pool's `discovery` table at `key`.
fn discovery_problems(
    discovery: &DiscoveryConfig,
    key: &str,
    report: &mut impl FnMut(String, String),
) {
    let dns = discovery.dns.as_str();
    match discovery.record {
        DnsRecordType::A | DnsRecordType::Aaaa => match check_address(dns) {
            Err(why) => report(format!("{key}.dns"), format!("{why}: an `a` or `aaaa` name needs the port of its endpoints, as in `api.internal:8080`")),
            Ok(()) => {
                let host = dns.rsplit_once(':').map_or(dns, |(host, _)| host);
                if let Err(why) = check_dns_name(host) {
                    report(format!("{key}.dns"), why);
                }
            }
        },
        DnsRecordType::Srv => {
            if dns.contains(':') {
                report(format!("{key}.dns"), format!("`{dns}`: an `srv` name takes no port (its records give each target's), as in `_http._tcp.api.internal`"));
            } else if let Err(why) = check_dns_name(dns) {
                report(format!("{key}.dns"), why);
            }
        }
    }
    if !(MIN_DISCOVERY_REFRESH_MS..=MAX_DISCOVERY_REFRESH_MS).contains(&discovery.refresh_ms) {
        report(
            format!("{key}.refresh_ms"),
            format!(
                "must be from {MIN_DISCOVERY_REFRESH_MS} to {MAX_DISCOVERY_REFRESH_MS}, got {}",
                discovery.refresh_ms
            ),
        );
    }
    if discovery.min_refresh_ms < MIN_DISCOVERY_REFRESH_MS
        || discovery.min_refresh_ms > discovery.refresh_ms
    {
        report(
            format!("{key}.min_refresh_ms"),
            format!(
                "must be from {MIN_DISCOVERY_REFRESH_MS} to refresh_ms ({}), got {}",
                discovery.refresh_ms, discovery.min_refresh_ms
            ),
        );
    }
    for (index, resolver) in discovery.resolvers.iter().enumerate() {
        if resolver.parse::<std::net::SocketAddr>().is_err() {
            report(
                format!("{key}.resolvers[{index}]"),
                format!("`{resolver}` is not an IP address and port, as in `10.0.0.2:53`"),
            );
        }
    }
}

/// Whether `name` can be asked of DNS: dot-separated labels of letters,
/// digits, `-` and `_`, each 1 to 63 bytes, 253 bytes in all.
fn check_dns_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let fine = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if fine {
        Ok(())
    } else {
        Err(format!("`{name}` is not a DNS name"))
    }
}

fn check_address(address: &str) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("`{address}` is not `host:port`"));
    };
    if host.is_empty() {
        return Err(format!("`{address}` has no host"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{address}` has no valid port (1-65535)")),
        Ok(_) => Ok(()),
    }
}

pub mod edit;
pub mod store;

#[cfg(test)]
mod tests;
