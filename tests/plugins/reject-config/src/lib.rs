//! A scripted balancer for the host's end-to-end tests: `configure` rejects every config, so loading it must fail with its message.

use switchyard_sdk::{export_balancer, Balancer, Endpoint, EndpointId, RequestInfo};

/// The error every `configure` returns.
pub const REJECTION: &str = "reject-config refuses every config";

/// Never built: `configure` always fails.
#[derive(Debug)]
pub struct RejectConfig;

impl Balancer for RejectConfig {
    fn configure(_config: &str) -> Result<Self, String> {
        Err(REJECTION.to_string())
    }

    fn set_endpoints(&mut self, _endpoints: Vec<Endpoint>) {}

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        None
    }
}

export_balancer!(RejectConfig);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_any_config() {
        for config in ["{}", "", r#"{"a": 1}"#] {
            assert_eq!(RejectConfig::configure(config).unwrap_err(), REJECTION);
        }
    }
}
