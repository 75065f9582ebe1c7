//! Routes: which pool a request goes to, by host and path prefix; the first
//! matching route in config order wins.

use std::sync::Arc;

use super::pool::Pool;

/// One routing rule.
#[derive(Debug, Clone)]
pub struct Route {
    /// Lower-case host without port; `None` matches any.
    pub host: Option<String>,
    /// The path must start with this.
    pub path_prefix: String,
    /// Where matching requests go.
    pub pool: Arc<Pool>,
    /// A request body larger than this is refused with 413; 0: any size.
    pub max_body_bytes: u64,
}

impl Route {
    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        if let Some(want) = &self.host {
            match host {
                Some(host) if host.eq_ignore_ascii_case(want) => {}
                _ => return false,
            }
        }
        path.starts_with(&self.path_prefix)
    }
}

/// The routing table, in config order.
#[derive(Debug, Default, Clone)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// A table of these routes, tried in order.
    pub fn new(routes: Vec<Route>) -> Self {
        Routes { routes }
    }

    /// The pool of the first route matching `host` (without port) and `path`.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<Pool>> {
        self.find_route(host, path).map(|route| &route.pool)
    }

    /// The first route matching `host` (without port) and `path`.
    pub fn find_route(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.matches(host, path))
    }
}
