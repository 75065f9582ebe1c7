//! `scripts/demo`, started as the README says, and the curl commands it
//! prints, run as a user would paste them.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::*;

/// Runs one printed command line with bash; its standard output.
async fn run_printed(command: &str) -> String {
    let output = tokio::process::Command::new("bash")
        .args(["-c", command])
        .output()
        .await
        .expect("run bash");
    assert!(output.status.success(), "`{command}` failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_what_it_tells_the_user_to_curl() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Free ports, so the test runs beside anything on 8080 and 9090; the
    // binary under test rather than a release build of its own.
    let mut demo = tokio::process::Command::new(root.join("scripts/demo"))
        .args(["--port", "0", "--control-port", "0"])
        .env("SWITCHYARD_BIN", BINARY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start scripts/demo");
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut guide = Vec::new();
    let read_guide = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.starts_with("Ctrl-C stops");
            guide.push(line);
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(600), read_guide)
        .await
        .expect("the demo printed its guide");
    let commands: Vec<String> = guide
        .iter()
        .filter_map(|line| line.trim_start().strip_prefix("curl").map(|_| line.trim()))
        .chain(
            guide
                .iter()
                .map(|l| l.trim())
                .filter(|l| l.starts_with("for i in")),
        )
        .map(|line| line.split(" # ").next().unwrap().trim().to_string())
        .collect();
    assert_eq!(commands.len(), 7, "{guide:#?}");
    // The console it points a browser at is the page, from the binary.
    let console = guide
        .iter()
        .find_map(|line| line.strip_prefix("The console, live in a browser: "))
        .unwrap_or_else(|| panic!("no console in {guide:#?}"));
    let page = run_printed(&format!("curl -sL {console}")).await;
    assert!(
        page.contains("<title>Switchyard</title>") && page.contains("console.js"),
        "{page}"
    );
    let find = |needle: &str| {
        commands
            .iter()
            .find(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("no command with `{needle}` in {guide:#?}"))
            .clone()
    };

    // Weights 2:1:1 over eight requests. Each proxy worker has its own
    // round robin and curl's connections land on either, so the spread is
    // exact per worker: upstream-1 answers 4 or 5, and every upstream some.
    let web = run_printed(&find("for i in")).await;
    let mut counts = std::collections::BTreeMap::new();
    for line in web.lines() {
        *counts
            .entry(line.split(' ').next().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3, "{web}");
    assert!(
        (4..=5).contains(&counts["upstream-1"]),
        "{counts:?} from\n{web}"
    );
    let api = run_printed(&find("/api/users")).await;
    assert!(
        api.starts_with("upstream-") && api.trim_end().ends_with(" /api/users"),
        "{api}"
    );
    let urgent = run_printed(&find("x-priority: p0")).await;
    assert!(
        urgent.starts_with("upstream-") && urgent.trim_end().ends_with(" /api/orders"),
        "{urgent}"
    );
    // The same user lands on the same upstream.
    let sticky = find("/sticky/cart");
    let first = run_printed(&sticky).await;
    for _ in 0..5 {
        assert_eq!(run_printed(&sticky).await, first);
    }
    let pools: serde_json::Value =
        serde_json::from_str(&run_printed(&find("/v1/pools")).await).unwrap();
    let names: Vec<&str> = pools["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "api", "sticky"]);
    assert_eq!(pools["pools"][0]["balancer"], "round-robin", "{pools:#}");
    assert_eq!(pools["pools"][1]["balancer"], "peak-ewma", "{pools:#}");
    assert_eq!(pools["pools"][1]["admission"]["limit"], 64, "{pools:#}");
    assert_eq!(pools["pools"][1]["admission"]["queued"], 0, "{pools:#}");
    assert_eq!(
        pools["pools"][2]["balancer"], "consistent-hash",
        "{pools:#}"
    );
    let plugins: serde_json::Value =
        serde_json::from_str(&run_printed(&find("/v1/plugins")).await).unwrap();
    for plugin in plugins["plugins"].as_array().unwrap() {
        assert_eq!(plugin["state"], "active", "{plugin:#}");
    }
    let metrics = run_printed(&find("/metrics")).await;
    let requests: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_requests_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(requests >= 16, "{requests} requests counted");
    assert!(
        metrics.contains("switchyard_class_requests_total{class=\"p0\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_route_request_duration_seconds_count{route=\"api\"} 2\n"),
        "{metrics}"
    );
    demo.kill().await.unwrap();
}
