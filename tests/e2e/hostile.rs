//! Hostile and broken clients, as a public-facing proxy meets them: raw
//! bytes on a socket, each case run against the fast path and against
//! hyper's path (`fast_path = false`), and checked for the proxy's answer,
//! the metric that counts it, and that nothing reached the endpoint.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// How long a client waits for the proxy to answer and close.
const WAIT: Duration = Duration::from_secs(10);

fn pool(upstream: &Upstream) -> String {
    format!(
        "[[pools]]\nname = \"web\"\nendpoints = [{}]\n",
        upstream.endpoint(1)
    )
}

/// A proxy on the fast path or not, with `keys` added to `[proxy]`.
fn start(fast_path: bool, keys: &str, body: &str) -> (tempfile::TempDir, Switchyard) {
    let plugins = tempfile::tempdir().unwrap();
    let keys = format!("fast_path = {fast_path}\n{keys}");
    let proxy = Switchyard::start_with(plugins.path(), &keys, body);
    (plugins, proxy)
}

/// Writes `bytes` and reads until the proxy closes (or [`WAIT`] passes).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The proxy may close before it has read everything: a failed write is
    // part of the case, the answer is what counts.
    let _ = stream.write_all(bytes).await;
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "the connection was still open after {WAIT:?}; received:\n{}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// The status codes of every response in `received`, in order.
fn statuses(received: &str) -> Vec<u16> {
    received
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| received[at + 9..].get(..3)?.parse().ok())
        .collect()
}

/// The cases of the table and the smuggling corpus: raw request
/// bytes, the status the proxy must answer, and the metric line that counts
/// the refusal.
fn corpus() -> Vec<(&'static str, Vec<u8>, u16, &'static str)> {
    let huge_field = format!(
        "GET / HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "b".repeat(200 * 1024)
    );
    let many_fields = format!(
        "GET / HTTP/1.1\r\nhost: a\r\n{}\r\n",
        (0..150)
            .map(|i| format!("x-f{i}: v\r\n"))
            .collect::<String>()
    );
    let huge_extension = format!(
        "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3;{}\r\nabc\r\n0\r\n\r\n",
        "e".repeat(64 * 1024)
    );
    vec![
        (
            "a 200 KB header field",
            huge_field.into_bytes(),
            431,
            "switchyard_limit_hits_total{limit=\"header_bytes\"}",
        ),
        (
            "150 header fields",
            many_fields.into_bytes(),
            431,
            "switchyard_limit_hits_total{limit=\"header_fields\"}",
        ),
        (
            "two host fields",
            b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n".to_vec(),
            400,
            "switchyard_malformed_requests_total{reason=\"host_repeated\"}",
        ),
        (
            "HTTP/1.1 without host",
            b"GET / HTTP/1.1\r\naccept: */*\r\n\r\n".to_vec(),
            400,
            "switchyard_malformed_requests_total{reason=\"host_missing\"}",
        ),
        (
            "a malformed chunk size",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
                .to_vec(),
            400,
            "switchyard_malformed_requests_total{reason=\"bad_chunk\"}",
        ),
        (
            "content-length with transfer-encoding",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            400,
            "switchyard_malformed_requests_total{reason=\"length_and_chunked\"}",
        ),
        (
            "two different content-lengths",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello"
                .to_vec(),
            400,
            "switchyard_malformed_requests_total{reason=\"bad_content_length\"}",
        ),
        (
            "a signed content-length",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: +5\r\n\r\nhello".to_vec(),
            400,
            "switchyard_malformed_requests_total{reason=\"bad_content_length\"}",
        ),
        (
            "a transfer-encoding not ending in chunked",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, gzip\r\n\r\n".to_vec(),
            400,
            "switchyard_malformed_requests_total{reason=\"bad_transfer_coding\"}",
        ),
        (
            "an obs-fold line",
            b"GET / HTTP/1.1\r\nhost: a\r\nx-folded: one\r\n two\r\n\r\n".to_vec(),
            400,
            "switchyard_malformed_requests_total{reason=\"malformed_head\"}",
        ),
        (
            "a bare CR in a field",
            b"GET / HTTP/1.1\r\nhost: a\r\nx-cr: a\rb\r\n\r\n".to_vec(),
            400,
            "switchyard_malformed_requests_total{reason=\"malformed_head\"}",
        ),
        (
            "a NUL in a field",
            b"GET / HTTP/1.1\r\nhost: a\r\nx-nul: a\0b\r\n\r\n".to_vec(),
            400,
            "switchyard_malformed_requests_total{reason=\"malformed_head\"}",
        ),
        (
            "an invalid method token",
            b"G(E)T / HTTP/1.1\r\nhost: a\r\n\r\n".to_vec(),
            400,
            "switchyard_malformed_requests_total{reason=\"malformed_head\"}",
        ),
        (
            "a space before the colon",
            b"GET / HTTP/1.1\r\nhost: a\r\ncontent-length : 5\r\n\r\nhello".to_vec(),
            400,
            "switchyard_malformed_requests_total{reason=\"malformed_head\"}",
        ),
        (
            "a 64 KB chunk extension",
            huge_extension.into_bytes(),
            400,
            "switchyard_malformed_requests_total{reason=\"bad_chunk\"}",
        ),
    ]
}

async fn corpus_is_refused_and_never_forwarded(fast_path: bool) {
    let upstream = Upstream::start("a").await;
    let (_plugins, proxy) = start(fast_path, "", &pool(&upstream));
    for (case, mut bytes, status, counter) in corpus() {
        let before = metric(&proxy, counter).await;
        // A valid request pipelined behind the bad one must not be served:
        // nothing after a refused request is read.
        bytes.extend_from_slice(b"GET /after HTTP/1.1\r\nhost: a\r\n\r\n");
        let received = exchange(proxy.proxy, &bytes).await;
        assert_eq!(
            statuses(&received),
            vec![status],
            "{case} (fast path {fast_path}): got\n{received}"
        );
        assert!(
            received.contains("x-switchyard-error") && received.contains("connection: close"),
            "{case}: {received}"
        );
        assert_eq!(
            metric(&proxy, counter).await,
            before + 1,
            "{case} (fast path {fast_path}): `{counter}`"
        );
    }
    assert_eq!(upstream.hits(), 0, "a refused request reached the endpoint");

    // The same connection goes on after good requests, and a good request
    // after a good one is served: the screen passes what is valid.
    let received = exchange(
        proxy.proxy,
        b"GET /1 HTTP/1.1\r\nhost: a\r\n\r\nPOST /upload HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /3 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&received), vec![200, 200, 200], "{received}");
    assert!(received.contains("received 3"), "{received}");
    assert_eq!(upstream.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_smuggling_requests_are_refused_on_the_fast_path() {
    corpus_is_refused_and_never_forwarded(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_smuggling_requests_are_refused_on_hyper_s_path() {
    corpus_is_refused_and_never_forwarded(false).await;
}

/// After a request hyper's path serves (a chunked body moves the
/// connection there), the next requests on the connection are screened too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_after_a_good_one_is_refused_after_the_good_one_is_answered() {
    let upstream = Upstream::start("a").await;
    let (_plugins, proxy) = start(true, "", &pool(&upstream));
    let received = exchange(
        proxy.proxy,
        b"POST /upload HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\nGET /2 HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\nGET /3 HTTP/1.1\r\nhost: a\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&received), vec![200, 400], "{received}");
    assert!(received.contains("received 2"), "{received}");
    assert_eq!(upstream.hits(), 1);
}

async fn body_limits(fast_path: bool) {
    let upstream = Upstream::start("a").await;
    let body = format!(
        "{}\n[[routes]]\npath_prefix = \"/small\"\npool = \"web\"\nmax_body_bytes = 10\n\n[[routes]]\npool = \"web\"\n",
        pool(&upstream)
    );
    let (_plugins, proxy) = start(fast_path, "max_body_bytes = 1000", &body);
    let counter = "switchyard_limit_hits_total{limit=\"body_bytes\"}";
    let sized = |path: &str, size: usize| {
        let mut bytes =
            format!("POST {path} HTTP/1.1\r\nhost: a\r\ncontent-length: {size}\r\n\r\n")
                .into_bytes();
        bytes.extend(std::iter::repeat_n(b'x', size));
        bytes
    };
    let received = exchange(proxy.proxy, &sized("/small", 11)).await;
    assert_eq!(statuses(&received), vec![413], "{received}");
    let received = exchange(proxy.proxy, &sized("/other", 1001)).await;
    assert_eq!(statuses(&received), vec![413], "{received}");
    assert_eq!(upstream.hits(), 0);
    assert_eq!(metric(&proxy, counter).await, 2);

    // A chunked body is counted as it comes.
    let received = exchange(
        proxy.proxy,
        b"POST /small HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&received), vec![413], "{received}");
    assert_eq!(metric(&proxy, counter).await, 3);

    // Within the limits, both are served.
    let mut ok = sized("/small", 10);
    ok.extend_from_slice(
        b"POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n",
    );
    ok.extend(std::iter::repeat_n(b'y', 1000));
    let received = exchange(proxy.proxy, &ok).await;
    assert_eq!(statuses(&received), vec![200, 200], "{received}");
    assert!(received.contains("received 1000"), "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_route_limit_get_413_on_the_fast_path() {
    body_limits(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_route_limit_get_413_on_hyper_s_path() {
    body_limits(false).await;
}

/// 1,500 connections that send half a head and stop: each is answered 408
/// and closed once `header_read_timeout_ms` has passed, and counted.
async fn half_heads_are_timed_out(fast_path: bool, connections: usize) {
    let upstream = Upstream::start("a").await;
    let (_plugins, proxy) = start(fast_path, "header_read_timeout_ms = 500", &pool(&upstream));
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut stream = TcpStream::connect(proxy.proxy).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: a\r\nx-slow: ")
            .await
            .unwrap();
        streams.push(stream);
    }
    let started = Instant::now();
    let mut answered = 0;
    for mut stream in streams {
        let received = read_to_close(&mut stream).await;
        if statuses(&received) == vec![408] {
            answered += 1;
        }
    }
    assert_eq!(
        answered, connections,
        "every slow head gets 408 and a close"
    );
    assert!(started.elapsed() < WAIT);
    assert_eq!(
        metric(
            &proxy,
            "switchyard_limit_hits_total{limit=\"header_timeout\"}"
        )
        .await,
        connections as u64
    );
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_hundred_half_heads_are_closed_after_the_header_timeout_on_the_fast_path() {
    half_heads_are_timed_out(true, 1500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_heads_are_closed_after_the_header_timeout_on_hyper_s_path() {
    half_heads_are_timed_out(false, 200).await;
}

async fn idle_connections_close(fast_path: bool) {
    let upstream = Upstream::start("a").await;
    let (_plugins, proxy) = start(fast_path, "keepalive_timeout_ms = 300", &pool(&upstream));
    let mut stream = TcpStream::connect(proxy.proxy).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    // The response, then a quiet close.
    let received = read_to_close(&mut stream).await;
    assert_eq!(statuses(&received), vec![200], "{received}");
    // A connection that never sends anything is closed as well.
    let mut silent = TcpStream::connect(proxy.proxy).await.unwrap();
    assert_eq!(read_to_close(&mut silent).await, "");
    assert!(
        metric(
            &proxy,
            "switchyard_limit_hits_total{limit=\"keepalive_timeout\"}"
        )
        .await
            >= 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_on_the_fast_path() {
    idle_connections_close(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_on_hyper_s_path() {
    idle_connections_close(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_until_one_closes() {
    let upstream = Upstream::start("a").await;
    let (_plugins, proxy) = start(true, "max_connections = 2", &pool(&upstream));
    let mut first = RawClient::connect(proxy.proxy).await;
    let mut second = RawClient::connect(proxy.proxy).await;
    assert!(first
        .exchange("GET", "/1")
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(second
        .exchange("GET", "/2")
        .await
        .starts_with("HTTP/1.1 200"));

    // The third is accepted by the kernel, but not served while two are open.
    let mut third = TcpStream::connect(proxy.proxy).await.unwrap();
    third
        .write_all(b"GET /3 HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(
        waited.is_err(),
        "the third connection was served while two were open"
    );
    assert!(metric(&proxy, "switchyard_limit_hits_total{limit=\"connections\"}").await >= 1);

    drop(first);
    let rest = read_to_close(&mut third).await;
    assert_eq!(statuses(&rest), vec![200], "{rest}");
    assert_eq!(upstream.hits(), 3);
}

/// An endpoint that sends a response head and part of a chunked body, then
/// nothing more while keeping the connection open.
async fn stalling_endpoint() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
                .await;
            open.push(stream);
        }
    });
    (addr, task)
}

async fn stalled_endpoint_is_cut(fast_path: bool) {
    let (addr, _endpoint) = stalling_endpoint().await;
    let body = format!("[[pools]]\nname = \"web\"\nendpoints = [{{ address = \"{addr}\" }}]\n");
    let (_plugins, proxy) = start(fast_path, "upstream_read_timeout_ms = 400", &body);
    let started = Instant::now();
    let received = exchange(proxy.proxy, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    assert!(received.contains("hello"), "{received}");
    assert!(
        !received.ends_with("0\r\n\r\n"),
        "the body must not look complete: {received}"
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(
        metric(
            &proxy,
            "switchyard_limit_hits_total{limit=\"upstream_stall\"}"
        )
        .await,
        1
    );
    assert_eq!(
        metric(&proxy, "switchyard_upstream_cut_responses_total").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_endpoint_body_is_cut_on_the_fast_path() {
    stalled_endpoint_is_cut(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_endpoint_body_is_cut_on_hyper_s_path() {
    stalled_endpoint_is_cut(false).await;
}

/// An endpoint that streams a chunked body without end.
async fn endless_endpoint() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                let chunk = format!("10000\r\n{}\r\n", "z".repeat(0x10000));
                while stream.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    (addr, task)
}

async fn client_that_stops_reading_is_closed(fast_path: bool) {
    let (addr, _endpoint) = endless_endpoint().await;
    let body = format!("[[pools]]\nname = \"web\"\nendpoints = [{{ address = \"{addr}\" }}]\n");
    let (_plugins, proxy) = start(fast_path, "client_write_timeout_ms = 400", &body);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(proxy.proxy).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    // Read nothing until the proxy has given up on this client.
    let counter = "switchyard_limit_hits_total{limit=\"client_stall\"}";
    let deadline = Instant::now() + WAIT;
    while metric(&proxy, counter).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled client was never timed out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then the connection ends: what was sent drains, and the close follows.
    let mut sink = vec![0u8; 1 << 20];
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) => panic!("the proxy kept the stalled client's connection open"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_on_the_fast_path() {
    client_that_stops_reading_is_closed(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_on_hyper_s_path() {
    client_that_stops_reading_is_closed(false).await;
}
