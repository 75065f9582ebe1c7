//! HTTP health check: each check sends one HTTP/1.1 request (`GET /healthz`
//! by default) to the endpoint under check through the host's
//! `probe::http`, and judges the answer:
//!
//! - **Unhealthy** when the probe gets no answer (the reason is the probe's
//!   error: `connection refused`, `timed out`, `connection reset`,
//!   `invalid response: ...`), when the status is not one of
//!   `expected_statuses` (`status 503, expected 200-399`), or when
//!   `body_contains` is set and the body lacks it (``200 but body lacks `ok` ``);
//! - **Degraded** when everything matched but the probe took longer than
//!   `degraded_above_ms` (`200 in 1200.4 ms, above 1000 ms`): the endpoint
//!   keeps serving, and balancers that read its health can favour others;
//! - **Healthy** otherwise (`200 in 3 ms`).
//!
//! Checks run in this order, so a wrong status is reported before a missing
//! body text, and latency only matters for an answer that passed. Latencies
//! in reasons are in milliseconds, rounded up to a tenth, so a degraded
//! latency never reads as equal to its ceiling.
//!
//! When the host refuses to send the request (`probe-error::not-allowed`,
//! for a method, path or header it does not accept), the endpoint is not at
//! fault: the verdict is **Unknown** with the host's reason, and a warning
//! is logged once per instance. Config validation rejects everything this
//! plugin knows to be unsendable, so this should not happen.
//!
//! The idea is HAProxy's `option httpchk` with `http-check expect status` /
//! `http-check expect string`
//! (<https://docs.haproxy.org/2.8/configuration.html#4.2-option%20httpchk>),
//! whose default also counts any 2xx or 3xx status as passing, and Envoy's
//! HTTP health checker with its `expected_statuses` ranges
//! (<https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/health_check.proto>).
//! The host schedules the checks and applies the pool's `health` table
//! (`interval_ms`, `timeout_ms`, `jitter_ms`, `rise`, `fall`); this plugin
//! judges one probe.
//!
//! Config (JSON, every key optional):
//! - `path` (default `"/healthz"`, [`DEFAULT_PATH`]): path and query to
//!   request; starts with `/`, printable ASCII without spaces or `#`.
//! - `method` (default `"GET"`, [`DEFAULT_METHOD`]): `GET` or `HEAD` (any
//!   case). `HEAD` gets no body, so it cannot be combined with
//!   `body_contains`.
//! - `headers` (default none): a table of extra request headers, such as
//!   `{ host = "api.internal", accept = "application/json" }`. Names must be
//!   HTTP tokens and values must not hold control characters; the framing
//!   headers (`content-length`, `transfer-encoding`, `connection`, ...) are
//!   refused.
//! - `expected_statuses` (default `["200-399"]`): the statuses that pass, a
//!   list whose items are a status (`204`), a range (`"200-299"`,
//!   inclusive) or a class (`"2xx"`); every status is from 100 to 599.
//! - `body_contains` (default none): text the body must contain, looked for
//!   in the first 64 KiB (the host cuts bodies there), byte for byte.
//! - `degraded_above_ms` (default none): a latency ceiling in ms; a passing
//!   probe slower than this is Degraded. Must be below `timeout_ms`.
//! - `timeout_ms` (default 1000, [`DEFAULT_TIMEOUT_MS`]): the probe's own
//!   timeout, at least 1; the host caps it at the check's own time limit
//!   (the `health` table's `timeout_ms`).
//!
//! ```toml
//! [[pools]]
//! name = "api"
//! health = { plugin = "http-health", interval_ms = 2000, timeout_ms = 1000, rise = 2, fall = 3, config = { path = "/healthz", expected_statuses = [200, 204], body_contains = "ok", degraded_above_ms = 250 } }
//! endpoints = [{ address = "10.0.0.1:8080" }, { address = "10.0.0.2:8080" }]
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use switchyard_sdk::host::{self, LogLevel};
use switchyard_sdk::probe::{self, HttpRequest, HttpResponse, ProbeError};
use switchyard_sdk::{export_health_check, Endpoint, Health, HealthCheck, Verdict};

/// The path requested unless `path` says otherwise.
pub const DEFAULT_PATH: &str = "/healthz";

/// The method used unless `method` says otherwise.
pub const DEFAULT_METHOD: &str = "GET";

/// The statuses that pass unless `expected_statuses` says otherwise: any
/// 2xx or 3xx, as in HAProxy.
pub const DEFAULT_EXPECTED_STATUSES: StatusRange = StatusRange {
    first: 200,
    last: 399,
};

/// The probe's timeout in ms unless `timeout_ms` says otherwise.
pub const DEFAULT_TIMEOUT_MS: u32 = 1_000;

/// The lowest status accepted in `expected_statuses`.
pub const MIN_STATUS: u16 = 100;

/// The highest status accepted in `expected_statuses`.
pub const MAX_STATUS: u16 = 599;

/// The most bytes of body the host returns, so the longest useful
/// `body_contains`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Headers that would change how the request is framed or the connection
/// is handled; the probe owns those.
const FRAMING_HEADERS: [&str; 8] = [
    "connection",
    "content-length",
    "expect",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The plugin's config, as given in the pool's `health.config`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Path and query to request.
    #[serde(default = "default_path")]
    pub path: String,
    /// `GET` or `HEAD`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The statuses that pass.
    #[serde(default = "default_expected_statuses")]
    pub expected_statuses: Vec<StatusRange>,
    /// Text the body must contain.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Latency ceiling in ms above which a passing probe is Degraded.
    #[serde(default)]
    pub degraded_above_ms: Option<u32>,
    /// The probe's own timeout in ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: default_path(),
            method: default_method(),
            headers: BTreeMap::new(),
            expected_statuses: default_expected_statuses(),
            body_contains: None,
            degraded_above_ms: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

/// Serde's default for `path`.
fn default_path() -> String {
    DEFAULT_PATH.to_string()
}

/// Serde's default for `method`.
fn default_method() -> String {
    DEFAULT_METHOD.to_string()
}

/// Serde's default for `expected_statuses`.
fn default_expected_statuses() -> Vec<StatusRange> {
    vec![DEFAULT_EXPECTED_STATUSES]
}

/// Serde's default for `timeout_ms`.
fn default_timeout_ms() -> u32 {
    DEFAULT_TIMEOUT_MS
}

/// An inclusive range of statuses; one item of `expected_statuses`.
///
/// Deserialized from a number (`204`), a range string (`"200-299"`), a
/// single status as a string (`"204"`) or a class (`"2xx"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusRange {
    /// The lowest status in the range.
    pub first: u16,
    /// The highest status in the range.
    pub last: u16,
}

impl StatusRange {
    /// Whether `status` is in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.first..=self.last).contains(&status)
    }

    /// Parses `"204"`, `"200-299"` or `"2xx"`.
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let range = if let Some(class) = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX"))
        {
            let digit = match class.as_bytes() {
                [digit @ b'1'..=b'5'] => u16::from(digit - b'0'),
                _ => return Err(format!("`{text}` is not a status class from 1xx to 5xx")),
            };
            StatusRange {
                first: digit * 100,
                last: digit * 100 + 99,
            }
        } else if let Some((first, last)) = text.split_once('-') {
            StatusRange {
                first: parse_status(first)?,
                last: parse_status(last)?,
            }
        } else {
            let status = parse_status(text)?;
            StatusRange {
                first: status,
                last: status,
            }
        };
        if range.first > range.last {
            return Err(format!(
                "range `{text}` is empty: {} > {}",
                range.first, range.last
            ));
        }
        Ok(range)
    }
}

/// One status of a range string, from 100 to 599.
fn parse_status(text: &str) -> Result<u16, String> {
    let text = text.trim();
    match text.parse::<u16>() {
        Ok(status) if (MIN_STATUS..=MAX_STATUS).contains(&status) => Ok(status),
        Ok(_) => Err(format!(
            "status {text} is not from {MIN_STATUS} to {MAX_STATUS}"
        )),
        Err(_) => Err(format!(
            "`{text}` is not a status; expected a number such as 204, a range such as \"200-299\" or a class such as \"2xx\""
        )),
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RangeVisitor;

        impl Visitor<'_> for RangeVisitor {
            type Value = StatusRange;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a status such as 204, a range such as \"200-299\" or a class such as \"2xx\"",
                )
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<StatusRange, E> {
                match u16::try_from(value) {
                    Ok(status) if (MIN_STATUS..=MAX_STATUS).contains(&status) => Ok(StatusRange {
                        first: status,
                        last: status,
                    }),
                    _ => Err(E::custom(format!(
                        "status {value} is not from {MIN_STATUS} to {MAX_STATUS}"
                    ))),
                }
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<StatusRange, E> {
                match u64::try_from(value) {
                    Ok(value) => self.visit_u64(value),
                    Err(_) => Err(E::custom(format!(
                        "status {value} is not from {MIN_STATUS} to {MAX_STATUS}"
                    ))),
                }
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<StatusRange, E> {
                StatusRange::parse(text).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(RangeVisitor)
    }
}

/// The health check's state.
#[derive(Debug, Clone)]
pub struct HttpHealth {
    request: HttpRequest,
    expected: Vec<StatusRange>,
    body_contains: Option<Vec<u8>>,
    degraded_above_us: Option<u64>,
    degraded_above_ms: u32,
    /// Whether the host's refusal to send the probe was logged already.
    warned_not_allowed: bool,
}

impl HttpHealth {
    /// The request each check sends.
    pub fn request(&self) -> &HttpRequest {
        &self.request
    }

    fn judge(&self, response: &HttpResponse) -> Verdict {
        let status = response.status;
        if !self.expected.iter().any(|range| range.contains(status)) {
            let expected: Vec<String> = self.expected.iter().map(ToString::to_string).collect();
            return Verdict::unhealthy(format!(
                "status {status}, expected {}",
                expected.join(", ")
            ));
        }
        if let Some(needle) = &self.body_contains {
            if !contains(&response.body, needle) {
                return Verdict::unhealthy(format!(
                    "{status} but body lacks `{}`",
                    shorten(&String::from_utf8_lossy(needle))
                ));
            }
        }
        let latency = format_latency(response.latency_us);
        match self.degraded_above_us {
            Some(ceiling) if u64::from(response.latency_us) > ceiling => Verdict::degraded(
                format!("{status} in {latency}, above {} ms", self.degraded_above_ms),
            ),
            _ => Verdict::healthy(format!("{status} in {latency}")),
        }
    }
}

/// Whether `needle` occurs in `haystack`; an empty needle always does.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// At most 40 characters of `text`, for a reason.
fn shorten(text: &str) -> String {
    const LIMIT: usize = 40;
    if text.chars().count() <= LIMIT {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(LIMIT).collect();
        short.push('…');
        short
    }
}

/// A latency in µs as milliseconds, rounded up to a tenth: `3 ms`,
/// `0.2 ms`, `1000.1 ms`.
pub fn format_latency(latency_us: u32) -> String {
    let tenths = latency_us.div_ceil(100);
    match tenths % 10 {
        0 => format!("{} ms", tenths / 10),
        tenth => format!("{}.{tenth} ms", tenths / 10),
    }
}

/// Whether `name` is an HTTP token (RFC 9110, section 5.6.2).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn validate(config: &Config) -> Result<(), String> {
    let path = &config.path;
    if !path.starts_with('/') {
        return Err(format!(
            "config key `path`: must start with `/`, got `{path}`"
        ));
    }
    if let Some(bad) = path
        .chars()
        .find(|&c| !c.is_ascii() || c.is_ascii_control() || c == ' ' || c == '#')
    {
        return Err(format!(
            "config key `path`: `{}` may not hold {bad:?}; percent-encode it",
            path.escape_debug()
        ));
    }
    for (name, value) in &config.headers {
        if !is_token(name) {
            return Err(format!(
                "config key `headers`: `{}` is not a valid header name",
                name.escape_debug()
            ));
        }
        if FRAMING_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "config key `headers`: `{name}` is set by the probe itself"
            ));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!(
                "config key `headers`: the value of `{name}` holds a control character"
            ));
        }
    }
    if config.expected_statuses.is_empty() {
        return Err("config key `expected_statuses`: must list at least one status".into());
    }
    if let Some(needle) = &config.body_contains {
        if needle.is_empty() {
            return Err("config key `body_contains`: must not be empty".into());
        }
        if needle.len() > MAX_BODY_BYTES {
            return Err(format!(
                "config key `body_contains`: {} bytes can never match a body cut at {MAX_BODY_BYTES}",
                needle.len()
            ));
        }
    }
    if config.timeout_ms == 0 {
        return Err("config key `timeout_ms`: must be at least 1".into());
    }
    if let Some(ceiling) = config.degraded_above_ms {
        if ceiling >= config.timeout_ms {
            return Err(format!(
                "config key `degraded_above_ms`: must be below `timeout_ms` ({}), got {ceiling}",
                config.timeout_ms
            ));
        }
    }
    Ok(())
}

impl HealthCheck for HttpHealth {
    fn configure(config: &str) -> Result<Self, String> {
        let mut config: Config = switchyard_sdk::config::parse(config)?;
        config.method = config.method.to_ascii_uppercase();
        if config.method != "GET" && config.method != "HEAD" {
            return Err(format!(
                "config key `method`: must be GET or HEAD, got `{}`",
                config.method
            ));
        }
        if config.method == "HEAD" && config.body_contains.is_some() {
            return Err(
                "config key `body_contains`: a HEAD response has no body; use method GET".into(),
            );
        }
        validate(&config)?;
        Ok(HttpHealth {
            request: HttpRequest {
                method: config.method,
                path: config.path,
                headers: config.headers.into_iter().collect(),
                timeout_ms: config.timeout_ms,
            },
            expected: config.expected_statuses,
            body_contains: config.body_contains.map(String::into_bytes),
            degraded_above_us: config.degraded_above_ms.map(|ms| u64::from(ms) * 1_000),
            degraded_above_ms: config.degraded_above_ms.unwrap_or(0),
            warned_not_allowed: false,
        })
    }

    fn check(&mut self, _target: &Endpoint) -> Verdict {
        match probe::http(&self.request) {
            Ok(response) => self.judge(&response),
            Err(ProbeError::NotAllowed(why)) => {
                if !self.warned_not_allowed {
                    self.warned_not_allowed = true;
                    host::log(
                        LogLevel::Warn,
                        &format!(
                            "the host refuses the probe {} {}: {why}",
                            self.request.method, self.request.path
                        ),
                    );
                }
                Verdict {
                    health: Health::Unknown,
                    reason: format!("probe not allowed: {why}"),
                }
            }
            Err(error) => Verdict::unhealthy(error.to_string()),
        }
    }
}

export_health_check!(HttpHealth);

#[cfg(test)]
mod tests;
