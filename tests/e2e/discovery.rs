//! Endpoints from DNS: a real DNS server (Debian's dnsmasq) on loopback,
//! started by each test with records it rewrites; upstreams on distinct
//! loopback addresses sharing one port, as the addresses of a name do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dnsmasq::Dnsmasq;
use crate::support::*;

/// Upstreams named `name` on `127.0.0.N:port` for each N of `hosts`, on one
/// free port, each answering after `delay`.
pub async fn upstreams_on(hosts: &[u8], delay: Duration) -> (u16, Vec<Upstream>) {
    'port: for _ in 0..20 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for host in hosts {
            let addr: SocketAddr = format!("127.0.0.{host}:{port}").parse().unwrap();
            if std::net::TcpListener::bind(addr).is_err() {
                continue 'port;
            }
        }
        let mut upstreams = Vec::new();
        for host in hosts {
            let addr = format!("127.0.0.{host}:{port}").parse().unwrap();
            upstreams.push(Upstream::start_at(&format!("u{host}"), addr, delay).await);
        }
        return (port, upstreams);
    }
    panic!("no port free on every loopback address");
}

/// Requests sent by `workers` clients until stopped, each answer counted
/// by upstream and each failure kept.
struct Traffic {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(HashMap<String, usize>, Vec<String>)>,
}

impl Traffic {
    fn start(url: String, workers: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let go = {
            let stop = Arc::clone(&stop);
            move || !stop.load(Ordering::Relaxed)
        };
        let task =
            tokio::spawn(
                async move { HttpClient::default().spread_while(&url, workers, go).await },
            );
        Traffic { stop, task }
    }

    async fn stop(self) -> (HashMap<String, usize>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// The addresses of pool `pool`'s endpoints from `source`, sorted.
pub fn addresses(pools: &serde_json::Value, pool: &str, source: &str) -> Vec<String> {
    let mut found: Vec<String> = pools["pools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == pool)
        .flat_map(|p| p["endpoints"].as_array().unwrap().iter())
        .filter(|e| e["source"] == source)
        .map(|e| e["address"].as_str().unwrap().to_string())
        .collect();
    found.sort();
    found
}

fn hosts_of(name: &str, hosts: &[u8]) -> String {
    hosts
        .iter()
        .map(|h| format!("127.0.0.{h} {name}\n"))
        .collect()
}

fn wanted(port: u16, hosts: &[u8]) -> Vec<String> {
    let mut wanted: Vec<String> = hosts
        .iter()
        .map(|h| format!("127.0.0.{h}:{port}"))
        .collect();
    wanted.sort();
    wanted
}

fn pool(port: u16, dns: &Dnsmasq, extra: &str) -> String {
    format!(
        "[[pools]]\nname = \"api\"\nslow_start_ms = 300\n{extra}\
         discovery = {{ dns = \"api.test:{port}\", refresh_ms = 100, min_refresh_ms = 100, resolvers = [\"{}\"] }}\n",
        dns.resolver()
    )
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "never reached: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_growing_and_shrinking_under_load_adds_and_drains_endpoints() {
    let plugins = plugin_dir(&[]);
    // Each answer takes a while, so some are in flight whenever the set
    // changes.
    let (port, upstreams) = upstreams_on(&[2, 3, 4, 5], Duration::from_millis(5)).await;
    let dns = Dnsmasq::start(&hosts_of("api.test", &[2, 3]), "");
    let proxy = Switchyard::start(plugins.path(), &pool(port, &dns, ""));
    let client = HttpClient::default();
    wait_for_pools(&proxy, &client, "the two A records as endpoints", |p| {
        addresses(p, "api", "dns") == wanted(port, &[2, 3])
    })
    .await;
    let load = Traffic::start(proxy.url("/"), 8);
    wait_until("both first endpoints serve", || {
        upstreams[0].hits() > 0 && upstreams[1].hits() > 0
    })
    .await;

    // Grows to four: the new ones take traffic after the next refresh.
    dns.set_hosts(&hosts_of("api.test", &[2, 3, 4, 5]));
    wait_for_pools(&proxy, &client, "four endpoints", |p| {
        addresses(p, "api", "dns") == wanted(port, &[2, 3, 4, 5])
    })
    .await;
    wait_until("the new endpoints serve", || {
        upstreams[2].hits() > 20 && upstreams[3].hits() > 20
    })
    .await;

    // A reload that leaves the pool's discovery as it is keeps what it
    // found, and never writes it into the file.
    proxy.rewrite_config(&pool(port, &dns, "panic_threshold = 0.4\n"));
    proxy.hang_up();
    wait_for_pools(&proxy, &client, "the reloaded pool", |p| {
        p["pools"][0]["endpoints"].as_array().unwrap().len() == 4
    })
    .await;
    let file = std::fs::read_to_string(&proxy.config).unwrap();
    assert!(!file.contains("127.0.0.2"), "{file}");

    // Shrinks to one: the three gone drain, and no request fails.
    dns.set_hosts(&hosts_of("api.test", &[5]));
    wait_for_pools(&proxy, &client, "one endpoint", |p| {
        addresses(p, "api", "dns") == wanted(port, &[5])
    })
    .await;
    let gone: Vec<u64> = upstreams[..3].iter().map(Upstream::hits).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (seen, failures) = load.stop().await;
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    for (upstream, before) in upstreams[..3].iter().zip(gone) {
        // At most what was in flight when it left the set.
        assert!(
            upstream.hits() <= before + 8,
            "a removed endpoint still took traffic: {before} then {}",
            upstream.hits()
        );
        assert_eq!(upstream.load.now.load(Ordering::SeqCst), 0);
    }
    assert!(seen["u5"] > 0, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_ports_weights_and_tiers() {
    let plugins = plugin_dir(&[("round-robin", "round-robin")]);
    let (port, _upstreams) = upstreams_on(&[2, 3, 4], Duration::ZERO).await;
    // Priority 0 the primary tier; priority 10, a backup.
    let dns = Dnsmasq::start(
        "127.0.0.2 a.svc.test\n127.0.0.3 b.svc.test\n127.0.0.4 c.svc.test\n",
        &format!(
            "srv-host=_http._tcp.svc.test,a.svc.test,{port},0,1\n\
             srv-host=_http._tcp.svc.test,b.svc.test,{port},0,3\n\
             srv-host=_http._tcp.svc.test,c.svc.test,{port},10,1\n"
        ),
    );
    let proxy = Switchyard::start(
        plugins.path(),
        &format!(
            "[[pools]]\nname = \"api\"\nbalancer = {{ plugin = \"round-robin\" }}\n\
             discovery = {{ dns = \"_http._tcp.svc.test\", type = \"srv\", refresh_ms = 500, min_refresh_ms = 100, resolvers = [\"{}\"] }}\n",
            dns.resolver()
        ),
    );
    let client = HttpClient::default();
    let pools = wait_for_pools(&proxy, &client, "the three SRV targets", |p| {
        addresses(p, "api", "dns") == wanted(port, &[2, 3, 4])
    })
    .await;
    let field = |name: &str| -> Vec<u64> {
        pools["pools"][0]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[name].as_u64().unwrap())
            .collect()
    };
    assert_eq!(field("weight"), [1, 3, 1]);
    assert_eq!(field("tier"), [0, 0, 1]);
    let (seen, failures) = client.spread(&proxy.url("/"), 800, 4).await;
    assert!(failures.is_empty(), "{failures:?}");
    // Smooth weighted round robin, each worker its own rotation.
    assert!(
        (196..=204).contains(&seen["u2"]),
        "weights 1:3 gave {seen:?}"
    );
    assert!(
        (596..=604).contains(&seen["u3"]),
        "weights 1:3 gave {seen:?}"
    );
    assert_eq!(
        seen.get("u4"),
        None,
        "the backup tier took traffic: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aaaa_records_give_ipv6_endpoints() {
    let plugins = plugin_dir(&[]);
    let upstream = Upstream::start_at("v6", "[::1]:0".parse().unwrap(), Duration::ZERO).await;
    let port = upstream.addr.port();
    let dns = Dnsmasq::start("::1 v6.test\n", "");
    let proxy = Switchyard::start(
        plugins.path(),
        &format!(
            "[[pools]]\nname = \"api\"\n\
             discovery = {{ dns = \"v6.test:{port}\", type = \"aaaa\", resolvers = [\"{}\"] }}\n",
            dns.resolver()
        ),
    );
    let client = HttpClient::default();
    wait_for_pools(&proxy, &client, "the AAAA record as an endpoint", |p| {
        addresses(p, "api", "dns") == [format!("[::1]:{port}")]
    })
    .await;
    let (seen, failures) = client.spread(&proxy.url("/"), 20, 2).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen["v6"], 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_that_stops_answering_keeps_the_last_set_and_alerts() {
    let plugins = plugin_dir(&[]);
    let (port, _upstreams) = upstreams_on(&[2, 3], Duration::ZERO).await;
    let mut dns = Dnsmasq::start(&hosts_of("api.test", &[2, 3]), "");
    let proxy = Switchyard::start(plugins.path(), &pool(port, &dns, ""));
    let client = HttpClient::default();
    wait_for_pools(&proxy, &client, "the two A records as endpoints", |p| {
        addresses(p, "api", "dns") == wanted(port, &[2, 3])
    })
    .await;

    dns.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    let alert = loop {
        let alerts: serde_json::Value =
            serde_json::from_str(&client.get(&proxy.control_url("/v1/alerts")).await.body).unwrap();
        let found = alerts["alerts"].as_array().unwrap().iter().find(|a| {
            a["message"]
                .as_str()
                .unwrap()
                .starts_with("DNS discovery `api.test")
        });
        if let Some(alert) = found {
            break alert.clone();
        }
        assert!(Instant::now() < deadline, "no alert: {alerts:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(alert["severity"], "P2", "{alert}");
    assert_eq!(alert["pool"], "api");
    assert!(
        alert["message"]
            .as_str()
            .unwrap()
            .contains("keeping the last 2 endpoint(s)"),
        "{alert}"
    );
    // Refreshes go on failing; the pool keeps serving what it had.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pools = pools_now(&proxy, &client).await;
    assert_eq!(addresses(&pools, "api", "dns"), wanted(port, &[2, 3]));
    let (seen, failures) = client.spread(&proxy.url("/"), 100, 4).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostname_in_a_static_address_is_resolved_and_served() {
    let plugins = plugin_dir(&[]);
    let upstream = Upstream::start("named").await;
    let proxy = Switchyard::start(
        plugins.path(),
        &format!(
            "[[pools]]\nname = \"api\"\nhealth = {{ interval_ms = 100, timeout_ms = 100 }}\n\
             endpoints = [{{ address = \"localhost:{}\" }}]\n",
            upstream.addr.port()
        ),
    );
    let client = HttpClient::default();
    let (seen, failures) = client.spread(&proxy.url("/"), 50, 4).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen["named"], 50);
    // The active checks reach it by the same answer.
    wait_for_pools(&proxy, &client, "a healthy named endpoint", |p| {
        p["pools"][0]["endpoints"][0]["health"]["active"] == "healthy"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_endpoint_drains_its_requests_before_it_is_removed() {
    let plugins = plugin_dir(&[]);
    let (port, upstreams) = upstreams_on(&[2, 3], Duration::ZERO).await;
    upstreams[1].set(Behaviour {
        status: 200,
        delay: Duration::from_millis(3_000),
    });
    let dns = Dnsmasq::start(&hosts_of("api.test", &[2, 3]), "");
    // Longer than the harness's 2 s, for the slow answers.
    let route = "[[routes]]\npool = \"api\"\nrequest_timeout_ms = 10000\n";
    let proxy = Switchyard::start(plugins.path(), &format!("{}{route}", pool(port, &dns, "")));
    let client = HttpClient::default();
    wait_for_pools(&proxy, &client, "the two A records as endpoints", |p| {
        addresses(p, "api", "dns") == wanted(port, &[2, 3])
    })
    .await;
    let slow = {
        let url = proxy.url("/");
        tokio::spawn(async move { HttpClient::default().spread(&url, 4, 4).await })
    };
    wait_until("a request in flight on the slow endpoint", || {
        upstreams[1].load.now.load(Ordering::SeqCst) > 0
    })
    .await;

    dns.set_hosts(&hosts_of("api.test", &[2]));
    let gone = format!("127.0.0.3:{port}");
    let state = |p: &serde_json::Value| {
        p["pools"][0]["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["address"] == gone.as_str())
            .map(|e| e["state"].as_str().unwrap().to_string())
    };
    let pools = wait_for_pools(&proxy, &client, "the gone endpoint draining", |p| {
        state(p).as_deref() == Some("draining")
    })
    .await;
    assert_eq!(
        pools["pools"][0]["endpoints"][1]["eligible"], false,
        "{pools:#}"
    );
    let (seen, failures) = slow.await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(seen["u3"] > 0, "{seen:?}");
    wait_for_pools(&proxy, &client, "the drained endpoint removed", |p| {
        state(p).is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_answer_keeps_the_last_set_and_alerts() {
    let plugins = plugin_dir(&[]);
    let (port, _upstreams) = upstreams_on(&[2, 3], Duration::ZERO).await;
    // Names under `test` are dnsmasq's own: one it has no record of is
    // answered NXDOMAIN.
    let dns = Dnsmasq::start(&hosts_of("api.test", &[2, 3]), "local=/test/\n");
    let proxy = Switchyard::start(plugins.path(), &pool(port, &dns, ""));
    let client = HttpClient::default();
    wait_for_pools(&proxy, &client, "the two A records as endpoints", |p| {
        addresses(p, "api", "dns") == wanted(port, &[2, 3])
    })
    .await;

    dns.set_hosts("");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let alerts = client.get(&proxy.control_url("/v1/alerts")).await.body;
        if alerts.contains("no A records; keeping the last 2 endpoint(s) it gave") {
            break;
        }
        assert!(Instant::now() < deadline, "no alert: {alerts}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pools = pools_now(&proxy, &client).await;
    assert_eq!(addresses(&pools, "api", "dns"), wanted(port, &[2, 3]));

    // Answering again: the alert's recovery, and a set that follows it.
    dns.set_hosts(&hosts_of("api.test", &[3]));
    wait_for_pools(&proxy, &client, "the one record left", |p| {
        addresses(p, "api", "dns") == wanted(port, &[3])
    })
    .await;
    let alerts = client.get(&proxy.control_url("/v1/alerts")).await.body;
    assert!(alerts.contains("DNS discovery `api.test:"), "{alerts}");
    assert!(alerts.contains("answers again"), "{alerts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_asked_again_as_its_ttl_runs_out() {
    let plugins = plugin_dir(&[]);
    let (port, _upstreams) = upstreams_on(&[2], Duration::ZERO).await;
    // Records of TTL 1 s, bounds of 100 ms and 10 s: the TTL decides.
    let dns = Dnsmasq::start(&hosts_of("api.test", &[2]), "local-ttl=1\n");
    let proxy = Switchyard::start(
        plugins.path(),
        &format!(
            "[[pools]]\nname = \"api\"\n\
             discovery = {{ dns = \"api.test:{port}\", refresh_ms = 10000, min_refresh_ms = 100, \
             resolvers = [\"{}\"] }}\n",
            dns.resolver()
        ),
    );
    let client = HttpClient::default();
    wait_for_pools(&proxy, &client, "the A record as an endpoint", |p| {
        addresses(p, "api", "dns") == wanted(port, &[2])
    })
    .await;
    let before = dns.questions();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let asked = dns.questions() - before;
    // About one a second: not one per 100 ms, nor none in 10 s.
    assert!((2..=5).contains(&asked), "asked {asked} times in 3.5 s");
}

/// A resolver that answers as `upstream` does, `delay` later: each UDP
/// question is passed on after the delay and its answer passed back.
async fn slow_resolver(upstream: String, delay: Duration) -> String {
    let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let address = socket.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        while let Ok((size, client)) = socket.recv_from(&mut buffer).await {
            let question = buffer[..size].to_vec();
            let (socket, upstream) = (Arc::clone(&socket), upstream.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let asking = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                asking.send_to(&question, &upstream).await.unwrap();
                let mut answer = vec![0u8; 4096];
                if let Ok(Ok(size)) =
                    tokio::time::timeout(Duration::from_secs(2), asking.recv(&mut answer)).await
                {
                    let _ = socket.send_to(&answer[..size], client).await;
                }
            });
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_found_only_through_dns_serves_its_first_request() {
    let plugins = plugin_dir(&[]);
    let (port, _upstreams) = upstreams_on(&[2, 3], Duration::ZERO).await;
    let dns = Dnsmasq::start(&hosts_of("api.test", &[2, 3]), "");
    // The name's first answer comes 300 ms after the process starts.
    let resolver = slow_resolver(dns.resolver(), Duration::from_millis(300)).await;
    let config = format!(
        "[[pools]]\nname = \"api\"\n\
         discovery = {{ dns = \"api.test:{port}\", resolvers = [\"{resolver}\"] }}\n"
    );
    let proxy = Switchyard::start(plugins.path(), &config);
    // The very first request, sent as soon as the process says it listens.
    let reply = HttpClient::default()
        .try_get_with(&proxy.url("/"), &[])
        .await
        .unwrap_or_else(|error| panic!("{error}\n{}", proxy.log_tail()));
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, proxy.log_tail());
}
