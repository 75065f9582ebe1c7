//! Canary routing: requests that carry the canary header go to the endpoints
//! labelled as canaries, everything else to the rest, round robin within each
//! group. With no endpoint in a group, the other group serves.
//!
//! Config (all optional):
//! - `header` (default `"x-canary"`): the request header that opts in;
//! - `label` (default `"track"`) and `value` (default `"canary"`): the
//!   endpoint label that marks a canary.
//!
//! ```toml
//! [[pools]]
//! name = "web"
//! balancer = { plugin = "canary", config = { header = "x-canary" } }
//! endpoints = [
//!   { address = "10.0.0.1:80" },
//!   { address = "10.0.0.9:80", labels = { track = "canary" } },
//! ]
//! ```

use serde::Deserialize;
use switchyard_sdk::{export_balancer, host, Balancer, Endpoint, EndpointId, RequestInfo};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    header: String,
    label: String,
    value: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            header: "x-canary".into(),
            label: "track".into(),
            value: "canary".into(),
        }
    }
}

/// Splits the pool into stable and canary endpoints.
#[derive(Debug)]
pub struct Canary {
    config: Config,
    stable: Vec<EndpointId>,
    canary: Vec<EndpointId>,
    turn: usize,
}

impl Balancer for Canary {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = switchyard_sdk::config::parse(config)?;
        Ok(Canary {
            config,
            stable: Vec::new(),
            canary: Vec::new(),
            turn: 0,
        })
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        let is_canary = |e: &Endpoint| {
            e.labels
                .iter()
                .any(|(k, v)| *k == self.config.label && *v == self.config.value)
        };
        self.canary = endpoints
            .iter()
            .filter(|e| is_canary(e))
            .map(|e| e.id)
            .collect();
        self.stable = endpoints
            .iter()
            .filter(|e| !is_canary(e))
            .map(|e| e.id)
            .collect();
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        let wants_canary = host::request_header(&self.config.header).is_some();
        let (first, other) = if wants_canary {
            (&self.canary, &self.stable)
        } else {
            (&self.stable, &self.canary)
        };
        let group = if first.is_empty() { other } else { first };
        if group.is_empty() {
            return None;
        }
        self.turn = self.turn.wrapping_add(1);
        Some(group[self.turn % group.len()])
    }
}

export_balancer!(Canary);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_sdk::testing::TestHost;

    fn pool() -> Vec<Endpoint> {
        let mut canary = Endpoint::new(2, "10.0.0.9:80");
        canary.labels.push(("track".into(), "canary".into()));
        vec![
            Endpoint::new(0, "10.0.0.1:80"),
            Endpoint::new(1, "10.0.0.2:80"),
            canary,
        ]
    }

    #[test]
    fn header_selects_the_canary_group() {
        let host = TestHost::new();
        let mut balancer = Canary::configure("{}").unwrap();
        balancer.set_endpoints(pool());
        for _ in 0..10 {
            assert_ne!(balancer.pick(&RequestInfo::default()), Some(2));
        }
        host.set_header("x-canary", "1");
        for _ in 0..10 {
            assert_eq!(balancer.pick(&RequestInfo::default()), Some(2));
        }
    }

    #[test]
    fn an_empty_group_falls_back_to_the_other() {
        let host = TestHost::new();
        host.set_header("x-canary", "yes");
        let mut balancer = Canary::configure("{}").unwrap();
        balancer.set_endpoints(pool().into_iter().take(2).collect());
        assert!(matches!(
            balancer.pick(&RequestInfo::default()),
            Some(0 | 1)
        ));
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        let error = Canary::configure(r#"{"hedaer": "x"}"#).unwrap_err();
        assert!(error.contains("hedaer"), "{error}");
    }
}
