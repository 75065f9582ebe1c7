//! A flaky balancer for the host's end-to-end tests: a round robin whose
//! every hundredth pick panics, so 1% of its picks fault. A candidate that
//! configures and serves well, and fails now and then.

use switchyard_sdk::{export_balancer, Balancer, Endpoint, EndpointId, RequestInfo};

/// One pick in this many panics.
pub const FAULT_EVERY: u64 = 100;

/// Takes turns; counts picks to know when to panic.
#[derive(Debug, Default)]
pub struct FlakyBalancer {
    ids: Vec<EndpointId>,
    picks: u64,
}

impl Balancer for FlakyBalancer {
    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Self::default())
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.ids = endpoints.iter().map(|e| e.id).collect();
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        self.picks += 1;
        if self.picks.is_multiple_of(FAULT_EVERY) {
            panic!("flaky-balancer panics on pick {}", self.picks);
        }
        if self.ids.is_empty() {
            return None;
        }
        Some(self.ids[self.picks as usize % self.ids.len()])
    }
}

export_balancer!(FlakyBalancer);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_turns_between_faults() {
        let mut balancer = FlakyBalancer::configure("{}").unwrap();
        balancer.set_endpoints(vec![Endpoint::new(0, "a:80"), Endpoint::new(1, "b:80")]);
        let picks: Vec<_> = (0..4)
            .map(|_| balancer.pick(&RequestInfo::default()))
            .collect();
        assert_eq!(picks, [Some(1), Some(0), Some(1), Some(0)]);
    }

    #[test]
    #[should_panic(expected = "panics on pick 100")]
    fn every_hundredth_pick_panics() {
        let mut balancer = FlakyBalancer::configure("{}").unwrap();
        balancer.set_endpoints(vec![Endpoint::new(0, "a:80")]);
        for _ in 0..FAULT_EVERY {
            balancer.pick(&RequestInfo::default());
        }
    }
}
