//! The HTTP/1 fast path: scripted endpoints that write exact bytes in
//! pieces, clients that write and read raw HTTP/1.1, and the metric that
//! says which path served a request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// The pause between the pieces a scripted endpoint writes.
const PAUSE: Duration = Duration::from_millis(15);
/// How long a client waits for bytes that should come.
const WAIT: Duration = Duration::from_secs(5);
/// Requests forwarded on the fast path.
const FAST: &str = "switchyard_fast_path_requests_total";
/// Requests accepted, on either path.
const REQUESTS: &str = "switchyard_requests_total";

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A request or response head, split into its first line and fields.
#[derive(Debug, Clone)]
struct Head {
    line: String,
    fields: Vec<(String, String)>,
    raw: String,
}

impl Head {
    /// `bytes` is the head up to and including its empty line.
    fn parse(bytes: &[u8]) -> Head {
        let raw = String::from_utf8_lossy(bytes).into_owned();
        let mut lines = raw.split("\r\n");
        let line = lines.next().unwrap_or("").to_string();
        let fields = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (name, value) = l.split_once(':').unwrap_or_else(|| panic!("field `{l}`"));
                (name.to_string(), value.trim().to_string())
            })
            .collect();
        Head { line, fields, raw }
    }

    /// Every value of the fields named `name`, in order.
    fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of the one field named `name`; panics when there are more.
    fn get(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "`{name}` more than once in {}", self.raw);
        all.first().copied()
    }

    fn has(&self, name: &str) -> bool {
        !self.all(name).is_empty()
    }

    /// The status of a response head.
    fn status(&self) -> u16 {
        self.line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line `{}`", self.line))
    }

    /// The target of a request head.
    fn target(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }

    fn method(&self) -> &str {
        self.line.split(' ').next().unwrap_or("")
    }
}

/// What a scripted endpoint sends for one request.
struct Answer {
    /// Written one by one, with [`PAUSE`] between.
    pieces: Vec<Vec<u8>>,
    /// Close the connection after the last piece.
    close: bool,
}

impl Answer {
    fn pieces(pieces: &[&[u8]]) -> Answer {
        Answer {
            pieces: pieces.iter().map(|p| p.to_vec()).collect(),
            close: false,
        }
    }

    fn whole(bytes: &[u8]) -> Answer {
        Answer::pieces(&[bytes])
    }

    /// `200 OK` with `body` and its content-length.
    fn ok(body: &str) -> Answer {
        Answer::whole(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    }

    fn then_close(mut self) -> Answer {
        self.close = true;
        self
    }
}

type Script = dyn Fn(&Head) -> Answer + Send + Sync;

/// An endpoint on loopback that answers each request head with the bytes
/// its script gives, over keep-alive connections. Requests must be bodiless.
struct ScriptedEndpoint {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<Head>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedEndpoint {
    async fn start(script: impl Fn(&Head) -> Answer + Send + Sync + 'static) -> ScriptedEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let task = tokio::spawn({
            let (accepted, seen) = (accepted.clone(), seen.clone());
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    accepted.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(serve_scripted(stream, script.clone(), seen.clone()));
                }
            }
        });
        ScriptedEndpoint {
            addr,
            accepted,
            seen,
            task,
        }
    }

    /// Connections accepted so far.
    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Request heads received so far, in order.
    fn seen(&self) -> Vec<Head> {
        self.seen.lock().unwrap().clone()
    }

    /// A config with one pool of this endpoint.
    fn pool(&self) -> String {
        format!(
            "[[pools]]\nname = \"web\"\nendpoints = [{{ address = \"{}\" }}]\n",
            self.addr
        )
    }
}

impl Drop for ScriptedEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_scripted(mut stream: TcpStream, script: Arc<Script>, seen: Arc<Mutex<Vec<Head>>>) {
    let mut buffer = Vec::new();
    loop {
        let end = loop {
            if let Some(at) = find(&buffer, b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = Head::parse(&buffer[..end]);
        buffer.drain(..end);
        let answer = script(&head);
        seen.lock().unwrap().push(head);
        for (index, piece) in answer.pieces.iter().enumerate() {
            if index > 0 {
                tokio::time::sleep(PAUSE).await;
            }
            if stream.write_all(piece).await.is_err() {
                return;
            }
        }
        if answer.close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Where a chunked body at the front of `bytes` ends, trailers included;
/// `None` while incomplete. Written apart from the proxy's own tracker.
fn chunked_end(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line_end = at + find(&bytes[at..], b"\r\n")?;
        let line = std::str::from_utf8(&bytes[at..line_end]).expect("chunk-size line");
        let digits = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(digits, 16)
            .unwrap_or_else(|_| panic!("chunk-size line `{line}`"));
        at = line_end + 2;
        if size == 0 {
            break;
        }
        at += size + 2;
        if bytes.len() < at {
            return None;
        }
        assert_eq!(
            &bytes[at - 2..at],
            b"\r\n",
            "chunk data not followed by CRLF"
        );
    }
    loop {
        let line_end = at + find(&bytes[at..], b"\r\n")?;
        let empty = line_end == at;
        at = line_end + 2;
        if empty {
            return Some(at);
        }
    }
}

/// The data of a whole chunked body.
fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let line_end = find(bytes, b"\r\n").expect("a chunk-size line");
        let line = std::str::from_utf8(&bytes[..line_end]).unwrap();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return data;
        }
        data.extend_from_slice(&bytes[line_end + 2..line_end + 2 + size]);
        bytes = &bytes[line_end + 4 + size..];
    }
}

/// A response as the client read it.
#[derive(Debug)]
struct Response {
    head: Head,
    /// As sent: a chunked body with its framing.
    body: Vec<u8>,
}

impl Response {
    fn status(&self) -> u16 {
        self.head.status()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One client connection, written and read byte by byte.
struct Conn {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.unwrap();
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            buffer: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends `method path` for host `raw.test` and reads the response.
    async fn exchange(&mut self, method: &str, path: &str) -> Response {
        self.send(format!("{method} {path} HTTP/1.1\r\nhost: raw.test\r\n\r\n").as_bytes())
            .await;
        self.response(method).await
    }

    async fn get(&mut self, path: &str) -> Response {
        self.exchange("GET", path).await
    }

    /// Reads one response to a `method` request, framed as RFC 9112 §6.3
    /// says.
    async fn response(&mut self, method: &str) -> Response {
        let head = self.head().await;
        let body = self.body(&head, method).await;
        Response { head, body }
    }

    /// Reads a response head.
    async fn head(&mut self) -> Head {
        let end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at + 4;
            }
            assert!(self.fill().await, "closed before a response head");
        };
        let head = Head::parse(&self.buffer[..end]);
        self.buffer.drain(..end);
        head
    }

    /// Reads the body that follows `head`, as sent.
    async fn body(&mut self, head: &Head, method: &str) -> Vec<u8> {
        let status = head.status();
        let body_end = if method == "HEAD" || status < 200 || status == 204 || status == 304 {
            0
        } else if head
            .get("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().ends_with("chunked"))
        {
            loop {
                if let Some(end) = chunked_end(&self.buffer) {
                    break end;
                }
                assert!(self.fill().await, "closed in a chunked body: {head:?}");
            }
        } else if let Some(length) = head.get("content-length") {
            let length: usize = length.parse().unwrap();
            while self.buffer.len() < length {
                assert!(self.fill().await, "closed in a body: {head:?}");
            }
            length
        } else {
            while self.fill().await {}
            self.buffer.len()
        };
        self.buffer.drain(..body_end).collect()
    }

    /// Reads until the proxy closes the connection; everything unread.
    async fn until_closed(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buffer)
    }

    /// Reads more; `false` at the end of the stream (or a reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        let read = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "nothing more within {WAIT:?}; unread: {:?}",
                    String::from_utf8_lossy(&self.buffer)
                )
            });
        match read {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }
}

fn native_pool(upstream: &Upstream) -> String {
    format!(
        "[[pools]]\nname = \"web\"\nendpoints = [{}]\n",
        upstream.endpoint(1)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_and_sized_posts_take_the_fast_path_and_a_chunked_post_moves_its_connection_to_hyper()
{
    let plugins = tempfile::tempdir().unwrap();
    let upstream = Upstream::start("a").await;
    let proxy = Switchyard::start(plugins.path(), &native_pool(&upstream));
    assert_eq!(metric(&proxy, FAST).await, 0);

    let mut conn = Conn::open(proxy.proxy).await;
    for i in 0..3 {
        let reply = conn.get(&format!("/get/{i}")).await;
        assert_eq!((reply.status(), reply.text().as_str()), (200, "a"));
        assert_eq!(metric(&proxy, FAST).await, i + 1, "after GET {i}");
    }

    // The body comes after the head, in a write of its own.
    let body = vec![b'p'; 5000];
    conn.send(
        format!(
            "POST /upload HTTP/1.1\r\nhost: raw.test\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    tokio::time::sleep(PAUSE).await;
    conn.send(&body).await;
    let reply = conn.response("POST").await;
    assert_eq!(
        (reply.status(), reply.text().as_str()),
        (200, "received 5000")
    );
    assert_eq!(metric(&proxy, FAST).await, 4, "a sized body is streamed");

    // A chunked body is hyper's, and so is the connection from then on.
    conn.send(
        b"POST /upload HTTP/1.1\r\nhost: raw.test\r\ntransfer-encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    let reply = conn.response("POST").await;
    assert_eq!(
        (reply.status(), reply.text().as_str()),
        (200, "received 11")
    );
    assert_eq!(
        metric(&proxy, FAST).await,
        4,
        "the chunked POST took the fast path"
    );
    for i in 0..2 {
        let reply = conn.get("/after-post").await;
        assert_eq!((reply.status(), reply.text().as_str()), (200, "a"), "{i}");
    }
    assert_eq!(metric(&proxy, FAST).await, 4);
    assert_eq!(metric(&proxy, REQUESTS).await, 7);
    assert_eq!(upstream.hits(), 7);

    // A new connection starts on the fast path again.
    let reply = Conn::open(proxy.proxy).await.get("/new").await;
    assert_eq!(reply.status(), 200);
    assert_eq!(metric(&proxy, FAST).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_response_with_extensions_and_trailers_passes_whole_and_its_connection_is_reused()
{
    const CHUNKED: [&[u8]; 7] = [
        b"HTTP/1.1 200 OK\r\ntransfer-en",
        b"coding: chunked\r\nx-kind: chunked\r\n\r\n4;name=\"v\"\r\nWi",
        b"ki\r\n5\r\npedia\r\n",
        b"E\r\n in\r\n\r\nchunks.\r\n0",
        b"\r\nExpires: never\r\nX-Checksum: 1",
        b"\r\n",
        b"\r\n",
    ];
    let endpoint = ScriptedEndpoint::start(|head| match head.target() {
        "/chunked" => Answer::pieces(&CHUNKED),
        _ => Answer::ok("after"),
    })
    .await;
    let plugins = tempfile::tempdir().unwrap();
    let proxy = Switchyard::start(plugins.path(), &endpoint.pool());
    let sent: Vec<u8> = CHUNKED.concat();
    let body_start = find(&sent, b"\r\n\r\n").unwrap() + 4;
    let expected = String::from_utf8_lossy(&sent[body_start..]).into_owned();

    let mut conn = Conn::open(proxy.proxy).await;
    for round in 0..2 {
        let reply = conn.get("/chunked").await;
        assert_eq!(reply.status(), 200, "round {round}");
        assert_eq!(reply.head.get("transfer-encoding"), Some("chunked"));
        assert_eq!(reply.head.get("x-kind"), Some("chunked"));
        assert!(!reply.head.has("content-length"), "{:?}", reply.head);
        assert_eq!(reply.text(), expected, "round {round}");
        let reply = conn.get("/after").await;
        assert_eq!(
            (reply.status(), reply.text().as_str()),
            (200, "after"),
            "round {round}"
        );
    }
    assert_eq!(metric(&proxy, FAST).await, 4);
    assert_eq!(endpoint.seen().len(), 4);
    assert_eq!(
        endpoint.accepted(),
        1,
        "the endpoint connection should be reused after a chunked body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_delimited_response_reaches_the_client_whole_and_then_closes_it() {
    let endpoint = ScriptedEndpoint::start(|_| {
        Answer::pieces(&[
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: text/plain\r\n\r\n",
            b"first part, ",
            b"second part, ",
            b"last part",
        ])
        .then_close()
    })
    .await;
    let plugins = tempfile::tempdir().unwrap();
    let proxy = Switchyard::start(plugins.path(), &endpoint.pool());

    // A second request pipelined behind it is never forwarded: the proxy
    // closes once the body has ended.
    let mut conn = Conn::open(proxy.proxy).await;
    conn.send(
        b"GET /stream HTTP/1.1\r\nhost: raw.test\r\n\r\nGET /second HTTP/1.1\r\nhost: raw.test\r\n\r\n",
    )
    .await;
    let all = conn.until_closed().await;
    let end = find(&all, b"\r\n\r\n").expect("a head") + 4;
    let head = Head::parse(&all[..end]);
    assert_eq!(head.status(), 200, "{}", head.raw);
    assert_eq!(head.get("connection"), Some("close"));
    assert_eq!(head.get("content-type"), Some("text/plain"));
    assert!(
        !head.has("content-length") && !head.has("transfer-encoding"),
        "{}",
        head.raw
    );
    assert_eq!(
        String::from_utf8_lossy(&all[end..]),
        "first part, second part, last part"
    );
    assert_eq!(endpoint.seen().len(), 1, "the pipelined request was sent");
    assert_eq!(metric(&proxy, FAST).await, 1);

    // The next connection gets a new endpoint connection.
    let mut conn = Conn::open(proxy.proxy).await;
    let reply = conn.get("/again").await;
    assert_eq!(reply.text(), "first part, second part, last part");
    assert_eq!(endpoint.accepted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_gets_are_answered_in_order() {
    let endpoint =
        ScriptedEndpoint::start(|head| Answer::ok(&format!("answer to {}", head.target()))).await;
    let plugins = tempfile::tempdir().unwrap();
    let proxy = Switchyard::start(plugins.path(), &endpoint.pool());
    let mut conn = Conn::open(proxy.proxy).await;
    conn.send(
        b"GET /1 HTTP/1.1\r\nhost: raw.test\r\n\r\n\
          GET /22 HTTP/1.1\r\nhost: raw.test\r\n\r\n\
          GET /333 HTTP/1.1\r\nhost: raw.test\r\n\r\n",
    )
    .await;
    for path in ["/1", "/22", "/333"] {
        let reply = conn.response("GET").await;
        assert_eq!(reply.status(), 200);
        assert_eq!(reply.text(), format!("answer to {path}"));
    }
    // A head that comes in pieces is waited for.
    for piece in [&b"GET /sl"[..], b"ow HTTP/1.1\r\nhos", b"t: raw.test\r\n\r"] {
        conn.send(piece).await;
        tokio::time::sleep(PAUSE).await;
    }
    conn.send(b"\n").await;
    let reply = conn.response("GET").await;
    assert_eq!(reply.text(), "answer to /slow");

    let targets: Vec<String> = endpoint
        .seen()
        .iter()
        .map(|h| h.target().to_string())
        .collect();
    assert_eq!(targets, ["/1", "/22", "/333", "/slow"]);
    assert_eq!(endpoint.accepted(), 1);
    assert_eq!(metric(&proxy, FAST).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pipelined_behind_a_chunked_post_are_replayed_to_hyper_in_order() {
    let plugins = tempfile::tempdir().unwrap();
    let upstream = Upstream::start("a").await;
    let proxy = Switchyard::start(plugins.path(), &native_pool(&upstream));
    let mut conn = Conn::open(proxy.proxy).await;
    conn.send(
        b"GET /first HTTP/1.1\r\nhost: raw.test\r\n\r\n\
          POST /upload HTTP/1.1\r\nhost: raw.test\r\ncontent-length: 11\r\n\r\nhello world\
          POST /upload HTTP/1.1\r\nhost: raw.test\r\ntransfer-encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n\
          GET /third HTTP/1.1\r\nhost: raw.test\r\n\r\n\
          HEAD /fourth HTTP/1.1\r\nhost: raw.test\r\n\r\n",
    )
    .await;
    let first = conn.response("GET").await;
    assert_eq!((first.status(), first.text().as_str()), (200, "a"));
    for _ in 0..2 {
        let post = conn.response("POST").await;
        assert_eq!((post.status(), post.text().as_str()), (200, "received 11"));
    }
    let third = conn.response("GET").await;
    assert_eq!((third.status(), third.text().as_str()), (200, "a"));
    let fourth = conn.response("HEAD").await;
    assert_eq!(fourth.status(), 200);
    assert_eq!(fourth.head.get("content-length"), Some("1"));
    // Nothing follows the HEAD response.
    let next = conn.get("/fifth").await;
    assert_eq!((next.status(), next.text().as_str()), (200, "a"));
    assert_eq!(upstream.hits(), 6);
    assert_eq!(metric(&proxy, FAST).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_without_a_body_are_not_waited_for_whatever_their_length_says() {
    let endpoint = ScriptedEndpoint::start(|head| match (head.method(), head.target()) {
        // A body where none may be: its bytes must reach no one.
        ("HEAD", "/rude") => Answer::whole(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"),
        ("HEAD", _) => {
            Answer::whole(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nx-method: HEAD\r\n\r\n")
        }
        (_, "/not-modified") => Answer::whole(
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 100\r\netag: \"v1\"\r\n\r\n",
        ),
        (_, "/no-content") => Answer::whole(b"HTTP/1.1 204 No Content\r\nx-empty: yes\r\n\r\n"),
        _ => Answer::ok("ok"),
    })
    .await;
    let plugins = tempfile::tempdir().unwrap();
    let proxy = Switchyard::start(plugins.path(), &endpoint.pool());
    let mut conn = Conn::open(proxy.proxy).await;

    let head = conn.exchange("HEAD", "/x").await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.head.get("content-length"), Some("100"));
    assert_eq!(head.head.get("x-method"), Some("HEAD"));
    let get = conn.get("/x").await;
    assert_eq!((get.status(), get.text().as_str()), (200, "ok"));

    // The same, pipelined: a proxy waiting for 100 body bytes never
    // answers the GET.
    conn.send(
        b"HEAD /y HTTP/1.1\r\nhost: raw.test\r\n\r\nGET /y HTTP/1.1\r\nhost: raw.test\r\n\r\n",
    )
    .await;
    assert_eq!(conn.response("HEAD").await.status(), 200);
    assert_eq!(conn.response("GET").await.text(), "ok");

    let not_modified = conn.get("/not-modified").await;
    assert_eq!(not_modified.status(), 304);
    assert_eq!(not_modified.head.get("etag"), Some("\"v1\""));
    let no_content = conn.get("/no-content").await;
    assert_eq!(no_content.status(), 204);
    assert_eq!(no_content.head.get("x-empty"), Some("yes"));
    assert_eq!(conn.get("/x").await.text(), "ok");
    assert_eq!(endpoint.accepted(), 1);

    // The connection a HEAD body came on is not used again.
    let rude = conn.exchange("HEAD", "/rude").await;
    assert_eq!(rude.head.get("content-length"), Some("5"));
    let after = conn.get("/x").await;
    assert_eq!((after.status(), after.text().as_str()), (200, "ok"));
    assert_eq!(endpoint.accepted(), 2);
    assert_eq!(metric(&proxy, FAST).await, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_closing_after_a_sized_response_leaves_the_client_connection_open() {
    let endpoint = ScriptedEndpoint::start(|_| {
        Answer::whole(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 4\r\n\r\ndone")
            .then_close()
    })
    .await;
    let plugins = tempfile::tempdir().unwrap();
    let proxy = Switchyard::start(plugins.path(), &endpoint.pool());
    let mut conn = Conn::open(proxy.proxy).await;
    for round in 0..3 {
        let reply = conn.get("/once").await;
        assert_eq!((reply.status(), reply.text().as_str()), (200, "done"));
        assert!(
            !reply.head.has("connection"),
            "round {round}: {}",
            reply.head.raw
        );
    }
    assert_eq!(endpoint.accepted(), 3);
    assert_eq!(metric(&proxy, FAST).await, 3);
}

/// `forwarding_adds_client_address_and_drops_hop_by_hop_headers` (in
/// `proxying.rs`) checks one `Connection`-named header, one client
/// `X-Forwarded-For` and `X-Forwarded-Proto` through a header map; this
/// checks the bytes the endpoint receives, the rest of the hop-by-hop list,
/// repeated `X-Forwarded-For` lines, a client's `X-Forwarded-Proto`, and the
/// response's way back. (A request whose `Connection` names other fields is
/// hyper's: see `fields_a_client_names_in_connection_leave_the_proxys_own_in_place`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_fields_stop_at_the_fast_path_both_ways() {
    let endpoint = ScriptedEndpoint::start(|_| {
        Answer::whole(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Upstream-Private\r\n\
              X-Upstream-Private: secret\r\nKeep-Alive: timeout=5\r\n\
              Proxy-Authenticate: Basic\r\nTrailer: Expires\r\nX-Kept: yes\r\n\
              content-length: 2\r\n\r\nok",
        )
    })
    .await;
    let plugins = tempfile::tempdir().unwrap();
    let proxy = Switchyard::start(plugins.path(), &endpoint.pool());
    let mut conn = Conn::open(proxy.proxy).await;
    conn.send(
        b"GET /h?q=1 HTTP/1.1\r\nHost: raw.test\r\nConnection: keep-alive\r\n\
          Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic Zm9v\r\n\
          Proxy-Connection: keep-alive\r\nX-Forwarded-For: 10.0.0.1\r\nX-App: kept\r\n\
          X-Forwarded-For: 10.0.0.2\r\n\r\n",
    )
    .await;
    let reply = conn.response("GET").await;
    assert_eq!((reply.status(), reply.text().as_str()), (200, "ok"));
    assert_eq!(reply.head.get("x-kept"), Some("yes"));
    for dropped in [
        "x-upstream-private",
        "keep-alive",
        "proxy-authenticate",
        "trailer",
        "connection",
    ] {
        assert!(
            !reply.head.has(dropped),
            "`{dropped}` reached the client: {}",
            reply.head.raw
        );
    }

    let seen = endpoint.seen();
    let request = &seen[0];
    assert_eq!(request.line, "GET /h?q=1 HTTP/1.1");
    assert_eq!(request.get("host"), Some("raw.test"));
    assert_eq!(request.get("x-app"), Some("kept"));
    for dropped in [
        "connection",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(
            !request.has(dropped),
            "`{dropped}` reached the endpoint: {}",
            request.raw
        );
    }
    assert_eq!(
        request.get("x-forwarded-for"),
        Some("10.0.0.1, 10.0.0.2, 127.0.0.1")
    );
    assert_eq!(request.get("x-forwarded-proto"), Some("http"));

    // The connection went on (`keep-alive` is no `close`); a client's
    // X-Forwarded-Proto is kept, and one is added where none was sent.
    conn.send(b"GET /p HTTP/1.1\r\nhost: raw.test\r\nx-forwarded-proto: https\r\n\r\n")
        .await;
    assert_eq!(conn.response("GET").await.status(), 200);
    let seen = endpoint.seen();
    assert_eq!(seen[1].get("x-forwarded-proto"), Some("https"));
    assert_eq!(seen[1].get("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(metric(&proxy, FAST).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_asking_to_close_gets_connection_close_and_the_end_of_the_stream() {
    let endpoint = ScriptedEndpoint::start(|_| Answer::ok("bye")).await;
    let plugins = tempfile::tempdir().unwrap();
    let proxy = Switchyard::start(plugins.path(), &endpoint.pool());
    let mut conn = Conn::open(proxy.proxy).await;
    conn.send(b"GET /c HTTP/1.1\r\nhost: raw.test\r\nconnection: close\r\n\r\n")
        .await;
    let reply = conn.response("GET").await;
    assert_eq!((reply.status(), reply.text().as_str()), (200, "bye"));
    assert_eq!(reply.head.get("connection"), Some("close"));
    assert!(
        conn.until_closed().await.is_empty(),
        "bytes after the response"
    );
    assert!(!endpoint.seen()[0].has("connection"));
    assert_eq!(metric(&proxy, FAST).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_with_both_content_length_and_transfer_encoding_is_a_502() {
    let endpoint = ScriptedEndpoint::start(|head| match head.target() {
        "/smuggle" => Answer::whole(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n",
        ),
        _ => Answer::ok("fine"),
    })
    .await;
    let plugins = tempfile::tempdir().unwrap();
    let proxy = Switchyard::start(plugins.path(), &endpoint.pool());
    let mut conn = Conn::open(proxy.proxy).await;
    let reply = conn.get("/smuggle").await;
    assert_eq!(reply.status(), 502, "{reply:?}");
    assert_eq!(reply.head.get("x-switchyard-error"), Some("upstream"));
    assert!(
        reply
            .text()
            .contains("transfer-encoding and content-length"),
        "{}",
        reply.text()
    );
    // The client connection goes on, on the fast path; the endpoint
    // connection the bad response came on is not used again.
    let reply = conn.get("/fine").await;
    assert_eq!((reply.status(), reply.text().as_str()), (200, "fine"));
    assert_eq!(endpoint.accepted(), 2);
    assert_eq!(metric(&proxy, FAST).await, 1);
    let metrics = HttpClient::default()
        .get(&proxy.control_url("/metrics"))
        .await
        .body;
    assert!(
        metrics.contains("switchyard_proxy_errors_total{cause=\"upstream\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_after_a_response_body_keep_its_connection_out_of_the_pool() {
    let endpoint = ScriptedEndpoint::start(|head| match head.target() {
        "/extra" => Answer::whole(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 666 Junk\r\n\r\n",
        ),
        _ => Answer::ok("clean"),
    })
    .await;
    let plugins = tempfile::tempdir().unwrap();
    let proxy = Switchyard::start(plugins.path(), &endpoint.pool());
    let mut conn = Conn::open(proxy.proxy).await;
    let reply = conn.get("/extra").await;
    assert_eq!((reply.status(), reply.text().as_str()), (200, "ok"));
    let reply = conn.get("/next").await;
    assert_eq!((reply.status(), reply.text().as_str()), (200, "clean"));
    assert_eq!(endpoint.accepted(), 2);
}

/// A body cut off by its endpoint cannot be retried once its head reached
/// the client; it is counted in `/metrics` and against the endpoint, on
/// both paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_closing_in_the_middle_of_a_body_closes_the_client_connection() {
    let endpoint = ScriptedEndpoint::start(|_| {
        Answer::pieces(&[b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", b"half"]).then_close()
    })
    .await;
    for (keys, proxy, mut conn) in on_both_paths(&endpoint).await {
        conn.send(b"GET /cut HTTP/1.1\r\nhost: raw.test\r\n\r\n")
            .await;
        let all = conn.until_closed().await;
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\nhalf"),
            "{keys}: {text}"
        );
        assert_eq!(
            metric(&proxy, "switchyard_upstream_cut_responses_total").await,
            1,
            "{keys}"
        );
        let pools: serde_json::Value = serde_json::from_str(
            &HttpClient::default()
                .get(&proxy.control_url("/v1/pools"))
                .await
                .body,
        )
        .unwrap();
        let load = &pools["pools"][0]["endpoints"][0]["load"];
        assert_eq!(
            (&load["cuts"], &load["failures"]),
            (&1.into(), &1.into()),
            "{keys}: {load}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informational_responses_are_dropped_and_the_final_one_reaches_the_client() {
    let endpoint = ScriptedEndpoint::start(|_| {
        Answer::pieces(&[
            b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\nlink: </app.js>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-final: yes\r\n\r\n",
            b"final",
        ])
    })
    .await;
    let plugins = tempfile::tempdir().unwrap();
    let proxy = Switchyard::start(plugins.path(), &endpoint.pool());
    let mut conn = Conn::open(proxy.proxy).await;
    for round in 0..2 {
        let reply = conn.get("/hints").await;
        assert_eq!(reply.head.line, "HTTP/1.1 200 OK", "round {round}");
        assert_eq!(reply.head.get("x-final"), Some("yes"));
        assert!(!reply.head.has("link"), "{}", reply.head.raw);
        assert_eq!(reply.text(), "final");
    }
    assert_eq!(endpoint.accepted(), 1);
    assert_eq!(metric(&proxy, FAST).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_fast_path_off_every_request_goes_through_hyper() {
    let plugins = tempfile::tempdir().unwrap();
    let upstream = Upstream::start("a").await;
    let proxy =
        Switchyard::start_with(plugins.path(), "fast_path = false", &native_pool(&upstream));
    let mut conn = Conn::open(proxy.proxy).await;
    for method in ["GET", "HEAD", "OPTIONS", "GET"] {
        let reply = conn.exchange(method, "/off").await;
        assert_eq!(reply.status(), 200, "{method}");
        assert_eq!(reply.head.get("x-upstream"), Some("a"), "{method}");
    }
    let reply = HttpClient::default().get(&proxy.url("/off")).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "a"));
    assert_eq!(upstream.hits(), 5);
    assert_eq!(metric(&proxy, REQUESTS).await, 5);
    assert_eq!(metric(&proxy, FAST).await, 0);
}

/// Each on a connection of its own: HTTP/1.0, an absolute-form target, an
/// expectation, and a request a pool with a recovery policy cannot replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_fast_path_does_not_take_are_answered_by_hyper() {
    let plugins = plugin_dir(&[("retry-backoff", "retry-backoff")]);
    let (plain, retrying) = (
        Upstream::start("plain").await,
        Upstream::start("retrying").await,
    );
    let body = format!(
        "[[pools]]\nname = \"plain\"\nendpoints = [{}]\n\n\
         [[pools]]\nname = \"retrying\"\n\
         recovery = {{ plugin = \"retry-backoff\", config = {{ attempts = 2, base_delay_ms = 1 }} }}\n\
         endpoints = [{}]\n\n\
         [[routes]]\nhost = \"retry.test\"\npool = \"retrying\"\n\n\
         [[routes]]\npool = \"plain\"\n",
        plain.endpoint(1),
        retrying.endpoint(1)
    );
    let proxy = Switchyard::start(plugins.path(), &body);
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "HTTP/1.0",
            b"GET /old HTTP/1.0\r\nhost: raw.test\r\n\r\n",
            "plain",
        ),
        (
            "absolute-form",
            b"GET http://raw.test/abs HTTP/1.1\r\nhost: raw.test\r\n\r\n",
            "plain",
        ),
        (
            "expect",
            b"GET /expect HTTP/1.1\r\nhost: raw.test\r\nexpect: 100-continue\r\n\r\n",
            "plain",
        ),
        (
            "POST to a recovery pool",
            b"POST /retry HTTP/1.1\r\nhost: retry.test\r\ncontent-length: 2\r\n\r\nhi",
            "retrying",
        ),
    ];
    for (case, request, answered_by) in cases {
        let mut conn = Conn::open(proxy.proxy).await;
        conn.send(request).await;
        let mut reply = conn.response("GET").await;
        while reply.status() == 100 {
            // hyper may answer the expectation first.
            reply = conn.response("GET").await;
        }
        assert_eq!(reply.status(), 200, "{case}: {reply:?}");
        assert_eq!(reply.text(), answered_by, "{case}");
        assert_eq!(metric(&proxy, FAST).await, 0, "{case} took the fast path");
    }
    // A plain GET takes the fast path, and so does a GET to the recovery
    // pool, which can be replayed; after a POST there, the connection is
    // hyper's.
    let mut conn = Conn::open(proxy.proxy).await;
    assert_eq!(conn.get("/plain").await.text(), "plain");
    conn.send(b"GET /retry HTTP/1.1\r\nhost: retry.test\r\n\r\n")
        .await;
    assert_eq!(conn.response("GET").await.text(), "retrying");
    assert_eq!(metric(&proxy, FAST).await, 2);
    conn.send(b"POST /retry HTTP/1.1\r\nhost: retry.test\r\ncontent-length: 2\r\n\r\nhi")
        .await;
    assert_eq!(conn.response("POST").await.text(), "retrying");
    assert_eq!(conn.get("/plain").await.text(), "plain");
    assert_eq!(metric(&proxy, FAST).await, 2);
    assert_eq!(metric(&proxy, REQUESTS).await, 8);
}

/// Proxies over `endpoint` with the fast path on, then off, each with a
/// fresh client connection: the two paths must agree.
async fn on_both_paths(endpoint: &ScriptedEndpoint) -> Vec<(&'static str, Switchyard, Conn)> {
    let mut both = Vec::new();
    for keys in ["fast_path = true", "fast_path = false"] {
        let plugins = tempfile::tempdir().unwrap();
        let proxy = Switchyard::start_with(plugins.path(), keys, &endpoint.pool());
        let conn = Conn::open(proxy.proxy).await;
        both.push((keys, proxy, conn));
    }
    both
}

/// RFC 9110 §7.6.1: a proxy removes every field the `Connection` field
/// names, however many it names and over however many lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_field_the_connection_field_names_is_dropped() {
    let names: Vec<String> = (1..=10).map(|i| format!("x-hop-{i}")).collect();
    let mut answer = format!(
        "HTTP/1.1 200 OK\r\nConnection: {}\r\nConnection: {}\r\n",
        names[..5].join(", "),
        names[5..].join(", ")
    );
    for name in &names {
        answer.push_str(&format!("{name}: private\r\n"));
    }
    answer.push_str("x-kept: yes\r\ncontent-length: 2\r\n\r\nok");
    let endpoint = ScriptedEndpoint::start(move |_| Answer::whole(answer.as_bytes())).await;
    let mut problems = Vec::new();
    for (keys, proxy, mut conn) in on_both_paths(&endpoint).await {
        let reply = conn.get("/many").await;
        assert_eq!(
            (reply.status(), reply.text().as_str()),
            (200, "ok"),
            "{keys}"
        );
        assert_eq!(reply.head.get("x-kept"), Some("yes"), "{keys}");
        let leaked: Vec<&String> = names.iter().filter(|n| reply.head.has(n)).collect();
        if !leaked.is_empty() {
            problems.push(format!(
                "{keys}: {leaked:?} reached the client:\n{}",
                reply.head.raw
            ));
        }
        drop(proxy);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// RFC 9112 §6.3: `Content-Length` is digits only; a proxy answers an
/// invalid one with 502 rather than pass it on for the client to read its
/// own way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_content_length_that_is_not_only_digits_is_a_502() {
    let endpoint = ScriptedEndpoint::start(|_| {
        Answer::whole(b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\nhello")
    })
    .await;
    let mut problems = Vec::new();
    for (keys, proxy, mut conn) in on_both_paths(&endpoint).await {
        let reply = conn.get("/plus").await;
        if reply.status() != 502 || reply.head.get("x-switchyard-error") != Some("upstream") {
            problems.push(format!("{keys}: {}{}", reply.head.raw, reply.text()));
        }
        drop(proxy);
    }
    assert!(
        problems.is_empty(),
        "not a 502 from the proxy:\n{}",
        problems.join("\n")
    );
}

/// RFC 9110 §7.6.1: the fields a client's `Connection` names are removed;
/// that does not take away the fields the proxy itself adds, nor the `Host`
/// an HTTP/1.1 request must carry (RFC 9112 §3.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_a_client_names_in_connection_leave_the_proxys_own_in_place() {
    let endpoint = ScriptedEndpoint::start(|_| Answer::ok("ok")).await;
    let mut problems = Vec::new();
    for (keys, proxy, mut conn) in on_both_paths(&endpoint).await {
        conn.send(
            b"GET /forwarded HTTP/1.1\r\nhost: raw.test\r\n\
              connection: x-forwarded-for, x-forwarded-proto\r\n\
              x-forwarded-for: 203.0.113.9\r\nx-forwarded-proto: https\r\n\r\n",
        )
        .await;
        assert_eq!(conn.response("GET").await.status(), 200, "{keys}");
        let seen = endpoint.seen().pop().unwrap();
        if seen.get("x-forwarded-for") != Some("127.0.0.1")
            || seen.get("x-forwarded-proto") != Some("http")
        {
            problems.push(format!(
                "{keys}: want x-forwarded-for: 127.0.0.1 and x-forwarded-proto: http, the endpoint got\n{}",
                seen.raw
            ));
        }
        conn.send(b"GET /host HTTP/1.1\r\nhost: raw.test\r\nconnection: host\r\n\r\n")
            .await;
        assert_eq!(conn.response("GET").await.status(), 200, "{keys}");
        let seen = endpoint.seen().pop().unwrap();
        if !seen.has("host") {
            problems.push(format!("{keys}: no host; the endpoint got\n{}", seen.raw));
        }
        drop(proxy);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// An endpoint's `Connection` field naming `content-length` or
/// `transfer-encoding`: the client must still be able to tell where the
/// body ends (RFC 9112 §6.3), or the proxy must close after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_field_naming_the_framing_leaves_the_response_framed() {
    let endpoint = ScriptedEndpoint::start(|head| match head.target() {
        "/length" => Answer::whole(
            b"HTTP/1.1 200 OK\r\nconnection: content-length\r\ncontent-length: 5\r\n\r\nhello",
        ),
        "/chunked" => Answer::whole(
            b"HTTP/1.1 200 OK\r\nconnection: transfer-encoding\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n",
        ),
        _ => Answer::ok("next"),
    })
    .await;
    let mut problems = Vec::new();
    for (keys, proxy, _) in on_both_paths(&endpoint).await {
        for path in ["/length", "/chunked"] {
            let mut conn = Conn::open(proxy.proxy).await;
            conn.send(format!("GET {path} HTTP/1.1\r\nhost: raw.test\r\n\r\n").as_bytes())
                .await;
            let head = conn.head().await;
            let close = head.get("connection") == Some("close");
            if !(head.has("content-length") || head.has("transfer-encoding") || close) {
                problems.push(format!("{keys} {path}: an unframed response\n{}", head.raw));
                continue;
            }
            let body = conn.body(&head, "GET").await;
            let chunked = head.has("transfer-encoding");
            let data = if chunked { dechunk(&body) } else { body };
            assert_eq!(String::from_utf8_lossy(&data), "hello", "{keys} {path}");
            if !close {
                let next = conn.get("/next").await;
                assert_eq!(next.text(), "next", "{keys} {path}");
            }
        }
        drop(proxy);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// An endpoint that closes a kept-alive connection just as a request
/// arrives on it (its idle timeout and the request crossing): an idempotent
/// request wholly in hand is sent again on a new connection, once; a
/// new connection closed without an answer is a 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_closed_as_a_request_arrives_is_replaced() {
    let hung_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let endpoint = ScriptedEndpoint::start({
        let hung_up = hung_up.clone();
        move |head| match head.target() {
            "/b" if !hung_up.swap(true, Ordering::Relaxed) => Answer::pieces(&[]).then_close(),
            "/gone" => Answer::pieces(&[]).then_close(),
            target => Answer::ok(target),
        }
    })
    .await;
    let plugins = tempfile::tempdir().unwrap();
    let proxy = Switchyard::start(plugins.path(), &endpoint.pool());
    let mut conn = Conn::open(proxy.proxy).await;
    assert_eq!(conn.get("/a").await.text(), "/a");
    let reply = conn.get("/b").await;
    assert_eq!((reply.status(), reply.text().as_str()), (200, "/b"));
    assert_eq!(endpoint.accepted(), 2);

    let reply = conn.get("/gone").await;
    assert_eq!(reply.status(), 502, "{reply:?}");
    assert_eq!(reply.head.get("x-switchyard-error"), Some("upstream"));
    let targets: Vec<String> = endpoint
        .seen()
        .iter()
        .map(|h| h.target().to_string())
        .collect();
    assert_eq!(targets, ["/a", "/b", "/b", "/gone", "/gone"]);
    assert_eq!(endpoint.accepted(), 3);
    assert_eq!(conn.get("/c").await.text(), "/c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_answered_locally_closes_the_connection_so_it_is_never_read_as_a_request() {
    let plugins = tempfile::tempdir().unwrap();
    let upstream = Upstream::start("a").await;
    let config = format!(
        "{}[[routes]]\nhost = \"known.test\"\npool = \"web\"\n",
        native_pool(&upstream)
    );
    let proxy = Switchyard::start(plugins.path(), &config);
    let mut conn = Conn::open(proxy.proxy).await;
    // The body looks like a request: were it read as one, it would be served.
    conn.send(
        b"POST /x HTTP/1.1\r\nhost: unknown.test\r\ncontent-length: 40\r\n\r\n\
          GET /smuggled HTTP/1.1\r\nhost: known.test",
    )
    .await;
    let reply = conn.response("POST").await;
    assert_eq!(reply.status(), 404);
    assert_eq!(reply.head.get("x-switchyard-error"), Some("no_route"));
    assert_eq!(reply.head.get("connection"), Some("close"));
    assert!(conn.until_closed().await.is_empty());
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_in_the_middle_of_a_body_leaves_the_proxy_serving() {
    let plugins = tempfile::tempdir().unwrap();
    let upstream = Upstream::start("a").await;
    let proxy = Switchyard::start(plugins.path(), &native_pool(&upstream));
    let mut conn = Conn::open(proxy.proxy).await;
    conn.send(b"POST /upload HTTP/1.1\r\nhost: raw.test\r\ncontent-length: 100000\r\n\r\npartial")
        .await;
    tokio::time::sleep(PAUSE).await;
    drop(conn);
    // The half-sent request's upstream connection is not pooled: the next
    // requests are whole and answered.
    let mut conn = Conn::open(proxy.proxy).await;
    for i in 0..3 {
        let reply = conn.get("/after").await;
        assert_eq!((reply.status(), reply.text().as_str()), (200, "a"), "{i}");
    }
    let body = vec![b'z'; 70_000];
    conn.send(
        format!(
            "PUT /upload HTTP/1.1\r\nhost: raw.test\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    conn.send(&body).await;
    let reply = conn.response("PUT").await;
    assert_eq!(
        (reply.status(), reply.text().as_str()),
        (200, "received 70000")
    );
    assert_eq!(metric(&proxy, FAST).await, 4);
}

/// An HTTP/1.0 client's requests reach the endpoint as HTTP/1.1, so they
/// share the kept-alive connections rather than opening one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_clients_share_kept_alive_endpoint_connections() {
    let plugins = tempfile::tempdir().unwrap();
    let upstream = Upstream::start("a").await;
    let proxy = Switchyard::start(plugins.path(), &native_pool(&upstream));
    for i in 0..10 {
        let mut conn = Conn::open(proxy.proxy).await;
        conn.send(format!("GET /old/{i} HTTP/1.0\r\nhost: raw.test\r\n\r\n").as_bytes())
            .await;
        let reply = conn.response("GET").await;
        assert_eq!((reply.status(), reply.text().as_str()), (200, "a"));
    }
    assert_eq!(upstream.hits(), 10);
    // One connection per proxy worker at most.
    assert!(
        upstream.accepted.load(Ordering::Relaxed) <= 2,
        "{} endpoint connections for 10 requests",
        upstream.accepted.load(Ordering::Relaxed)
    );
}
