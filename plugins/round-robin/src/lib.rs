//! Smooth weighted round robin: over any window of `sum(weights)` picks, each
//! endpoint is chosen exactly `weight` times, interleaved rather than in
//! bursts (the algorithm of NGINX's `ngx_http_upstream_round_robin`).
//!
//! Config: none. Each pick is O(n) in the pool's size; for large pools with
//! equal weights the pick degenerates to a counter, which is O(1).

use switchyard_sdk::config::NoOptions;
use switchyard_sdk::{export_balancer, Balancer, Endpoint, EndpointId, RequestInfo};

/// The balancer's state.
#[derive(Debug, Default)]
pub struct SmoothWeightedRoundRobin {
    ids: Vec<EndpointId>,
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
    uniform: bool,
    next: usize,
}

impl Balancer for SmoothWeightedRoundRobin {
    fn configure(config: &str) -> Result<Self, String> {
        switchyard_sdk::config::parse::<NoOptions>(config)?;
        Ok(Self::default())
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.ids = endpoints.iter().map(|e| e.id).collect();
        self.weights = endpoints
            .iter()
            .map(|e| i64::from(e.weight.max(1)))
            .collect();
        self.current = vec![0; endpoints.len()];
        self.total = self.weights.iter().sum();
        self.uniform = self.weights.windows(2).all(|w| w[0] == w[1]);
        self.next = 0;
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        if self.ids.is_empty() {
            return None;
        }
        if self.uniform {
            let index = self.next % self.ids.len();
            self.next = index + 1;
            return Some(self.ids[index]);
        }
        let mut best = 0;
        for index in 0..self.ids.len() {
            self.current[index] += self.weights[index];
            if self.current[index] > self.current[best] {
                best = index;
            }
        }
        self.current[best] -= self.total;
        Some(self.ids[best])
    }
}

export_balancer!(SmoothWeightedRoundRobin);

#[cfg(test)]
mod tests;
