//! A hostile balancer for the host's end-to-end tests: every `pick` leaks 4 MiB more, so memory grows until the host's limit stops it.

use std::hint::black_box;
use switchyard_sdk::{export_balancer, Balancer, Endpoint, EndpointId, RequestInfo};

/// Bytes leaked by each pick.
pub const LEAK_PER_PICK: usize = 4 << 20;

/// Counts what it has leaked and answers with the first endpoint.
#[derive(Debug, Default)]
pub struct MemoryHog {
    ids: Vec<EndpointId>,
    /// Bytes leaked so far.
    pub leaked: usize,
}

impl Balancer for MemoryHog {
    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Self::default())
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.ids = endpoints.iter().map(|e| e.id).collect();
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        // Non-zero fill writes every byte, so every page is really committed.
        let block: &'static mut [u8] = vec![0xA5; LEAK_PER_PICK].leak();
        black_box(block);
        self.leaked += LEAK_PER_PICK;
        self.ids.first().copied()
    }
}

export_balancer!(MemoryHog);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_sdk::testing::endpoints;

    #[test]
    fn each_pick_leaks_more() {
        let mut hog = MemoryHog::configure("{}").unwrap();
        hog.set_endpoints(endpoints(2));
        assert_eq!(hog.pick(&RequestInfo::default()), Some(0));
        assert_eq!(hog.pick(&RequestInfo::default()), Some(0));
        assert_eq!(hog.leaked, 2 * LEAK_PER_PICK);
    }
}
