//! The load: clients that send requests back to back through the proxy and classify each one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The `host` every request carries.
pub const HOST: &str = "chaos.test";

/// Cause of a request whose response head arrived but whose body did not.
pub const CUT: &str = "cut mid-body";

/// Pause after a failed connect, so a proxy that is gone is not hammered.
const CONNECT_PAUSE: Duration = Duration::from_millis(20);

/// Words of an error's text kept in a `transport` cause: enough to tell
/// causes apart without splitting one cause by port numbers.
const CAUSE_WORDS: usize = 8;

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub requests: u64,
    pub delivered: u64,
    /// Failed requests by cause.
    pub failures: BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, outcome: Result<(), String>) {
        self.requests += 1;
        match outcome {
            Ok(()) => self.delivered += 1,
            Err(cause) => *self.failures.entry(cause).or_default() += 1,
        }
    }

    pub fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        self.delivered += other.delivered;
        for (cause, count) in other.failures {
            *self.failures.entry(cause).or_default() += count;
        }
    }
}

/// Sends `GET /` over one keep-alive connection until `deadline`,
/// reconnecting when the connection closes. A request still open at the
/// deadline is not counted; a failed one is not sent again.
pub async fn run(proxy: SocketAddr, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut connection: Option<SendRequest<Empty<Bytes>>> = None;
    while Instant::now() < deadline {
        let sender = match connection.as_mut() {
            Some(sender) => sender,
            None => match connect(proxy).await {
                Ok(sender) => connection.insert(sender),
                Err(error) => {
                    tally.record(Err(transport(&*error)));
                    tokio::time::sleep(CONNECT_PAUSE).await;
                    continue;
                }
            },
        };
        // A connection the proxy closed between two requests costs no
        // request: open another.
        if sender.ready().await.is_err() {
            connection = None;
            continue;
        }
        let Ok(outcome) = tokio::time::timeout_at(deadline, exchange(sender)).await else {
            break;
        };
        if let Err(cause) = &outcome {
            if cause == CUT || cause.starts_with("transport") {
                connection = None;
            }
        }
        tally.record(outcome);
    }
    tally
}

/// One request and its classification: `Ok` for a 200 with its full body,
/// else the cause.
async fn exchange(sender: &mut SendRequest<Empty<Bytes>>) -> Result<(), String> {
    let request = Request::get("/")
        .header(header::HOST, HOST)
        .body(Empty::new())
        .expect("a static request is valid");
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| transport(&error))?;
    let status = response.status();
    let cause = format!(
        "status {} {}",
        status.as_u16(),
        response
            .headers()
            .get("x-switchyard-error")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-")
    );
    let body = response.into_body().collect().await;
    match body {
        Ok(body) if status == StatusCode::OK => {
            // Anything else than an endpoint's `NAME\n` means the proxy
            // mangled the answer.
            let body = body.to_bytes();
            if body.len() > 1 && body.ends_with(b"\n") {
                Ok(())
            } else {
                Err("bad body".to_string())
            }
        }
        Err(_) if status == StatusCode::OK => Err(CUT.to_string()),
        _ => Err(cause),
    }
}

async fn connect(proxy: SocketAddr) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(proxy).await?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // Ends when the connection closes; the request that sees it close
    // reports the cause.
    tokio::spawn(connection);
    Ok(sender)
}

/// `transport` and the first words of the error and its sources.
fn transport(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    let words: Vec<&str> = text.split_whitespace().take(CAUSE_WORDS).collect();
    format!("transport {}", words.join(" "))
}

/// `GET path` on a fresh connection to `address`: the status and the body.
pub async fn get(address: SocketAddr, path: &str) -> anyhow::Result<(StatusCode, String)> {
    let mut sender = connect(address)
        .await
        .with_context(|| format!("cannot connect to {address}"))?;
    let request = Request::get(path)
        .header(header::HOST, HOST)
        .body(Empty::new())
        .with_context(|| format!("`{path}` is not a valid path"))?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("GET {path} on {address} failed"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .with_context(|| format!("GET {path} on {address}: body read failed"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
