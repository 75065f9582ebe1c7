//! A hostile balancer for the host's end-to-end tests: `pick` panics, which the host must count as a fault and survive.

use switchyard_sdk::{export_balancer, Balancer, Endpoint, EndpointId, RequestInfo};

/// Accepts any config and endpoints, then panics on every pick.
#[derive(Debug, Default)]
pub struct PanickingBalancer;

impl Balancer for PanickingBalancer {
    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Self)
    }

    fn set_endpoints(&mut self, _endpoints: Vec<Endpoint>) {}

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        panic!("panicking-balancer panics on every pick")
    }
}

export_balancer!(PanickingBalancer);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "panics on every pick")]
    fn pick_panics() {
        PanickingBalancer.pick(&RequestInfo::default());
    }
}
