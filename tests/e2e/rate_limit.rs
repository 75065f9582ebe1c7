//! Rate limits: a route's limit holds the rate it is given whatever the
//! number of clients and workers, on both paths; keyed by client or by a
//! header, each key gets the rate; a refused request is answered 429 with
//! `Retry-After` and `x-switchyard-error: rate_limited`, and counted.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// The error the enforced rate may have besides the burst: the admissions
/// past `burst` over a run are within this share of `per_second × seconds`.
const RATE_ERROR: f64 = 0.03;

/// One upstream, one pool, one route with this `rate_limit` value; `keys`
/// go to the `[proxy]` table.
async fn start(keys: &str, rate_limit: &str) -> (Upstream, Switchyard, tempfile::TempDir) {
    let upstream = Upstream::start("u").await;
    let plugins = tempfile::tempdir().unwrap();
    let body = format!(
        "[[pools]]\nname = \"web\"\nendpoints = [{}]\n\n\
         [[routes]]\npool = \"web\"\nrate_limit = {rate_limit}\n",
        upstream.endpoint(1)
    );
    let proxy = Switchyard::start_with(plugins.path(), keys, &body);
    (upstream, proxy, plugins)
}

/// What a run of requests got.
#[derive(Debug, Default)]
struct Tally {
    admitted: u64,
    limited: u64,
    /// Anything else, and 429s without the headers they must carry.
    wrong: Vec<String>,
    elapsed: Duration,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.admitted += other.admitted;
        self.limited += other.limited;
        self.wrong.extend(other.wrong);
        self.elapsed = self.elapsed.max(other.elapsed);
    }
}

/// A keep-alive client whose connections come from `local`.
fn client_from(local: IpAddr) -> Client<HttpConnector, Empty<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(local));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// GETs `url` with `header` from `tasks` tasks at once, as fast as answers
/// come, for `run`; counts 200s and 429s and checks every 429's headers.
async fn hammer(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &str,
    header: Option<(&str, &str)>,
    tasks: usize,
    run: Duration,
) -> Tally {
    let started = Instant::now();
    let mut running = Vec::new();
    for _ in 0..tasks {
        let client = client.clone();
        let url = url.to_string();
        let header = header.map(|(n, v)| (n.to_string(), v.to_string()));
        running.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while started.elapsed() < run {
                let mut request = http::Request::get(&url);
                if let Some((name, value)) = &header {
                    request = request.header(name, value);
                }
                let response = match client.request(request.body(Empty::new()).unwrap()).await {
                    Ok(response) => response,
                    Err(error) => {
                        tally.wrong.push(format!("{error:?}"));
                        continue;
                    }
                };
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let _ = response.into_body().collect().await;
                match status {
                    200 => tally.admitted += 1,
                    429 => {
                        tally.limited += 1;
                        if let Err(why) = check_429(&headers) {
                            tally.wrong.push(why);
                        }
                    }
                    other => tally.wrong.push(format!("status {other}")),
                }
            }
            tally.elapsed = started.elapsed();
            tally
        }));
    }
    let mut tally = Tally::default();
    for task in running {
        tally.add(task.await.unwrap());
    }
    tally
}

/// A 429 says when to come back, in whole seconds from 1, and why.
fn check_429(headers: &http::HeaderMap) -> Result<(), String> {
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let code = headers.get("x-switchyard-error");
    match (retry_after, code) {
        (Some(1..), Some(code)) if code == "rate_limited" => Ok(()),
        _ => Err(format!("429 with {headers:?}")),
    }
}

/// The tally is the limit's: `burst` plus `per_second` for each second of
/// the run, at most exactly (the proxy decided within the run), at least
/// all but `RATE_ERROR` of the rate's share.
fn assert_enforced(tally: &Tally, per_second: u32, burst: u32, what: &str) {
    assert!(tally.wrong.is_empty(), "{what}: {:?}", &tally.wrong[..]);
    let seconds = tally.elapsed.as_secs_f64();
    let allowed = f64::from(burst) + f64::from(per_second) * seconds;
    let admitted = tally.admitted as f64;
    let rate = (admitted - f64::from(burst)) / seconds;
    eprintln!(
        "{what}: {} admitted, {} refused in {seconds:.3} s: {rate:.1}/s past the burst of {burst}, configured {per_second}/s",
        tally.admitted, tally.limited
    );
    assert!(admitted <= allowed + 1.0, "{what}: {admitted} > {allowed}");
    let least = f64::from(burst) + f64::from(per_second) * seconds * (1.0 - RATE_ERROR);
    assert!(admitted >= least, "{what}: {admitted} < {least}");
    assert!(tally.limited > 0, "{what}: nothing was refused");
}

/// 16 clients at once, far above 200/s, over 4 workers, for 2 s.
async fn the_rate_holds(fast_path: bool) {
    let keys = if fast_path {
        "workers = 4"
    } else {
        "workers = 4\nfast_path = false"
    };
    let (_upstream, proxy, _plugins) = start(keys, "{ per_second = 200, burst = 20 }").await;
    let client = client_from("127.0.0.1".parse().unwrap());
    let tally = hammer(&client, &proxy.url("/"), None, 16, Duration::from_secs(2)).await;
    assert_enforced(&tally, 200, 20, &format!("fast path {fast_path}"));
    let counted = metric(
        &proxy,
        "switchyard_proxy_errors_total{cause=\"rate_limited\"}",
    )
    .await;
    assert_eq!(counted, tally.limited);
    let fast = metric(&proxy, "switchyard_fast_path_requests_total").await;
    assert_eq!(fast > 0, fast_path, "{fast} requests on the fast path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_s_rate_holds_on_the_fast_path() {
    the_rate_holds(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_s_rate_holds_on_hyper_s_path() {
    the_rate_holds(false).await;
}

/// Two client addresses, each hammering at once: each gets the rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_gets_its_own_rate() {
    let (_upstream, proxy, _plugins) =
        start("", "{ per_second = 100, burst = 10, key = \"client\" }").await;
    let url = proxy.url("/");
    let run = Duration::from_millis(1500);
    let (one, two) = (
        client_from("127.0.0.1".parse().unwrap()),
        client_from("127.0.0.2".parse().unwrap()),
    );
    let (one, two) = tokio::join!(
        hammer(&one, &url, None, 8, run),
        hammer(&two, &url, None, 8, run)
    );
    assert_enforced(&one, 100, 10, "client 127.0.0.1");
    assert_enforced(&two, 100, 10, "client 127.0.0.2");
}

/// Each value of the header has its own bucket, and requests without it
/// share one; both paths refuse alike.
async fn each_header_value_gets_its_own_bucket(fast_path: bool) {
    let keys = if fast_path { "" } else { "fast_path = false" };
    let (_upstream, proxy, _plugins) = start(
        keys,
        // A million buckets: the three keys share one by chance about
        // three times in a million runs, not in a thousand as with 4,096.
        "{ per_second = 1, burst = 3, key = \"header:x-api-key\", keys = 1048576 }",
    )
    .await;
    let client = HttpClient::default();
    let url = proxy.url("/");
    for key in [Some("a"), Some("b"), None] {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        let started = Instant::now();
        let mut admitted = 0;
        let mut refused = None;
        for _ in 0..6 {
            let reply = client.get_with(&url, &headers).await;
            match reply.status {
                200 => admitted += 1,
                429 => refused = Some(reply),
                other => panic!("{key:?}: status {other}: {}", reply.body),
            }
        }
        // Three at once, and one a second after.
        let allowed = 3 + started.elapsed().as_secs();
        assert!(
            (3..=allowed).contains(&admitted),
            "{key:?}: {admitted} admitted (fast path {fast_path})"
        );
        let refused = refused.unwrap_or_else(|| panic!("{key:?}: nothing refused"));
        check_429(&refused.headers).unwrap();
        assert!(refused.body.contains("rate limit"), "{}", refused.body);
    }
}

#[tokio::test]
async fn header_values_get_their_own_buckets_on_the_fast_path() {
    each_header_value_gets_its_own_bucket(true).await;
}

#[tokio::test]
async fn header_values_get_their_own_buckets_on_hyper_s_path() {
    each_header_value_gets_its_own_bucket(false).await;
}

/// A refused request's body is never read: the fast path closes the
/// connection after the 429, as after its other local answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_with_a_body_closes_the_connection() {
    let (upstream, proxy, _plugins) = start("", "{ per_second = 1, burst = 1 }").await;
    // Until one is refused: the bucket is empty for the next second.
    let mut admitted = 0;
    while send("GET", &proxy.url("/"), &[], "").await.status == 200 {
        admitted += 1;
    }
    let mut stream = tokio::net::TcpStream::connect(proxy.proxy).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: a.test\r\ncontent-length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the connection closes")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 429 "), "{answer}");
    for field in [
        "retry-after: 1\r\n",
        "x-switchyard-error: rate_limited\r\n",
        "connection: close\r\n",
    ] {
        assert!(answer.contains(field), "{field:?} in {answer}");
    }
    assert_eq!(upstream.hits(), admitted, "a refused request was forwarded");
}

/// A reload that rebuilds the route table keeps the buckets of a route
/// whose rule and limit stay; a changed limit starts full.
#[tokio::test]
async fn a_reload_keeps_the_buckets_of_an_unchanged_limit() {
    let upstream = Upstream::start("u").await;
    let plugins = tempfile::tempdir().unwrap();
    let body = |other_route: &str, burst: u32| {
        format!(
            "[[pools]]\nname = \"web\"\nendpoints = [{}]\n\n{other_route}\
             [[routes]]\npool = \"web\"\nrate_limit = {{ per_second = 1, burst = {burst}, key = \"client\" }}\n",
            upstream.endpoint(1)
        )
    };
    let proxy =
        Switchyard::try_start_full(plugins.path(), "", "watch_config = false", "", &body("", 2))
            .unwrap_or_else(|stderr| panic!("switchyard did not start:\n{stderr}"));
    let client = HttpClient::default();
    let url = proxy.url("/");
    let reload = || async {
        let reply = client
            .post(&proxy.control_url("/v1/reload"), Vec::new())
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    };
    let started = Instant::now();
    let mut admitted = 0;
    while client.get(&url).await.status == 200 {
        admitted += 1;
    }
    assert!(admitted >= 2, "{admitted}");

    // Another route first: the table is built anew, this route's bucket kept.
    proxy.rewrite_config(&body(
        "[[routes]]\nhost = \"other.test\"\npool = \"web\"\n\n",
        2,
    ));
    reload().await;
    let status = client.get(&url).await.status;
    // Within the second after the bucket emptied, it is still empty.
    if started.elapsed() < Duration::from_millis(900) {
        assert_eq!(status, 429, "the reload refilled the bucket");
    }

    // A changed limit: a new bucket, full.
    proxy.rewrite_config(&body("", 3));
    reload().await;
    assert_eq!(client.get(&url).await.status, 200);
}

/// A body over the route's limit is refused (413) before the rate is
/// asked, on both paths: it takes nothing from the bucket.
async fn a_body_too_large_is_refused_before_the_rate(fast_path: bool) {
    let keys = if fast_path { "" } else { "fast_path = false" };
    let upstream = Upstream::start("u").await;
    let plugins = tempfile::tempdir().unwrap();
    let body = format!(
        "[[pools]]\nname = \"web\"\nendpoints = [{}]\n\n\
         [[routes]]\npool = \"web\"\nmax_body_bytes = 10\n\
         rate_limit = {{ per_second = 1, burst = 1 }}\n",
        upstream.endpoint(1)
    );
    let proxy = Switchyard::start_with(plugins.path(), keys, &body);
    let url = proxy.url("/upload");
    let big = send("POST", &url, &[], &"x".repeat(100)).await;
    assert_eq!(big.status, 413, "fast path {fast_path}: {}", big.body);
    let small = send("POST", &url, &[], "ok").await;
    assert_eq!(small.status, 200, "fast path {fast_path}: {}", small.body);
    let again = send("POST", &url, &[], "ok").await;
    assert_eq!(again.status, 429, "fast path {fast_path}: {}", again.body);
}

#[tokio::test]
async fn a_body_too_large_is_refused_before_the_rate_on_the_fast_path() {
    a_body_too_large_is_refused_before_the_rate(true).await;
}

#[tokio::test]
async fn a_body_too_large_is_refused_before_the_rate_on_hyper_s_path() {
    a_body_too_large_is_refused_before_the_rate(false).await;
}
