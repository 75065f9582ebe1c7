//! Starting again: a plugin file rejected since the last run does not stop
//! the start when an earlier version configured successfully; a missing
//! plugin folder is created; `switchyard check` validates without running.

use std::process::Command;

use crate::support::*;

fn pool_with_balancer(upstreams: &[&Upstream]) -> String {
    let endpoints: Vec<String> = upstreams.iter().map(|u| u.endpoint(1)).collect();
    format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"rr\" }}\nendpoints = [{}]\n",
        endpoints.join(", ")
    )
}

async fn plugin_json(proxy: &Switchyard, name: &str) -> serde_json::Value {
    proxy.plugins(&HttpClient::default()).await[name].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_a_rejected_plugin_file_serves_the_last_good_version() {
    let plugins = plugin_dir(&[("rr", "round-robin")]);
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let body = pool_with_balancer(&[&a, &b]);
    let mut first = Switchyard::start(plugins.path(), &body);
    let good_hash = plugin_json(&first, "rr").await["hash"].clone();
    assert!(good_hash.is_string());
    assert_eq!(first.terminate().code(), Some(0));

    // Between two runs the file turns into one that fails to load, then into
    // one that loads but refuses the pool's config: both starts serve the
    // version that worked.
    let bad_files: [(&str, Vec<u8>, &str); 2] = [
        ("not wasm", b"this is not a component".to_vec(), "format"),
        ("refuses config", plugin_bytes("reject-config"), "configure"),
    ];
    for (case, bytes, stage) in bad_files {
        replace_plugin(plugins.path(), "rr", &bytes);
        let proxy = Switchyard::try_start(plugins.path(), &body)
            .unwrap_or_else(|log| panic!("{case}: the start failed:\n{log}"));
        let client = HttpClient::default();
        let (seen, failures) = client.spread(&proxy.url("/"), 40, 4).await;
        assert!(failures.is_empty(), "{case}: {failures:?}");
        assert_eq!(seen.len(), 2, "{case}: {seen:?}");
        let rr = plugin_json(&proxy, "rr").await;
        assert_eq!(rr["hash"], good_hash, "{case}: {rr:#}");
        assert_eq!(rr["state"], "active", "{case}: {rr:#}");
        assert_eq!(
            rr["faults"], 0,
            "{case}: the plugin answered, not the fallback"
        );
        let fallback = rr["fallback"]["message"].as_str().unwrap_or("");
        assert!(
            fallback.contains("serving the last version that configured successfully")
                && fallback.contains(stage),
            "{case}: {rr:#}"
        );
        let alerts: serde_json::Value =
            serde_json::from_str(&client.get(&proxy.control_url("/v1/alerts")).await.body).unwrap();
        assert!(
            alerts["alerts"].as_array().unwrap().iter().any(|alert| {
                alert["severity"] == "P1"
                    && alert["message"]
                        .as_str()
                        .unwrap()
                        .contains("plugin `rr` serves its last good version")
            }),
            "{case}: {alerts:#}"
        );
        drop(proxy);
    }

    // A good file written while running takes over and ends the fallback.
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    replace_plugin(plugins.path(), "rr", &plugin_bytes("pin-first"));
    let pinned = proxy
        .wait_for_plugin(&client, "rr", "the new file serving", |p| {
            p["hash"] != good_hash && p["fallback"].is_null()
        })
        .await;
    assert_eq!(pinned["state"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_never_loaded_before_still_fails_the_start_clearly() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::write(plugins.path().join("rr.wasm"), b"this is not a component").unwrap();
    let upstream = Upstream::start("a").await;
    let error = Switchyard::try_start(plugins.path(), &pool_with_balancer(&[&upstream]))
        .err()
        .expect("the start must fail");
    assert!(
        error.contains("pools[0] (`web`).balancer.plugin = \"rr\"")
            && error.contains("format")
            && error.contains("no earlier version was kept"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_plugin_folder_is_created() {
    let parent = tempfile::tempdir().unwrap();
    let folder = parent.path().join("not-yet");
    let upstream = Upstream::start("a").await;
    let body = format!(
        "[[pools]]\nname = \"web\"\nendpoints = [{}]\n",
        upstream.endpoint(1)
    );
    let proxy = Switchyard::start(&folder, &body);
    assert!(folder.is_dir());
    let reply = HttpClient::default().get(&proxy.url("/")).await;
    assert_eq!((reply.status, reply.upstream()), (200, "a"));
}

fn check(config: &str, plugins: &std::path::Path) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchyard.toml");
    std::fs::write(
        &file,
        format!("[plugins]\ndir = \"{}\"\n\n{config}", plugins.display()),
    )
    .unwrap();
    let output = Command::new(BINARY)
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn check_validates_a_config_without_running_it() {
    let plugins = plugin_dir(&[("rr", "round-robin")]);
    let pool = "[[pools]]\nname = \"web\"\nbalancer = { plugin = \"rr\" }\n\
                endpoints = [{ address = \"127.0.0.1:8081\" }]\n";
    let (ok, text) = check(pool, plugins.path());
    assert!(ok, "{text}");
    assert!(text.contains("is valid: 1 pool(s), 0 route(s)"), "{text}");

    // Every problem at once, each with its key and line.
    let bad = "[[pools]]\nname = \"web\"\nbalancer = { plugin = \"rr\" }\n\
               panic_threshold = 2.0\n\
               endpoints = [{ address = \"127.0.0.1:8081\", weight = 0 }]\n";
    let (ok, text) = check(bad, plugins.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("line 7: `pools[0].panic_threshold`: must be from 0 to 1, got 2")
            && text.contains("`pools[0].endpoints[0].weight`: must be at least 1"),
        "{text}"
    );

    let missing = pool.replace("\"rr\"", "\"p2c\"");
    let (ok, text) = check(&missing, plugins.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("`pools[0].balancer.plugin` = \"p2c\": no file"),
        "{text}"
    );

    // The files TLS would read at start: a listener's certificate, a
    // pool's CA.
    let tls = format!(
        "{pool}tls = {{ ca = \"/nonexistent/ca.pem\" }}\n\n\
         [[listeners]]\nlisten = \"127.0.0.1:0\"\n\
         tls = {{ certificates = [{{ cert = \"/nonexistent/a.pem\", key = \"/nonexistent/a.key\" }}] }}\n"
    );
    let (ok, text) = check(&tls, plugins.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("listeners[0].tls.certificates[0].cert = /nonexistent/a.pem")
            && text.contains("pools[0] (`web`).tls.ca = /nonexistent/ca.pem"),
        "{text}"
    );
}
