//! Live reload: a new file changes the strategy under load with zero failed
//! requests; bad files and deletions leave the running version serving.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

/// Upstreams `a`, `b`, `c` behind a pool balanced by plugin `policy`, which
/// starts as the built plugin `initial`.
async fn pinned(initial: &str) -> (tempfile::TempDir, [Upstream; 3], Switchyard) {
    let plugins = plugin_dir(&[("policy", initial)]);
    let upstreams = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let [a, b, c] = &upstreams;
    let proxy = Switchyard::start(plugins.path(), &pinned_pool(a, b, c));
    (plugins, upstreams, proxy)
}

fn pinned_pool(a: &Upstream, b: &Upstream, c: &Upstream) -> String {
    format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"policy\" }}\nendpoints = [{}, {}, {}]\n",
        a.endpoint(1),
        b.endpoint(1),
        c.endpoint(1)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_file_under_load_changes_behaviour_without_failures() {
    let (plugins, [_a, b, _c], proxy) = pinned("pin-first").await;
    let client = HttpClient::default();
    let first_hash = proxy.plugins(&client).await["policy"]["hash"].clone();

    // Load: four keep-alive loops, every answer recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (client, url, stop) = (client.clone(), proxy.url("/"), stop.clone());
        loops.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.try_get_with(&url, &[]).await {
                    Ok(reply) if reply.status == 200 => answers.push(reply.upstream().to_string()),
                    Ok(reply) => answers.push(format!("FAILED {} {}", reply.status, reply.body)),
                    Err(error) => answers.push(format!("FAILED {error}")),
                }
            }
            answers
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    replace_plugin(plugins.path(), "policy", &plugin_bytes("pin-last"));
    proxy
        .wait_for_plugin(&client, "policy", "a new hash", |p| {
            p["hash"] != first_hash && p["reloads"] == 1
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for task in loops {
        let answers = task.await.unwrap();
        total += answers.len();
        let failures: Vec<_> = answers.iter().filter(|a| a.starts_with("FAILED")).collect();
        assert!(failures.is_empty(), "{failures:?}");
        // Each loop sees `a` until the swap and `c` after it, never back.
        let switch = answers
            .iter()
            .position(|u| u == "c")
            .expect("the new version served");
        assert!(answers[..switch].iter().all(|u| u == "a"), "{answers:?}");
        assert!(answers[switch..].iter().all(|u| u == "c"), "{answers:?}");
    }
    assert!(total > 100, "only {total} requests ran");
    assert_eq!(b.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_leave_the_running_version_serving_and_say_why() {
    let (plugins, _upstreams, proxy) = pinned("pin-first").await;
    let client = HttpClient::default();
    let good = plugin_bytes("pin-last");
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "truncated copy",
            good[..good.len() / 2].to_vec(),
            "compile: not a valid component",
        ),
        (
            "text file",
            b"this is not wasm\n".to_vec(),
            "not a WebAssembly file",
        ),
        (
            "wrong world",
            plugin_bytes("always-healthy"),
            "the file is a health check, but pool `web` uses it as its balancer",
        ),
        (
            "configure error",
            plugin_bytes("reject-config"),
            "configure refused the config: reject-config refuses every config",
        ),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "a core WebAssembly module, not a component",
        ),
    ];
    for (rejected, (case, bytes, reason)) in cases.into_iter().enumerate() {
        replace_plugin(plugins.path(), "policy", &bytes);
        let plugin = proxy
            .wait_for_plugin(&client, "policy", case, |p| {
                p["rejected_files"] == rejected as u64 + 1
            })
            .await;
        let message = plugin["last_rejected"]["message"].as_str().unwrap();
        assert!(
            message.contains(reason),
            "{case}: `{message}` lacks `{reason}`"
        );
        assert!(message.contains("plugin `policy` ("), "{case}: {message}");
        assert_eq!(plugin["state"], "active", "{case}");
        for _ in 0..5 {
            let reply = client.get(&proxy.url("/")).await;
            assert_eq!((reply.status, reply.upstream()), (200, "a"), "{case}");
        }
    }
    // A good file after all that is taken.
    replace_plugin(plugins.path(), "policy", &good);
    proxy
        .wait_for_plugin(&client, "policy", "reloaded", |p| p["reloads"] == 1)
        .await;
    assert_eq!(client.get(&proxy.url("/")).await.upstream(), "c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_file_in_use_keeps_the_loaded_version() {
    let (plugins, _upstreams, proxy) = pinned("pin-last").await;
    let client = HttpClient::default();
    std::fs::remove_file(plugins.path().join("policy.wasm")).unwrap();
    let plugin = proxy
        .wait_for_plugin(&client, "policy", "file gone", |p| {
            p["file_present"] == false
        })
        .await;
    assert!(plugin["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("was deleted; the loaded version keeps serving"));
    assert_eq!(plugin["state"], "active");
    for _ in 0..5 {
        assert_eq!(client.get(&proxy.url("/")).await.upstream(), "c");
    }
    assert!(proxy.stderr.lock().unwrap().contains("was deleted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_plugins_are_cached_across_restarts() {
    let plugins = plugin_dir(&[("policy", "pin-first")]);
    let a = Upstream::start("a").await;
    let body = format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"policy\" }}\nendpoints = [{}]\n",
        a.endpoint(1)
    );
    let client = HttpClient::default();
    let first = Switchyard::start(plugins.path(), &body);
    assert_eq!(
        first.plugins(&client).await["policy"]["compiled_from_cache"],
        false
    );
    drop(first);
    let second = Switchyard::start(plugins.path(), &body);
    assert_eq!(
        second.plugins(&client).await["policy"]["compiled_from_cache"],
        true
    );
    assert_eq!(client.get(&second.url("/")).await.upstream(), "a");
}
