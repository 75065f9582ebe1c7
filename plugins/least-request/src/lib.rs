//! Least request by the power of two choices: each pick samples
//! `choice_count` distinct endpoints uniformly at random, asks the host for
//! their live load, and takes the one with the fewest requests in flight per
//! unit of weight. Sampling a few endpoints instead of scanning all of them
//! costs O(1) per pick, avoids the herding that a global least-loaded choice
//! suffers on stale load, and keeps almost all of its benefit: with two
//! choices the most loaded of n servers carries Θ(log log n) excess instead
//! of Θ(log n / log log n) (M. Mitzenmacher, "The Power of Two Choices in
//! Randomized Load Balancing", IEEE TPDS 12(10), 2001). This is Envoy's
//! `LEAST_REQUEST` policy
//! (<https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/load_balancers>).
//!
//! An endpoint's score is `(in_flight + 1) / weight`, Envoy's
//! `weight / (active_requests + 1)^bias` with its default bias of 1: with equal
//! weights it orders endpoints exactly as `in_flight` does, and the `+ 1`
//! lets weights count on an idle pool too. Scores are compared by
//! cross-multiplying, never divided. An endpoint the host reports no load for
//! counts as 0 in flight. Ties go to the first sampled, which is random.
//!
//! Config (JSON):
//! - `choice_count` (default 2, [`DEFAULT_CHOICE_COUNT`]): how many distinct
//!   endpoints each pick samples, from 2 to [`MAX_CHOICE_COUNT`]. A pool no
//!   larger than this is scanned whole.

use serde::Deserialize;
use switchyard_sdk::{export_balancer, host, Balancer, Endpoint, EndpointId, Load, RequestInfo};

/// Endpoints sampled per pick unless `choice_count` says otherwise.
pub const DEFAULT_CHOICE_COUNT: u32 = 2;

/// The largest `choice_count` accepted; it bounds the work of a pick.
pub const MAX_CHOICE_COUNT: u32 = 32;

/// The plugin's config, as given in the pool's `balancer.config`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Distinct endpoints sampled per pick.
    #[serde(default = "default_choice_count")]
    pub choice_count: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            choice_count: DEFAULT_CHOICE_COUNT,
        }
    }
}

/// Serde's default for `choice_count`.
fn default_choice_count() -> u32 {
    DEFAULT_CHOICE_COUNT
}

/// The balancer's state.
#[derive(Debug, Default)]
pub struct LeastRequest {
    choice_count: usize,
    ids: Vec<EndpointId>,
    weights: Vec<u64>,
    /// A permutation of the indices into `ids`; every pick reshuffles its
    /// first `choice_count` places (a partial Fisher–Yates shuffle), which
    /// leaves it a permutation, so sampling distinct endpoints needs no reset
    /// and no allocation.
    order: Vec<u32>,
}

impl Balancer for LeastRequest {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = switchyard_sdk::config::parse(config)?;
        if !(2..=MAX_CHOICE_COUNT).contains(&config.choice_count) {
            return Err(format!(
                "config key `choice_count`: must be from 2 to {MAX_CHOICE_COUNT}, got {}",
                config.choice_count
            ));
        }
        Ok(LeastRequest {
            choice_count: config.choice_count as usize,
            ..Self::default()
        })
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.ids = endpoints.iter().map(|e| e.id).collect();
        self.weights = endpoints
            .iter()
            .map(|e| u64::from(e.weight.max(1)))
            .collect();
        self.order = (0..endpoints.len() as u32).collect();
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        let n = self.ids.len();
        match n {
            0 => return None,
            1 => return Some(self.ids[0]),
            _ => {}
        }
        let count = self.choice_count.min(n);
        for place in 0..count {
            let other = place + host::random_below((n - place) as u32) as usize;
            self.order.swap(place, other);
        }
        // The sampled endpoints' loads, two per call into the host.
        let mut best = None;
        let mut place = 0;
        while place < count {
            let index = self.order[place] as usize;
            if place + 1 < count {
                let next = self.order[place + 1] as usize;
                let (load, next_load) = host::load_pair(self.ids[index], self.ids[next]);
                best = self.better(best, index, load);
                best = self.better(best, next, next_load);
                place += 2;
            } else {
                best = self.better(best, index, host::load(self.ids[index]));
                place += 1;
            }
        }
        best.map(|(index, _)| self.ids[index])
    }
}

impl LeastRequest {
    /// The better of `best`, (index, in_flight + 1) of the best candidate so
    /// far, and the endpoint at `index` with this load; ties keep `best`.
    fn better(
        &self,
        best: Option<(usize, u64)>,
        index: usize,
        load: Option<Load>,
    ) -> Option<(usize, u64)> {
        let active = load.map_or(0, |load| u64::from(load.in_flight)) + 1;
        // active / weight < best_active / best_weight, without dividing;
        // each product is below 2^64.
        match best {
            Some((held, held_active))
                if active * self.weights[held] >= held_active * self.weights[index] =>
            {
                best
            }
            _ => Some((index, active)),
        }
    }
}

export_balancer!(LeastRequest);

#[cfg(test)]
mod tests;
