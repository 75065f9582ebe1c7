//! A hostile balancer for the host's end-to-end tests: `pick` answers an id that is never in the pool's set.

use switchyard_sdk::{export_balancer, Balancer, Endpoint, EndpointId, RequestInfo};

/// The id every pick returns; no test pool has this many endpoints.
pub const OUT_OF_SET_ID: EndpointId = 4_000_000;

/// Ignores the endpoints and always answers [`OUT_OF_SET_ID`].
#[derive(Debug, Default)]
pub struct OutOfSet;

impl Balancer for OutOfSet {
    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Self)
    }

    fn set_endpoints(&mut self, _endpoints: Vec<Endpoint>) {}

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        Some(OUT_OF_SET_ID)
    }
}

export_balancer!(OutOfSet);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_impossible_id() {
        let mut balancer = OutOfSet::configure("{}").unwrap();
        balancer.set_endpoints(switchyard_sdk::testing::endpoints(3));
        assert_eq!(balancer.pick(&RequestInfo::default()), Some(4_000_000));
    }
}
