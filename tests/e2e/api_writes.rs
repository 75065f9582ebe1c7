//! Many API writes at once: they are applied in batches (one file write
//! for those that came together), each answered with its own outcome —
//! a refused write beside accepted ones, `If-Match` judged at its turn —
//! and everything acknowledged is in the file, serving and audited.

use std::collections::HashMap;

use crate::support::*;

const JSON: (&str, &str) = ("content-type", "application/json");
const POOLS: usize = 100;
const WRITERS: usize = 48;

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

fn etag(reply: &Reply) -> String {
    reply.headers["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

/// `POOLS` pools of one endpoint each (nothing listens there: no traffic
/// flows, no check runs), a route to each.
fn config() -> String {
    let mut body = String::new();
    for pool in 0..POOLS {
        body.push_str(&format!(
            "[[pools]]\nname = \"pool-{pool}\"\nendpoints = [\n  {{ address = \"127.0.0.1:{}\" }},\n]\n\n",
            20_000 + pool
        ));
    }
    for pool in 0..POOLS {
        body.push_str(&format!(
            "[[routes]]\nhost = \"svc{pool}.example\"\npool = \"pool-{pool}\"\n\n"
        ));
    }
    body
}

/// One write sent, what it was answered.
struct Sent {
    what: String,
    status: u16,
    code: Option<String>,
    version: Option<String>,
}

async fn write(control: &str, method: &str, path: &str, body: &str) -> Sent {
    let reply = send(method, &format!("{control}{path}"), &[JSON], body).await;
    let answer = json(&reply);
    Sent {
        what: format!("{method} {path} {body}"),
        status: reply.status,
        code: answer["error"]["code"].as_str().map(str::to_string),
        version: (reply.status < 300).then(|| etag(&reply)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_are_each_answered_and_all_acknowledged_ones_are_in_the_file_and_serving(
) {
    let plugins = tempfile::tempdir().unwrap();
    let audit = tempfile::tempdir().unwrap();
    let audit_file = audit.path().join("audit.jsonl");
    let proxy = Switchyard::try_start_full(
        plugins.path(),
        "",
        &format!("audit_log = \"{}\"", audit_file.display()),
        "",
        &config(),
    )
    .unwrap_or_else(|log| panic!("{log}"));
    let control = format!("http://{}", proxy.control);

    // Each writer works on pools of its own: adds X to one and Y to
    // another, drains X, sends a change that must be refused (a weight of
    // 0, or a pool that does not exist), removes Y, sets X's weight. They
    // all start at once, so their writes meet in batches.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (control, start) = (control.clone(), start.clone());
        writers.push(tokio::spawn(async move {
            let (x, y) = (
                format!("127.0.0.2:{}", 1_000 + w),
                format!("127.0.0.3:{}", 1_000 + w),
            );
            let (home, other) = (
                format!("/v1/pools/pool-{w}/endpoints"),
                format!("/v1/pools/pool-{}/endpoints", w + WRITERS),
            );
            start.wait().await;
            let mut sent = Vec::new();
            sent.push(
                write(
                    &control,
                    "POST",
                    &home,
                    &format!("{{\"address\": \"{x}\", \"weight\": 2}}"),
                )
                .await,
            );
            sent.push(
                write(
                    &control,
                    "POST",
                    &other,
                    &format!("{{\"address\": \"{y}\"}}"),
                )
                .await,
            );
            sent.push(
                write(
                    &control,
                    "PATCH",
                    &format!("{home}/{x}"),
                    "{\"state\": \"draining\"}",
                )
                .await,
            );
            sent.push(if w % 2 == 0 {
                write(
                    &control,
                    "POST",
                    &home,
                    "{\"address\": \"127.0.0.9:1\", \"weight\": 0}",
                )
                .await
            } else {
                write(
                    &control,
                    "POST",
                    "/v1/pools/nope/endpoints",
                    "{\"address\": \"127.0.0.9:1\"}",
                )
                .await
            });
            sent.push(write(&control, "DELETE", &format!("{other}/{y}"), "").await);
            sent.push(write(&control, "PATCH", &format!("{home}/{x}"), "{\"weight\": 5}").await);
            sent
        }));
    }
    let mut all = Vec::new();
    for writer in writers {
        all.push(writer.await.unwrap());
    }

    // Each answered with its own outcome.
    for (w, sent) in all.iter().enumerate() {
        for (n, reply) in sent.iter().enumerate() {
            let expected = match n {
                0 | 1 => (201, None),
                3 if w % 2 == 0 => (422, Some("invalid_config")),
                3 => (404, Some("no_such_pool")),
                _ => (200, None),
            };
            assert_eq!(
                (reply.status, reply.code.as_deref()),
                expected,
                "writer {w}: {}",
                reply.what
            );
        }
    }
    // In batches: fewer file writes than changes, several answered with
    // the same version.
    let accepted = WRITERS * 5;
    let log = proxy.stderr.lock().unwrap().clone();
    let writes = log.matches("config applied").count();
    assert!(
        writes < accepted,
        "{writes} writes for {accepted} changes: none were batched"
    );
    let mut by_version: HashMap<&str, usize> = HashMap::new();
    for reply in all.iter().flatten() {
        if let Some(version) = &reply.version {
            *by_version.entry(version).or_default() += 1;
        }
    }
    assert!(by_version.values().any(|&n| n > 1), "{by_version:?}");

    // Everything acknowledged is in the file and serving; nothing refused is.
    let file = std::fs::read_to_string(&proxy.config).unwrap();
    let config: toml::Table = toml::from_str(&file).unwrap();
    let pools = send("GET", &format!("{control}/v1/pools"), &[], "").await;
    let pools = json(&pools);
    for w in 0..WRITERS {
        let (x, y) = (
            format!("127.0.0.2:{}", 1_000 + w),
            format!("127.0.0.3:{}", 1_000 + w),
        );
        let in_file = |pool: usize| -> Vec<toml::Value> {
            config["pools"][pool]["endpoints"]
                .as_array()
                .unwrap()
                .clone()
        };
        let home = in_file(w);
        assert_eq!(home.len(), 2, "pool-{w} in the file: {home:?}");
        assert_eq!(home[1]["address"].as_str(), Some(x.as_str()));
        assert_eq!(home[1]["weight"].as_integer(), Some(5));
        assert_eq!(home[1]["state"].as_str(), Some("draining"));
        assert_eq!(
            in_file(w + WRITERS).len(),
            1,
            "pool-{} in the file",
            w + WRITERS
        );
        assert!(!file.contains(&y) && !file.contains("127.0.0.9:1"));

        let serving = &pools["pools"][w]["endpoints"];
        assert_eq!(pools["pools"][w]["name"], format!("pool-{w}"));
        assert_eq!(
            serving.as_array().unwrap().len(),
            2,
            "pool-{w}: {serving:#}"
        );
        assert_eq!(serving[1]["address"], x.as_str());
        assert_eq!(serving[1]["weight"], 5);
        assert!(
            matches!(serving[1]["state"].as_str(), Some("draining" | "drained")),
            "{serving:#}"
        );
        let other = &pools["pools"][w + WRITERS]["endpoints"];
        assert_eq!(other.as_array().unwrap().len(), 1, "{other:#}");
    }

    // Every write is in the trail with its own outcome; an accepted one
    // with the lines it changed and the version it was answered.
    let trail = send("GET", &format!("{control}/v1/audit"), &[], "").await;
    let entries = json(&trail)["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), WRITERS * 6);
    let accepted_entries: Vec<_> = entries
        .iter()
        .filter(|e| e["outcome"] == "accepted")
        .collect();
    assert_eq!(accepted_entries.len(), accepted);
    for entry in &accepted_entries {
        let version = entry["version_after"].as_str().unwrap();
        assert!(by_version.contains_key(version), "{entry:#}");
        assert_ne!(entry["version_before"], entry["version_after"], "{entry:#}");
        let changes = &entry["config_changes"];
        assert!(
            !changes["added"].as_array().unwrap().is_empty()
                || !changes["removed"].as_array().unwrap().is_empty(),
            "{entry:#}"
        );
    }
    let lines = std::fs::read_to_string(&audit_file)
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines, WRITERS * 6);

    // The version answered last is the file's: a change sent with it as
    // `If-Match` is applied.
    let now = send("GET", &format!("{control}/v1/config"), &[], "").await;
    let version = etag(&now);
    assert!(by_version.contains_key(version.as_str()));
    let next = send(
        "POST",
        &format!("{control}/v1/pools/pool-99/endpoints"),
        &[JSON, ("if-match", &format!("\"{version}\""))],
        "{\"address\": \"127.0.0.4:1\"}",
    )
    .await;
    assert_eq!(next.status, 201, "{}", next.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_writers_sending_the_same_if_match_one_gets_through() {
    let plugins = tempfile::tempdir().unwrap();
    let proxy = Switchyard::start(plugins.path(), &config());
    let control = format!("http://{}", proxy.control);
    let read = send("GET", &format!("{control}/v1/config"), &[], "").await;
    let version = read.headers["etag"].to_str().unwrap().to_string();

    let start = std::sync::Arc::new(tokio::sync::Barrier::new(16));
    let mut writers = Vec::new();
    for w in 0..16 {
        let (control, start, version) = (control.clone(), start.clone(), version.clone());
        writers.push(tokio::spawn(async move {
            start.wait().await;
            let reply = send(
                "PATCH",
                &format!(
                    "{control}/v1/pools/pool-{w}/endpoints/127.0.0.1:{}",
                    20_000 + w
                ),
                &[JSON, ("if-match", &version)],
                "{\"weight\": 9}",
            )
            .await;
            (w, reply)
        }));
    }
    let mut winners = Vec::new();
    let mut stale = Vec::new();
    for writer in writers {
        let (w, reply) = writer.await.unwrap();
        match reply.status {
            200 => winners.push((w, etag(&reply))),
            412 => stale.push(json(&reply)),
            _ => panic!("writer {w}: {} {}", reply.status, reply.body),
        }
    }
    assert_eq!(winners.len(), 1, "{stale:#?}");
    let (winner, now) = &winners[0];
    // Each refused in its turn, told the version that is current since.
    for answer in &stale {
        assert_eq!(answer["error"]["code"], "stale_version");
        assert_eq!(answer["error"]["field"], "If-Match");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(now.as_str()), "{message}");
    }
    let file = std::fs::read_to_string(&proxy.config).unwrap();
    let config: toml::Table = toml::from_str(&file).unwrap();
    for w in 0..16 {
        let weight = config["pools"][w]["endpoints"][0].get("weight");
        if w == *winner {
            assert_eq!(weight.and_then(|v| v.as_integer()), Some(9));
        } else {
            assert!(weight.is_none(), "pool-{w}: {weight:?}");
        }
    }
    let read = send("GET", &format!("{control}/v1/config"), &[], "").await;
    assert_eq!(&etag(&read), now);
}
