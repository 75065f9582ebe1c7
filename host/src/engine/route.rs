//! Routes: which pool a request goes to, by host (exact or `*.suffix`),
//! path (prefix, exact or regex), method, header fields and query
//! parameters; the first matching route in config order wins. A route also
//! says how its requests are rewritten, hashed for balancing, timed and
//! retried.
//!
//! The table is indexed when it is built (a reload builds a new one, off
//! the request path), so finding a route costs the same for the first of
//! 10,000 routes as for the last. Routes are grouped by host: exact hosts
//! and wildcard suffixes each in a hashed map (a request looks up its
//! host, then each of its dot-suffixes: `a.b.example.com` tries
//! `b.example.com`, `example.com`, `com`), and routes without a host in a
//! group of their own. Within a group, a route whose only conditions are
//! host and a path prefix or exact path is indexed by that path (prefixes
//! hashed per prefix length, exact paths hashed); a route with a regex or
//! with method, header or query conditions is a candidate of its group,
//! tried in file order, and only while it is earlier than the best match
//! found so far. The answer is the one a scan in file order would give. A
//! table of a few routes is scanned instead: trying them costs less than
//! the lookups.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Hashed with foldhash: several times cheaper than SipHash on short keys,
/// and the keys come from the config, not from clients.
type Map<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// Tables this small are scanned in order rather than looked up.
const SCAN_UP_TO: usize = 8;

use super::balancer::Priority;
use super::histogram::Histogram;
use super::pool::{Pool, Recovery};
use super::rate_limit::RateLimit;

/// Which hosts a route takes.
#[derive(Debug, Clone, Default)]
pub enum HostMatch {
    /// Any host, and requests without one.
    #[default]
    Any,
    /// This lower-case host, without port.
    Exact(String),
    /// `*.example.com`, held as `example.com` in lower case: any host
    /// ending in `.example.com` with at least one label before it; not
    /// `example.com` itself.
    Suffix(String),
}

impl HostMatch {
    fn matches(&self, host: Option<&str>) -> bool {
        match (self, host) {
            (HostMatch::Any, _) => true,
            (HostMatch::Exact(want), Some(host)) => host.eq_ignore_ascii_case(want),
            (HostMatch::Suffix(suffix), Some(host)) => {
                let (host, suffix) = (host.as_bytes(), suffix.as_bytes());
                host.len() > suffix.len() + 1
                    && host[host.len() - suffix.len() - 1] == b'.'
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
            (_, None) => false,
        }
    }
}

/// Which paths a route takes.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// The path starts with this.
    Prefix(String),
    /// The path is this.
    Exact(String),
    /// The whole path matches this (anchored when built).
    Regex(regex::Regex),
}

impl Default for PathMatch {
    fn default() -> Self {
        PathMatch::Prefix("/".into())
    }
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathMatch::Exact(exact) => path == exact,
            PathMatch::Regex(regex) => regex.is_match(path),
        }
    }
}

/// A condition on a header field or a query parameter.
#[derive(Debug, Clone)]
pub struct FieldMatch {
    /// The header's name in lower case, or the query parameter's as written.
    pub name: String,
    /// What its values must show.
    pub test: FieldTest,
}

/// What a header field's or query parameter's values must show. A field
/// sent more than once matches when any of its values does.
#[derive(Debug, Clone)]
pub enum FieldTest {
    /// At least one value, whatever it is.
    Present,
    /// None.
    Absent,
    /// A value equal to this, byte for byte.
    Exact(Vec<u8>),
    /// A value matched whole by this (anchored when built).
    Regex(regex::bytes::Regex),
}

impl FieldTest {
    /// Whether the values `any` offers pass: `any(test)` says whether some
    /// value passes `test`.
    fn holds(&self, any: impl FnOnce(&mut dyn FnMut(&[u8]) -> bool) -> bool) -> bool {
        match self {
            FieldTest::Present => any(&mut |_| true),
            FieldTest::Absent => !any(&mut |_| true),
            FieldTest::Exact(want) => any(&mut |value| value == want.as_slice()),
            FieldTest::Regex(regex) => any(&mut |value| regex.is_match(value)),
        }
    }
}

/// A request's header fields as either proxy path holds them.
pub trait Fields {
    /// Whether `test` passes for some value of the field `name` (lower case).
    fn any_value(&self, name: &str, test: &mut dyn FnMut(&[u8]) -> bool) -> bool;
}

impl Fields for http::HeaderMap {
    fn any_value(&self, name: &str, test: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.get_all(name)
            .iter()
            .any(|value| test(value.as_bytes()))
    }
}

impl Fields for &[httparse::Header<'_>] {
    fn any_value(&self, name: &str, test: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.iter()
            .any(|field| field.name.eq_ignore_ascii_case(name) && test(field.value))
    }
}

/// What routing reads of a request.
#[derive(Clone, Copy)]
pub struct RouteRequest<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// Without port, in any case.
    pub host: Option<&'a str>,
    /// The path, without query.
    pub path: &'a str,
    /// The query string, without `?`: parameters are compared as sent,
    /// not percent-decoded.
    pub query: Option<&'a str>,
    /// Its header fields.
    pub fields: &'a (dyn Fields + Sync),
}

impl std::fmt::Debug for RouteRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteRequest")
            .field("method", &self.method)
            .field("host", &self.host)
            .field("path", &self.path)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl RouteRequest<'_> {
    /// Whether `test` passes for some value of the query parameter `name`.
    /// A parameter without `=` has the empty value.
    fn any_parameter(&self, name: &str, test: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.query.is_some_and(|query| {
            query.split('&').any(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                key == name && test(value.as_bytes())
            })
        })
    }
}

/// Changes made to header fields on the way through: `remove` first, then
/// `add`, which replaces any field of that name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Set, replacing every field of the name.
    pub add: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Dropped.
    pub remove: Vec<http::HeaderName>,
}

impl HeaderEdits {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// Whether a received field named `name` is left out: removed, or
    /// replaced by an added one.
    pub fn drops(&self, name: &str) -> bool {
        self.remove
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r.as_str()))
            || self
                .add
                .iter()
                .any(|(added, _)| name.eq_ignore_ascii_case(added.as_str()))
    }

    /// Applies the edits to a map.
    pub fn apply(&self, fields: &mut http::HeaderMap) {
        for name in &self.remove {
            fields.remove(name);
        }
        for (name, value) in &self.add {
            fields.insert(name.clone(), value.clone());
        }
    }
}

/// What happens to the matched path prefix on the way upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PathRewrite {
    /// The path goes as it came.
    #[default]
    Keep,
    /// The prefix is removed, keeping a leading `/`.
    Strip(String),
    /// The prefix (`from`) is replaced by `to`.
    Replace {
        /// The route's `path_prefix`.
        from: String,
        /// What it becomes.
        to: String,
    },
}

impl PathRewrite {
    /// The request target (path and query) for the endpoint.
    pub fn target<'t>(&self, target: &'t str) -> Cow<'t, str> {
        let (from, to) = match self {
            PathRewrite::Keep => return Cow::Borrowed(target),
            PathRewrite::Strip(from) => (from, ""),
            PathRewrite::Replace { from, to } => (from, to.as_str()),
        };
        // Routing matched the prefix on the path, which starts the target.
        let Some(rest) = target.strip_prefix(from.as_str()) else {
            return Cow::Borrowed(target);
        };
        let mut out = String::with_capacity(to.len() + rest.len() + 1);
        out.push_str(to);
        match (out.ends_with('/'), rest.starts_with('/')) {
            (true, true) => out.push_str(&rest[1..]),
            (false, false) => {
                out.push('/');
                out.push_str(rest);
            }
            _ => out.push_str(rest),
        }
        Cow::Owned(out)
    }
}

/// A route's rewrites; shared by reference so a request can hold them
/// through its exchange without copying.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// Edits of the request's fields sent to the endpoint.
    pub request_headers: HeaderEdits,
    /// Edits of the response's fields sent to the client.
    pub response_headers: HeaderEdits,
    /// The path sent upstream.
    pub path: PathRewrite,
}

/// What a route's requests are hashed by for balancing (`request-info`'s
/// `hash`, which consistent hashing places by).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HashKey {
    /// The client's address.
    #[default]
    Client,
    /// The request's path (before any rewrite), without query.
    Path,
    /// The first value of this header; the client's address without one.
    Header(http::HeaderName),
    /// This cookie's value; the client's address without one.
    Cookie(String),
}

/// One routing rule.
#[derive(Debug, Clone)]
pub struct Route {
    /// The hosts it takes.
    pub host: HostMatch,
    /// The paths it takes.
    pub path: PathMatch,
    /// The methods it takes, as written (methods are case-sensitive); empty:
    /// any.
    pub methods: Vec<String>,
    /// Header fields it requires, all of them.
    pub headers: Vec<FieldMatch>,
    /// Query parameters it requires, all of them.
    pub query: Vec<FieldMatch>,
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
    /// Its rewrites, if it has any.
    pub rewrite: Option<Arc<Rewrite>>,
    /// What its requests are hashed by.
    pub hash_key: HashKey,
    /// The time from a request's arrival to its response head, in place of
    /// `proxy.request_timeout_ms`.
    pub request_timeout: Option<Duration>,
    /// Whether failed attempts may be retried by the pool's recovery
    /// policy; `false` gives each request one attempt and no policy.
    pub retries: bool,
    /// Its own recovery policy, retry budget and replay limit, in place of
    /// its pool's (of whichever pool of a split the request goes to).
    pub recovery: Option<Arc<Recovery>>,
    /// Pools its requests are spread over by weight, in place of `pool`
    /// (which is then the first of them).
    pub split: Option<Arc<Split>>,
    /// Where a share of its requests is copied.
    pub mirror: Option<Mirror>,
    /// Its name in metrics, if it has one.
    pub name: Option<Arc<str>>,
    /// Its requests' durations, kept for a named route.
    pub duration: Option<Arc<Histogram>>,
    /// Whether a matching request is sent to every eligible endpoint of the
    /// pool, its client answered with each endpoint's status
    /// (`proxy/broadcast.rs`).
    pub broadcast: bool,
    /// Requests over this are answered 429 before a pick; shared by every
    /// worker, and handed on to the same rule when a reload rebuilds the
    /// table.
    pub rate_limit: Option<Arc<RateLimit>>,
}

/// A route's pools by weight.
#[derive(Debug)]
pub struct Split {
    /// Each pool's index with the running sum of weights up to and
    /// including it.
    targets: Vec<(usize, u64)>,
    total: u64,
    /// By the request's hash rather than at random.
    sticky: bool,
}

impl Split {
    /// Pools (by index) with their weights; `sticky`: the same hash goes to
    /// the same pool. The weights must not all be 0.
    pub fn new(weights: Vec<(usize, u32)>, sticky: bool) -> Self {
        let mut total = 0;
        let targets = weights
            .into_iter()
            .map(|(pool, weight)| {
                total += u64::from(weight);
                (pool, total)
            })
            .collect();
        Split {
            targets,
            total: total.max(1),
            sticky,
        }
    }

    /// The pool a request with `hash` goes to.
    pub fn choose(&self, hash: u64) -> usize {
        let point = if self.sticky {
            // Mixed apart from the hash a balancer sees: otherwise a pool
            // would get only the hashes of one stretch of its ring.
            hash.rotate_left(29).wrapping_mul(0x9e37_79b9_7f4a_7c15) % self.total
        } else {
            fastrand::u64(..self.total)
        };
        self.targets
            .iter()
            .find(|(_, upto)| point < *upto)
            .map_or(self.targets[0].0, |(pool, _)| *pool)
    }
}

/// Where a route copies a share of its requests.
#[derive(Debug, Clone, Copy)]
pub struct Mirror {
    /// The pool's index.
    pub pool: usize,
    /// The share copied, in millionths.
    pub per_million: u32,
}

impl Mirror {
    /// Whether this request is copied.
    pub fn sampled(&self) -> bool {
        fastrand::u32(..1_000_000) < self.per_million
    }
}

impl Default for Route {
    /// Every request, to the first pool, with no limit, rewrite or other
    /// setting of its own.
    fn default() -> Self {
        Route {
            host: HostMatch::Any,
            path: PathMatch::default(),
            methods: Vec::new(),
            headers: Vec::new(),
            query: Vec::new(),
            pool: 0,
            max_body_bytes: 0,
            priority: Priority::default(),
            priority_header: None,
            rewrite: None,
            hash_key: HashKey::Client,
            request_timeout: None,
            retries: true,
            recovery: None,
            split: None,
            mirror: None,
            name: None,
            duration: None,
            broadcast: false,
            rate_limit: None,
        }
    }
}

/// Stable across builds and hosts, so proxies of one fleet place a key
/// alike: 64-bit FNV-1a (as the consistent-hash plugin hashes a header),
/// then the splitmix64 finaliser (as a client address is), which spreads
/// the short keys FNV leaves close together.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    mix64(bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    }))
}

/// The splitmix64 finaliser: every bit of `z` moves about half the bits
/// of the result. Over a Weyl sequence (`n × 0x9e3779b97f4a7c15`), a
/// well-spread pseudo-random sequence.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Route {
    /// What decides the failed attempts of this route's requests to `pool`:
    /// the route's own policy, else the pool's; none when the route gives
    /// its requests one attempt (`retries = false`).
    pub fn recovery<'a>(&'a self, pool: &'a Pool) -> Option<&'a Recovery> {
        if !self.retries {
            return None;
        }
        self.recovery.as_deref().or_else(|| pool.recovery())
    }

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

    /// The balancing hash of `request`; `client` is its client's address
    /// hash, which a missing header or cookie falls back to.
    pub fn hash(&self, request: &RouteRequest<'_>, client: u64) -> u64 {
        let mut found = None;
        match &self.hash_key {
            HashKey::Client => {}
            HashKey::Path => found = Some(hash_bytes(request.path.as_bytes())),
            HashKey::Header(name) => {
                request.fields.any_value(name.as_str(), &mut |value| {
                    found = Some(hash_bytes(value));
                    true
                });
            }
            HashKey::Cookie(cookie) => {
                request.fields.any_value("cookie", &mut |value| {
                    let value = value
                        .split(|b| *b == b';')
                        .map(<[u8]>::trim_ascii)
                        .find_map(|pair| {
                            let at = pair.iter().position(|b| *b == b'=')?;
                            (&pair[..at] == cookie.as_bytes()).then(|| &pair[at + 1..])
                        });
                    if let Some(value) = value {
                        found = Some(hash_bytes(value));
                    }
                    found.is_some()
                });
            }
        }
        found.unwrap_or(client)
    }

    /// Only host and a path prefix or exact path: indexed by its path.
    fn indexed_path(&self) -> Option<&PathMatch> {
        let plain = self.methods.is_empty() && self.headers.is_empty() && self.query.is_empty();
        match &self.path {
            PathMatch::Prefix(_) | PathMatch::Exact(_) if plain => Some(&self.path),
            _ => None,
        }
    }

    fn matches(&self, request: &RouteRequest<'_>) -> bool {
        self.host.matches(request.host)
            && self.path.matches(request.path)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == request.method))
            && self.headers.iter().all(|field| {
                field
                    .test
                    .holds(|test| request.fields.any_value(&field.name, test))
            })
            && self.query.iter().all(|parameter| {
                parameter
                    .test
                    .holds(|test| request.any_parameter(&parameter.name, test))
            })
    }
}

/// The routing table, in config order, with its index.
#[derive(Debug, Default, Clone)]
pub struct Routes {
    routes: Vec<Route>,
    /// Routes by their lower-case exact host.
    by_host: Map<Group>,
    /// Routes by their lower-case wildcard suffix (`example.com` for
    /// `*.example.com`).
    by_suffix: Map<Group>,
    /// Routes without a host.
    any_host: Group,
}

/// The routes of one host group.
#[derive(Debug, Default, Clone)]
struct Group {
    prefixes: PrefixIndex,
    /// The earliest route's position by exact path.
    exact: Map<usize>,
    /// Routes with a regex or more conditions: positions, ascending.
    candidates: Vec<usize>,
}

impl Group {
    fn add(&mut self, route: &Route, position: usize) {
        match route.indexed_path() {
            Some(PathMatch::Prefix(prefix)) => self.prefixes.add(prefix, position),
            Some(PathMatch::Exact(path)) => {
                self.exact.entry(path.clone()).or_insert(position);
            }
            _ => self.candidates.push(position),
        }
    }

    /// The earliest of `best` and this group's routes matching `request`.
    fn find(
        &self,
        routes: &[Route],
        request: &RouteRequest<'_>,
        mut best: Option<usize>,
    ) -> Option<usize> {
        let mut keep = |position: usize| best = Some(best.map_or(position, |b| b.min(position)));
        if let Some(position) = self.prefixes.find(request.path) {
            keep(position);
        }
        if let Some(&position) = self.exact.get(request.path) {
            keep(position);
        }
        for &position in &self.candidates {
            if best.is_some_and(|best| position >= best) {
                break;
            }
            if routes[position].matches(request) {
                return Some(position);
            }
        }
        best
    }
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

/// A request of no fields, for [`Routes::find_route`].
struct NoFields;

impl Fields for NoFields {
    fn any_value(&self, _: &str, _: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        false
    }
}

impl Routes {
    /// The named routes with their duration histograms, in file order.
    pub fn named(&self) -> impl Iterator<Item = (&str, &Arc<Histogram>)> {
        self.routes
            .iter()
            .filter_map(|route| Some((route.name.as_deref()?, route.duration.as_ref()?)))
    }

    /// The routes' rate limits, in file order.
    pub fn rate_limits(&self) -> impl Iterator<Item = &Arc<RateLimit>> {
        self.routes
            .iter()
            .filter_map(|route| route.rate_limit.as_ref())
    }

    /// A table of these routes, tried in order, and its index.
    pub fn new(routes: Vec<Route>) -> Self {
        let mut by_host: Map<Group> = Map::default();
        let mut by_suffix: Map<Group> = Map::default();
        let mut any_host = Group::default();
        for (position, route) in routes.iter().enumerate() {
            let group = match &route.host {
                HostMatch::Exact(host) => by_host.entry(host.to_ascii_lowercase()).or_default(),
                HostMatch::Suffix(suffix) => {
                    by_suffix.entry(suffix.to_ascii_lowercase()).or_default()
                }
                HostMatch::Any => &mut any_host,
            };
            group.add(route, position);
        }
        Routes {
            routes,
            by_host,
            by_suffix,
            any_host,
        }
    }

    /// The first route matching `request`.
    pub fn find(&self, request: &RouteRequest<'_>) -> Option<&Route> {
        if self.routes.len() <= SCAN_UP_TO {
            return self.scan(request);
        }
        self.find_indexed(request)
    }

    /// The first route matching a `GET` of `path` at `host` (without port)
    /// with no header fields and no query.
    pub fn find_route(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        self.find(&RouteRequest {
            method: "GET",
            host,
            path,
            query: None,
            fields: &NoFields,
        })
    }

    /// The first route matching, by the index.
    fn find_indexed(&self, request: &RouteRequest<'_>) -> Option<&Route> {
        let mut best = None;
        if let Some(host) = request.host {
            let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(host.to_ascii_lowercase())
            } else {
                Cow::Borrowed(host)
            };
            if let Some(group) = self.by_host.get(host.as_ref()) {
                best = group.find(&self.routes, request, best);
            }
            if !self.by_suffix.is_empty() {
                // Each dot-suffix with a label before it: `*.example.com`
                // is looked up as `example.com` from `a.example.com`.
                let mut rest = host.as_ref();
                while let Some(dot) = rest.find('.') {
                    rest = &rest[dot + 1..];
                    // `.example.com` has no label before the suffix.
                    let labelled = host.len() - rest.len() > 1;
                    if let Some(group) = self.by_suffix.get(rest).filter(|_| labelled) {
                        best = group.find(&self.routes, request, best);
                    }
                }
            }
        }
        best = self.any_host.find(&self.routes, request, best);
        let route = &self.routes[best?];
        debug_assert!(route.matches(request));
        Some(route)
    }

    /// The first route matching, by trying each in file order: what the
    /// index must agree with.
    fn scan(&self, request: &RouteRequest<'_>) -> Option<&Route> {
        self.routes.iter().find(|route| route.matches(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_follows_its_weights_and_a_sticky_one_the_hash() {
        let split = Split::new(vec![(3, 90), (7, 10), (9, 0)], false);
        let mut seen = [0u32; 10];
        for _ in 0..100_000 {
            seen[split.choose(0)] += 1;
        }
        assert_eq!(seen[9], 0, "weight 0 takes nothing");
        // 10% of 100,000: a standard deviation of about 95.
        assert!((9_500..10_500).contains(&seen[7]), "{seen:?}");

        let sticky = Split::new(vec![(0, 90), (1, 10)], true);
        let mut second = 0;
        for key in 0..10_000u64 {
            let hash = hash_bytes(&key.to_le_bytes());
            let pool = sticky.choose(hash);
            assert_eq!(pool, sticky.choose(hash), "the same hash, the same pool");
            second += pool;
        }
        assert!((800..1_200).contains(&second), "{second} of 10,000 keys");
    }

    fn route(host: HostMatch, path: PathMatch) -> Route {
        Route {
            host,
            path,
            ..Route::default()
        }
    }

    fn host(spec: Option<&str>) -> HostMatch {
        match spec {
            None => HostMatch::Any,
            Some(wild) if wild.starts_with("*.") => HostMatch::Suffix(wild[2..].to_lowercase()),
            Some(exact) => HostMatch::Exact(exact.to_lowercase()),
        }
    }

    fn regex(pattern: &str) -> regex::Regex {
        regex::Regex::new(&format!("^(?:{pattern})$")).unwrap()
    }

    fn bytes_regex(pattern: &str) -> regex::bytes::Regex {
        regex::bytes::Regex::new(&format!("^(?:{pattern})$")).unwrap()
    }

    fn table(rules: &[(Option<&str>, &str)]) -> Routes {
        Routes::new(
            rules
                .iter()
                .map(|(h, prefix)| route(host(*h), PathMatch::Prefix(prefix.to_string())))
                .collect(),
        )
    }

    fn position(routes: &Routes, found: Option<&Route>) -> Option<usize> {
        let found = found?;
        routes.routes.iter().position(|r| std::ptr::eq(r, found))
    }

    fn request<'a>(
        method: &'a str,
        host: Option<&'a str>,
        target: &'a str,
        fields: &'a http::HeaderMap,
    ) -> RouteRequest<'a> {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        RouteRequest {
            method,
            host,
            path,
            query,
            fields,
        }
    }

    fn agree(routes: &Routes, request: &RouteRequest<'_>) -> Option<usize> {
        let indexed = position(routes, routes.find_indexed(request));
        assert_eq!(
            indexed,
            position(routes, routes.scan(request)),
            "{} {:?} {:?} {:?}",
            request.method,
            request.host,
            request.path,
            request.query
        );
        indexed
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
        let fields = http::HeaderMap::new();
        for host in hosts {
            for path in paths {
                agree(&routes, &request("GET", host, path, &fields));
            }
        }
    }

    #[test]
    fn a_wildcard_host_takes_one_or_more_labels_in_any_case_but_not_the_bare_suffix() {
        let wild = host(Some("*.example.com"));
        for name in ["a.example.com", "A.b.EXAMPLE.com", "x-1.example.com"] {
            assert!(wild.matches(Some(name)), "{name}");
        }
        for name in [
            "example.com",
            ".example.com",
            "aexample.com",
            "example.com.x",
            "com",
        ] {
            assert!(!wild.matches(Some(name)), "{name}");
        }
        assert!(!wild.matches(None));
    }

    #[test]
    fn each_kind_of_condition_decides() {
        let mut fields = http::HeaderMap::new();
        fields.append("x-env", "canary".parse().unwrap());
        fields.append("x-env", "blue".parse().unwrap());
        let canary = |test| FieldMatch {
            name: "x-env".into(),
            test,
        };
        let cases: Vec<(Route, &str, &str, bool)> = vec![
            (
                route(HostMatch::Any, PathMatch::Exact("/a".into())),
                "GET",
                "/a?x=1",
                true,
            ),
            (
                route(HostMatch::Any, PathMatch::Exact("/a".into())),
                "GET",
                "/a/",
                false,
            ),
            (
                route(HostMatch::Any, PathMatch::Regex(regex("/u/[0-9]+"))),
                "GET",
                "/u/42",
                true,
            ),
            // A regex matches the whole path.
            (
                route(HostMatch::Any, PathMatch::Regex(regex("/u/[0-9]+"))),
                "GET",
                "/u/42/x",
                false,
            ),
            (
                Route {
                    methods: vec!["GET".into(), "HEAD".into()],
                    ..Route::default()
                },
                "HEAD",
                "/",
                true,
            ),
            (
                Route {
                    methods: vec!["GET".into()],
                    ..Route::default()
                },
                "POST",
                "/",
                false,
            ),
            (
                Route {
                    headers: vec![canary(FieldTest::Exact(b"blue".to_vec()))],
                    ..Route::default()
                },
                "GET",
                "/",
                true,
            ),
            (
                Route {
                    headers: vec![canary(FieldTest::Regex(bytes_regex("can.*")))],
                    ..Route::default()
                },
                "GET",
                "/",
                true,
            ),
            (
                Route {
                    headers: vec![canary(FieldTest::Regex(bytes_regex("an")))],
                    ..Route::default()
                },
                "GET",
                "/",
                false,
            ),
            (
                Route {
                    headers: vec![canary(FieldTest::Absent)],
                    ..Route::default()
                },
                "GET",
                "/",
                false,
            ),
            (
                Route {
                    headers: vec![FieldMatch {
                        name: "x-other".into(),
                        test: FieldTest::Absent,
                    }],
                    ..Route::default()
                },
                "GET",
                "/",
                true,
            ),
            (
                Route {
                    query: vec![FieldMatch {
                        name: "v".into(),
                        test: FieldTest::Exact(b"2".to_vec()),
                    }],
                    ..Route::default()
                },
                "GET",
                "/?a=1&v=2",
                true,
            ),
            (
                Route {
                    query: vec![FieldMatch {
                        name: "v".into(),
                        test: FieldTest::Exact(b"2".to_vec()),
                    }],
                    ..Route::default()
                },
                "GET",
                "/?v=20",
                false,
            ),
            (
                Route {
                    query: vec![FieldMatch {
                        name: "debug".into(),
                        test: FieldTest::Present,
                    }],
                    ..Route::default()
                },
                "GET",
                "/?debug",
                true,
            ),
            // Not percent-decoded: `%32` is not `2`.
            (
                Route {
                    query: vec![FieldMatch {
                        name: "v".into(),
                        test: FieldTest::Exact(b"2".to_vec()),
                    }],
                    ..Route::default()
                },
                "GET",
                "/?v=%32",
                false,
            ),
        ];
        for (index, (route, method, target, expected)) in cases.into_iter().enumerate() {
            let request = request(method, Some("h.test"), target, &fields);
            assert_eq!(route.matches(&request), expected, "case {index}: {target}");
        }
    }

    #[test]
    fn prefixes_are_stripped_or_replaced_keeping_one_slash_and_the_query() {
        let strip = |from: &str| PathRewrite::Strip(from.into());
        let replace = |from: &str, to: &str| PathRewrite::Replace {
            from: from.into(),
            to: to.into(),
        };
        let cases = [
            (strip("/api"), "/api/users?x=1", "/users?x=1"),
            (strip("/api/"), "/api/users", "/users"),
            (strip("/api"), "/api", "/"),
            (strip("/api"), "/api?x=1", "/?x=1"),
            (strip("/api"), "/apis", "/s"),
            (replace("/api/", "/v2/"), "/api/users?x", "/v2/users?x"),
            (replace("/api", "/v2/"), "/api/users", "/v2/users"),
            (replace("/api", "/v2"), "/api/users", "/v2/users"),
            (replace("/api", "/"), "/api", "/"),
            (PathRewrite::Keep, "/api/x?y", "/api/x?y"),
        ];
        for (rewrite, target, expected) in cases {
            assert_eq!(rewrite.target(target), expected, "{rewrite:?} {target}");
        }
    }

    #[test]
    fn requests_hash_by_their_route_s_key_or_fall_back_to_the_client() {
        let mut fields = http::HeaderMap::new();
        fields.append("x-user", "ada".parse().unwrap());
        fields.append("cookie", "theme=dark; session=s1".parse().unwrap());
        let request = request("GET", None, "/cart?x=1", &fields);
        let by = |hash_key| Route {
            hash_key,
            ..Route::default()
        };
        let client = 7;
        assert_eq!(by(HashKey::Client).hash(&request, client), client);
        assert_eq!(
            by(HashKey::Path).hash(&request, client),
            hash_bytes(b"/cart")
        );
        let header = |name: &'static str| HashKey::Header(http::HeaderName::from_static(name));
        assert_eq!(
            by(header("x-user")).hash(&request, client),
            hash_bytes(b"ada")
        );
        assert_eq!(by(header("x-none")).hash(&request, client), client);
        let cookie = |name: &str| HashKey::Cookie(name.into());
        assert_eq!(
            by(cookie("session")).hash(&request, client),
            hash_bytes(b"s1")
        );
        assert_eq!(by(cookie("sess")).hash(&request, client), client);
        // Stable: the same in every process and build.
        assert_eq!(hash_bytes(b""), hash_bytes(b""));
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"b"));
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
        let fields = http::HeaderMap::new();
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
                    agree(&routes, &request("GET", host, path, &fields));
                }
            }
        }
    }

    /// Every kind of host, path and condition, mixed at random: the index
    /// (exact and wildcard hosts hashed, exact paths hashed, candidates in
    /// order) gives what a scan gives.
    #[test]
    fn random_tables_of_every_kind_agree_with_a_scan() {
        let hosts = [
            None,
            Some("a.test"),
            Some("b.test"),
            Some("*.test"),
            Some("*.b.test"),
            Some("*.x.b.test"),
            Some("X.B.test"),
        ];
        let paths = [
            PathMatch::Prefix("/".into()),
            PathMatch::Prefix("/a".into()),
            PathMatch::Prefix("/ab".into()),
            PathMatch::Exact("/a".into()),
            PathMatch::Exact("/ab".into()),
            PathMatch::Exact("/".into()),
            PathMatch::Regex(regex("/a.*")),
            PathMatch::Regex(regex("/[ab]+")),
        ];
        let tests = [
            FieldTest::Present,
            FieldTest::Absent,
            FieldTest::Exact(b"1".to_vec()),
            FieldTest::Regex(bytes_regex("[12]")),
        ];
        let mut fields = [http::HeaderMap::new(), http::HeaderMap::new()];
        fields[1].append("x-k", "1".parse().unwrap());
        fields[1].append("x-k", "3".parse().unwrap());
        let request_hosts = [
            None,
            Some("a.test"),
            Some("B.TEST"),
            Some("x.b.test"),
            Some("y.X.b.test"),
            Some("test"),
            Some(".test"),
            Some("c.test"),
        ];
        let targets = ["/", "/a", "/ab", "/abc?k=1", "/b?k=2&k=1", "/a?k", "", "/z"];
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..400 {
            let rules: Vec<Route> = (0..rng.usize(0..40))
                .map(|_| {
                    let mut route = route(
                        host(hosts[rng.usize(..hosts.len())]),
                        paths[rng.usize(..paths.len())].clone(),
                    );
                    match rng.usize(0..8) {
                        0 => route.methods = vec!["POST".into()],
                        1 => {
                            route.headers = vec![FieldMatch {
                                name: "x-k".into(),
                                test: tests[rng.usize(..tests.len())].clone(),
                            }]
                        }
                        2 => {
                            route.query = vec![FieldMatch {
                                name: "k".into(),
                                test: tests[rng.usize(..tests.len())].clone(),
                            }]
                        }
                        _ => {}
                    }
                    route
                })
                .collect();
            let routes = Routes::new(rules);
            for host in request_hosts {
                for target in targets {
                    for method in ["GET", "POST"] {
                        for fields in &fields {
                            agree(&routes, &request(method, host, target, fields));
                        }
                    }
                }
            }
        }
    }
}
