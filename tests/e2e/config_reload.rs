//! Reloading the config file under load: SIGHUP and `POST /v1/reload` apply
//! the difference (pools added, rebuilt and removed, routes swapped, an
//! endpoint keeping its figures by address) without a failed request; an
//! invalid file changes nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;

async fn reload(proxy: &Switchyard, client: &HttpClient) -> (u16, serde_json::Value) {
    let reply = client
        .post(&proxy.control_url("/v1/reload"), Vec::new())
        .await;
    (reply.status, serde_json::from_str(&reply.body).unwrap())
}

/// Keep-alive clients sending GETs to `paths` in turn until `stop`; every
/// answer that is not a 200 is returned.
fn load(
    proxy: &Switchyard,
    paths: &[&str],
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(u64, Vec<String>)>> {
    (0..4)
        .map(|n| {
            let urls: Vec<String> = paths.iter().map(|p| proxy.url(p)).collect();
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = HttpClient::default();
                let (mut sent, mut failures) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let url = &urls[(sent as usize + n) % urls.len()];
                    match client.try_get_with(url, &[]).await {
                        Ok(reply) if reply.status == 200 => {}
                        Ok(reply) => {
                            failures.push(format!("{url}: {} {}", reply.status, reply.body.trim()))
                        }
                        Err(error) => failures.push(format!("{url}: {error}")),
                    }
                    sent += 1;
                }
                (sent, failures)
            })
        })
        .collect()
}

/// The binary over `plugins`, its config file unwatched: a reload happens
/// only when asked for.
fn reloaded_only_when_asked(
    plugins: &std::path::Path,
    plugin_keys: &str,
    body: &str,
) -> Switchyard {
    Switchyard::try_start_full(plugins, "", "watch_config = false", plugin_keys, body)
        .unwrap_or_else(|log| panic!("{log}"))
}

fn web_only(a: &Upstream, b: &Upstream) -> String {
    format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"rr\" }}\nendpoints = [{}, {}]\n",
        a.endpoint(1),
        b.endpoint(1)
    )
}

fn web_and_api(a: &Upstream, b: &Upstream, c: &Upstream, d: &Upstream) -> String {
    format!(
        "[[pools]]\nname = \"web\"\nbalancer = {{ plugin = \"rr\" }}\nendpoints = [{}, {}, {}]\n\n\
         [[pools]]\nname = \"api\"\nendpoints = [{}]\n\n\
         [[routes]]\npath_prefix = \"/api\"\npool = \"api\"\n\n\
         [[routes]]\npool = \"web\"\n",
        a.endpoint(1),
        b.endpoint(1),
        d.endpoint(2),
        c.endpoint(1)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_apply_the_difference_without_a_failed_request() {
    let plugins = plugin_dir(&[("rr", "round-robin")]);
    let [a, b, c, d] = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
        Upstream::start("d").await,
    ];
    // Few plugin instance slots: instances of the pools a reload replaced
    // must be released, or the balancer soon faults.
    let proxy =
        // Reloads here are asked for, so each answers what it changed.
        Switchyard::try_start_full(
            plugins.path(),
            "",
            "watch_config = false",
            "max_instances = 8",
            &web_only(&a, &b),
        )
        .unwrap_or_else(|log| panic!("{log}"));
    let client = HttpClient::default();
    let stop = Arc::new(AtomicBool::new(false));
    let loops = load(&proxy, &["/"], stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a_before = pools_now(&proxy, &client).await["pools"][0]["endpoints"][0]["load"]["requests"]
        .as_u64()
        .unwrap();
    assert!(a_before > 0);

    // SIGHUP: a pool and a route added, an endpoint added to `web`.
    proxy.rewrite_config(&web_and_api(&a, &b, &c, &d));
    proxy.hang_up();
    let deadline = Instant::now() + Duration::from_secs(10);
    let pools = loop {
        let pools = pools_now(&proxy, &client).await;
        if pools["pools"].as_array().unwrap().len() == 2 {
            break pools;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload: {pools:#}\n{}",
            proxy.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let web = &pools["pools"][0];
    assert_eq!(web["endpoints"].as_array().unwrap().len(), 3, "{web:#}");
    // `a` kept its figures: the same endpoint, by address.
    assert!(
        web["endpoints"][0]["load"]["requests"].as_u64().unwrap() >= a_before,
        "{web:#}"
    );
    assert_eq!(client.get(&proxy.url("/api/users")).await.upstream(), "c");
    let (seen, failures) = client.spread(&proxy.url("/"), 40, 4).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert!(seen.contains_key("d"), "{seen:?}");

    // An invalid file changes nothing, and says where.
    proxy.rewrite_config(&web_and_api(&a, &b, &c, &d).replace("weight = 2", "weight = 0"));
    let (status, answer) = reload(&proxy, &client).await;
    assert_eq!(status, 422, "{answer:#}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`pools[0].endpoints[2].weight`: must be at least 1"),
        "{message}"
    );
    assert!(message.contains("line "), "{message}");
    assert_eq!(
        pools_now(&proxy, &client).await["pools"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Back and forth under load: every reload swaps the pools in, with no
    // failed request and no plugin fault.
    let mut answers = Vec::new();
    for round in 0..20 {
        let body = if round % 2 == 0 {
            web_only(&a, &b)
        } else {
            web_and_api(&a, &b, &c, &d)
        };
        proxy.rewrite_config(&body);
        let (status, answer) = reload(&proxy, &client).await;
        assert_eq!(status, 200, "round {round}: {answer:#}");
        answers.push(answer);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        answers[0]["reloaded"]["removed"],
        serde_json::json!(["api"]),
        "{:#}",
        answers[0]
    );
    assert_eq!(
        answers[0]["reloaded"]["changed"],
        serde_json::json!(["web"])
    );
    assert_eq!(answers[1]["reloaded"]["added"], serde_json::json!(["api"]));
    // The same file again: nothing to rebuild.
    let (_, same) = reload(&proxy, &client).await;
    assert_eq!(
        same["reloaded"]["unchanged"],
        serde_json::json!(["web", "api"]),
        "{same:#}"
    );

    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for task in loops {
        let (count, failures) = task.await.unwrap();
        sent += count;
        assert!(
            failures.is_empty(),
            "{} failed, e.g. {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
    }
    assert!(sent > 500, "only {sent} requests under load");
    let rr = &proxy.plugins(&client).await["rr"];
    assert_eq!(rr["faults"], 0, "{rr:#}");
    assert_eq!(rr["pools"], serde_json::json!(["web"]), "{rr:#}");
}

/// A plugin file written just before the config that names it is loaded
/// by the reload itself, watched folder or not; a file that cannot load is
/// named with its reason and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_loads_a_plugin_file_written_just_before_it() {
    let plugins = plugin_dir(&[("rr", "round-robin")]);
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    // Nothing watches the folder: only the reload can load the new file.
    let proxy = reloaded_only_when_asked(plugins.path(), "watch = false", &web_only(&a, &b));
    let client = HttpClient::default();

    std::fs::write(plugins.path().join("broken.wasm"), b"not wasm").unwrap();
    proxy.rewrite_config(&web_only(&a, &b).replace("\"rr\"", "\"broken\""));
    let (status, answer) = reload(&proxy, &client).await;
    assert_eq!(status, 422, "{answer:#}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("balancer.plugin = \"broken\""),
        "{message}"
    );
    assert!(!message.contains("no file"), "{message}");

    std::fs::write(
        plugins.path().join("p2c.wasm"),
        plugin_bytes("least-request"),
    )
    .unwrap();
    proxy.rewrite_config(&web_only(&a, &b).replace("\"rr\"", "\"p2c\""));
    let (status, answer) = reload(&proxy, &client).await;
    assert_eq!(status, 200, "{answer:#}");
    let (_, failures) = client.spread(&proxy.url("/"), 20, 2).await;
    assert!(failures.is_empty(), "{failures:?}");
    let p2c = &proxy.plugins(&client).await["p2c"];
    assert!(p2c["calls"].as_u64().unwrap() >= 20, "{p2c:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_needs_a_restart_or_a_missing_plugin_changes_nothing() {
    let plugins = plugin_dir(&[("rr", "round-robin")]);
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let proxy = reloaded_only_when_asked(plugins.path(), "", &web_only(&a, &b));
    let client = HttpClient::default();

    proxy.rewrite_config(&web_only(&a, &b).replace("\"rr\"", "\"p2c\""));
    let (status, answer) = reload(&proxy, &client).await;
    assert_eq!(status, 422, "{answer:#}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("balancer.plugin = \"p2c\""),
        "{answer:#}"
    );

    // The listener is read at start.
    let text = std::fs::read_to_string(&proxy.config).unwrap();
    std::fs::write(
        &proxy.config,
        text.replacen("workers = 2", "workers = 3", 1),
    )
    .unwrap();
    let (status, answer) = reload(&proxy, &client).await;
    assert_eq!(status, 409, "{answer:#}");
    assert_eq!(answer["error"]["code"], "restart_needed");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("proxy.workers changed from 2 to 3: needs a restart"),
        "{answer:#}"
    );
    let pools = pools_now(&proxy, &client).await;
    assert_eq!(pools["pools"][0]["balancer"], "rr", "{pools:#}");
    assert_eq!(client.get(&proxy.url("/")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_config_file_is_applied_without_being_asked() {
    let plugins = plugin_dir(&[("rr", "round-robin")]);
    let [a, b, c, d] = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
        Upstream::start("d").await,
    ];
    let proxy = Switchyard::start(plugins.path(), &web_only(&a, &b));
    let client = HttpClient::default();
    let stop = Arc::new(AtomicBool::new(false));
    let loops = load(&proxy, &["/"], stop.clone());
    // Saved as an editor does: written beside, renamed over.
    proxy.rewrite_config(&web_and_api(&a, &b, &c, &d));
    let deadline = Instant::now() + Duration::from_secs(10);
    while pools_now(&proxy, &client).await["pools"]
        .as_array()
        .unwrap()
        .len()
        != 2
    {
        assert!(
            Instant::now() < deadline,
            "the saved file was not applied\n{}",
            proxy.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client.get(&proxy.url("/api")).await.upstream(), "c");
    // A save that leaves it invalid changes nothing; the log says why.
    proxy.rewrite_config("[[pools]]\nname = \"web\"\nendpoints = []\nbalancer = { plugin = 7 }\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy
        .log_tail()
        .contains("the changed config file was not applied")
    {
        assert!(
            Instant::now() < deadline,
            "no error logged\n{}",
            proxy.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        pools_now(&proxy, &client).await["pools"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(client.get(&proxy.url("/api")).await.upstream(), "c");
    stop.store(true, Ordering::Relaxed);
    for task in loops {
        let (_, failures) = task.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
}
