//! What serves at one moment: the route table and the pools it leads to.
//! A reload publishes a new one whole; a request in flight finishes on the
//! one it started with.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::pool::Pool;
use super::route::{Route, Routes};

/// The routes and every pool, in config order.
#[derive(Debug, Default)]
pub struct Topology {
    /// The route table, naming pools by their index in `pools`: shared by
    /// the next topology when neither the rules nor the pools' order change.
    pub routes: Arc<Routes>,
    /// Every pool, in config order.
    pub pools: Vec<Arc<Pool>>,
}

impl Topology {
    /// The pool `route` leads to (the first of a split).
    pub fn route_pool(&self, route: &Route) -> &Arc<Pool> {
        &self.pools[route.pool]
    }

    /// The pool a request with `hash` on `route` goes to: its pool, or one
    /// of its split by weight.
    pub fn request_pool(&self, route: &Route, hash: u64) -> &Arc<Pool> {
        match &route.split {
            Some(split) => &self.pools[split.choose(hash)],
            None => &self.pools[route.pool],
        }
    }

    /// Where `route` copies its sampled requests, if it does and this one
    /// is sampled.
    pub fn mirror_pool(&self, route: &Route) -> Option<&Arc<Pool>> {
        let mirror = route.mirror.as_ref()?;
        mirror.sampled().then(|| &self.pools[mirror.pool])
    }

    /// The pool of the first route matching `host` (without port) and `path`.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<Pool>> {
        self.routes
            .find_route(host, path)
            .map(|route| self.route_pool(route))
    }

    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.iter().find(|pool| pool.name == name)
    }
}

/// The topology every worker and the control endpoint read, swapped whole by
/// a reload without a lock on the request path.
pub type SharedTopology = Arc<ArcSwap<Topology>>;
