//! A scripted balancer for the host's end-to-end tests: always picks the endpoint with the highest id (a live swap to pin-first visibly changes behaviour).

use switchyard_sdk::{export_balancer, Balancer, Endpoint, EndpointId, RequestInfo};

/// Remembers the highest id of the last pushed set.
#[derive(Debug, Default)]
pub struct PinLast(Option<EndpointId>);

impl Balancer for PinLast {
    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Self::default())
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.0 = endpoints.iter().map(|e| e.id).max();
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        self.0
    }
}

export_balancer!(PinLast);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_highest_id() {
        let mut balancer = PinLast::configure("{}").unwrap();
        assert_eq!(balancer.pick(&RequestInfo::default()), None);
        balancer.set_endpoints(vec![
            Endpoint::new(5, "a:80"),
            Endpoint::new(2, "b:80"),
            Endpoint::new(9, "c:80"),
        ]);
        for _ in 0..3 {
            assert_eq!(balancer.pick(&RequestInfo::default()), Some(9));
        }
    }
}
