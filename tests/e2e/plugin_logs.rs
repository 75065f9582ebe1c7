//! A plugin's log is bounded (lines cut, a rate per plugin, the excess
//! summarised), and its calls are timed: both seen through the real binary.

use std::time::{Duration, Instant};

use crate::support::*;

fn pool(plugin: &str, upstream: &Upstream) -> String {
    format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"{plugin}\" }}\nendpoints = [{}]\n",
        upstream.endpoint(1)
    )
}

/// The sum of the counts in the log's "N log lines dropped" summaries.
fn summarised(log: &str) -> u64 {
    log.lines()
        .filter(|line| line.contains("log lines dropped"))
        .filter_map(|line| {
            let (before, _) = line.split_once(" log lines dropped")?;
            before.rsplit(' ').next()?.parse::<u64>().ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_plugin_is_cut_and_rate_limited_and_its_excess_summarised() {
    const PICKS: usize = 200;
    const LINES_PER_PICK: u64 = 4;
    const RATE: u64 = 10;
    let plugins = plugin_dir(&[("chatty", "chatty-balancer")]);
    let upstream = Upstream::start("a").await;
    let proxy = Switchyard::try_start_full(
        plugins.path(),
        "",
        "",
        &format!("log_lines_per_second = {RATE}\n"),
        &pool("chatty", &upstream),
    )
    .unwrap_or_else(|stderr| panic!("switchyard did not start:\n{stderr}"));
    let client = HttpClient::default();
    let started = Instant::now();
    let (seen, failures) = client.spread(&proxy.url("/"), PICKS, 4).await;
    assert!(failures.is_empty(), "traffic is served: {failures:?}");
    assert_eq!(seen["a"], PICKS);
    // After a quiet spell the plugin logs again: its next line is preceded by
    // a summary of every line dropped since the last one.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(client.get(&proxy.url("/")).await.status, 200);
    let elapsed = started.elapsed().as_secs_f64();

    let picks = metric(&proxy, "switchyard_plugin_calls_total{plugin=\"chatty\"}").await;
    let line = |outcome: &str| {
        format!("switchyard_plugin_log_lines_total{{plugin=\"chatty\",outcome=\"{outcome}\"}}")
    };
    let (written, cut, dropped) = (
        metric(&proxy, &line("written")).await,
        metric(&proxy, &line("cut")).await,
        metric(&proxy, &line("dropped")).await,
    );
    assert_eq!(picks, PICKS as u64 + 1);
    assert_eq!(written, 0, "every 64 KiB line is cut");
    assert_eq!(
        cut + dropped,
        picks * LINES_PER_PICK,
        "every line is counted"
    );
    // A burst of a second's lines, then the rate.
    let allowed = RATE + (RATE as f64 * elapsed).ceil() as u64;
    assert!(
        cut <= allowed && cut >= RATE,
        "{cut} lines written in {elapsed:.1} s at {RATE} a second"
    );
    // The host's own writer kept up: the lines the plugin's limits let
    // through were all written (its buffer drops nothing at this rate).
    assert_eq!(
        metric(&proxy, "switchyard_log_lines_dropped_total").await,
        0
    );

    // The host's log holds the cut lines, each within the documented
    // length, and summaries of every dropped line.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = proxy.stderr.lock().unwrap().clone();
        let lines = log.lines().filter(|l| l.contains("chatty line ")).count() as u64;
        if lines == cut && summarised(&log) == dropped {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "the log has {lines} of {cut} cut lines and summaries of {} of {dropped} \
             dropped\n{}",
            summarised(&log),
            proxy.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for logged in log.lines().filter(|l| l.contains("chatty line ")) {
        assert!(
            logged.contains("… [cut: 1024 of 65536 bytes kept]"),
            "{logged}"
        );
        assert!(logged.len() < 1024 + 256, "{} bytes", logged.len());
    }
    assert!(log.len() < 512 * 1024, "the log stays small: {}", log.len());

    let plugin = proxy.plugins(&client).await.remove("chatty").unwrap();
    assert_eq!(plugin["log_lines"]["cut"], cut);
    assert_eq!(plugin["log_lines"]["dropped"], dropped);
    assert_eq!(plugin["log_lines"]["line_bytes"], 1024);
    assert_eq!(plugin["log_lines"]["lines_per_second"], RATE);
    assert_eq!(plugin["faults"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_is_timed_in_the_api_and_a_histogram() {
    let plugins = plugin_dir(&[("round-robin", "round-robin")]);
    let upstream = Upstream::start("a").await;
    let proxy = Switchyard::start(plugins.path(), &pool("round-robin", &upstream));
    let client = HttpClient::default();
    let plugin = proxy.plugins(&client).await.remove("round-robin").unwrap();
    assert!(plugin["call_micros"].is_null(), "no calls yet: {plugin:#}");

    let (_, failures) = client.spread(&proxy.url("/"), 300, 4).await;
    assert!(failures.is_empty(), "{failures:?}");

    let calls = metric(
        &proxy,
        "switchyard_plugin_calls_total{plugin=\"round-robin\"}",
    )
    .await;
    assert_eq!(calls, 300);
    let plugin = proxy.plugins(&client).await.remove("round-robin").unwrap();
    let timings = &plugin["call_micros"];
    assert_eq!(timings["count"], calls, "{plugin:#}");
    let (p50, p99, max) = (
        timings["p50"].as_f64().unwrap(),
        timings["p99"].as_f64().unwrap(),
        timings["max"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{timings}");

    let text = client.get(&proxy.control_url("/metrics")).await.body;
    assert!(
        text.contains("# TYPE switchyard_plugin_call_seconds histogram"),
        "{text}"
    );
    let series = |suffix: &str| format!("switchyard_plugin_call_seconds{suffix}");
    assert_eq!(
        metric(&proxy, &series("_count{plugin=\"round-robin\"}")).await,
        calls
    );
    assert_eq!(
        metric(
            &proxy,
            &series("_bucket{plugin=\"round-robin\",le=\"+Inf\"}")
        )
        .await,
        calls
    );
    // The finest bucket is 100 ns: a pick is seen below 10 µs.
    assert!(
        text.contains(
            "switchyard_plugin_call_seconds_bucket{plugin=\"round-robin\",le=\"0.0000001\"}"
        ),
        "{text}"
    );
}
