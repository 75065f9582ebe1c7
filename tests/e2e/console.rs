//! The web console, in a real Chromium against the real binary: the page
//! loads from the binary with no console error, and an endpoint whose
//! upstream is killed turns unhealthy on the page within a second, without
//! a reload. The screenshots it takes are the README's.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upstream_turns_its_row_unhealthy_within_a_second_without_a_reload() {
    let plugins = plugin_dir(&[]);
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let body = format!(
        "[[pools]]\nname = \"web\"\nendpoints = [{}, {}]\n\
         health = {{ interval_ms = 100, timeout_ms = 100, rise = 1, fall = 1 }}\n",
        a.endpoint(1),
        b.endpoint(1)
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    assert_eq!(client.get(&proxy.url("/")).await.status, 200);
    // Traffic for the charts, all through the test.
    let load = {
        let (client, url) = (client.clone(), proxy.url("/"));
        tokio::spawn(async move {
            loop {
                let _ = client.try_get_with(&url, &[]).await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };

    let screenshots = workspace().join("target/console-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut browser = Script::start(
        "console_live.py",
        &[
            proxy.control_url("/"),
            b.addr.to_string(),
            screenshots.display().to_string(),
        ],
    );
    browser.expect("ready", "the page never showed `b` healthy");

    b.kill();
    let rest = browser.finish("killed", &proxy.log_tail());
    assert!(rest.contains("unhealthy after"), "{rest}");
    // The page's weight and first paint, for BENCHMARKS.md (`--nocapture`).
    eprintln!("{rest}");
    for shot in ["console.png", "console-unhealthy.png", "console-phone.png"] {
        assert!(screenshots.join(shot).is_file(), "{shot} was not taken");
    }
    load.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_acts_from_the_page_with_the_keyboard_and_a_viewer_sees_no_actions() {
    let plugins = plugin_dir(&[("rr", "round-robin")]);
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let tokens = format!(
        "{}{}",
        token_entry("dashboard", "viewer", "view-secret"),
        token_entry("oncall", "operator", "op-secret")
    );
    let body = format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"rr\" }}\nendpoints = [{}, {}]\n",
        a.endpoint(1),
        b.endpoint(1)
    );
    let proxy = Switchyard::try_start_full(plugins.path(), "", &tokens, "", &body)
        .unwrap_or_else(|log| panic!("{log}"));
    let client = HttpClient::default();
    let candidate = tempfile::tempdir().unwrap();
    let candidate_file = candidate.path().join("random.wasm");
    std::fs::write(&candidate_file, plugin_bytes("random")).unwrap();

    let mut browser = Script::start(
        "console_actions.py",
        &[
            proxy.control_url("/"),
            b.addr.to_string(),
            c.addr.to_string(),
            "view-secret".into(),
            "op-secret".into(),
            candidate_file.display().to_string(),
        ],
    );
    browser.expect("drained", "the page did not drain `b`");

    // Drained from the page: no new request reaches `b`.
    let (seen, failures) = client.spread(&proxy.url("/"), 40, 4).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen.get("a"), Some(&40), "{seen:?}");

    // Added from the page: `c` takes its share.
    browser.tell("go");
    browser.expect("added", "the page did not add `c`");
    let (seen, failures) = client.spread(&proxy.url("/"), 40, 4).await;
    assert!(failures.is_empty(), "{failures:?}");
    // Each worker keeps its own turn, so the split is about even.
    let (on_a, on_c) = (seen.get("a").copied(), seen.get("c").copied());
    assert!(
        on_a.unwrap_or(0) >= 15 && on_c.unwrap_or(0) >= 15 && !seen.contains_key("b"),
        "{seen:?}"
    );

    // Removed from the page: `a` alone again.
    browser.tell("go");
    browser.expect("removed", "the page did not remove `c`");
    let (seen, failures) = client.spread(&proxy.url("/"), 40, 4).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen.get("a"), Some(&40), "{seen:?}");

    let rest = browser.finish("go", "");
    assert!(
        rest.contains("refused: Refused:") && rest.contains("must be at least 1"),
        "{rest}"
    );
    assert!(rest.contains("reloaded"), "{rest}");
    assert!(rest.contains("rr: candidate random.wasm started"), "{rest}");
    assert!(
        rest.contains("aborted") && rest.contains("events shown"),
        "{rest}"
    );
    // The rollout ran and ended through the API the page used.
    let rollout = send(
        "GET",
        &proxy.control_url("/v1/plugins/rr/rollout"),
        &[("authorization", "Bearer view-secret")],
        "",
    )
    .await;
    assert!(
        rollout.body.contains("\"state\":\"aborted\""),
        "{}",
        rollout.body
    );
}
