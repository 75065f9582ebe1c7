//! The protocols clients speak to the proxy: HTTP/2 with prior knowledge
//! (h2c) on a plain listener, checked with curl as a user would.

use std::process::Command;

use crate::support::*;

/// Runs curl with `args`; its standard output (`-w` formats included).
fn curl(args: &[&str]) -> String {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs (scripts/test installs it)");
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn h2c_prior_knowledge_is_served(fast_path: bool) {
    let plugins = tempfile::tempdir().unwrap();
    let upstream = Upstream::start("a").await;
    let proxy = Switchyard::start_with(
        plugins.path(),
        &format!("fast_path = {fast_path}"),
        &format!(
            "[[pools]]\nname = \"web\"\nendpoints = [{}]\n",
            upstream.endpoint(1)
        ),
    );
    let url = proxy.url("/h2");
    // One URL per curl: Debian's curl 7.88 fails to reuse an HTTP/2
    // connection for a second URL with any server.
    let out = curl(&[
        "--http2-prior-knowledge",
        "-w",
        " %{http_version} %{response_code}",
        &url,
    ]);
    assert_eq!(out, "a 2 200");
    // The endpoint heard HTTP/1.1 with the client's authority as its host.
    let headers = upstream.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(
        headers.get("host").unwrap().to_str().unwrap(),
        proxy.proxy.to_string()
    );
    assert_eq!(upstream.hits(), 1);

    // Many streams at once on one connection.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let requests = (0..20).map(|i| {
        let client = client.clone();
        let url: http::Uri = proxy.url(&format!("/stream/{i}")).parse().unwrap();
        async move {
            let response = client.get(url).await.unwrap();
            assert_eq!(response.version(), http::Version::HTTP_2);
            response.status().as_u16()
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert_eq!(statuses, vec![200; 20]);
    assert_eq!(upstream.hits(), 21);
    // A POST body goes through too.
    let out = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        "0123456789",
        &proxy.url("/upload"),
    ]);
    assert_eq!(out, "received 10");
    // And HTTP/1.1 still works beside it.
    let out = curl(&["--http1.1", "-w", " %{http_version}", &url]);
    assert_eq!(out, "a 1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_prior_knowledge_is_served_beside_the_fast_path() {
    h2c_prior_knowledge_is_served(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_prior_knowledge_is_served_without_the_fast_path() {
    h2c_prior_knowledge_is_served(false).await;
}

/// A WebSocket server that echoes every message.
async fn websocket_echo() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use futures_util::{SinkExt, StreamExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_close() {
                        break;
                    }
                    if socket.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, task)
}

async fn websocket_is_tunnelled(fast_path: bool) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let plugins = tempfile::tempdir().unwrap();
    let (echo, _server) = websocket_echo().await;
    let proxy = Switchyard::start_with(
        plugins.path(),
        &format!("fast_path = {fast_path}"),
        &format!("[[pools]]\nname = \"ws\"\nendpoints = [{{ address = \"{echo}\" }}]\n"),
    );
    let client = HttpClient::default();
    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat", proxy.proxy))
            .await
            .unwrap();
    assert_eq!(response.status(), 101);
    for text in ["one", "two", &"x".repeat(100_000)] {
        socket.send(Message::text(text)).await.unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    socket
        .send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap().into_data().as_ref(),
        &[0u8, 1, 2, 255]
    );
    // The tunnel counts as a request in flight at the endpoint while open.
    let in_flight =
        |pools: &serde_json::Value| pools["pools"][0]["endpoints"][0]["load"]["in_flight"].as_u64();
    let pools = pools_now(&proxy, &client).await;
    assert_eq!(in_flight(&pools), Some(1), "{pools:#}");
    assert_eq!(metric(&proxy, "switchyard_tunnels_total").await, 1);
    // The client closes, the endpoint answers the close and hangs up.
    socket.close(None).await.unwrap();
    while let Some(Ok(_)) = socket.next().await {}
    drop(socket);
    wait_for_pools(&proxy, &client, "the tunnel's end", |pools| {
        in_flight(pools) == Some(0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_tunnelled_both_ways_from_the_fast_path() {
    websocket_is_tunnelled(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_is_tunnelled_both_ways_without_the_fast_path() {
    websocket_is_tunnelled(false).await;
}

/// A WebSocket opened over HTTP/2 with extended CONNECT (RFC 8441) reaches
/// an HTTP/1.1 WebSocket endpoint as its usual upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_http2_extended_connect_reaches_an_http1_endpoint() {
    use futures_util::{SinkExt, StreamExt};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::Message;
    let plugins = tempfile::tempdir().unwrap();
    let (echo, _server) = websocket_echo().await;
    let proxy = Switchyard::start(
        plugins.path(),
        &format!("[[pools]]\nname = \"ws\"\nendpoints = [{{ address = \"{echo}\" }}]\n"),
    );
    let stream = tokio::net::TcpStream::connect(proxy.proxy).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method("CONNECT")
        .uri(format!("http://{}/chat", proxy.proxy))
        .header("sec-websocket-version", "13")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let mut response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let upgraded = hyper::upgrade::on(&mut response).await.unwrap();
    let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Client,
        None,
    )
    .await;
    socket.send(Message::text("over h2")).await.unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "over h2");
    assert_eq!(metric(&proxy, "switchyard_tunnels_total").await, 1);
}
