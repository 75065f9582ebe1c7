//! What serves at one moment: the route table and the pools it leads to.
//! A reload publishes a new one whole; a request in flight finishes on the
//! one it started with.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::pool::Pool;
use super::route::Routes;

/// The routes and every pool, in config order.
#[derive(Debug, Default)]
pub struct Topology {
    /// The route table.
    pub routes: Routes,
    /// Every pool, in config order.
    pub pools: Vec<Arc<Pool>>,
}

impl Topology {
    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.iter().find(|pool| pool.name == name)
    }
}

/// The topology every worker and the control endpoint read, swapped whole by
/// a reload without a lock on the request path.
pub type SharedTopology = Arc<ArcSwap<Topology>>;
