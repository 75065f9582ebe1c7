//! The response body the proxy sends: the endpoint's body streamed through
//! (holding the endpoint's in-flight count until it ends), or a short local
//! message.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use super::framing::Refusal;
use super::upstream::PooledConnection;
use crate::engine::{Endpoint, InFlightGuard, Pool};
use crate::metrics::{Limit, Malformed, Metrics};

/// Where a response cut off mid-body by its endpoint is reported: the
/// endpoint's failures (and so its outlier detection) and the proxy's
/// metrics.
#[derive(Debug)]
pub struct CutReport {
    /// The pool the endpoint belongs to.
    pub pool: Arc<Pool>,
    /// The endpoint that sent the response.
    pub endpoint: Arc<Endpoint>,
    /// The proxy's counters.
    pub metrics: Arc<Metrics>,
    /// The worker serving the request.
    pub worker: usize,
}

impl CutReport {
    /// Counts the cut against the endpoint and in the metrics.
    pub fn report(&self) {
        self.metrics.worker(self.worker).count_cut();
        self.pool.record_cut(&self.endpoint);
    }
}

/// A response body.
#[derive(Debug)]
pub enum ProxyBody {
    /// Streamed from the endpoint; the guard keeps the request counted as in
    /// flight until the last frame (or until the client goes away).
    Upstream {
        /// The endpoint's body.
        body: Incoming,
        /// Released at the end of the body.
        guard: Option<InFlightGuard>,
        /// The connection it came on, given back to the pool when the body
        /// has been read to its end (and closed if it never is).
        connection: Option<PooledConnection>,
        /// Told when the endpoint breaks the body off.
        cut: Option<CutReport>,
        /// Runs while the endpoint sends nothing; the body is cut when it
        /// ends.
        stall: Stall,
    },
    /// Made by the proxy itself.
    Local(Full<Bytes>),
}

impl ProxyBody {
    /// The endpoint's response body, streamed through.
    pub fn upstream(
        body: Incoming,
        guard: Option<InFlightGuard>,
        connection: PooledConnection,
        cut: Option<CutReport>,
        stall_after: Duration,
    ) -> Self {
        let mut connection = Some(connection);
        // hyper never polls a body that is already over (HEAD, 204, 304).
        if body.is_end_stream() {
            give_back(&mut connection);
        }
        ProxyBody::Upstream {
            body,
            guard,
            connection,
            cut,
            stall: Stall {
                after: stall_after,
                timer: None,
            },
        }
    }

    /// A local body with this text.
    pub fn text(text: impl Into<Bytes>) -> Self {
        ProxyBody::Local(Full::new(text.into()))
    }
}

/// The timer of an endpoint body's silence.
#[derive(Debug)]
pub struct Stall {
    after: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Upstream {
                body,
                guard,
                connection,
                cut,
                stall,
            } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                if polled.is_pending() {
                    let after = stall.after;
                    let timer = stall
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    guard.take();
                    connection.take();
                    if let Some(cut) = cut.take() {
                        cut.metrics
                            .worker(cut.worker)
                            .count_limit(Limit::UpstreamStall);
                        cut.report();
                    }
                    return Poll::Ready(Some(Err(
                        "the endpoint sent nothing of the body within proxy.upstream_read_timeout_ms"
                            .into(),
                    )));
                }
                stall.timer = None;
                match &polled {
                    Poll::Ready(None) => {
                        guard.take();
                        give_back(connection);
                    }
                    Poll::Ready(Some(Ok(_))) if body.is_end_stream() => {
                        guard.take();
                        give_back(connection);
                    }
                    Poll::Ready(Some(Err(_))) => {
                        guard.take();
                        connection.take();
                        if let Some(cut) = cut.take() {
                            cut.report();
                        }
                    }
                    _ => {}
                }
                polled.map_err(Into::into)
            }
            ProxyBody::Local(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { body, .. } => body.is_end_stream(),
            ProxyBody::Local(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { body, .. } => body.size_hint(),
            ProxyBody::Local(full) => full.size_hint(),
        }
    }
}

fn give_back(connection: &mut Option<PooledConnection>) {
    if let Some((lent, upstreams)) = connection.take() {
        upstreams.give_back(lent);
    }
}

/// The request body sent to an endpoint: the client's body streamed through
/// (`Left`; the request cannot be retried), or a copy kept so the request
/// can be sent again (`Right`; cloned for every attempt).
pub type UpstreamBody = http_body_util::Either<ClientBody, Full<Bytes>>;

/// An error of a body the proxy passes on.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client's request body on its way to an endpoint, held to the route's
/// `max_body_bytes`. When it fails — too large, malformed, or cut off by
/// the client — it says so through its [`ClientFault`], so the failed
/// exchange is answered 413 or 400 and not held against the endpoint.
#[derive(Debug)]
pub struct ClientBody {
    body: Incoming,
    /// 0: any size.
    limit: u64,
    received: u64,
    fault: ClientFault,
}

/// How a client's body failed, if it did; shared with the request's
/// handler.
#[derive(Debug, Clone, Default)]
pub struct ClientFault(Arc<AtomicU8>);

const FAULT_NONE: u8 = 0;
const FAULT_TOO_LARGE: u8 = 1;
const FAULT_BROKEN: u8 = 2;

impl ClientFault {
    /// The answer the client gets, if its body failed.
    pub(crate) fn refusal(&self, limit: u64) -> Option<Refusal> {
        match self.0.load(Ordering::Relaxed) {
            FAULT_TOO_LARGE => Some(Refusal::body_too_large(limit)),
            FAULT_BROKEN => Some(ClientFault::broken_body()),
            _ => None,
        }
    }

    /// The answer to a body that is malformed or ended early.
    pub(crate) fn broken_body() -> Refusal {
        Refusal::malformed(
            Malformed::BrokenBody,
            "the request body is malformed or ended before its end",
        )
    }
}

impl ClientBody {
    /// `body`, refused past `limit` bytes (0: any size).
    pub fn new(body: Incoming, limit: u64) -> Self {
        ClientBody {
            body,
            limit,
            received: 0,
            fault: ClientFault::default(),
        }
    }

    /// Where a failure of this body is told.
    pub fn fault(&self) -> ClientFault {
        self.fault.clone()
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.limit > 0 && this.received > this.limit {
                        this.fault.0.store(FAULT_TOO_LARGE, Ordering::Relaxed);
                        return Poll::Ready(Some(Err("the request body is over its limit".into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                if this.fault.0.load(Ordering::Relaxed) == FAULT_NONE {
                    this.fault.0.store(FAULT_BROKEN, Ordering::Relaxed);
                }
                Poll::Ready(Some(Err(error.into())))
            }
            other => other.map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
