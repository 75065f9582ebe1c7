//! Routes: which pool a request goes to, by host and path prefix; the first
//! matching route in config order wins.
//!
//! The table is indexed when it is built (a reload builds a new one, off
//! the request path), so finding a route costs the same for the first of
//! 10,000 routes as for the last: routes are grouped by their exact host
//! (hashed; routes without a host in a group of their own), and within a
//! group by their path prefix, hashed per prefix length. A request looks up
//! its host's group and the any-host group, and in each tries only the
//! prefix lengths that occur there, keeping the earliest route that matches.
//! The answer is the one a scan in file order would give. A table of a few
//! routes is scanned instead: trying them costs less than two lookups.

use std::collections::HashMap;

/// Hashed with foldhash: several times cheaper than SipHash on short keys,
/// and the keys come from the config, not from clients.
type Map<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// Tables this small are scanned in order rather than looked up.
const SCAN_UP_TO: usize = 8;

use super::balancer::Priority;

/// One routing rule.
#[derive(Debug, Clone)]
pub struct Route {
    /// Lower-case host without port; `None` matches any.
    pub host: Option<String>,
    /// The path must start with this.
    pub path_prefix: String,
    /// Where matching requests go: the index of the pool in the topology's
    /// pools (`Topology::route_pool`). An index rather than the pool, so a
    /// table whose rules did not change serves on across a rebuild of the
    /// pools it names.
    pub pool: usize,
    /// A request body larger than this is refused with 413; 0: any size.
    pub max_body_bytes: u64,
    /// The class of its requests, unless `priority_header` names another.
    pub priority: Priority,
    /// A request header the route trusts to name the class (`p0`..`p4`
    /// or `0`..`4`); a value it does not name leaves the route's class.
    pub priority_header: Option<http::HeaderName>,
}

impl Route {
    /// The class of a request with headers looked up by `header`.
    pub fn class<'a>(
        &self,
        header: impl FnOnce(&http::HeaderName) -> Option<&'a [u8]>,
    ) -> Priority {
        self.priority_header
            .as_ref()
            .and_then(header)
            .and_then(Priority::parse)
            .unwrap_or(self.priority)
    }

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

/// The routing table, in config order, with its index.
#[derive(Debug, Default, Clone)]
pub struct Routes {
    routes: Vec<Route>,
    /// Routes by their lower-case host.
    by_host: Map<PrefixIndex>,
    /// Routes without a host.
    any_host: PrefixIndex,
}

/// The routes of one host group by path prefix: for each prefix, the
/// earliest route (in file order) that has it.
#[derive(Debug, Default, Clone)]
struct PrefixIndex {
    /// The prefix lengths that occur, in bytes, ascending.
    lengths: Vec<usize>,
    /// The earliest route's position by prefix.
    earliest: Map<usize>,
}

impl PrefixIndex {
    fn add(&mut self, prefix: &str, position: usize) {
        // Routes are added in file order: the first to claim a prefix keeps it.
        self.earliest.entry(prefix.to_string()).or_insert(position);
        if let Err(at) = self.lengths.binary_search(&prefix.len()) {
            self.lengths.insert(at, prefix.len());
        }
    }

    /// The earliest route whose prefix `path` starts with.
    fn find(&self, path: &str) -> Option<usize> {
        let mut best: Option<usize> = None;
        for &length in &self.lengths {
            if length > path.len() {
                break;
            }
            // Not a character boundary of `path`: no prefix can end there.
            let Some(prefix) = path.get(..length) else {
                continue;
            };
            if let Some(&position) = self.earliest.get(prefix) {
                best = Some(best.map_or(position, |b| b.min(position)));
            }
        }
        best
    }
}

impl Routes {
    /// A table of these routes, tried in order, and its index.
    pub fn new(routes: Vec<Route>) -> Self {
        let mut by_host: Map<PrefixIndex> = Map::default();
        let mut any_host = PrefixIndex::default();
        for (position, route) in routes.iter().enumerate() {
            match &route.host {
                Some(host) => by_host
                    .entry(host.to_ascii_lowercase())
                    .or_default()
                    .add(&route.path_prefix, position),
                None => any_host.add(&route.path_prefix, position),
            }
        }
        Routes {
            routes,
            by_host,
            any_host,
        }
    }

    /// The first route matching `host` (without port) and `path`.
    pub fn find_route(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        if self.routes.len() <= SCAN_UP_TO {
            return self.scan(host, path);
        }
        self.find_indexed(host, path)
    }

    /// The first route matching, by the index.
    fn find_indexed(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        let for_host = host.and_then(|host| {
            let group = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                self.by_host.get(&host.to_ascii_lowercase())
            } else {
                self.by_host.get(host)
            };
            group?.find(path)
        });
        let any = self.any_host.find(path);
        let position = match (for_host, any) {
            (Some(a), Some(b)) => a.min(b),
            (found, None) | (None, found) => found?,
        };
        let route = &self.routes[position];
        debug_assert!(route.matches(host, path));
        Some(route)
    }

    /// The first route matching, by trying each in file order: what the
    /// index must agree with.
    fn scan(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.matches(host, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rules: &[(Option<&str>, &str)]) -> Routes {
        Routes::new(
            rules
                .iter()
                .map(|(host, prefix)| Route {
                    host: host.map(str::to_string),
                    path_prefix: prefix.to_string(),
                    pool: 0,
                    max_body_bytes: 0,
                    priority: Priority::default(),
                    priority_header: None,
                })
                .collect(),
        )
    }

    fn position(routes: &Routes, found: Option<&Route>) -> Option<usize> {
        let found = found?;
        routes.routes.iter().position(|r| std::ptr::eq(r, found))
    }

    #[test]
    fn the_index_agrees_with_a_scan_in_file_order() {
        let routes = table(&[
            (Some("api.test"), "/v2"),
            (None, "/static/"),
            (Some("api.test"), "/"),
            (Some("Mixed.Test"), "/m"),
            (None, "/static/img"),
            (None, "/"),
            (Some("api.test"), "/v2/late"),
            (None, "/é"),
            (Some("other.test"), "/"),
        ]);
        let hosts = [
            None,
            Some("api.test"),
            Some("API.TEST"),
            Some("mixed.test"),
            Some("other.test"),
            Some("nope.test"),
        ];
        let paths = [
            "/",
            "/v2",
            "/v2/late/x",
            "/static/img/a.png",
            "/static",
            "/m",
            "/é/x",
            "/e",
            "",
            "x",
        ];
        for host in hosts {
            for path in paths {
                assert_eq!(
                    position(&routes, routes.find_indexed(host, path)),
                    position(&routes, routes.scan(host, path)),
                    "{host:?} {path:?}"
                );
            }
        }
    }

    #[test]
    fn random_tables_agree_with_a_scan() {
        let hosts = [None, Some("a.test"), Some("b.test"), Some("C.test")];
        let prefixes = ["/", "/a", "/ab", "/abc", "/b", "/a/", "/ä", "/abcd/e"];
        let paths = [
            "/",
            "/a",
            "/ab",
            "/abc",
            "/abcd/e/f",
            "/b/x",
            "/a/b",
            "/äx",
            "/z",
            "",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..300 {
            let rules: Vec<(Option<&str>, &str)> = (0..rng.usize(0..40))
                .map(|_| {
                    (
                        hosts[rng.usize(..hosts.len())],
                        prefixes[rng.usize(..prefixes.len())],
                    )
                })
                .collect();
            let routes = table(&rules);
            for host in [
                None,
                Some("a.test"),
                Some("B.TEST"),
                Some("c.test"),
                Some("d.test"),
            ] {
                for path in paths {
                    assert_eq!(
                        position(&routes, routes.find_indexed(host, path)),
                        position(&routes, routes.scan(host, path)),
                        "{rules:?} {host:?} {path:?}"
                    );
                }
            }
        }
    }
}
