//! Peak-EWMA by the power of two choices: each pick samples two distinct
//! endpoints at random and takes the cheaper, where an endpoint's cost is its
//! latency estimate times its outstanding work,
//! `ewma_latency_us × (in_flight + 1)`, divided by its weight. The host's
//! `ewma_latency_us` is already peak-sensitive (it jumps up on a slow
//! response and decays slowly), so a slowing endpoint sheds traffic at once
//! and wins it back gradually. This is Finagle's `Balancers.p2cPeakEwma`
//! and Linkerd's balancer (tower's `PeakEwma`), described in "Beyond Round
//! Robin: Load Balancing for Latency"
//! (<https://linkerd.io/2016/03/16/beyond-round-robin-load-balancing-for-latency>),
//! after Mitzenmacher's power of two choices (IEEE TPDS 12(10), 2001). Each
//! pick is O(1).
//!
//! An endpoint without samples yet (ewma 0), or that the host reports no
//! load for, is costed at `default_rtt_us`, as tower does, so a new endpoint
//! is neither starved (it would be if costed high) nor flooded (it would be
//! at cost 0). Costs are compared by cross-multiplying with the weights,
//! never divided. Ties go to the first sample, which is random.
//!
//! A swap of the file starts warm: the EWMA is the host's, kept per
//! endpoint whatever plugin version reads it, and the plugin holds nothing
//! else between picks but the pushed endpoints, so it has no state to
//! `snapshot`.
//!
//! Config (JSON):
//! - `default_rtt_us` (default 1000, [`DEFAULT_RTT_US`]): the latency, in µs,
//!   assumed for an endpoint with no latency samples; at least 1.

use serde::Deserialize;
use switchyard_sdk::{export_balancer, host, Balancer, Endpoint, EndpointId, Load, RequestInfo};

/// Latency assumed for an endpoint without samples, unless configured.
pub const DEFAULT_RTT_US: u32 = 1000;

/// The plugin's config, as given in the pool's `balancer.config`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Latency, in µs, assumed for an endpoint with no samples yet.
    #[serde(default = "default_rtt_us")]
    pub default_rtt_us: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_rtt_us: DEFAULT_RTT_US,
        }
    }
}

/// Serde's default for `default_rtt_us`.
fn default_rtt_us() -> u32 {
    DEFAULT_RTT_US
}

/// The balancer's state.
#[derive(Debug, Default)]
pub struct PeakEwma {
    default_rtt_us: u64,
    ids: Vec<EndpointId>,
    weights: Vec<u128>,
}

impl PeakEwma {
    /// The unweighted cost of an endpoint of this load: its latency estimate
    /// (or the default) times its in-flight requests plus one. Below 2^64.
    fn cost(&self, load: Option<Load>) -> u64 {
        let load = load.unwrap_or_default();
        let rtt = match load.ewma_latency_us {
            0 => self.default_rtt_us,
            ewma => u64::from(ewma),
        };
        rtt * (u64::from(load.in_flight) + 1)
    }
}

impl Balancer for PeakEwma {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = switchyard_sdk::config::parse(config)?;
        if config.default_rtt_us == 0 {
            return Err("config key `default_rtt_us`: must be at least 1".to_string());
        }
        Ok(PeakEwma {
            default_rtt_us: u64::from(config.default_rtt_us),
            ..Self::default()
        })
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.ids = endpoints.iter().map(|e| e.id).collect();
        self.weights = endpoints
            .iter()
            .map(|e| u128::from(e.weight.max(1)))
            .collect();
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        let n = self.ids.len() as u32;
        match n {
            0 => return None,
            1 => return Some(self.ids[0]),
            _ => {}
        }
        // Two distinct indices: the second is drawn from the other n - 1.
        let first = host::random_below(n) as usize;
        let mut second = host::random_below(n - 1) as usize;
        if second >= first {
            second += 1;
        }
        // Both loads in one call into the host.
        let (first_load, second_load) = host::load_pair(self.ids[first], self.ids[second]);
        let (first_cost, second_cost) = (self.cost(first_load), self.cost(second_load));
        // second_cost / second_weight < first_cost / first_weight.
        let second_cheaper = u128::from(second_cost) * self.weights[first]
            < u128::from(first_cost) * self.weights[second];
        Some(self.ids[if second_cheaper { second } else { first }])
    }
}

export_balancer!(PeakEwma);

#[cfg(test)]
mod tests;
