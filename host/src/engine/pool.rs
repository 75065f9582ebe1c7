//! A pool: its endpoints, its balancer, and the fallback that stands in for
//! the balancer when it fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::balancer::{Balancer, PickRequest, RoundRobin};
use super::endpoint::{Endpoint, EndpointSet};

/// A named group of endpoints and the strategy that spreads requests over
/// them.
#[derive(Debug)]
pub struct Pool {
    /// The pool's name.
    pub name: String,
    /// The plugin name, or `None` for the native round robin.
    pub plugin: Option<String>,
    endpoints: ArcSwap<EndpointSet>,
    balancer: Option<Arc<dyn Balancer>>,
    fallback: RoundRobin,
    fallback_picks: AtomicU64,
}

impl Pool {
    /// A pool whose endpoints are all eligible. `balancer` is `None` for the
    /// native round robin.
    pub fn new(
        name: String,
        endpoints: Vec<Arc<Endpoint>>,
        plugin: Option<String>,
        balancer: Option<Arc<dyn Balancer>>,
    ) -> Self {
        Pool {
            name,
            plugin,
            endpoints: ArcSwap::from_pointee(EndpointSet::all_eligible(1, endpoints)),
            balancer,
            fallback: RoundRobin::default(),
            fallback_picks: AtomicU64::new(0),
        }
    }

    /// The current endpoint set.
    pub fn endpoints(&self) -> arc_swap::Guard<Arc<EndpointSet>> {
        self.endpoints.load()
    }

    /// Picks an endpoint for a request: the pool's balancer, or the native
    /// round robin when there is none or it faults. `None` only when no
    /// endpoint is eligible.
    pub fn pick(&self, request: &mut PickRequest<'_>) -> Option<Arc<Endpoint>> {
        let set = self.endpoints.load();
        if set.eligible.is_empty() {
            return None;
        }
        let id = match &self.balancer {
            Some(balancer) => match balancer.pick(&set, request) {
                Ok(id) => id,
                Err(_fault) => {
                    self.fallback_picks.fetch_add(1, Ordering::Relaxed);
                    self.fallback.pick(&set, request).ok()?
                }
            },
            None => self.fallback.pick(&set, request).ok()?,
        };
        set.get(id).cloned()
    }

    /// Picks the native round robin made because the balancer faulted.
    pub fn fallback_picks(&self) -> u64 {
        self.fallback_picks.load(Ordering::Relaxed)
    }
}
