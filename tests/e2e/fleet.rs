//! A fleet: three instances of the real binary sharing their pools and
//! routes through a real three-member etcd cluster (Debian's `etcd`, on
//! loopback ports). A write through one instance serves on all three; two
//! writes from the same version, through two instances, cannot both win;
//! the etcd leader killed under load costs no request; with all of etcd
//! down the instances keep serving (a restarted one too, from its working
//! copy), refuse writes, and converge when etcd returns.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::etcd::{EtcdCluster, EtcdTls};
use crate::support::*;

/// One instance of the fleet, named `name`, whose own file lists
/// `endpoints` in pool `web` (what the fleet's etcd holds wins).
fn instance(etcd: &EtcdCluster, name: &str, endpoints: &[String]) -> Switchyard {
    let (proxy, plugins) = instance_with_folder(etcd, name, endpoints);
    // The plugin folder lives as long as the test.
    std::mem::forget(plugins);
    proxy
}

/// An instance, with its plugin folder.
fn instance_with_folder(
    etcd: &EtcdCluster,
    name: &str,
    endpoints: &[String],
) -> (Switchyard, tempfile::TempDir) {
    instance_with(etcd, name, endpoints, "")
}

/// An instance with `cluster_keys` added to its `[cluster]` table.
fn instance_with(
    etcd: &EtcdCluster,
    name: &str,
    endpoints: &[String],
    cluster_keys: &str,
) -> (Switchyard, tempfile::TempDir) {
    let plugins = plugin_dir(&[]);
    let body = format!(
        "[[pools]]\nname = \"web\"\nendpoints = [{}]\n\n\
         [cluster]\netcd = {}\nname = \"{name}\"\nheartbeat_ms = 200\nlease_ttl_ms = 2000\n{cluster_keys}\n",
        endpoints.join(", "),
        etcd.toml_list()
    );
    let proxy = Switchyard::try_start(plugins.path(), &body).unwrap_or_else(|log| panic!("{log}"));
    (proxy, plugins)
}

async fn json(url: &str) -> serde_json::Value {
    let reply = send("GET", url, &[], "").await;
    assert_eq!(reply.status, 200, "{url}: {}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

/// The config version (`ETag`) an instance serves.
async fn version(proxy: &Switchyard) -> String {
    let reply = send("GET", &proxy.control_url("/v1/config"), &[], "").await;
    reply.headers["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

/// Waits until every instance serves `tag`; how long that took.
async fn converge(instances: &[&Switchyard], tag: &str) -> Duration {
    let start = Instant::now();
    for proxy in instances {
        loop {
            if version(proxy).await == tag {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{} never served version {tag}: at {}\n{}",
                proxy.control,
                version(proxy).await,
                proxy.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    start.elapsed()
}

async fn write(
    proxy: &Switchyard,
    method: &str,
    path: &str,
    if_match: Option<&str>,
    body: &str,
) -> Reply {
    let mut headers = vec![("content-type", "application/json")];
    let quoted;
    if let Some(tag) = if_match {
        quoted = format!("\"{tag}\"");
        headers.push(("if-match", quoted.as_str()));
    }
    send(method, &proxy.control_url(path), &headers, body).await
}

/// Adds `upstream` to pool `web` through `proxy`.
async fn add_endpoint(proxy: &Switchyard, upstream: &Upstream) -> Reply {
    let body = format!("{{\"address\": \"{}\"}}", upstream.addr);
    write(proxy, "POST", "/v1/pools/web/endpoints", None, &body).await
}

/// Uploads `bytes` as plugin `name`'s candidate through `proxy`.
async fn upload(proxy: &Switchyard, name: &str, bytes: Vec<u8>) -> (u16, String) {
    let client = HttpClient::default();
    let reply = client
        .post(
            &proxy.control_url(&format!("/v1/plugins/{name}/candidate")),
            bytes,
        )
        .await;
    (reply.status, reply.body)
}

fn tag_of(reply: &Reply) -> String {
    reply.headers["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_instance_serves_on_all_three_and_a_stale_one_is_refused() {
    let etcd = EtcdCluster::start(3);
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let first = instance(&etcd, "one", &[a.endpoint(1)]);
    // The others' own files say otherwise: the fleet's pools win.
    let dead = "{ address = \"127.0.0.1:1\" }".to_string();
    let second = instance(&etcd, "two", std::slice::from_ref(&dead));
    let third = instance(&etcd, "three", &[dead]);
    let all = [&first, &second, &third];
    let seeded = version(&first).await;
    converge(&all, &seeded).await;
    let client = HttpClient::default();
    for proxy in all {
        let (seen, failures) = client.spread(&proxy.url("/"), 10, 2).await;
        assert!(
            failures.is_empty() && seen.get("a") == Some(&10),
            "{seen:?} {failures:?}"
        );
    }

    // Every instance lists the three, none lagging.
    let deadline = Instant::now() + Duration::from_secs(10);
    let cluster = loop {
        let cluster = json(&third.control_url("/v1/cluster")).await;
        let members = cluster["members"].as_array().map_or(0, Vec::len);
        if members == 3 || Instant::now() > deadline {
            break cluster;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(cluster["enabled"], true, "{cluster:#}");
    let names: Vec<&str> = cluster["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["one", "three", "two"], "{cluster:#}");
    assert!(
        cluster["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["lagging"] == false),
        "{cluster:#}"
    );
    // The console shows the fleet.
    let mut browser = Script::start(
        "console_fleet.py",
        &[
            second.control_url("/"),
            "one".into(),
            "two".into(),
            "three".into(),
        ],
    );
    browser.expect("listed", "the console did not list the fleet");

    // An endpoint added through one instance serves on all three.
    let added = add_endpoint(&first, &b).await;
    assert_eq!(added.status, 201, "{}", added.body);
    let revision = tag_of(&added);
    assert!(
        revision.parse::<i64>().unwrap() > seeded.parse::<i64>().unwrap(),
        "{revision} after {seeded}"
    );
    converge(&all, &revision).await;
    for proxy in all {
        let (seen, failures) = client.spread(&proxy.url("/"), 20, 2).await;
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(
            (seen.get("a"), seen.get("b")),
            (Some(&10), Some(&10)),
            "{seen:?}"
        );
    }

    // Two writes from the same version through two instances: one wins.
    let path = format!("/v1/pools/web/endpoints/{}", b.addr);
    let (one, two) = tokio::join!(
        write(&first, "PATCH", &path, Some(&revision), "{\"weight\": 2}"),
        write(&second, "PATCH", &path, Some(&revision), "{\"weight\": 3}"),
    );
    let mut statuses = [one.status, two.status];
    statuses.sort();
    assert_eq!(statuses, [200, 412], "{} / {}", one.body, two.body);
    let loser = if one.status == 412 { &one } else { &two };
    assert!(loser.body.contains("stale_version"), "{}", loser.body);

    // Without If-Match both land, one after the other.
    let other_path = format!("/v1/pools/web/endpoints/{}", a.addr);
    let (one, two) = tokio::join!(
        write(&second, "PATCH", &path, None, "{\"weight\": 4}"),
        write(&third, "PATCH", &other_path, None, "{\"weight\": 5}"),
    );
    assert_eq!(
        (one.status, two.status),
        (200, 200),
        "{} / {}",
        one.body,
        two.body
    );
    let revision = |reply: &Reply| tag_of(reply).parse::<i64>().unwrap();
    let newest = revision(&one).max(revision(&two)).to_string();
    converge(&all, &newest).await;
    let config = json(&first.control_url("/v1/config")).await;
    let toml = config["toml"].as_str().unwrap();
    assert!(
        toml.contains("weight = 4") && toml.contains("weight = 5"),
        "{toml}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_leader_killed_under_load_costs_no_request_and_writes_go_on() {
    let mut etcd = EtcdCluster::start(3);
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let fleet = [
        instance(&etcd, "one", &[a.endpoint(1)]),
        instance(&etcd, "two", &[a.endpoint(1)]),
        instance(&etcd, "three", &[a.endpoint(1)]),
    ];
    let all: Vec<&Switchyard> = fleet.iter().collect();
    converge(&all, &version(&fleet[0]).await).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut loops = Vec::new();
    for proxy in &fleet {
        let (url, stop, sent, failed) =
            (proxy.url("/"), stop.clone(), sent.clone(), failed.clone());
        loops.push(tokio::spawn(async move {
            let client = HttpClient::default();
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                match client.try_get_with(&url, &[]).await {
                    Ok(reply) if reply.status == 200 => {}
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let leader = etcd.leader().expect("a leader");
    etcd.kill_member(leader);
    // A write made while the cluster elects a new leader lands once it has.
    let deadline = Instant::now() + Duration::from_secs(10);
    let added = loop {
        let reply = add_endpoint(&fleet[(leader + 1) % 3], &b).await;
        if reply.status == 201 || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(added.status, 201, "{}", added.body);
    converge(&all, &tag_of(&added)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in loops {
        task.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(sent > 100, "only {sent} requests sent");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_down_the_fleet_serves_refuses_writes_restarts_from_its_copy_and_converges() {
    let mut etcd = EtcdCluster::start(3);
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let mut fleet = [
        instance(&etcd, "one", &[a.endpoint(1)]),
        instance(&etcd, "two", &[a.endpoint(1)]),
        instance(&etcd, "three", &[a.endpoint(1)]),
    ];
    let added = add_endpoint(&fleet[0], &b).await;
    assert_eq!(added.status, 201, "{}", added.body);
    let revision = tag_of(&added);
    converge(&fleet.iter().collect::<Vec<_>>(), &revision).await;

    etcd.kill_all();
    let client = HttpClient::default();
    // Serving goes on, with what came through the fleet.
    for proxy in &fleet {
        let (seen, failures) = client.spread(&proxy.url("/"), 20, 2).await;
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(seen.get("b"), Some(&10), "{seen:?}");
        assert_eq!(client.get(&proxy.control_url("/readyz")).await.status, 200);
    }
    // Writes are refused, saying why.
    let refused = write(
        &fleet[1],
        "PATCH",
        &format!("/v1/pools/web/endpoints/{}", b.addr),
        None,
        "{\"weight\": 7}",
    )
    .await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused.body.contains("fleet_unavailable") && refused.body.contains("etcd"),
        "{}",
        refused.body
    );
    // An alert says since when.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alerts = send("GET", &fleet[1].control_url("/v1/alerts"), &[], "")
            .await
            .body;
        if alerts.contains("etcd is unreachable") {
            break;
        }
        assert!(Instant::now() < deadline, "no alert: {alerts}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Restarted while etcd is down, an instance serves its last revision.
    fleet[2]
        .crash_and_restart()
        .unwrap_or_else(|log| panic!("{log}"));
    assert_eq!(version(&fleet[2]).await, revision);
    let (seen, failures) = client.spread(&fleet[2].url("/"), 20, 2).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");

    // etcd returns: writes are taken again, and every instance converges.
    etcd.start_all();
    let deadline = Instant::now() + Duration::from_secs(15);
    let changed = loop {
        let reply = write(
            &fleet[1],
            "PATCH",
            &format!("/v1/pools/web/endpoints/{}", b.addr),
            None,
            "{\"weight\": 3}",
        )
        .await;
        if reply.status == 200 || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(changed.status, 200, "{}", changed.body);
    converge(&fleet.iter().collect::<Vec<_>>(), &tag_of(&changed)).await;
    let address = b.addr.to_string();
    for proxy in &fleet {
        let pools = json(&proxy.control_url("/v1/pools")).await;
        let endpoint = pools["pools"][0]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["address"] == address.as_str())
            .cloned()
            .unwrap_or_default();
        assert_eq!(endpoint["weight"], 3, "{pools:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_dropped_on_one_instance_serves_on_all_three() {
    let etcd = EtcdCluster::start(3);
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let endpoints = [a.endpoint(1), b.endpoint(1)];
    let (first, folder) = instance_with_folder(&etcd, "one", &endpoints);
    let fleet = [
        first,
        instance(&etcd, "two", &endpoints),
        instance(&etcd, "three", &endpoints),
    ];
    let client = HttpClient::default();

    // Dropped on the first, it loads on all three.
    replace_plugin(folder.path(), "rr", &plugin_bytes("pin-first"));
    for proxy in &fleet {
        proxy
            .wait_for_plugin(&client, "rr", "arrived and serving", |p| {
                p["state"] == "active"
            })
            .await;
    }
    // The pools of the fleet use it, on every instance.
    let changed = write(
        &fleet[1],
        "PATCH",
        "/v1/pools/web",
        None,
        "{\"balancer\": {\"plugin\": \"rr\"}}",
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    converge(&fleet.iter().collect::<Vec<_>>(), &tag_of(&changed)).await;
    for proxy in &fleet {
        let (seen, failures) = client.spread(&proxy.url("/"), 10, 2).await;
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(seen.get("a"), Some(&10), "pin-first everywhere: {seen:?}");
    }

    // A candidate uploaded through one instance is on trial on all three.
    let uploaded = upload(&fleet[0], "rr", plugin_bytes("random")).await;
    assert_eq!(uploaded.0, 201, "{}", uploaded.1);
    for proxy in &fleet {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let rollout = send("GET", &proxy.control_url("/v1/plugins/rr/rollout"), &[], "").await;
            if rollout.status == 200 && rollout.body.contains("\"state\":\"shadow\"") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no rollout: {}",
                proxy.control,
                rollout.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let aborted = write(&fleet[0], "POST", "/v1/plugins/rr/rollout/abort", None, "").await;
    assert_eq!(aborted.status, 200, "{}", aborted.body);

    // A new version dropped on one instance replaces it on every one.
    let newer = plugin_bytes("pin-last");
    replace_plugin(folder.path(), "rr", &newer);
    let hash = {
        use sha2::Digest as _;
        format!("{:x}", sha2::Sha256::digest(&newer))
    };
    for proxy in &fleet {
        proxy
            .wait_for_plugin(&client, "rr", "the new version", |p| {
                p["hash"] == hash.as_str()
            })
            .await;
        let (seen, failures) = client.spread(&proxy.url("/"), 10, 2).await;
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(seen.get("b"), Some(&10), "pin-last everywhere: {seen:?}");
    }

    // etcd keeps the versions that serve: the one replaced is gone.
    let stored = |bytes: &[u8]| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let prefix = format!("/switchyard/blobs/{:x}/", sha2::Sha256::digest(bytes));
        let end = format!("{}0", prefix.trim_end_matches('/'));
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = format!(
            "{{\"key\": \"{}\", \"range_end\": \"{}\", \"count_only\": true}}",
            b64.encode(prefix),
            b64.encode(end)
        );
        etcd.call("/v3/kv/range", &body)
            .unwrap()
            .contains("\"count\"")
    };
    assert!(stored(&newer), "the serving version is stored");
    assert!(
        !stored(&plugin_bytes("pin-first")),
        "the replaced version is kept"
    );

    // A config naming a plugin that has not reached an instance yet is
    // applied there once it has.
    replace_plugin(folder.path(), "lr", &plugin_bytes("least-request"));
    fleet[0]
        .wait_for_plugin(&client, "lr", "loaded where it was dropped", |p| {
            p["state"] == "active"
        })
        .await;
    let changed = write(
        &fleet[0],
        "PATCH",
        "/v1/pools/web",
        None,
        "{\"balancer\": {\"plugin\": \"lr\"}}",
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    converge(&fleet.iter().collect::<Vec<_>>(), &tag_of(&changed)).await;
    for proxy in &fleet {
        let pools = json(&proxy.control_url("/v1/pools")).await;
        assert_eq!(pools["pools"][0]["balancer"], "lr", "{pools:#}");
    }
}

/// Writes a certificate signed by `issuer` for `names`, and its key, as
/// `stem.pem` and `stem.key` in `dir`.
fn issue(
    issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: &std::path::Path,
    stem: &str,
    names: &[&str],
) {
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, issuer)
        .unwrap();
    std::fs::write(dir.join(format!("{stem}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_with_a_client_certificate_is_joined() {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    issue(&ca, dir, "etcd", &["127.0.0.1", "localhost"]);
    issue(&ca, dir, "client", &["switchyard"]);
    let etcd = EtcdCluster::start_with(
        1,
        Some(EtcdTls {
            cert: dir.join("etcd.pem"),
            key: dir.join("etcd.key"),
            client_ca: dir.join("ca.pem"),
        }),
    );
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let tls = format!(
        "tls = {{ ca = \"{0}/ca.pem\", cert = \"{0}/client.pem\", key = \"{0}/client.key\" }}",
        dir.display()
    );
    let (proxy, _plugins) = instance_with(&etcd, "one", &[a.endpoint(1)], &tls);
    let added = add_endpoint(&proxy, &b).await;
    assert_eq!(added.status, 201, "{}\n{}", added.body, proxy.log_tail());
    let cluster = json(&proxy.control_url("/v1/cluster")).await;
    assert_eq!(cluster["etcd_reachable"], true, "{cluster:#}");
    assert_eq!(
        cluster["applied_revision"].to_string(),
        tag_of(&added),
        "{cluster:#}"
    );

    // Without its client certificate an instance cannot reach etcd: it
    // serves its own file, and says why.
    let only_ca = format!("tls = {{ ca = \"{}/ca.pem\" }}", dir.display());
    let (refused, _plugins) = instance_with(&etcd, "two", &[a.endpoint(1)], &only_ca);
    let cluster = json(&refused.control_url("/v1/cluster")).await;
    assert_eq!(cluster["etcd_reachable"], false, "{cluster:#}");
    assert!(
        cluster["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("unreachable"),
        "{cluster:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_with_auth_is_joined_with_its_user_and_a_wrong_password_is_named() {
    let etcd = EtcdCluster::start(1);
    for (path, body) in [
        ("/v3/auth/role/add", r#"{"name": "root"}"#),
        (
            "/v3/auth/user/add",
            r#"{"name": "root", "password": "root-secret"}"#,
        ),
        ("/v3/auth/user/grant", r#"{"user": "root", "role": "root"}"#),
        (
            "/v3/auth/user/add",
            r#"{"name": "switchyard", "password": "fleet-secret"}"#,
        ),
        (
            "/v3/auth/user/grant",
            r#"{"user": "switchyard", "role": "root"}"#,
        ),
        ("/v3/auth/enable", "{}"),
    ] {
        assert!(etcd.call(path, body).is_some(), "{path} failed");
    }
    let secrets = tempfile::tempdir().unwrap();
    let (right, wrong) = (secrets.path().join("right"), secrets.path().join("wrong"));
    std::fs::write(&right, "fleet-secret\n").unwrap();
    std::fs::write(&wrong, "guess\n").unwrap();
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let auth = |file: &std::path::Path| {
        format!(
            "user = \"switchyard\"\npassword_file = \"{}\"",
            file.display()
        )
    };
    let (proxy, _plugins) = instance_with(&etcd, "one", &[a.endpoint(1)], &auth(&right));
    let added = add_endpoint(&proxy, &b).await;
    assert_eq!(added.status, 201, "{}\n{}", added.body, proxy.log_tail());

    let (refused, _plugins) = instance_with(&etcd, "two", &[a.endpoint(1)], &auth(&wrong));
    let cluster = json(&refused.control_url("/v1/cluster")).await;
    assert_eq!(cluster["etcd_reachable"], false, "{cluster:#}");
    let why = cluster["last_error"].as_str().unwrap_or("");
    assert!(why.contains("authentication"), "{cluster:#}");
    let write = add_endpoint(&refused, &b).await;
    assert_eq!(write.status, 503, "{}", write.body);
}

/// The addresses pool `web` of `proxy` has from registrations.
async fn registered(proxy: &Switchyard) -> Vec<String> {
    let pools = json(&proxy.control_url("/v1/pools")).await;
    crate::discovery::addresses(&pools, "web", "registration")
}

/// Waits until every instance has `expected` registered in pool `web`.
async fn registered_everywhere(fleet: &[Switchyard], expected: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    for proxy in fleet {
        loop {
            let now = registered(proxy).await;
            if now == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} has {now:?} registered, not {expected:?}\n{}",
                proxy.control,
                proxy.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_registered_through_one_instance_serves_on_all_and_lapses_on_all() {
    let etcd = EtcdCluster::start(3);
    let (a, r) = (Upstream::start("a").await, Upstream::start("r").await);
    let mut fleet = [
        instance(&etcd, "one", &[a.endpoint(1)]),
        instance(&etcd, "two", &[a.endpoint(1)]),
        instance(&etcd, "three", &[a.endpoint(1)]),
    ];
    let reply = write(
        &fleet[0],
        "POST",
        "/v1/pools/web/registrations",
        None,
        &format!("{{\"address\": \"{}\", \"ttl_ms\": 2000}}", r.addr),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = serde_json::from_str::<serde_json::Value>(&reply.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let expected = [r.addr.to_string()];
    registered_everywhere(&fleet, &expected, Duration::from_secs(5)).await;
    let client = HttpClient::default();
    let (seen, failures) = client.spread(&fleet[2].url("/"), 20, 2).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen.get("r"), Some(&10), "{seen:?}");

    // Renewed through the other instances in turn, it outlives its TTL on all.
    let renewed_until = Instant::now() + Duration::from_secs(4);
    let mut turn = 1;
    while Instant::now() < renewed_until {
        let path = format!("/v1/pools/web/registrations/{id}");
        let reply = send("PUT", &fleet[turn % 3].control_url(&path), &[], "").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        turn += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    registered_everywhere(&fleet, &expected, Duration::from_secs(1)).await;

    // A restarted instance takes it back from etcd.
    fleet[1]
        .crash_and_restart()
        .unwrap_or_else(|log| panic!("{log}"));
    registered_everywhere(&fleet, &expected, Duration::from_secs(5)).await;

    // Not renewed, it lapses on every instance.
    registered_everywhere(&fleet, &[], Duration::from_secs(6)).await;
    let (seen, failures) = client.spread(&fleet[1].url("/"), 10, 2).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen.get("a"), Some(&10), "{seen:?}");
}
