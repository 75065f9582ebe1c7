//! Routes: each kind of match (exact and wildcard host, exact, prefix and
//! regex path, methods, header fields, query parameters), the rewrites
//! (header edits both ways, `strip_prefix`, `rewrite_prefix`), the hash key
//! a consistent-hash pool balances by, a route's own timeout and
//! `retries = false`; each on the fast path and on hyper's.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::support::*;

/// `proxy.fast_path = false` for hyper's path.
fn proxy_keys(fast_path: bool) -> &'static str {
    if fast_path {
        ""
    } else {
        "fast_path = false"
    }
}

/// The routes, each to a pool of one upstream named after it, so the
/// upstream that answers names the route that matched.
const ROUTES: &[(&str, &str)] = &[
    ("exact", "host = \"api.test\"\npath = \"/exact\""),
    ("wild", "host = \"*.wild.test\""),
    ("regex", "path_regex = \"/users/[0-9]+\""),
    ("methods", "path_prefix = \"/m/\"\nmethods = [\"POST\", \"PUT\"]"),
    (
        "canary",
        "path_prefix = \"/h/\"\nheaders = [{ name = \"x-env\", exact = \"canary\" }]",
    ),
    (
        "colour",
        "path_prefix = \"/h/\"\nheaders = [{ name = \"X-Env\", regex = \"blue|green\" }]",
    ),
    (
        "debug",
        "path_prefix = \"/h/\"\nheaders = [{ name = \"x-debug\", present = true }]",
    ),
    (
        "plain",
        "path_prefix = \"/h/\"\nheaders = [{ name = \"x-env\", absent = true }]",
    ),
    (
        "v2",
        "path_prefix = \"/q/\"\nquery = [{ name = \"v\", exact = \"2\" }]",
    ),
    (
        "strip",
        "path_prefix = \"/strip/\"\nstrip_prefix = true\n\
         request_headers = { add = { \"x-added\" = \"1\", \"x-replaced\" = \"new\" }, remove = [\"x-secret\"] }\n\
         response_headers = { add = { \"x-resp\" = \"yes\" }, remove = [\"x-upstream\"] }",
    ),
    (
        "rewrite",
        "path_prefix = \"/old\"\nrewrite_prefix = \"/new\"",
    ),
];

async fn start_matching(fast_path: bool) -> (Vec<Upstream>, Switchyard, tempfile::TempDir) {
    let plugins = tempfile::tempdir().unwrap();
    let mut upstreams = Vec::new();
    let mut body = String::new();
    for (name, _) in ROUTES {
        let upstream = Upstream::start(name).await;
        body.push_str(&format!(
            "[[pools]]\nname = \"{name}\"\nendpoints = [{}]\n\n",
            upstream.endpoint(1)
        ));
        upstreams.push(upstream);
    }
    for (name, keys) in ROUTES {
        body.push_str(&format!("[[routes]]\n{keys}\npool = \"{name}\"\n\n"));
    }
    let proxy = Switchyard::start_with(plugins.path(), proxy_keys(fast_path), &body);
    (upstreams, proxy, plugins)
}

/// The upstream that answered, or `404 <error code>`.
async fn answered_by(
    proxy: &Switchyard,
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut all = vec![("host", host)];
    all.extend_from_slice(headers);
    let reply = send(method, &proxy.url(target), &all, "").await;
    match reply.status {
        200 => reply.upstream().to_string(),
        status => format!(
            "{status} {}",
            reply
                .headers
                .get("x-switchyard-error")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
        ),
    }
}

/// A request (method, host, target, header fields) and who answers it.
type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

async fn each_kind_of_match_decides(fast_path: bool) {
    let (_upstreams, proxy, _plugins) = start_matching(fast_path).await;
    let none = "404 no_route";
    let cases: &[Case<'_>] = &[
        // Exact host and exact path: nothing under it.
        ("GET", "api.test", "/exact", &[], "exact"),
        ("GET", "API.Test:8080", "/exact?x=1", &[], "exact"),
        ("GET", "api.test", "/exact/more", &[], none),
        ("GET", "other.test", "/exact", &[], none),
        // Wildcard host: one label or more, any case, not the bare suffix.
        ("GET", "a.wild.test", "/", &[], "wild"),
        ("GET", "A.B.WILD.test", "/anything", &[], "wild"),
        ("GET", "wild.test", "/", &[], none),
        ("GET", "awild.test", "/", &[], none),
        // A regex matches the whole path.
        ("GET", "x.test", "/users/42", &[], "regex"),
        ("GET", "x.test", "/users/42?tab=1", &[], "regex"),
        ("GET", "x.test", "/users/42/x", &[], none),
        ("GET", "x.test", "/users/abc", &[], none),
        // Methods.
        ("POST", "x.test", "/m/a", &[], "methods"),
        ("PUT", "x.test", "/m/a", &[], "methods"),
        ("GET", "x.test", "/m/a", &[], none),
        // Header fields, in file order.
        ("GET", "x.test", "/h/", &[("x-env", "canary")], "canary"),
        ("GET", "x.test", "/h/", &[("x-env", "green")], "colour"),
        ("GET", "x.test", "/h/", &[("x-env", "greenish")], none),
        (
            "GET",
            "x.test",
            "/h/",
            &[("x-env", "canary"), ("x-debug", "1")],
            "canary",
        ),
        ("GET", "x.test", "/h/", &[("x-debug", "")], "debug"),
        ("GET", "x.test", "/h/", &[], "plain"),
        // Query parameters, compared as sent.
        ("GET", "x.test", "/q/a?v=2", &[], "v2"),
        ("GET", "x.test", "/q/a?x=1&v=2", &[], "v2"),
        ("GET", "x.test", "/q/a?v=20", &[], none),
        ("GET", "x.test", "/q/a?v=%32", &[], none),
        ("GET", "x.test", "/q/a", &[], none),
    ];
    for (method, host, target, headers, expected) in cases {
        assert_eq!(
            answered_by(&proxy, method, host, target, headers).await,
            *expected,
            "{method} {host} {target} {headers:?} (fast path {fast_path})"
        );
    }
    let fast = metric(&proxy, "switchyard_fast_path_requests_total").await;
    assert_eq!(fast > 0, fast_path, "{fast} requests on the fast path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_match_each_kind_on_the_fast_path() {
    each_kind_of_match_decides(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_match_each_kind_on_hyper_s_path() {
    each_kind_of_match_decides(false).await;
}

async fn rewrites_apply(fast_path: bool) {
    let (upstreams, proxy, _plugins) = start_matching(fast_path).await;
    let strip = &upstreams[ROUTES.iter().position(|(n, _)| *n == "strip").unwrap()];
    let headers = [
        ("host", "x.test"),
        ("x-secret", "s"),
        ("x-replaced", "old"),
        ("x-kept", "k"),
    ];
    let reply = send("GET", &proxy.url("/strip/a/b?x=1&y"), &headers, "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "strip");
    let target = |reply: &Reply| {
        reply
            .headers
            .get("x-upstream-target")
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(target(&reply).as_deref(), Some("/a/b?x=1&y"));
    // The response's edits.
    assert_eq!(reply.headers.get("x-resp").unwrap(), "yes");
    assert!(
        reply.headers.get("x-upstream").is_none(),
        "{:?}",
        reply.headers
    );
    // The request's edits.
    let seen = strip.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen.get("x-added").unwrap(), "1");
    let replaced: Vec<_> = seen.get_all("x-replaced").iter().collect();
    assert_eq!(replaced, ["new"]);
    assert!(seen.get("x-secret").is_none(), "{seen:?}");
    assert_eq!(seen.get("x-kept").unwrap(), "k");
    assert!(seen.get("x-forwarded-for").is_some(), "{seen:?}");

    // The prefix alone leaves `/`.
    let reply = send("GET", &proxy.url("/strip/"), &[("host", "x.test")], "").await;
    assert_eq!(target(&reply).as_deref(), Some("/"));
    // Replaced, with the query kept; the rest of the path as it came.
    let reply = send(
        "GET",
        &proxy.url("/old/thing?y=2"),
        &[("host", "x.test")],
        "",
    )
    .await;
    assert_eq!(reply.upstream(), "rewrite");
    assert_eq!(target(&reply).as_deref(), Some("/new/thing?y=2"));
    let reply = send("GET", &proxy.url("/older"), &[("host", "x.test")], "").await;
    assert_eq!(target(&reply).as_deref(), Some("/new/er"));
    // A route without rewrites changes nothing.
    let reply = send("GET", &proxy.url("/users/7?x"), &[("host", "x.test")], "").await;
    assert_eq!(target(&reply).as_deref(), Some("/users/7?x"));
    assert_eq!(reply.upstream(), "regex");
    assert!(reply.headers.get("x-resp").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_rewrite_paths_and_headers_on_the_fast_path() {
    rewrites_apply(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_rewrite_paths_and_headers_on_hyper_s_path() {
    rewrites_apply(false).await;
}

/// Which upstreams answered `requests` to `host`, one set per key.
async fn owners(
    client: &HttpClient,
    proxy: &Switchyard,
    host: &str,
    requests: &[(String, Vec<(&str, String)>)],
) -> Vec<HashSet<String>> {
    let mut owners = Vec::new();
    for (path, headers) in requests {
        let mut seen = HashSet::new();
        for _ in 0..4 {
            let mut all = vec![("host", host)];
            all.extend(headers.iter().map(|(n, v)| (*n, v.as_str())));
            let reply = client.get_with(&proxy.url(path), &all).await;
            assert_eq!(reply.status, 200, "{host} {path}: {}", reply.body);
            seen.insert(reply.upstream().to_string());
        }
        owners.push(seen);
    }
    owners
}

async fn hash_keys_place_requests(fast_path: bool) {
    let plugins = plugin_dir(&[("consistent-hash", "consistent-hash")]);
    let upstreams = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let endpoints: Vec<String> = upstreams.iter().map(|u| u.endpoint(1)).collect();
    let body = format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"consistent-hash\" }}\nendpoints = [{}]\n\n\
         [[routes]]\nhost = \"header.test\"\npool = \"web\"\nhash_key = {{ header = \"x-user\" }}\n\n\
         [[routes]]\nhost = \"cookie.test\"\npool = \"web\"\nhash_key = {{ cookie = \"session\" }}\n\n\
         [[routes]]\nhost = \"path.test\"\npool = \"web\"\nhash_key = \"path\"\n\n\
         [[routes]]\npool = \"web\"\n",
        endpoints.join(", ")
    );
    let proxy = Switchyard::start_with(plugins.path(), proxy_keys(fast_path), &body);
    let client = HttpClient::default();
    let keys: Vec<String> = (0..20).map(|n| format!("key-{n}")).collect();
    let by_header: Vec<_> = keys
        .iter()
        .map(|k| ("/".to_string(), vec![("x-user", k.clone())]))
        .collect();
    let by_cookie: Vec<_> = keys
        .iter()
        .map(|k| {
            (
                "/".to_string(),
                vec![("cookie", format!("a=1; session={k}"))],
            )
        })
        .collect();
    let by_path: Vec<_> = keys.iter().map(|k| (format!("/{k}"), vec![])).collect();
    // This client's own place: every request of the default route, and
    // those without the route's header or cookie.
    let client_owner = owners(&client, &proxy, "client.test", &by_header).await;
    let union: HashSet<String> = client_owner.iter().flatten().cloned().collect();
    assert_eq!(union.len(), 1, "by client address: {client_owner:?}");
    for (host, requests) in [
        ("header.test", &by_header),
        ("cookie.test", &by_cookie),
        ("path.test", &by_path),
    ] {
        let placed = owners(&client, &proxy, host, requests).await;
        // Each key keeps one endpoint, and the keys spread.
        assert!(
            placed.iter().all(|seen| seen.len() == 1),
            "{host}: {placed:?}"
        );
        let spread: HashSet<String> = placed.into_iter().flatten().collect();
        assert!(spread.len() > 1, "{host}: every key on {spread:?}");
    }
    for (host, fallback) in [
        ("header.test", vec![("x-other", "1".to_string())]),
        ("cookie.test", vec![("cookie", "sessionx=1".to_string())]),
    ] {
        let placed = owners(&client, &proxy, host, &[("/".into(), fallback)]).await;
        assert_eq!(
            placed[0], union,
            "{host} without its key: the client's place"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_hash_keys_place_requests_on_the_fast_path() {
    hash_keys_place_requests(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_hash_keys_place_requests_on_hyper_s_path() {
    hash_keys_place_requests(false).await;
}

async fn timeouts_and_retries_are_the_route_s(fast_path: bool) {
    let plugins = tempfile::tempdir().unwrap();
    let slow = Upstream::with(
        "slow",
        Behaviour {
            status: 200,
            delay: Duration::from_millis(700),
        },
    )
    .await;
    let failing = Upstream::with(
        "failing",
        Behaviour {
            status: 503,
            delay: Duration::ZERO,
        },
    )
    .await;
    let fine = Upstream::start("fine").await;
    // The proxy's timeout is 2,000 ms (support's head).
    let body = format!(
        "[[pools]]\nname = \"slow\"\nendpoints = [{}]\n\n\
         [[pools]]\nname = \"flaky\"\nrecovery = {{}}\noutlier = {{ enabled = false }}\nendpoints = [{}, {}]\n\n\
         [[routes]]\nhost = \"quick.test\"\npool = \"slow\"\nrequest_timeout_ms = 200\n\n\
         [[routes]]\nhost = \"patient.test\"\npool = \"slow\"\n\n\
         [[routes]]\nhost = \"once.test\"\npool = \"flaky\"\nretries = false\n\n\
         [[routes]]\nhost = \"retried.test\"\npool = \"flaky\"\n",
        slow.endpoint(1),
        failing.endpoint(1),
        fine.endpoint(1)
    );
    let proxy = Switchyard::start_with(plugins.path(), proxy_keys(fast_path), &body);

    let started = Instant::now();
    let reply = send("GET", &proxy.url("/"), &[("host", "quick.test")], "").await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert!(
        started.elapsed() < Duration::from_millis(650),
        "{:?}",
        started.elapsed()
    );
    let reply = send("GET", &proxy.url("/"), &[("host", "patient.test")], "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.upstream(), "slow");

    // Round robin over a failing and a fine endpoint: without retries, the
    // failing one's answers reach the client; with them, none does.
    let mut once = Vec::new();
    for _ in 0..6 {
        once.push(
            send("GET", &proxy.url("/"), &[("host", "once.test")], "")
                .await
                .status,
        );
    }
    assert!(once.contains(&503) && once.contains(&200), "{once:?}");
    let failed_before = failing.hits();
    for _ in 0..6 {
        let reply = send("GET", &proxy.url("/"), &[("host", "retried.test")], "").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.upstream(), "fine");
    }
    assert!(
        failing.hits() > failed_before,
        "the retried route never met the failing endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_own_timeouts_and_retries_on_the_fast_path() {
    timeouts_and_retries_are_the_route_s(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_own_timeouts_and_retries_on_hyper_s_path() {
    timeouts_and_retries_are_the_route_s(false).await;
}
