//! `{{name}}`: an HTTP health check. Each check sends `GET path` to the
//! endpoint under check through the host's HTTP probe and judges the answer:
//! **healthy** on a 2xx or 3xx status, **unhealthy** on any other status or
//! when the probe gets no answer (refused, timed out, reset, not HTTP). When
//! the host refuses to send the request (a path it does not accept), the
//! endpoint is not at fault and the verdict is **unknown**.
//!
//! The host schedules the checks and applies the pool's `health` table
//! (`interval_ms`, `timeout_ms`, `rise`, `fall`); this plugin judges one
//! probe.
//!
//! Config (JSON, every key optional):
//! - `path` (default [`DEFAULT_PATH`]): the path requested; starts with `/`.
//! - `timeout_ms` (default [`DEFAULT_TIMEOUT_MS`]): the probe's own timeout,
//!   at least 1; the host caps it at the check's time limit.

use serde::Deserialize;
use switchyard_sdk::probe::{self, HttpRequest, ProbeError};
use switchyard_sdk::{export_health_check, Endpoint, Health, HealthCheck, Verdict};

/// The path requested unless `path` says otherwise.
pub const DEFAULT_PATH: &str = "/healthz";

/// The probe's timeout in milliseconds unless `timeout_ms` says otherwise.
pub const DEFAULT_TIMEOUT_MS: u32 = 1_000;

/// The plugin's config, as given in the pool's `health.config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    path: String,
    timeout_ms: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: DEFAULT_PATH.to_string(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

/// The check for one pool: the request it sends.
#[derive(Debug)]
pub struct HttpGet {
    request: HttpRequest,
}

impl HealthCheck for HttpGet {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = switchyard_sdk::config::parse(config)?;
        if !config.path.starts_with('/') {
            return Err(format!(
                "config key `path`: must start with `/`, got {:?}",
                config.path
            ));
        }
        if config.timeout_ms == 0 {
            return Err("config key `timeout_ms`: must be at least 1".to_string());
        }
        let mut request = HttpRequest::get(config.path);
        request.timeout_ms = config.timeout_ms;
        Ok(HttpGet { request })
    }

    fn check(&mut self, _target: &Endpoint) -> Verdict {
        match probe::http(&self.request) {
            Ok(response) if (200..400).contains(&response.status) => Verdict::healthy(format!(
                "{} in {} ms",
                response.status,
                response.latency_us.div_ceil(1_000)
            )),
            Ok(response) => Verdict::unhealthy(format!(
                "status {}, expected 200-399",
                response.status
            )),
            Err(ProbeError::NotAllowed(why)) => Verdict {
                health: Health::Unknown,
                reason: format!("the host refused the probe: {why}"),
            },
            Err(error) => Verdict::unhealthy(error.to_string()),
        }
    }
}

export_health_check!(HttpGet);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_sdk::probe::HttpResponse;
    use switchyard_sdk::testing::{endpoints, TestHost};

    fn answer(status: u16) -> HttpResponse {
        HttpResponse {
            status,
            latency_us: 1_500,
            ..HttpResponse::default()
        }
    }

    fn target() -> Endpoint {
        endpoints(1).remove(0)
    }

    #[test]
    fn a_2xx_answer_is_healthy_and_the_configured_path_is_asked() {
        let host = TestHost::new();
        host.on_http(|request| {
            assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/ready"));
            assert_eq!(request.timeout_ms, 250);
            Ok(answer(200))
        });
        let mut check = HttpGet::configure(r#"{"path": "/ready", "timeout_ms": 250}"#).unwrap();
        assert_eq!(check.check(&target()), Verdict::healthy("200 in 2 ms"));
    }

    #[test]
    fn a_5xx_answer_is_unhealthy() {
        let host = TestHost::new();
        host.on_http(|_| Ok(answer(503)));
        let mut check = HttpGet::configure("{}").unwrap();
        assert_eq!(
            check.check(&target()),
            Verdict::unhealthy("status 503, expected 200-399")
        );
    }

    #[test]
    fn no_answer_is_unhealthy_with_the_probe_error() {
        let host = TestHost::new();
        host.on_http(|_| Err(ProbeError::Refused));
        let mut check = HttpGet::configure("{}").unwrap();
        assert_eq!(
            check.check(&target()),
            Verdict::unhealthy("connection refused")
        );
    }

    #[test]
    fn a_refused_probe_is_unknown() {
        let host = TestHost::new();
        host.on_http(|_| Err(ProbeError::NotAllowed("path".into())));
        let mut check = HttpGet::configure("{}").unwrap();
        assert_eq!(check.check(&target()).health, Health::Unknown);
    }

    #[test]
    fn bad_config_is_refused_with_its_key() {
        let error = HttpGet::configure(r#"{"path": "healthz"}"#).unwrap_err();
        assert!(error.contains("`path`"), "{error}");
        let error = HttpGet::configure(r#"{"timeout_ms": 0}"#).unwrap_err();
        assert!(error.contains("`timeout_ms`"), "{error}");
    }
}
