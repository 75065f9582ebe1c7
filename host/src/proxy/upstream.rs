//! Connections to endpoints: a keep-alive pool per proxy worker.
//!
//! Written over hyper's connection API rather than hyper-util's pooled
//! client. That client is shared by all threads: it keys its pool by a
//! SipHash of scheme and authority behind one mutex, boxes each request's
//! future, and spawns a task per request to hand the connection back. Here a
//! worker's pool is its own, keyed by the endpoint's address, and a
//! connection goes back to the pool in the same task that read the last byte
//! of its response.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::UpstreamBody;
use crate::engine::Endpoint;

/// Idle connections kept per endpoint and worker at most; more are closed.
const MAX_IDLE_PER_ENDPOINT: usize = 512;

/// One worker's connections to every endpoint.
#[derive(Debug)]
pub struct Upstreams {
    /// hyper's connections.
    idle: IdleLists<SendRequest<UpstreamBody>>,
    /// The HTTP/1 fast path's plain sockets.
    raw_idle: IdleLists<TcpStream>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

/// Idle connections by endpoint address, each with the time it went idle.
#[derive(Debug)]
struct IdleLists<C>(Mutex<HashMap<String, Vec<(C, Instant)>>>);

impl<C> IdleLists<C> {
    fn new() -> Self {
        IdleLists(Mutex::new(HashMap::new()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<(C, Instant)>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently idle connection to `address` that `usable` accepts;
    /// those it refuses on the way are dropped, which closes them. Most
    /// recent first: it is the least likely to have been closed.
    fn take(&self, address: &str, usable: impl Fn(&C, Instant) -> bool) -> Option<C> {
        let mut idle = self.lock();
        let list = idle.get_mut(address)?;
        while let Some((conn, since)) = list.pop() {
            if usable(&conn, since) {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for `address`, unless that many are idle already.
    fn put(&self, address: &str, conn: C) {
        let mut idle = self.lock();
        // Looked up by `&str` first: the key is copied once per endpoint.
        if !idle.contains_key(address) {
            idle.insert(address.to_owned(), Vec::new());
        }
        let list = idle.get_mut(address).expect("inserted above");
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push((conn, Instant::now()));
        }
    }

    /// Drops the connections `keep` refuses.
    fn retain(&self, keep: impl Fn(&C, Instant) -> bool) {
        self.lock().retain(|_, list| {
            list.retain(|(conn, since)| keep(conn, *since));
            !list.is_empty()
        });
    }
}

/// A connection lent to one exchange; [`Upstreams::give_back`] returns it
/// once the response has been read to its end.
#[derive(Debug)]
pub struct Lent {
    sender: SendRequest<UpstreamBody>,
    endpoint: Arc<Endpoint>,
}

/// A lent connection and the pool to give it back to.
pub type PooledConnection = (Lent, Arc<Upstreams>);

/// Why an exchange with an endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The endpoint refused the connection.
    #[error("connection refused: {0}")]
    ConnectRefused(#[source] std::io::Error),
    /// The connection could not be opened for another reason.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The connection was not open within the connect timeout.
    #[error("no connection within {} ms", .0.as_millis())]
    ConnectTimeout(Duration),
    /// The connection failed while the request was sent or answered.
    #[error("{0}")]
    Exchange(#[source] hyper::Error),
    /// The connection failed while the request was sent or answered (the
    /// HTTP/1 fast path).
    #[error("{0}")]
    Broken(#[source] std::io::Error),
    /// The endpoint's response is not valid HTTP/1.1.
    #[error("invalid response: {0}")]
    BadResponse(&'static str),
}

impl UpstreamError {
    /// Whether no connection could be opened: nothing of the request
    /// reached the endpoint.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectRefused(_)
                | UpstreamError::Connect(_)
                | UpstreamError::ConnectTimeout(_)
        )
    }
}

impl Upstreams {
    /// A pool opening connections within `connect_timeout` and closing those
    /// idle for `idle_timeout`.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Upstreams {
            idle: IdleLists::new(),
            raw_idle: IdleLists::new(),
            connect_timeout,
            idle_timeout,
        }
    }

    /// Sends `request` to `endpoint` over an idle connection,
    /// or a new one when none is ready. A pooled connection that turns out
    /// closed before it took the request hands it back, and the next is
    /// tried, so a request is never lost to a stale connection.
    pub async fn send(
        &self,
        endpoint: &Arc<Endpoint>,
        mut request: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lent), UpstreamError> {
        while let Some(mut sender) = self.checkout(&endpoint.address) {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let endpoint = Arc::clone(endpoint);
                    return Ok((response, Lent { sender, endpoint }));
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(UpstreamError::Exchange(error.into_error())),
                },
            }
        }
        let mut sender = self.connect(&endpoint.address).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(UpstreamError::Exchange)?;
        let endpoint = Arc::clone(endpoint);
        Ok((response, Lent { sender, endpoint }))
    }

    /// Puts a connection whose exchange ended cleanly back in the pool.
    pub fn give_back(&self, lent: Lent) {
        if !lent.sender.is_closed() {
            self.idle.put(&lent.endpoint.address, lent.sender);
        }
    }

    /// Closes connections idle longer than the idle timeout or closed by the
    /// endpoint.
    pub fn prune(&self, now: Instant) {
        let fresh = |since: Instant| now.duration_since(since) < self.idle_timeout;
        self.idle
            .retain(|sender, since| !sender.is_closed() && fresh(since));
        self.raw_idle
            .retain(|stream, since| fresh(since) && is_open(stream));
    }

    /// A plain connection to `address` for the HTTP/1 fast path: the most
    /// recently used idle one still open, if any.
    pub fn checkout_raw(&self, address: &str) -> Option<TcpStream> {
        self.raw_idle.take(address, |stream, since| {
            since.elapsed() < self.idle_timeout && is_open(stream)
        })
    }

    /// Puts a plain connection whose exchange ended cleanly back in the pool.
    pub fn give_back_raw(&self, address: &str, stream: TcpStream) {
        self.raw_idle.put(address, stream);
    }

    /// Opens a plain connection to `address` within the connect timeout.
    pub async fn connect_raw(&self, address: &str) -> Result<TcpStream, UpstreamError> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(address)).await {
                Err(_elapsed) => return Err(UpstreamError::ConnectTimeout(self.connect_timeout)),
                Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(UpstreamError::ConnectRefused(error))
                }
                Ok(Err(error)) => return Err(UpstreamError::Connect(error)),
                Ok(Ok(stream)) => stream,
            };
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// The most recently used idle connection that can take a request now.
    fn checkout(&self, address: &str) -> Option<SendRequest<UpstreamBody>> {
        // Not ready: closed, or still busy with a request it never finished
        // sending.
        self.idle.take(address, |sender, since| {
            sender.is_ready() && since.elapsed() < self.idle_timeout
        })
    }

    async fn connect(&self, address: &str) -> Result<SendRequest<UpstreamBody>, UpstreamError> {
        let stream = self.connect_raw(address).await?;
        // One buffer per write, as on the client side (see `serve`).
        let (sender, connection) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Exchange)?;
        // The connection is driven on this worker, beside the requests
        // that use it.
        let address = address.to_owned();
        tokio::spawn(async move {
            // With upgrades: a 101 hands the connection to a tunnel.
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!("endpoint {address} connection ended: {error}");
            }
        });
        Ok(sender)
    }
}

/// Whether an idle connection is still open: it has neither been closed by
/// the endpoint nor sent bytes nobody asked for. The read does not wait.
fn is_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock)
}
