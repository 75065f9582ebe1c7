//! Record and replay: a pool records its balancer's picks as it serves
//! (the real binary, real upstreams), and `switchyard plugin replay` makes
//! them again through a plugin file: the version that made them agrees on
//! every pick, another one's differences are reported with their inputs.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// Runs `switchyard plugin replay` with `args`: its stdout (stderr after
/// it when it failed) and exit code.
fn replay(args: &[&str]) -> (String, i32) {
    let output = Command::new(BINARY)
        .args(["plugin", "replay"])
        .args(args)
        .output()
        .expect("run switchyard plugin replay");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        text += &String::from_utf8_lossy(&output.stderr);
    }
    (text, output.status.code().expect("an exit code"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_pool_replays_exactly_through_its_version_and_differs_through_another() {
    const REQUESTS: u64 = 3_000;
    let plugins = plugin_dir(&[("peak-ewma", "peak-ewma"), ("round-robin", "round-robin")]);
    let upstreams = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let recordings = tempfile::tempdir().unwrap();
    let file = recordings.path().join("web.jsonl");
    let body = format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"peak-ewma\" }}\n\
         record = {{ percent = 100, file = \"{}\" }}\nendpoints = [{}, {}, {}]\n",
        file.display(),
        upstreams[0].endpoint(1),
        upstreams[1].endpoint(2),
        upstreams[2].endpoint(1),
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    let (_seen, failures) = client.spread(&proxy.url("/"), REQUESTS as usize, 8).await;
    assert!(failures.is_empty(), "{failures:?}");

    // The pool shows what it recorded; the writer catches up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let recording = loop {
        let pools = pools_now(&proxy, &client).await;
        let recording = pools["pools"][0]["recording"].clone();
        if recording["written"] == REQUESTS {
            break recording;
        }
        assert!(Instant::now() < deadline, "{recording:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(recording["dropped"], 0, "{recording:#}");
    assert_eq!(recording["percent"], 100.0);
    let recording_path = file.display().to_string();

    // Through the version that made it: every decision agrees.
    let peak = plugins.path().join("peak-ewma.wasm").display().to_string();
    let (text, code) = replay(&[&recording_path, "--plugin", &peak, "--json"]);
    assert_eq!(code, 0, "{text}");
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["same_version"], true, "{report:#}");
    assert_eq!(report["picks"], REQUESTS, "{report:#}");
    assert_eq!(report["agreed"], REQUESTS, "{report:#}");
    assert_eq!(report["agreement_percent"], 100.0);
    assert_eq!(report["diverged_calls"], 0);

    // Through round robin: the differences, with the inputs behind them.
    let turns = plugins
        .path()
        .join("round-robin.wasm")
        .display()
        .to_string();
    let (text, code) = replay(&[
        &recording_path,
        "--plugin",
        &turns,
        "--examples",
        "2",
        "--fail-on-difference",
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("{REQUESTS} picks in 1 session(s)")),
        "{text}"
    );
    assert!(text.contains("recorded by "), "{text}");
    assert!(text.contains("placements by endpoint"), "{text}");
    let differences: Vec<&str> = text.lines().filter(|l| l.contains(": worker ")).collect();
    assert_eq!(differences.len(), 2, "{text}");
    assert!(
        text.contains("host calls: [{\"endpoint-load-pair\""),
        "{text}"
    );

    // A file that is not a recording is refused with the reason.
    let (text, code) = replay(&[&peak, "--plugin", &peak]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("holds no recording session"), "{text}");
}
