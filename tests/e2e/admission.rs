//! Admission: a pool's `max_in_flight` and its endpoints' `capacity` hold
//! under load, the rest waits in the pool's queue by class, and overload is
//! shed from the lowest class with 503 and `Retry-After` while P0 passes.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::*;

/// What the overload test saw.
#[derive(Debug, Default)]
struct Seen {
    p0_failures: Vec<String>,
    p4_served: usize,
    p4_shed: usize,
    p4_other: Vec<String>,
}

async fn overload(fast_path: bool) {
    let plugins = plugin_dir(&[]);
    let slow = Upstream::with(
        "slow",
        Behaviour {
            status: 200,
            delay: Duration::from_millis(25),
        },
    )
    .await;
    let body = format!(
        "[[pools]]\nname = \"busy\"\nendpoints = [{}]\nmax_in_flight = 8\n\
         queue = {{ max_len = 32, p4_ms = 50, reserve_percent = 25 }}\n\n\
         [[routes]]\npool = \"busy\"\npriority_header = \"x-priority\"\n",
        slow.endpoint(1)
    );
    let keys = if fast_path { "" } else { "fast_path = false" };
    let proxy = Switchyard::start_with(plugins.path(), keys, &body);
    let url = proxy.url("/");
    let client = HttpClient::default();
    let flood_until = Instant::now() + Duration::from_millis(1500);
    let mut flood = Vec::new();
    for _ in 0..48 {
        let (client, url) = (client.clone(), url.clone());
        flood.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            while Instant::now() < flood_until {
                match client.try_get_with(&url, &[("x-priority", "p4")]).await {
                    Ok(reply) if reply.status == 200 => seen.p4_served += 1,
                    Ok(reply)
                        if reply.status == 503
                            && header(&reply, "x-switchyard-error") == "shed"
                            && header(&reply, "retry-after") == "1" =>
                    {
                        seen.p4_shed += 1
                    }
                    Ok(reply) => seen.p4_other.push(format!(
                        "{} {:?} {}",
                        reply.status,
                        reply.headers,
                        reply.body.trim()
                    )),
                    Err(error) => seen.p4_other.push(error),
                }
            }
            seen
        }));
    }
    // P0 at a steady rate while the flood holds the pool at its limit.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut seen = Seen::default();
    let mut p0_sent = 0;
    while Instant::now() + Duration::from_millis(100) < flood_until {
        p0_sent += 1;
        match client.try_get_with(&url, &[("x-priority", "p0")]).await {
            Ok(reply) if reply.status == 200 => {}
            Ok(reply) => seen
                .p0_failures
                .push(format!("{} {}", reply.status, reply.body.trim())),
            Err(error) => seen.p0_failures.push(error),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for task in flood {
        let part = task.await.unwrap();
        seen.p4_served += part.p4_served;
        seen.p4_shed += part.p4_shed;
        seen.p4_other.extend(part.p4_other);
    }
    assert!(p0_sent >= 20, "only {p0_sent} P0 requests were sent");
    assert!(
        seen.p0_failures.is_empty(),
        "P0 failed: {:?}",
        seen.p0_failures
    );
    assert!(seen.p4_other.is_empty(), "P4 answers: {:?}", seen.p4_other);
    assert!(seen.p4_shed > 0, "no P4 was shed: {seen:?}");
    assert!(seen.p4_served > 0, "no P4 was served: {seen:?}");
    let peak = slow.load.peak.load(Ordering::SeqCst);
    assert!(peak <= 8, "the upstream had {peak} requests at once");

    let metric_of = |name: &str, labels: &str| format!("{name}{{pool=\"busy\",{labels}}}");
    let shed = |class: &str| {
        metric_of(
            "switchyard_shed_requests_total",
            &format!("class=\"{class}\",reason=\"wait\""),
        )
    };
    let shed_full = |class: &str| {
        metric_of(
            "switchyard_shed_requests_total",
            &format!("class=\"{class}\",reason=\"queue_full\""),
        )
    };
    let p4_shed = metric(&proxy, &shed("p4")).await + metric(&proxy, &shed_full("p4")).await;
    assert_eq!(p4_shed as usize, seen.p4_shed);
    assert_eq!(metric(&proxy, &shed("p0")).await, 0);
    assert_eq!(metric(&proxy, &shed_full("p0")).await, 0);
    assert_eq!(
        metric(&proxy, "switchyard_proxy_errors_total{cause=\"shed\"}").await as usize,
        seen.p4_shed
    );
    // P0's added latency at the median is within its class's 0.1 ms.
    let p0 = |le: &str| {
        metric_of(
            "switchyard_added_latency_seconds_bucket",
            &format!("class=\"p0\",le=\"{le}\""),
        )
    };
    let within = metric(&proxy, &p0("0.0001")).await;
    let all = metric(&proxy, &p0("+Inf")).await;
    eprintln!(
        "fast path {fast_path}: P0 {within} of {all} within 0.1 ms added; P4 {} served, {} shed",
        seen.p4_served, seen.p4_shed
    );
    assert_eq!(all, p0_sent as u64);
    assert!(
        within * 2 >= all,
        "P0 added latency: {within} of {all} within 0.1 ms"
    );
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn overload_sheds_p4_and_serves_every_p0_on_the_fast_path() {
    overload(true).await;
}

#[tokio::test]
async fn overload_sheds_p4_and_serves_every_p0_on_hyper_s_path() {
    overload(false).await;
}

#[tokio::test]
async fn endpoint_capacities_hold_and_the_queue_absorbs_a_burst() {
    let plugins = plugin_dir(&[]);
    let mut upstreams = Vec::new();
    for name in ["a", "b"] {
        let behaviour = Behaviour {
            status: 200,
            delay: Duration::from_millis(10),
        };
        upstreams.push(Upstream::with(name, behaviour).await);
    }
    let endpoints: Vec<String> = upstreams
        .iter()
        .map(|u| format!("{{ address = \"{}\", capacity = 2 }}", u.addr))
        .collect();
    let body = format!(
        "[[pools]]\nname = \"small\"\nendpoints = [{}]\nqueue = {{ p2_ms = 10000 }}\n\n\
         [[routes]]\npool = \"small\"\n",
        endpoints.join(", ")
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let (seen, failures) = HttpClient::default().spread(&proxy.url("/"), 200, 16).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen.values().sum::<usize>(), 200);
    for upstream in &upstreams {
        let peak = upstream.load.peak.load(Ordering::SeqCst);
        assert!(peak <= 2, "an endpoint of capacity 2 had {peak} at once");
    }
    let queued = metric(
        &proxy,
        "switchyard_queued_requests_total{pool=\"small\",class=\"p2\"}",
    )
    .await;
    assert!(queued > 0, "16 clients on 4 slots and nothing queued");
    // A slot is given back once its response is sent, a moment after the
    // client has read it.
    let pools = wait_for_pools(
        &proxy,
        &HttpClient::default(),
        "every slot given back",
        |p| p["pools"][0]["admission"]["in_flight"] == 0,
    )
    .await;
    let admission = &pools["pools"][0]["admission"];
    assert_eq!(admission["queued"], 0, "{admission}");
    assert!(admission["limit"].is_null(), "{admission}");
}

/// An HTTP/1.1 server whose every answer takes 1 ms per request it is
/// answering at once: a backend that slows as it saturates.
async fn saturating_upstream() -> (std::net::SocketAddr, std::sync::Arc<Load>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let load = std::sync::Arc::new(Load::default());
    let served = load.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let load = served.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buffer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buffer.drain(..end);
                    let now = load.now.fetch_add(1, Ordering::SeqCst) + 1;
                    load.peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(now)).await;
                    load.now.fetch_sub(1, Ordering::SeqCst);
                    let answer =
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-upstream: saturating\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, load)
}

#[tokio::test]
async fn the_adaptive_limit_keeps_a_slowing_backend_near_its_unloaded_latency() {
    let (addr, load) = saturating_upstream().await;
    let plugins = plugin_dir(&[]);
    let body = format!(
        "[[pools]]\nname = \"adaptive\"\nendpoints = [{{ address = \"{addr}\" }}]\n\
         adaptive_concurrency = {{ min_limit = 2, max_limit = 500, initial_limit = 64, smoothing = 0.5 }}\n\
         queue = {{ p2_ms = 10000, max_len = 1000 }}\n\n\
         [[routes]]\npool = \"adaptive\"\n"
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let client = HttpClient::default();
    let url = proxy.url("/");
    let until = Instant::now() + Duration::from_millis(3500);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while Instant::now() < until {
                match client.try_get_with(&url, &[]).await {
                    Ok(reply) if reply.status == 200 => {}
                    Ok(reply) => failures.push(format!("{} {}", reply.status, reply.body)),
                    Err(error) => failures.push(error),
                }
            }
            failures
        }));
    }
    // Once the limit has settled, the backend's load from then on.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    load.peak
        .store(load.now.load(Ordering::SeqCst), Ordering::SeqCst);
    let limit = metric(
        &proxy,
        "switchyard_pool_concurrency_limit{pool=\"adaptive\"}",
    )
    .await;
    for task in tasks {
        let failures = task.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    let peak = load.peak.load(Ordering::SeqCst);
    eprintln!("adaptive limit {limit}, backend peak {peak} of 64 clients");
    assert!(
        (2..16).contains(&limit),
        "the limit is {limit} with a backend that slows past a few at once"
    );
    assert!(peak < 24, "64 clients and the backend had {peak} at once");
}
