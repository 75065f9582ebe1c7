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
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_util::either::Either;

use super::UpstreamBody;
use crate::engine::{Endpoint, UpstreamProtocol, UpstreamTls};

/// Idle connections kept per endpoint and worker at most; more are closed.
const MAX_IDLE_PER_ENDPOINT: usize = 512;

/// One worker's connections to every endpoint.
#[derive(Debug)]
pub struct Upstreams {
    /// hyper's HTTP/1 connections, by address (plain) or by the pool's
    /// protocol key and address (TLS).
    idle: IdleLists<SendRequest<UpstreamBody>>,
    /// HTTP/2 connections, one per pool protocol key and address: each
    /// carries every concurrent request to its endpoint.
    multiplexed: Mutex<HashMap<String, http2::SendRequest<UpstreamBody>>>,
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
    /// `None` for HTTP/2, whose connection is shared rather than lent.
    sender: Option<SendRequest<UpstreamBody>>,
    endpoint: Arc<Endpoint>,
    /// The pool key when it is not the endpoint's address.
    key: Option<String>,
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
    /// The TLS handshake failed, or did not agree on the protocol.
    #[error("TLS: {0}")]
    Tls(String),
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
                | UpstreamError::Tls(_)
        )
    }
}

impl Upstreams {
    /// A pool opening connections within `connect_timeout` and closing those
    /// idle for `idle_timeout`.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Upstreams {
            idle: IdleLists::new(),
            multiplexed: Mutex::new(HashMap::new()),
            raw_idle: IdleLists::new(),
            connect_timeout,
            idle_timeout,
        }
    }

    /// Sends `request` to `endpoint` in the pool's `protocol`: over an idle
    /// HTTP/1 connection, or a new one when none is ready (a pooled
    /// connection that turns out closed before it took the request hands it
    /// back, and the next is tried, so a request is never lost to a stale
    /// connection); or over the endpoint's HTTP/2 connection.
    pub async fn send(
        &self,
        endpoint: &Arc<Endpoint>,
        mut request: Request<UpstreamBody>,
        protocol: &UpstreamProtocol,
    ) -> Result<(Response<Incoming>, Lent), UpstreamError> {
        if protocol.http2 {
            return self.send_multiplexed(endpoint, request, protocol).await;
        }
        let key =
            (!protocol.key.is_empty()).then(|| format!("{}|{}", protocol.key, endpoint.address));
        let pooled_as = key.as_deref().unwrap_or(&endpoint.address);
        while let Some(mut sender) = self.checkout(pooled_as) {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let endpoint = Arc::clone(endpoint);
                    let sender = Some(sender);
                    return Ok((
                        response,
                        Lent {
                            sender,
                            endpoint,
                            key,
                        },
                    ));
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(UpstreamError::Exchange(error.into_error())),
                },
            }
        }
        let mut sender = self.connect(endpoint, protocol.tls.as_ref()).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(UpstreamError::Exchange)?;
        let endpoint = Arc::clone(endpoint);
        let sender = Some(sender);
        Ok((
            response,
            Lent {
                sender,
                endpoint,
                key,
            },
        ))
    }

    /// Sends over the endpoint's HTTP/2 connection, opening it first when
    /// there is none or it has closed.
    async fn send_multiplexed(
        &self,
        endpoint: &Arc<Endpoint>,
        request: Request<UpstreamBody>,
        protocol: &UpstreamProtocol,
    ) -> Result<(Response<Incoming>, Lent), UpstreamError> {
        let key = format!("{}|{}", protocol.key, endpoint.address);
        let open = {
            let connections = self.multiplexed.lock().unwrap_or_else(|e| e.into_inner());
            connections.get(&key).filter(|s| !s.is_closed()).cloned()
        };
        let mut sender = match open {
            Some(sender) => sender,
            None => {
                let sender = self.connect_h2(endpoint, protocol.tls.as_ref()).await?;
                self.multiplexed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, sender.clone());
                sender
            }
        };
        // Waits while the endpoint's limit of concurrent streams is reached.
        sender.ready().await.map_err(UpstreamError::Exchange)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(UpstreamError::Exchange)?;
        let lent = Lent {
            sender: None,
            endpoint: Arc::clone(endpoint),
            key: None,
        };
        Ok((response, lent))
    }

    /// Puts a connection whose exchange ended cleanly back in the pool.
    pub fn give_back(&self, lent: Lent) {
        let Some(sender) = lent.sender else { return };
        if !sender.is_closed() {
            let key = lent.key.as_deref().unwrap_or(&lent.endpoint.address);
            self.idle.put(key, sender);
        }
    }

    /// Closes connections idle longer than the idle timeout or closed by the
    /// endpoint.
    pub fn prune(&self, now: Instant) {
        let fresh = |since: Instant| now.duration_since(since) < self.idle_timeout;
        self.idle
            .retain(|sender, since| !sender.is_closed() && fresh(since));
        self.multiplexed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, sender| !sender.is_closed());
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

    /// Opens a plain connection to `endpoint` within the connect timeout.
    pub async fn connect_raw(&self, endpoint: &Endpoint) -> Result<TcpStream, UpstreamError> {
        let stream = match tokio::time::timeout(self.connect_timeout, endpoint.connect()).await {
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

    /// A new HTTP/1 connection to `endpoint`, over TLS when `tls` is set.
    async fn connect(
        &self,
        endpoint: &Endpoint,
        tls: Option<&UpstreamTls>,
    ) -> Result<SendRequest<UpstreamBody>, UpstreamError> {
        let stream = self.open(endpoint, tls, b"http/1.1").await?;
        // One buffer per write, as on the client side (see `serve`).
        let (sender, connection) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Exchange)?;
        // With upgrades: a 101 hands the connection to a tunnel.
        drive(endpoint, connection.with_upgrades());
        Ok(sender)
    }

    /// A new HTTP/2 connection to `endpoint`: with prior knowledge, or over
    /// TLS with ALPN `h2`.
    async fn connect_h2(
        &self,
        endpoint: &Endpoint,
        tls: Option<&UpstreamTls>,
    ) -> Result<http2::SendRequest<UpstreamBody>, UpstreamError> {
        let stream = self.open(endpoint, tls, b"h2").await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Exchange)?;
        drive(endpoint, connection);
        Ok(sender)
    }

    /// A connection to `endpoint`, over TLS (agreeing on `alpn`) when `tls`
    /// is set.
    async fn open(
        &self,
        endpoint: &Endpoint,
        tls: Option<&UpstreamTls>,
        alpn: &[u8],
    ) -> Result<EndpointStream, UpstreamError> {
        let stream = self.connect_raw(endpoint).await?;
        Ok(match tls {
            None => Either::Left(stream),
            Some(tls) => Either::Right(self.handshake(endpoint, stream, tls, alpn).await?),
        })
    }

    /// The TLS handshake with `endpoint`, within the connect timeout, which
    /// must agree on `alpn`.
    async fn handshake(
        &self,
        endpoint: &Endpoint,
        stream: TcpStream,
        tls: &UpstreamTls,
        alpn: &[u8],
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, UpstreamError> {
        let handshake = super::tls::connect(stream, tls, endpoint.authority.as_str(), alpn);
        tokio::time::timeout(self.connect_timeout, handshake)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(self.connect_timeout))?
            .map_err(UpstreamError::Tls)
    }
}

/// A connection to an endpoint: plain, or TLS.
type EndpointStream = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

/// Drives a connection to `endpoint` on this worker, beside the requests
/// that use it.
fn drive(
    endpoint: &Endpoint,
    connection: impl Future<Output = hyper::Result<()>> + Send + 'static,
) {
    let address = endpoint.address.clone();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!("endpoint {address} connection ended: {error}");
        }
    });
}

/// How often an idle HTTP/2 connection to an endpoint is pinged, so a dead
/// one is found before a request is sent on it.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Whether an idle connection is still open: it has neither been closed by
/// the endpoint nor sent bytes nobody asked for. The read does not wait.
fn is_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock)
}
