//! A hostile balancer for the host's end-to-end tests: `pick` panics, which
//! the host must count as a fault and survive. With `{"panic": false}` it
//! picks the pushed endpoints in turn instead, keeping its place per pool,
//! so a test can tell whether a pool's state survived another pool's trap.

use serde::Deserialize;
use switchyard_sdk::{config, export_balancer, Balancer, Endpoint, EndpointId, RequestInfo};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    panic: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { panic: true }
    }
}

/// Panics on every pick, or (with `"panic": false`) takes turns.
#[derive(Debug, Default)]
pub struct PanickingBalancer {
    panics: bool,
    endpoints: Vec<EndpointId>,
    next: usize,
}

impl Balancer for PanickingBalancer {
    fn configure(config: &str) -> Result<Self, String> {
        let options: Options = config::parse(config)?;
        Ok(PanickingBalancer {
            panics: options.panic,
            ..Default::default()
        })
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.endpoints = endpoints.into_iter().map(|e| e.id).collect();
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        if self.panics {
            panic!("panicking-balancer panics on every pick")
        }
        let id = *self
            .endpoints
            .get(self.next % self.endpoints.len().max(1))?;
        self.next += 1;
        Some(id)
    }
}

export_balancer!(PanickingBalancer);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "panics on every pick")]
    fn pick_panics() {
        PanickingBalancer::configure("{}")
            .unwrap()
            .pick(&RequestInfo::default());
    }

    #[test]
    fn without_panic_it_takes_turns() {
        let mut balancer = PanickingBalancer::configure(r#"{"panic": false}"#).unwrap();
        balancer.set_endpoints(
            (0..3)
                .map(|id| Endpoint {
                    id,
                    address: format!("10.0.0.{id}:80"),
                    weight: 1,
                    zone: None,
                    labels: Vec::new(),
                })
                .collect(),
        );
        let picks: Vec<_> = (0..4)
            .map(|_| balancer.pick(&RequestInfo::default()))
            .collect();
        assert_eq!(picks, [Some(0), Some(1), Some(2), Some(0)]);
    }
}
