//! `{{name}}`: least in flight over a round-robin window. Each pick looks at
//! the next `window` endpoints in round-robin order, asks the host how many
//! requests each has in flight, and takes the one with the fewest; a tie goes
//! to the first in round-robin order, so an idle pool is served round robin.
//! Looking at a window rather than the whole pool keeps a pick O(`window`)
//! on a pool of any size. An endpoint the host reports no load for counts
//! as 0 in flight; an empty pool declines the pick.
//!
//! Config (JSON, every key optional):
//! - `window` (default [`DEFAULT_WINDOW`]): endpoints looked at per pick,
//!   from 1 (plain round robin) to [`MAX_WINDOW`].

use serde::Deserialize;
use switchyard_sdk::{export_balancer, host, Balancer, Endpoint, EndpointId, RequestInfo};

/// Endpoints looked at per pick unless `window` says otherwise.
pub const DEFAULT_WINDOW: u32 = 8;

/// The largest `window` accepted; it bounds the work of a pick.
pub const MAX_WINDOW: u32 = 64;

/// The plugin's config, as given in the pool's `balancer.config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    window: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window: DEFAULT_WINDOW,
        }
    }
}

/// The balancer's state for one pool.
#[derive(Debug)]
pub struct LeastInFlight {
    window: usize,
    ids: Vec<EndpointId>,
    /// Where the next pick's window starts.
    next: usize,
}

impl Balancer for LeastInFlight {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = switchyard_sdk::config::parse(config)?;
        if !(1..=MAX_WINDOW).contains(&config.window) {
            return Err(format!(
                "config key `window`: must be from 1 to {MAX_WINDOW}, got {}",
                config.window
            ));
        }
        Ok(LeastInFlight {
            window: config.window as usize,
            ids: Vec::new(),
            next: 0,
        })
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.ids = endpoints.iter().map(|e| e.id).collect();
        self.next %= self.ids.len().max(1);
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        let n = self.ids.len();
        if n == 0 {
            return None;
        }
        let start = self.next;
        let mut best: Option<(usize, u32)> = None;
        for step in 0..self.window.min(n) {
            let index = (start + step) % n;
            let in_flight = host::load(self.ids[index]).map_or(0, |load| load.in_flight);
            // Strictly fewer: a tie keeps the earlier in round-robin order.
            if best.is_none_or(|(_, fewest)| in_flight < fewest) {
                best = Some((index, in_flight));
            }
        }
        let (index, _) = best?;
        self.next = (index + 1) % n;
        Some(self.ids[index])
    }
}

export_balancer!(LeastInFlight);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_sdk::testing::{endpoints, pick_counts, TestHost};
    use switchyard_sdk::Load;

    fn busy(in_flight: u32) -> Load {
        Load {
            in_flight,
            ..Load::default()
        }
    }

    #[test]
    fn an_idle_pool_is_served_round_robin() {
        let _host = TestHost::new();
        let mut balancer = LeastInFlight::configure("{}").unwrap();
        balancer.set_endpoints(endpoints(3));
        let picks: Vec<_> = (0..6)
            .map(|_| balancer.pick(&RequestInfo::default()))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2].map(Some));
    }

    #[test]
    fn the_endpoint_with_fewest_in_flight_wins() {
        let host = TestHost::new();
        host.set_load(0, busy(5));
        host.set_load(1, busy(1));
        host.set_load(2, busy(3));
        let mut balancer = LeastInFlight::configure("{}").unwrap();
        balancer.set_endpoints(endpoints(3));
        let counts = pick_counts(&mut balancer, 9, &RequestInfo::default());
        assert_eq!(counts, [0, 9]);
    }

    #[test]
    fn a_window_of_one_is_plain_round_robin() {
        let host = TestHost::new();
        host.set_load(0, busy(100));
        let mut balancer = LeastInFlight::configure(r#"{"window": 1}"#).unwrap();
        balancer.set_endpoints(endpoints(2));
        let counts = pick_counts(&mut balancer, 10, &RequestInfo::default());
        assert_eq!(counts, [5, 5]);
    }

    #[test]
    fn an_empty_pool_declines() {
        let _host = TestHost::new();
        let mut balancer = LeastInFlight::configure("{}").unwrap();
        assert_eq!(balancer.pick(&RequestInfo::default()), None);
    }

    #[test]
    fn bad_config_is_refused_with_its_key() {
        let error = LeastInFlight::configure(r#"{"window": 0}"#).unwrap_err();
        assert!(error.contains("`window`"), "{error}");
        let error = LeastInFlight::configure(r#"{"windw": 2}"#).unwrap_err();
        assert!(error.contains("windw"), "{error}");
    }
}
