//! The control API against its own OpenAPI document: every documented
//! route is served, nothing else is, and refusals share one error shape.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served_and_nothing_else() {
    let plugins = tempfile::tempdir().unwrap();
    let upstream = Upstream::start("a").await;
    let proxy = Switchyard::start(
        plugins.path(),
        &format!(
            "[[pools]]\nname = \"web\"\nendpoints = [{}]\n",
            upstream.endpoint(1)
        ),
    );
    let client = HttpClient::default();
    let document = client.get(&proxy.control_url("/v1/openapi.json")).await;
    assert_eq!(document.status, 200);
    let document: serde_json::Value = serde_json::from_str(&document.body).unwrap();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{document:#}"
    );
    let paths = document["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let expected = [
        ("delete", "/v1/pools/{pool}"),
        ("delete", "/v1/pools/{pool}/endpoints/{address}"),
        ("delete", "/v1/pools/{pool}/registrations/{id}"),
        ("get", "/healthz"),
        ("get", "/metrics"),
        ("get", "/readyz"),
        ("get", "/v1/alerts"),
        ("get", "/v1/audit"),
        ("get", "/v1/cluster"),
        ("get", "/v1/config"),
        ("get", "/v1/events"),
        ("get", "/v1/openapi.json"),
        ("get", "/v1/plugins"),
        ("get", "/v1/plugins/{name}/rollout"),
        ("get", "/v1/pools"),
        ("get", "/v1/pools/{pool}/registrations"),
        ("get", "/v1/pools/{pool}/traffic"),
        ("get", "/v1/routes"),
        ("get", "/v1/session"),
        ("get", "/v1/status"),
        ("patch", "/v1/pools/{pool}"),
        ("patch", "/v1/pools/{pool}/endpoints/{address}"),
        ("post", "/v1/plugins/{name}/candidate"),
        ("post", "/v1/plugins/{name}/reload"),
        ("post", "/v1/plugins/{name}/rollout/abort"),
        ("post", "/v1/plugins/{name}/rollout/promote"),
        ("post", "/v1/plugins/{name}/unquarantine"),
        ("post", "/v1/pools"),
        ("post", "/v1/pools/{pool}/broadcast"),
        ("post", "/v1/pools/{pool}/endpoints"),
        ("post", "/v1/pools/{pool}/registrations"),
        ("post", "/v1/reload"),
        ("put", "/v1/pools/{pool}/registrations/{id}"),
        ("put", "/v1/routes"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, expected);

    // Each that reads, or takes no input, is served with the content its
    // document names (the endpoint changes have tests of their own).
    for (method, path) in &documented {
        // Reads, and the reload that takes no input; the changes and the
        // event stream (which never ends) have tests of their own.
        let reads = method == "get" && path != "/v1/events";
        if !reads && path != "/v1/reload" || path.contains('{') {
            continue;
        }
        let url = proxy.control_url(path);
        let reply = match method.as_str() {
            "get" => client.get(&url).await,
            _ => client.post(&url, Vec::new()).await,
        };
        assert_eq!(reply.status, 200, "{method} {path}: {}", reply.body);
        let responses = &paths[path][method]["responses"]["200"]["content"];
        let json = responses.get("application/json").is_some();
        if json {
            serde_json::from_str::<serde_json::Value>(&reply.body)
                .unwrap_or_else(|e| panic!("{method} {path}: {e}: {}", reply.body));
        }
    }
    assert_eq!(
        client.get(&proxy.control_url("/readyz")).await.body,
        "ready\n"
    );

    // Anything else: one error shape, naming the problem.
    let missing = client.get(&proxy.control_url("/v1/nope")).await;
    assert_eq!(missing.status, 404);
    let body: serde_json::Value = serde_json::from_str(&missing.body).unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body:#}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/v1/nope"));
    let wrong = send("DELETE", &proxy.control_url("/v1/alerts"), &[], "").await;
    assert_eq!(wrong.status, 405);
    let body: serde_json::Value = serde_json::from_str(&wrong.body).unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body:#}");
}

/// With `per_endpoint_metrics = false`, `/metrics` leaves out the six
/// series per endpoint and keeps the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_endpoint_series_can_be_left_out_of_the_metrics() {
    let plugins = tempfile::tempdir().unwrap();
    let upstream = Upstream::start("a").await;
    let body = format!(
        "[[pools]]\nname = \"web\"\nendpoints = [{}]\n",
        upstream.endpoint(1)
    );
    let client = HttpClient::default();
    for (keys, has_endpoints) in [("", true), ("per_endpoint_metrics = false", false)] {
        let proxy = Switchyard::try_start_full(plugins.path(), "", keys, "", &body).unwrap();
        assert_eq!(client.get(&proxy.url("/")).await.status, 200);
        let text = client.get(&proxy.control_url("/metrics")).await.body;
        assert!(text.contains("switchyard_requests_total 1"), "{text}");
        assert!(
            text.contains("switchyard_pool_fallback_picks_total{pool=\"web\"}"),
            "{text}"
        );
        assert_eq!(
            text.contains("switchyard_endpoint_requests_total{"),
            has_endpoints,
            "{keys}: {text}"
        );
    }
}

/// With thousands of pools, `/v1/pools` is read in pages and filtered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_are_listed_in_pages_and_by_name_prefix() {
    let plugins = tempfile::tempdir().unwrap();
    let upstream = Upstream::start("a").await;
    let names = ["api-a", "api-b", "web-a", "api-c", "web-b"];
    let mut body = String::new();
    for name in names {
        body.push_str(&format!(
            "[[pools]]\nname = \"{name}\"\nendpoints = [{}]\n\n",
            upstream.endpoint(1)
        ));
    }
    body.push_str("[[routes]]\npool = \"api-a\"\n");
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    let get = |query: &str| {
        let url = proxy.control_url(&format!("/v1/pools{query}"));
        let client = &client;
        async move {
            let reply = client.get(&url).await;
            (
                reply.status,
                serde_json::from_str::<serde_json::Value>(&reply.body).unwrap(),
            )
        }
    };
    let names_of = |page: &serde_json::Value| -> Vec<String> {
        page["pools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, all) = get("").await;
    assert_eq!(status, 200);
    assert_eq!(names_of(&all), names);
    assert!(all.get("next").is_none());

    // Pages of two, following `next`, give every pool once, in order.
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_string();
    loop {
        let (status, page) = get(&query).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(names_of(&page));
        match page["next"].as_str() {
            Some(next) => query = format!("?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, names);

    let (_, api) = get("?name_prefix=api-&limit=2").await;
    assert_eq!(names_of(&api), ["api-a", "api-b"]);
    assert_eq!(api["next"], "api-b");
    let (_, rest) = get("?name_prefix=api-&after=api-b").await;
    assert_eq!(names_of(&rest), ["api-c"]);

    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=x", "limit"),
        ("?page=2", "page"),
        ("?after=gone", "after"),
    ] {
        let (status, error) = get(query).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(error["error"]["code"], "invalid_query", "{query}");
        assert_eq!(error["error"]["field"], field, "{query}");
    }
}
