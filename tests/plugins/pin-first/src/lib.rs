//! A scripted balancer for the host's end-to-end tests: always picks the endpoint with the lowest id (a live swap to pin-last visibly changes behaviour).

use switchyard_sdk::{export_balancer, Balancer, Endpoint, EndpointId, RequestInfo};

/// Remembers the lowest id of the last pushed set.
#[derive(Debug, Default)]
pub struct PinFirst(Option<EndpointId>);

impl Balancer for PinFirst {
    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Self::default())
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.0 = endpoints.iter().map(|e| e.id).min();
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        self.0
    }
}

export_balancer!(PinFirst);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_lowest_id() {
        let mut balancer = PinFirst::configure("{}").unwrap();
        assert_eq!(balancer.pick(&RequestInfo::default()), None);
        balancer.set_endpoints(vec![
            Endpoint::new(5, "a:80"),
            Endpoint::new(2, "b:80"),
            Endpoint::new(9, "c:80"),
        ]);
        for _ in 0..3 {
            assert_eq!(balancer.pick(&RequestInfo::default()), Some(2));
        }
    }
}
