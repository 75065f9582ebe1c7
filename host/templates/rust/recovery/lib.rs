//! `{{name}}`: retry elsewhere, for requests that can be sent again. After a
//! failed attempt of a request the host can replay (an idempotent method
//! with a small body), the request is sent again at once to another
//! endpoint, up to `retries` times; any other failure is answered with the
//! endpoint's own response, or the host's error status when there is none.
//! The host still enforces its retry budget and the route's deadline.
//!
//! Config (JSON, every key optional):
//! - `retries` (default [`DEFAULT_RETRIES`]): retries per request, from 0
//!   (never retry) to [`MAX_RETRIES`].

use serde::Deserialize;
use switchyard_sdk::{export_recovery, Decision, Failure, Recovery, Retry};

/// Retries per request unless `retries` says otherwise.
pub const DEFAULT_RETRIES: u32 = 1;

/// The largest `retries` accepted.
pub const MAX_RETRIES: u32 = 5;

/// The plugin's config, as given in the pool's `recovery.config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    retries: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            retries: DEFAULT_RETRIES,
        }
    }
}

/// The policy for one pool.
#[derive(Debug)]
pub struct RetryElsewhere {
    retries: u32,
}

impl Recovery for RetryElsewhere {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = switchyard_sdk::config::parse(config)?;
        if config.retries > MAX_RETRIES {
            return Err(format!(
                "config key `retries`: must be from 0 to {MAX_RETRIES}, got {}",
                config.retries
            ));
        }
        Ok(RetryElsewhere {
            retries: config.retries,
        })
    }

    fn on_failure(&mut self, failure: &Failure) -> Decision {
        // `attempt` counts from 0: the first try failed when it is 0.
        if failure.replayable && failure.request.attempt < self.retries {
            Decision::Retry(Retry {
                delay_ms: 0,
                same_endpoint: false,
            })
        } else {
            Decision::GiveUp(None)
        }
    }
}

export_recovery!(RetryElsewhere);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_sdk::{FailureKind, RequestInfo};

    fn failure(method: &str, replayable: bool, attempt: u32) -> Failure {
        Failure {
            endpoint: 0,
            kind: FailureKind::Status(503),
            request: RequestInfo {
                attempt,
                ..RequestInfo::default()
            },
            method: method.to_string(),
            replayable,
            elapsed_ms: 2,
        }
    }

    const ELSEWHERE: Decision = Decision::Retry(Retry {
        delay_ms: 0,
        same_endpoint: false,
    });

    #[test]
    fn an_idempotent_request_is_retried_once_elsewhere() {
        let mut policy = RetryElsewhere::configure("{}").unwrap();
        assert_eq!(policy.on_failure(&failure("GET", true, 0)), ELSEWHERE);
        assert_eq!(
            policy.on_failure(&failure("GET", true, 1)),
            Decision::GiveUp(None)
        );
    }

    #[test]
    fn a_request_that_cannot_be_replayed_is_not_retried() {
        let mut policy = RetryElsewhere::configure("{}").unwrap();
        assert_eq!(
            policy.on_failure(&failure("POST", false, 0)),
            Decision::GiveUp(None)
        );
    }

    #[test]
    fn retries_is_the_number_of_retries() {
        let mut policy = RetryElsewhere::configure(r#"{"retries": 3}"#).unwrap();
        assert_eq!(policy.on_failure(&failure("GET", true, 2)), ELSEWHERE);
        assert_eq!(
            policy.on_failure(&failure("GET", true, 3)),
            Decision::GiveUp(None)
        );
        let mut never = RetryElsewhere::configure(r#"{"retries": 0}"#).unwrap();
        assert_eq!(
            never.on_failure(&failure("GET", true, 0)),
            Decision::GiveUp(None)
        );
    }

    #[test]
    fn bad_config_is_refused_with_its_key() {
        let error = RetryElsewhere::configure(r#"{"retries": 9}"#).unwrap_err();
        assert!(error.contains("`retries`"), "{error}");
    }
}
