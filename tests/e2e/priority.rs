//! Priority classes: a request's class comes from its route, or from a
//! header the route trusts, P2 by default; the balancer sees it in
//! `request-info` on both paths, and `/metrics` counts requests by class.

use crate::support::*;

/// Five upstreams `u0`..`u4` in one pool whose balancer (by-priority)
/// sends class Pn to `un`, and routes of each kind.
async fn start(fast_path: bool) -> (Vec<Upstream>, Switchyard, tempfile::TempDir) {
    let plugins = plugin_dir(&[("classes", "by-priority")]);
    let mut upstreams = Vec::new();
    for n in 0..5 {
        upstreams.push(Upstream::start(&format!("u{n}")).await);
    }
    let endpoints: Vec<String> = upstreams.iter().map(|u| u.endpoint(1)).collect();
    let body = format!(
        "[[pools]]\nname = \"all\"\nbalancer = {{ plugin = \"classes\" }}\nendpoints = [{}]\n\n\
         [[routes]]\nhost = \"critical.test\"\npool = \"all\"\npriority = \"p0\"\n\n\
         [[routes]]\nhost = \"trusting.test\"\npool = \"all\"\npriority = \"p3\"\npriority_header = \"x-priority\"\n\n\
         [[routes]]\nhost = \"ignoring.test\"\npool = \"all\"\npriority = \"p4\"\n\n\
         [[routes]]\npool = \"all\"\n",
        endpoints.join(", ")
    );
    let keys = if fast_path { "" } else { "fast_path = false" };
    let proxy = Switchyard::start_with(plugins.path(), keys, &body);
    (upstreams, proxy, plugins)
}

async fn answered_by(proxy: &Switchyard, host: &str, priority: Option<&str>) -> String {
    let mut headers = vec![("host", host)];
    if let Some(priority) = priority {
        headers.push(("x-priority", priority));
    }
    let reply = send("GET", &proxy.url("/"), &headers, "").await;
    assert_eq!(reply.status, 200, "{host} {priority:?}: {}", reply.body);
    reply.upstream().to_string()
}

async fn classes_reach_the_balancer(fast_path: bool) {
    let (_upstreams, proxy, _plugins) = start(fast_path).await;
    let cases = [
        ("critical.test", None, "u0"),
        // The route's class, or its trusted header's.
        ("trusting.test", None, "u3"),
        ("trusting.test", Some("p1"), "u1"),
        ("trusting.test", Some("0"), "u0"),
        ("trusting.test", Some(" P4 "), "u4"),
        ("trusting.test", Some("urgent"), "u3"),
        // A route that does not name the header does not trust it.
        ("ignoring.test", Some("p0"), "u4"),
        // No priority: P2.
        ("other.test", Some("p0"), "u2"),
    ];
    for (host, priority, expected) in cases {
        assert_eq!(
            answered_by(&proxy, host, priority).await,
            expected,
            "{host} with x-priority {priority:?} (fast path {fast_path})"
        );
    }
    let fast = metric(&proxy, "switchyard_fast_path_requests_total").await;
    assert_eq!(fast > 0, fast_path, "{fast} requests on the fast path");
    for (class, count) in [("p0", 2), ("p1", 1), ("p2", 1), ("p3", 2), ("p4", 2)] {
        let name = format!("switchyard_class_requests_total{{class=\"{class}\"}}");
        assert_eq!(metric(&proxy, &name).await, count, "{class}");
    }
}

#[tokio::test]
async fn a_request_s_class_reaches_the_balancer_on_the_fast_path() {
    classes_reach_the_balancer(true).await;
}

#[tokio::test]
async fn a_request_s_class_reaches_the_balancer_on_hyper_s_path() {
    classes_reach_the_balancer(false).await;
}
