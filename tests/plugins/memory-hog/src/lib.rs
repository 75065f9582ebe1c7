//! A hostile balancer for the host's end-to-end tests: every `pick` leaks
//! more memory (4 MiB unless the config's `leak_bytes` says otherwise), so
//! memory grows until the host's limit stops it, or until the host recycles
//! the instance.

use std::hint::black_box;
use switchyard_sdk::{export_balancer, Balancer, Endpoint, EndpointId, RequestInfo};

/// Bytes leaked by each pick unless `leak_bytes` says otherwise.
pub const LEAK_PER_PICK: usize = 4 << 20;

/// Counts what it has leaked and answers with the first endpoint.
#[derive(Debug)]
pub struct MemoryHog {
    ids: Vec<EndpointId>,
    leak_per_pick: usize,
    /// Bytes leaked so far.
    pub leaked: usize,
}

impl Balancer for MemoryHog {
    fn configure(config: &str) -> Result<Self, String> {
        let config: serde_json::Value =
            serde_json::from_str(config).map_err(|e| format!("invalid config: {e}"))?;
        let leak_per_pick = config
            .get("leak_bytes")
            .and_then(|v| v.as_u64())
            .map_or(LEAK_PER_PICK, |bytes| bytes as usize);
        Ok(MemoryHog {
            ids: Vec::new(),
            leak_per_pick,
            leaked: 0,
        })
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.ids = endpoints.iter().map(|e| e.id).collect();
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        // Non-zero fill writes every byte, so every page is really committed.
        let block: &'static mut [u8] = vec![0xA5; self.leak_per_pick].leak();
        black_box(block);
        self.leaked += self.leak_per_pick;
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
        let mut drip = MemoryHog::configure(r#"{"leak_bytes": 10}"#).unwrap();
        drip.set_endpoints(endpoints(1));
        drip.pick(&RequestInfo::default());
        assert_eq!(drip.leaked, 10);
    }
}
