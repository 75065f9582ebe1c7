//! Process-wide counters and their Prometheus text exposition.
//!
//! The exposition is written here rather than with a metrics crate: every
//! figure already lives in an atomic owned by the engine or the plugin
//! runtime, and the text format (version 0.0.4) is a few lines per family.

mod admission;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use http::StatusCode;

use crate::engine::{Source, Topology};
use crate::plugins::PluginRuntime;

/// Why the proxy answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// No route matched.
    NoRoute,
    /// The pool had no eligible endpoint.
    NoEndpoint,
    /// The request target could not be forwarded.
    BadRequest,
    /// The endpoint could not be connected to.
    Connect,
    /// The endpoint's connection failed mid-request.
    Upstream,
    /// The endpoint did not answer in time.
    Timeout,
    /// The pool had no room within the request's class's wait, or its
    /// queue was full.
    Shed,
    /// A broadcast reached some endpoint that did not answer 2xx.
    Broadcast,
    /// The route's rate limit refused the request.
    RateLimited,
}

impl ProxyError {
    const ALL: [ProxyError; 9] = [
        ProxyError::NoRoute,
        ProxyError::NoEndpoint,
        ProxyError::BadRequest,
        ProxyError::Connect,
        ProxyError::Upstream,
        ProxyError::Timeout,
        ProxyError::Shed,
        ProxyError::Broadcast,
        ProxyError::RateLimited,
    ];

    /// The status the client gets.
    pub fn status(self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoEndpoint | ProxyError::Shed => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BadRequest => StatusCode::BAD_REQUEST,
            ProxyError::Connect | ProxyError::Upstream | ProxyError::Broadcast => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// A short stable name, for the `x-switchyard-error` header and metrics.
    pub fn code(self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no_route",
            ProxyError::NoEndpoint => "no_endpoint",
            ProxyError::BadRequest => "bad_request",
            ProxyError::Connect => "connect",
            ProxyError::Upstream => "upstream",
            ProxyError::Timeout => "timeout",
            ProxyError::Shed => "shed",
            ProxyError::Broadcast => "broadcast",
            ProxyError::RateLimited => "rate_limited",
        }
    }
}

/// A limit a client or endpoint ran into, for `switchyard_limit_hits_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A request head over `proxy.max_header_bytes` (431).
    HeaderBytes,
    /// More header fields than `proxy.max_header_fields` (431).
    HeaderFields,
    /// A request head not finished within `proxy.header_read_timeout_ms` (408).
    HeaderTimeout,
    /// A connection idle past `proxy.keepalive_timeout_ms`, closed.
    KeepaliveTimeout,
    /// A request body over the route's `max_body_bytes` (413).
    BodyBytes,
    /// A connection that waited because `proxy.max_connections` were open.
    Connections,
    /// An endpoint that sent nothing of a body for `proxy.upstream_read_timeout_ms`.
    UpstreamStall,
    /// A client that took nothing for `proxy.client_write_timeout_ms`.
    ClientStall,
}

impl Limit {
    const ALL: [Limit; 8] = [
        Limit::HeaderBytes,
        Limit::HeaderFields,
        Limit::HeaderTimeout,
        Limit::KeepaliveTimeout,
        Limit::BodyBytes,
        Limit::Connections,
        Limit::UpstreamStall,
        Limit::ClientStall,
    ];

    /// The `limit` label.
    pub fn label(self) -> &'static str {
        match self {
            Limit::HeaderBytes => "header_bytes",
            Limit::HeaderFields => "header_fields",
            Limit::HeaderTimeout => "header_timeout",
            Limit::KeepaliveTimeout => "keepalive_timeout",
            Limit::BodyBytes => "body_bytes",
            Limit::Connections => "connections",
            Limit::UpstreamStall => "upstream_stall",
            Limit::ClientStall => "client_stall",
        }
    }
}

/// Why a request was refused as malformed (400) before anything of it was
/// forwarded, for `switchyard_malformed_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The head does not parse: bad method token, bare CR, NUL, obs-fold…
    Head,
    /// An HTTP/1.1 request without `Host`.
    HostMissing,
    /// More than one `Host`.
    HostRepeated,
    /// Both `Content-Length` and `Transfer-Encoding`.
    LengthAndChunked,
    /// A `Content-Length` that is not one number.
    BadLength,
    /// A `Transfer-Encoding` whose last coding is not `chunked`, or one on HTTP/1.0.
    BadTransferCoding,
    /// A chunked body whose first chunk-size line is malformed.
    BadChunk,
    /// A body that broke off or turned malformed after its head was
    /// forwarded (the endpoint's exchange is abandoned).
    BrokenBody,
}

impl Malformed {
    const ALL: [Malformed; 8] = [
        Malformed::Head,
        Malformed::HostMissing,
        Malformed::HostRepeated,
        Malformed::LengthAndChunked,
        Malformed::BadLength,
        Malformed::BadTransferCoding,
        Malformed::BadChunk,
        Malformed::BrokenBody,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Malformed::Head => "malformed_head",
            Malformed::HostMissing => "host_missing",
            Malformed::HostRepeated => "host_repeated",
            Malformed::LengthAndChunked => "length_and_chunked",
            Malformed::BadLength => "bad_content_length",
            Malformed::BadTransferCoding => "bad_transfer_coding",
            Malformed::BadChunk => "bad_chunk",
            Malformed::BrokenBody => "broken_body",
        }
    }
}

/// Counters of the proxy as a whole, kept per proxy worker so that workers
/// never write to a shared cache line; readers sum the shards.
#[derive(Debug)]
pub struct Metrics {
    shards: Box<[WorkerCounters]>,
}

/// One proxy worker's counters.
#[derive(Debug, Default)]
// A cache line apart (two, for the adjacent-line prefetcher).
#[repr(align(128))]
pub struct WorkerCounters {
    requests: AtomicU64,
    fast_path: AtomicU64,
    retries: AtomicU64,
    cuts: AtomicU64,
    status_classes: [AtomicU64; 6],
    errors: [AtomicU64; ProxyError::ALL.len()],
    limits: [AtomicU64; 8],
    malformed: [AtomicU64; 8],
    /// Full, resumed and failed TLS handshakes.
    tls_handshakes: [AtomicU64; 3],
    /// Upgrades the endpoint accepted (WebSocket and the like).
    tunnels: AtomicU64,
    /// Requests routed, by priority class (P0 first).
    classes: [AtomicU64; 5],
}

/// How a TLS handshake ended, for `switchyard_tls_handshakes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// A new session.
    Full,
    /// A session resumed from the cache or a ticket.
    Resumed,
    /// Failed or timed out.
    Failed,
}

impl Handshake {
    const ALL: [Handshake; 3] = [Handshake::Full, Handshake::Resumed, Handshake::Failed];

    fn label(self) -> &'static str {
        match self {
            Handshake::Full => "full",
            Handshake::Resumed => "resumed",
            Handshake::Failed => "failed",
        }
    }
}

impl WorkerCounters {
    /// Counts an accepted request.
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a routed request in its priority class.
    pub fn count_class(&self, class: crate::engine::Priority) {
        self.classes[class as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request forwarded on the HTTP/1 fast path.
    pub fn count_fast_path(&self) {
        self.fast_path.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a retried attempt.
    pub fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response the endpoint cut off mid-body.
    pub fn count_cut(&self) {
        self.cuts.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response by status class.
    pub fn count_status(&self, status: StatusCode) {
        let class = (status.as_u16() / 100).min(5) as usize;
        self.status_classes[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a limit reached.
    pub fn count_limit(&self, limit: Limit) {
        let index = Limit::ALL.iter().position(|l| *l == limit).unwrap_or(0);
        self.limits[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an upgraded connection tunnelled to an endpoint.
    pub fn count_tunnel(&self) {
        self.tunnels.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a TLS handshake.
    pub fn count_handshake(&self, handshake: Handshake) {
        self.tls_handshakes[handshake as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request refused as malformed.
    pub fn count_malformed(&self, reason: Malformed) {
        let index = Malformed::ALL
            .iter()
            .position(|m| *m == reason)
            .unwrap_or(0);
        self.malformed[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response the proxy made itself.
    pub fn count_error(&self, kind: ProxyError) {
        let index = ProxyError::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.errors[index].fetch_add(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Counters for `workers` proxy workers.
    pub fn new(workers: usize) -> Self {
        Metrics {
            shards: (0..workers.max(1))
                .map(|_| WorkerCounters::default())
                .collect(),
        }
    }

    /// The counters of worker `index` (wrapping, so any index is valid).
    pub fn worker(&self, index: usize) -> &WorkerCounters {
        &self.shards[index % self.shards.len()]
    }

    fn sum(&self, field: impl Fn(&WorkerCounters) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|shard| field(shard).load(Ordering::Relaxed))
            .sum()
    }

    /// Retried attempts since start.
    pub fn retries(&self) -> u64 {
        self.sum(|shard| &shard.retries)
    }

    /// Responses endpoints cut off mid-body since start.
    pub fn cuts(&self) -> u64 {
        self.sum(|shard| &shard.cuts)
    }

    /// Requests accepted since start.
    pub fn requests(&self) -> u64 {
        self.sum(|shard| &shard.requests)
    }

    /// Requests forwarded on the HTTP/1 fast path since start.
    pub fn fast_path(&self) -> u64 {
        self.sum(|shard| &shard.fast_path)
    }

    fn responses(&self, class: usize) -> u64 {
        self.sum(|shard| &shard.status_classes[class])
    }

    fn errors(&self, index: usize) -> u64 {
        self.sum(|shard| &shard.errors[index])
    }

    /// Times `limit` was reached since start.
    pub fn limit_hits(&self, limit: Limit) -> u64 {
        let index = Limit::ALL.iter().position(|l| *l == limit).unwrap_or(0);
        self.sum(|shard| &shard.limits[index])
    }

    /// Upgraded connections tunnelled since start.
    pub fn tunnels(&self) -> u64 {
        self.sum(|shard| &shard.tunnels)
    }

    /// Requests routed in priority class `class` since start.
    pub fn class_requests(&self, class: crate::engine::Priority) -> u64 {
        self.sum(|shard| &shard.classes[class as usize])
    }

    /// TLS handshakes that ended as `handshake` since start.
    pub fn handshakes(&self, handshake: Handshake) -> u64 {
        self.sum(|shard| &shard.tls_handshakes[handshake as usize])
    }

    /// Requests refused as malformed for `reason` since start.
    pub fn malformed(&self, reason: Malformed) -> u64 {
        let index = Malformed::ALL
            .iter()
            .position(|m| *m == reason)
            .unwrap_or(0);
        self.sum(|shard| &shard.malformed[index])
    }
}

/// Lines the host's log writer dropped, set by the binary when it installs
/// its non-blocking writer (none in tests that log nowhere).
static LOG_DROPS: std::sync::OnceLock<tracing_appender::non_blocking::ErrorCounter> =
    std::sync::OnceLock::new();

/// Counts the log lines the host's writer drops: the log is written off
/// the request path by a thread of its own, and lines beyond its buffer are
/// dropped rather than wait.
pub fn count_log_drops(counter: tracing_appender::non_blocking::ErrorCounter) {
    let _ = LOG_DROPS.set(counter);
}

/// Renders every metric in the Prometheus text format.
///
/// Cardinality: about 40 proxy-wide series, one per pool, about 30 per
/// plugin (eight counters and gauges, a histogram of 19 buckets),
/// and six per endpoint when `per_endpoint` (`control.per_endpoint_metrics`).
pub fn render(
    metrics: &Metrics,
    topology: &Topology,
    runtime: &PluginRuntime,
    per_endpoint: bool,
) -> String {
    let pools = &topology.pools;
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "switchyard_requests_total",
        "counter",
        "Requests accepted by the proxy.",
    );
    let _ = writeln!(out, "switchyard_requests_total {}", metrics.requests());

    family(
        &mut out,
        "switchyard_fast_path_requests_total",
        "counter",
        "Requests forwarded on the HTTP/1 fast path (the rest went through hyper).",
    );
    let _ = writeln!(
        out,
        "switchyard_fast_path_requests_total {}",
        metrics.fast_path()
    );

    family(
        &mut out,
        "switchyard_retries_total",
        "counter",
        "Attempts sent again after a failure.",
    );
    let _ = writeln!(out, "switchyard_retries_total {}", metrics.retries());

    family(
        &mut out,
        "switchyard_log_lines_dropped_total",
        "counter",
        "Log lines dropped because the log writer's buffer was full.",
    );
    let _ = writeln!(
        out,
        "switchyard_log_lines_dropped_total {}",
        LOG_DROPS.get().map_or(0, |drops| drops.dropped_lines())
    );

    family(
        &mut out,
        "switchyard_upstream_cut_responses_total",
        "counter",
        "Responses an endpoint cut off mid-body, after their head had reached the client (no retry can save them).",
    );
    let _ = writeln!(
        out,
        "switchyard_upstream_cut_responses_total {}",
        metrics.cuts()
    );

    family(
        &mut out,
        "switchyard_responses_total",
        "counter",
        "Responses sent, by status class.",
    );
    for class in 1..6 {
        let _ = writeln!(
            out,
            "switchyard_responses_total{{class=\"{class}xx\"}} {}",
            metrics.responses(class)
        );
    }

    family(
        &mut out,
        "switchyard_proxy_errors_total",
        "counter",
        "Responses the proxy made itself, by cause.",
    );
    for (index, kind) in ProxyError::ALL.iter().enumerate() {
        let _ = writeln!(
            out,
            "switchyard_proxy_errors_total{{cause=\"{}\"}} {}",
            kind.code(),
            metrics.errors(index)
        );
    }

    family(
        &mut out,
        "switchyard_limit_hits_total",
        "counter",
        "Times a client or endpoint ran into one of the proxy's limits.",
    );
    for limit in Limit::ALL {
        let _ = writeln!(
            out,
            "switchyard_limit_hits_total{{limit=\"{}\"}} {}",
            limit.label(),
            metrics.limit_hits(limit)
        );
    }

    family(
        &mut out,
        "switchyard_malformed_requests_total",
        "counter",
        "Requests refused with 400, by reason (all but broken_body before anything of them was forwarded).",
    );
    for reason in Malformed::ALL {
        let _ = writeln!(
            out,
            "switchyard_malformed_requests_total{{reason=\"{}\"}} {}",
            reason.label(),
            metrics.malformed(reason)
        );
    }

    family(
        &mut out,
        "switchyard_tunnels_total",
        "counter",
        "Upgraded connections (WebSocket and the like) tunnelled to an endpoint after its 101.",
    );
    let _ = writeln!(out, "switchyard_tunnels_total {}", metrics.tunnels());

    family(
        &mut out,
        "switchyard_class_requests_total",
        "counter",
        "Requests routed, by priority class (the route's, or its trusted header's).",
    );
    for class in crate::engine::Priority::ALL {
        let _ = writeln!(
            out,
            "switchyard_class_requests_total{{class=\"{}\"}} {}",
            class.name(),
            metrics.class_requests(class)
        );
    }

    family(
        &mut out,
        "switchyard_tls_handshakes_total",
        "counter",
        "TLS handshakes on the proxy's listeners: full, resumed (session cache or ticket), failed.",
    );
    for handshake in Handshake::ALL {
        let _ = writeln!(
            out,
            "switchyard_tls_handshakes_total{{result=\"{}\"}} {}",
            handshake.label(),
            metrics.handshakes(handshake)
        );
    }

    family(
        &mut out,
        "switchyard_pool_fallback_picks_total",
        "counter",
        "Picks the native round robin made because the pool's plugin faulted.",
    );
    for pool in pools {
        let _ = writeln!(
            out,
            "switchyard_pool_fallback_picks_total{{pool=\"{}\"}} {}",
            pool.name,
            pool.fallback_picks()
        );
    }

    family(
        &mut out,
        "switchyard_pool_endpoints",
        "gauge",
        "The pool's endpoints by where they came from: config (always shown), dns and registration (shown while the pool has some).",
    );
    for pool in pools {
        let set = pool.endpoints();
        for source in [Source::Config, Source::Dns, Source::Registration] {
            let count = set.all.iter().filter(|e| e.source == source).count();
            if count > 0 || source == Source::Config {
                let _ = writeln!(
                    out,
                    "switchyard_pool_endpoints{{pool=\"{}\",source=\"{}\"}} {count}",
                    pool.name,
                    source.as_str()
                );
            }
        }
    }

    admission::render(&mut out, pools);
    admission::render_routes(&mut out, &topology.routes);
    admission::render_mirrors(&mut out, pools);

    let endpoint_families: [(&str, &str, &str); 6] = [
        (
            "switchyard_endpoint_requests_total",
            "counter",
            "Requests forwarded to the endpoint.",
        ),
        (
            "switchyard_endpoint_failures_total",
            "counter",
            "Forwarded requests that failed (connect, timeout, 5xx, cut mid-body).",
        ),
        (
            "switchyard_endpoint_cut_responses_total",
            "counter",
            "Responses the endpoint cut off mid-body.",
        ),
        (
            "switchyard_endpoint_in_flight",
            "gauge",
            "Requests the endpoint is serving now.",
        ),
        (
            "switchyard_endpoint_latency_ewma_seconds",
            "gauge",
            "Peak-EWMA of the endpoint's response latency.",
        ),
        (
            "switchyard_endpoint_success_ratio",
            "gauge",
            "Recent share of successful responses.",
        ),
    ];
    let endpoint_families: &[(&str, &str, &str)] = if per_endpoint {
        &endpoint_families
    } else {
        &[]
    };
    for (index, (name, kind, help)) in endpoint_families.iter().enumerate() {
        family(&mut out, name, kind, help);
        for pool in pools {
            for endpoint in &pool.endpoints().all {
                let load = endpoint.stats.snapshot();
                let value = match index {
                    0 => load.requests.to_string(),
                    1 => load.failures.to_string(),
                    2 => load.cuts.to_string(),
                    3 => load.in_flight.to_string(),
                    4 => format!("{}", f64::from(load.ewma_latency_us) / 1e6),
                    _ => format!("{}", f64::from(load.success_permille) / 1e3),
                };
                let _ = writeln!(
                    out,
                    "{name}{{pool=\"{}\",endpoint=\"{}\"}} {value}",
                    pool.name, endpoint.address
                );
            }
        }
    }

    let slots = runtime.slots();
    let plugin_families: [(&str, &str, &str); 6] = [
        (
            "switchyard_plugin_calls_total",
            "counter",
            "Calls into the plugin on the request path.",
        ),
        (
            "switchyard_plugin_faults_total",
            "counter",
            "Calls that trapped, timed out or gave an invalid answer.",
        ),
        (
            "switchyard_plugin_quarantined",
            "gauge",
            "1 while the serving version is quarantined.",
        ),
        (
            "switchyard_plugin_reloads_total",
            "counter",
            "New versions swapped in after the first.",
        ),
        (
            "switchyard_plugin_rejected_files_total",
            "counter",
            "Files refused (invalid, wrong world, configure error).",
        ),
        (
            "switchyard_plugin_recycles_total",
            "counter",
            "Instances replaced by fresh ones after reaching plugins.recycle_at_percent \
             of their memory cap (not faults).",
        ),
    ];
    for (index, (name, kind, help)) in plugin_families.iter().enumerate() {
        family(&mut out, name, kind, help);
        for slot in &slots {
            let value = match index {
                0 => slot.calls(),
                1 => slot.faults(),
                2 => u64::from(slot.current().is_some_and(|v| v.is_quarantined())),
                3 => slot.history.lock().unwrap().reloads,
                4 => slot.history.lock().unwrap().rejections,
                _ => slot.recycles(),
            };
            let _ = writeln!(out, "{name}{{plugin=\"{}\"}} {value}", slot.name);
        }
    }
    family(
        &mut out,
        "switchyard_plugin_rollouts_total",
        "counter",
        "Rollouts of a candidate version that ended, by outcome: promoted, \
         rolled-back, aborted.",
    );
    for slot in &slots {
        for (outcome, value) in slot.rollouts_ended() {
            let _ = writeln!(
                out,
                "switchyard_plugin_rollouts_total{{plugin=\"{}\",outcome=\"{outcome}\"}} {value}",
                slot.name
            );
        }
    }
    family(
        &mut out,
        "switchyard_plugin_rollout_share_percent",
        "gauge",
        "The share of picks a running rollout's candidate is called on (shadow) or \
         answers (canary), by phase.",
    );
    for slot in &slots {
        if let Some(rollout) = slot.rollout().filter(|rollout| rollout.is_running()) {
            let _ = writeln!(
                out,
                "switchyard_plugin_rollout_share_percent{{plugin=\"{}\",phase=\"{}\"}} {}",
                slot.name,
                rollout.phase_name(),
                rollout.share_percent()
            );
        }
    }
    family(
        &mut out,
        "switchyard_plugin_log_lines_total",
        "counter",
        "Log lines the plugin wrote: written whole, cut at plugins.log_line_bytes, \
         or dropped over plugins.log_lines_per_second.",
    );
    for slot in &slots {
        let lines = slot.log_lines();
        for (outcome, value) in [
            ("written", lines.written),
            ("cut", lines.cut),
            ("dropped", lines.dropped),
        ] {
            let _ = writeln!(
                out,
                "switchyard_plugin_log_lines_total{{plugin=\"{}\",outcome=\"{outcome}\"}} {value}",
                slot.name
            );
        }
    }
    family(
        &mut out,
        "switchyard_plugin_call_seconds",
        "histogram",
        "Time of each call into the plugin's export (pick, check, on-failure), \
         from 100 ns.",
    );
    for slot in &slots {
        admission::histogram_series(
            &mut out,
            "switchyard_plugin_call_seconds",
            &format!("plugin=\"{}\"", slot.name),
            &slot.call_times(),
        );
    }
    family(
        &mut out,
        "switchyard_plugin_instances",
        "gauge",
        "Plugin instances alive, of every plugin (at most plugins.max_instances).",
    );
    let _ = writeln!(
        out,
        "switchyard_plugin_instances {}",
        runtime.live_instances()
    );
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}
