//! `switchyard plugin check`: the real binary on built plugins — a bundled
//! balancer passes with its costs shown, a file the host would refuse or a
//! plugin that faults exits 1 with the reason, and `--json` parses.

use std::process::{Command, Output};

use crate::support::*;

/// Runs `switchyard plugin check` with `args`.
fn check(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(["plugin", "check"])
        .args(args)
        .output()
        .expect("run switchyard plugin check")
}

fn built(name: &str) -> String {
    built_plugins()
        .join(format!("{name}.wasm"))
        .display()
        .to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `--json` report of `args`.
fn report(args: &[&str]) -> (serde_json::Value, i32) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let output = check(&all);
    let json = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&output)));
    (json, output.status.code().expect("an exit code"))
}

#[test]
fn a_bundled_balancer_is_ok_with_its_costs_on_10_and_10000_endpoints() {
    let output = check(&[&built("round-robin")]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("world      balancer, contract 0.2.1"),
        "{text}"
    );
    assert!(text.contains("settings   defaults"), "{text}");
    assert!(text.contains("configure  {} accepted"), "{text}");
    assert!(text.trim_end().ends_with("verdict: ok"), "{text}");

    let (json, code) = report(&[&built("round-robin")]);
    assert_eq!(code, 0);
    assert_eq!(json["world"], "balancer");
    assert_eq!(json["contract"], "0.2.1");
    assert_eq!(json["verdict"]["status"], "ok");
    assert!(json["size_bytes"].as_u64().unwrap() > 0);
    assert!(json["compile_micros"].as_u64().unwrap() > 0);
    assert!(json["memory_after_calls_bytes"].as_u64().unwrap() > 0);
    assert!(json["imports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|import| import.as_str().unwrap().starts_with("switchyard:plugin/")));
    let series = json["measurements"].as_array().unwrap();
    let sizes: Vec<u64> = series
        .iter()
        .map(|s| s["endpoints"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [10, 10_000]);
    for s in series {
        assert_eq!(s["call"], "pick");
        assert!(s["fault"].is_null(), "{s}");
        let (p50, p99, max) = (
            s["p50_ns"].as_u64().unwrap(),
            s["p99_ns"].as_u64().unwrap(),
            s["max_ns"].as_u64().unwrap(),
        );
        assert!(0 < p50 && p50 <= p99 && p99 <= max, "{s}");
        assert!(p99 <= s["budget_ns"].as_u64().unwrap(), "{s}");
    }
}

#[test]
fn a_config_the_plugin_refuses_is_rejected_with_its_message() {
    let output = check(&[&built("reject-config"), "--config", r#"{"any":1}"#]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains(r#"configure  {"any":1} refused"#), "{text}");
    assert!(
        text.contains("verdict: rejected: ") && text.contains("reject-config refuses every config"),
        "{text}"
    );
    let (json, code) = report(&[&built("reject-config")]);
    assert_eq!(code, 1);
    assert_eq!(json["configure_accepted"], false);
    assert_eq!(json["verdict"]["status"], "rejected");
}

#[test]
fn a_health_check_is_timed_against_a_local_listener() {
    let (json, code) = report(&[&built("tcp-health")]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["world"], "health-check");
    let series = &json["measurements"][0];
    assert_eq!(series["call"], "check");
    assert!(series["fault"].is_null(), "{series}");
    assert!(series["calls"].as_u64().unwrap() > 0, "{series}");
    assert!(series["p50_ns"].as_u64() <= series["p99_ns"].as_u64());
    // A check waits on the network: no CPU budget applies.
    assert!(series["budget_ns"].is_null());
    // The listener answers, so every verdict is healthy.
    let counts = &json["health_verdicts"]["counts"];
    assert_eq!(counts["healthy"], series["calls"], "{counts}");
}

#[test]
fn a_recovery_policy_is_timed_per_decision() {
    let (json, code) = report(&[&built("retry-backoff")]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["world"], "recovery");
    for series in json["measurements"].as_array().unwrap() {
        assert_eq!(series["call"], "decision");
        assert!(series["fault"].is_null(), "{series}");
        assert!(series["p50_ns"].as_u64() <= series["p99_ns"].as_u64());
    }
}

#[test]
fn a_balancer_that_overruns_its_budget_is_rejected() {
    let output = check(&[&built("looping-balancer")]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("ran past its time budget"), "{text}");
    assert!(
        text.contains("verdict: rejected: pick on 10 endpoint(s) faulted"),
        "{text}"
    );
}

#[test]
fn a_contract_0_1_plugin_shows_its_version() {
    let output = check(&[&built("turns-0-1-1")]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("world      balancer, contract 0.1.1"),
        "{text}"
    );
}

#[test]
fn settings_come_from_the_config_file_when_given() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    std::fs::write(&config, "[plugins]\ncall_timeout_ms = 5\n").unwrap();
    let (json, code) = report(&[
        &built("round-robin"),
        "--plugins-config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["settings"]["call_timeout_ms"], 5);
    assert!(json["settings"]["source"]
        .as_str()
        .unwrap()
        .contains("switchyard.toml"));
    assert_eq!(json["measurements"][0]["budget_ns"], 5_000_000);
}

#[test]
fn a_file_that_is_not_wasm_is_rejected_and_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.wasm");
    std::fs::write(&file, "not a plugin").unwrap();
    let output = check(&[file.to_str().unwrap()]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("verdict: rejected: format: not a WebAssembly file"),
        "{text}"
    );

    let missing = dir.path().join("missing.wasm");
    assert_eq!(check(&[missing.to_str().unwrap()]).status.code(), Some(2));
    let output = check(&[&built("round-robin"), "--config", "{"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--config is not JSON"));
}
