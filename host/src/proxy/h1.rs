//! The HTTP/1.1 fast path.
//!
//! The common exchange — a request without a body or with a
//! `Content-Length` one, from an HTTP/1.1 client — is forwarded by parsing
//! both heads in place with
//! `httparse`, writing the rewritten head in one buffer, and copying body
//! bytes through, over raw keep-alive connections driven in the request's
//! own task. hyper's general machinery
//! (a state machine per side, a channel and a task between the request and
//! its upstream connection) costs more than the whole exchange needs.
//!
//! A pool with a recovery policy (or a route with its own) is served here too
//! when the request can be sent again from what is in hand: an idempotent
//! request without a body, or with one no larger than the policy's
//! `max_replay_body_bytes`, which is read
//! whole before the first attempt. Failed attempts are retried under the
//! same rules as on hyper's path (`Proxy::after_failure`).
//!
//! Anything else — a chunked request body, an upgrade, an expectation,
//! HTTP/1.0, a target that is not origin-form, a head that does not parse,
//! a request to a pool with retries that cannot be replayed — is
//! handed to hyper with the bytes read so far, and the connection stays with
//! hyper from then on. The decision is made before anything is sent, so
//! either path serves every request whole.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::framing::{check_request_head, content_length, Refusal, RequestBodyFraming};
use super::headers::is_hop_by_hop;
use super::mirror::MirrorCopy;
use super::upstream::UpstreamError;
use super::{classify, host_without_port, pick_avoiding, ClientInfo, NextStep, Proxy};
use crate::engine::{
    Endpoint, Failure, FailureKind, HeaderEdits, Histogram, Limited, NotStarted, Pool, Priority,
    RateLimit, Recovery, RequestHeaders, RequestInfo, Rewrite, RouteRequest,
};
use crate::metrics::{Limit, ProxyError};

/// Header fields per head that the fast path parses; with a larger
/// `proxy.max_header_fields`, a request with more goes to hyper.
const MAX_HEADERS: usize = 100;
/// A response head longer than this is a bad response.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Bytes asked of the socket per read.
const READ_SIZE: usize = 16 * 1024;
/// Pooled connections tried per request before a new one is opened.
const STALE_TRIES: usize = 4;

/// A client connection: plain TCP, or TLS over it.
pub(crate) trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ClientStream for S {}

/// Serves one client connection: on the fast path for as long as its
/// requests allow, then through hyper.
pub(super) async fn serve_connection<S: ClientStream>(
    proxy: Arc<Proxy>,
    mut client: S,
    info: Arc<ClientInfo>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = proxy.limits;
    let mut inbound = BytesMut::with_capacity(READ_SIZE);
    let mut scratch = Scratch::default();
    // When the head begun in `inbound` must be whole.
    let mut head_deadline: Option<Instant> = None;
    // Until the first bytes show it is not HTTP/2's preface (h2c with prior
    // knowledge), which goes to hyper's HTTP/2 server.
    let mut may_be_h2 = true;
    loop {
        if *shutdown.borrow() && inbound.is_empty() {
            return;
        }
        let parsed = match may_be_h2.then(|| super::is_h2_preface(&inbound)) {
            _ if inbound.is_empty() => Parsed::Partial,
            Some(None) => Parsed::Partial,
            Some(Some(true)) => {
                let replay = inbound.split().freeze();
                // Boxed, as hyper's paths are: the connection's future
                // stays the fast path's size.
                Box::pin(super::serve_h2(
                    proxy,
                    Rewind::new(replay, client),
                    info,
                    shutdown,
                ))
                .await;
                return;
            }
            Some(Some(false)) | None => {
                may_be_h2 = false;
                parse_request(&proxy, &info, &inbound, &mut scratch)
            }
        };
        let keep_open = match parsed {
            Parsed::Partial if inbound.len() <= limits.max_header_bytes => {
                let idle = inbound.is_empty();
                let deadline = if idle {
                    Instant::now() + limits.keepalive_timeout
                } else {
                    *head_deadline
                        .get_or_insert_with(|| Instant::now() + limits.header_read_timeout)
                };
                inbound.reserve(READ_SIZE);
                let read = tokio::select! {
                    read = tokio::time::timeout_at(deadline.into(), client.read_buf(&mut inbound)) => read,
                    // Between requests, shutting down closes the connection.
                    () = super::stopped(&mut shutdown), if idle => return,
                };
                match read {
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(_)) => continue,
                    Err(_elapsed) if idle => {
                        proxy.counters().count_limit(Limit::KeepaliveTimeout);
                        let _ = client.shutdown().await;
                        return;
                    }
                    Err(_elapsed) => {
                        let refusal = Refusal::limit(
                            Limit::HeaderTimeout,
                            format!(
                                "no whole request head within {} ms (proxy.header_read_timeout_ms)",
                                limits.header_read_timeout.as_millis()
                            ),
                        );
                        refuse(&proxy, &mut client, &refusal).await;
                        return;
                    }
                }
            }
            Parsed::Partial => {
                refuse(&proxy, &mut client, &Refusal::head_too_large(&limits)).await;
                return;
            }
            Parsed::Refused(refusal) => {
                refuse(&proxy, &mut client, &refusal).await;
                return;
            }
            // Not the fast path's request.
            Parsed::Fallback => {
                let replay = inbound.split().freeze();
                let rewound = Rewind::new(replay, client);
                Box::pin(super::serve_h1_with_hyper(proxy, rewound, info, shutdown)).await;
                return;
            }
            Parsed::Local(answer) => {
                head_deadline = None;
                inbound.advance(answer.head_len);
                let written = write_client(&proxy, &mut client, &scratch.out)
                    .await
                    .is_ok();
                written && !answer.close
            }
            Parsed::Forward(plan) => {
                head_deadline = None;
                inbound.advance(plan.head_len);
                let forwarded = forward(&proxy, &mut client, &mut inbound, plan, &mut scratch);
                match forwarded.await {
                    Ok(keep_open) => keep_open,
                    Err(error) => {
                        tracing::debug!("client {} exchange ended: {error}", info.address);
                        false
                    }
                }
            }
        };
        if !keep_open {
            let _ = client.shutdown().await;
            return;
        }
    }
}

/// Answers a request the proxy refuses, and closes the connection: nothing
/// after it on the connection is served.
async fn refuse<S: ClientStream>(proxy: &Proxy, client: &mut S, refusal: &Refusal) {
    let answer = refusal.answer(proxy.counters());
    if write_client(proxy, client, &answer).await.is_ok() {
        let _ = client.shutdown().await;
        linger(client).await;
    }
}

/// How long, and how many bytes, a refused client's further bytes are read
/// and dropped after the answer.
pub(super) const LINGER: Duration = Duration::from_secs(1);
pub(super) const LINGER_BYTES: usize = 1 << 20;

/// Reads and drops what the client still sends, for a short while: closing
/// with unread bytes would reset the connection, and a reset can reach the
/// client before it has read the answer (NGINX's lingering close).
async fn linger<S: ClientStream>(client: &mut S) {
    let deadline = tokio::time::Instant::now() + LINGER;
    // On the heap: kept in the connection's future, it would weigh on
    // every connection, not only the refused ones.
    let mut sink = vec![0u8; READ_SIZE];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, client.read(&mut sink)).await {
            Ok(Ok(read)) if read > 0 => drained += read,
            _ => return,
        }
    }
}

/// Writes to the client, giving up (and counting it) when the client takes
/// nothing for `proxy.client_write_timeout_ms`.
async fn write_client<S: ClientStream>(
    proxy: &Proxy,
    client: &mut S,
    bytes: &[u8],
) -> io::Result<()> {
    let timeout = proxy.limits.client_write_timeout;
    let mut written = 0;
    while written < bytes.len() {
        match tokio::time::timeout(timeout, client.write(&bytes[written..])).await {
            Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(Ok(count)) => written += count,
            Ok(Err(error)) => return Err(error),
            Err(_elapsed) => {
                proxy.counters().count_limit(Limit::ClientStall);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took nothing of its response within proxy.client_write_timeout_ms",
                ));
            }
        }
    }
    Ok(())
}

/// What parsing the buffered bytes decided.
enum Parsed {
    /// No whole head yet.
    Partial,
    /// The request is hyper's to serve.
    Fallback,
    /// Answered locally; the answer is in `Scratch::out`.
    Local(LocalAnswer),
    /// Refused: answered and the connection closed.
    Refused(Refusal),
    /// To be forwarded; its head for the endpoint is in `Scratch::out`.
    Forward(Plan),
}

struct LocalAnswer {
    head_len: usize,
    close: bool,
}

/// A request on its way to an endpoint.
struct Plan {
    /// Who placed `endpoint`, during a rollout of the pool's balancer.
    placement: crate::engine::Placement,
    head_len: usize,
    /// The client asked for the connection to close after this exchange.
    close: bool,
    /// A HEAD request: the response has no body whatever its headers say.
    head_method: bool,
    /// The request may be sent twice (RFC 9110 §9.2.2).
    idempotent: bool,
    /// A recovery policy retries failed attempts, and this request can be
    /// sent again: its body is read whole before the first attempt.
    replayable: bool,
    /// The request body's length.
    body_len: u64,
    pool: Arc<Pool>,
    endpoint: Arc<Endpoint>,
    /// The request's balancing hash key (its route's `hash_key`), for a
    /// retry's pick.
    hash: u64,
    /// The request's priority class, for a retry's pick.
    class: Priority,
    started: Instant,
    /// From `started` to the response head: the route's, or the proxy's.
    timeout: Duration,
    /// What decides failed attempts: the route's recovery policy, else
    /// the pool's; none when the route gives its requests one attempt.
    recovery: RecoveryOf,
    /// The route's rewrites, for the response head.
    rewrite: Option<Arc<Rewrite>>,
    /// What the route does once the response is through.
    after: After,
}

/// Whose recovery policy decides a request's failed attempts.
enum RecoveryOf {
    /// None: one attempt.
    None,
    /// The pool's, if it has one.
    Pool,
    /// The route's own.
    Route(Arc<Recovery>),
}

impl RecoveryOf {
    /// The policy, for a request to `pool`.
    fn get<'a>(&'a self, pool: &'a Pool) -> Option<&'a Recovery> {
        match self {
            RecoveryOf::None => None,
            RecoveryOf::Pool => pool.recovery(),
            RecoveryOf::Route(recovery) => Some(recovery),
        }
    }
}

/// What a route does once a request's response is through: a copy to its
/// mirror pool (when this request is sampled), and its duration counted
/// (a named route).
#[derive(Default)]
struct After {
    mirror: Option<Arc<Pool>>,
    duration: Option<Arc<Histogram>>,
}

/// Buffers kept for the life of a client connection.
#[derive(Default)]
struct Scratch {
    /// The request for the endpoint: its head, then as much of its body as
    /// goes with it (all of it for a replayable request).
    request: Vec<u8>,
    /// An answer for the client: the response head with the first body
    /// bytes, or a local answer.
    out: Vec<u8>,
    /// Bytes read from the endpoint.
    from_endpoint: BytesMut,
}

fn parse_request(
    proxy: &Proxy,
    info: &ClientInfo,
    inbound: &[u8],
    scratch: &mut Scratch,
) -> Parsed {
    if inbound.is_empty() {
        return Parsed::Partial;
    }
    let limits = &proxy.limits;
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let parsed_fields = limits.max_header_fields.min(MAX_HEADERS);
    let mut request = httparse::Request::new(&mut []);
    let head_len = match request.parse_with_uninit_headers(inbound, &mut fields[..parsed_fields]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) if limits.max_header_fields > MAX_HEADERS => {
            return Parsed::Fallback
        }
        Err(error) => return Parsed::Refused(Refusal::unparsable(error, limits)),
    };
    if head_len > limits.max_header_bytes {
        return Parsed::Refused(Refusal::head_too_large(limits));
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Parsed::Fallback;
    };
    let framing = match check_request_head(version, request.headers) {
        Ok(framing) => framing,
        Err(refusal) => return Parsed::Refused(refusal),
    };
    if version != 1 || method == "CONNECT" || !target.starts_with('/') {
        return Parsed::Fallback;
    }
    let RequestBodyFraming::Length(body_len) = framing else {
        // Chunked: hyper's path, behind the screen that checks its chunks.
        return Parsed::Fallback;
    };
    let Some(facts) = RequestFacts::of(request.headers) else {
        return Parsed::Fallback;
    };
    let (path, query) = split_target(target);
    let fields: &[httparse::Header<'_>] = request.headers;
    let route_request = RouteRequest {
        method,
        host: facts.host,
        path,
        query,
        fields: &fields,
    };
    let topology = proxy.topology.load();
    let route = topology.routes.find(&route_request);
    let hash = route.map_or(info.hash, |route| route.hash(&route_request, info.hash));
    let chosen = route.map(|route| topology.request_pool(route, hash));
    if let (Some(route), Some(pool)) = (route, chosen) {
        if route.max_body_bytes > 0 && body_len > route.max_body_bytes {
            return Parsed::Refused(Refusal::body_too_large(route.max_body_bytes));
        }
        // TLS or HTTP/2 to the endpoints, or a broadcast: hyper's path.
        if route.broadcast || !pool.upstream().is_plain_http1() {
            return Parsed::Fallback;
        }
    }
    let class = route.map_or(Priority::default(), |route| {
        route.class(|name| {
            request
                .headers
                .iter()
                .find(|header| header.name.eq_ignore_ascii_case(name.as_str()))
                .map(|header| header.value)
        })
    });
    let recovery_of = match route {
        Some(route) if !route.retries => RecoveryOf::None,
        Some(route) => route
            .recovery
            .clone()
            .map_or(RecoveryOf::Pool, RecoveryOf::Route),
        None => RecoveryOf::Pool,
    };
    let timeout = route
        .and_then(|route| route.request_timeout)
        .unwrap_or(proxy.request_timeout);
    let rewrite = route.and_then(|route| route.rewrite.clone());
    let after = route.map_or_else(After::default, |route| After {
        mirror: topology.mirror_pool(route).cloned(),
        duration: route.duration.clone(),
    });
    let rate_limit = route.and_then(|route| route.rate_limit.as_deref());
    let route = chosen;
    let idempotent = matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    );
    let recovery = route.and_then(|pool| recovery_of.get(pool));
    if let Some(recovery) = recovery {
        // Only what can be sent again is retried here; the rest is streamed
        // once by hyper's path, which consults the policy all the same.
        if !idempotent || facts.content_length > recovery.max_replay_body {
            return Parsed::Fallback;
        }
    }
    proxy.counters().count_request();
    let started = Instant::now();
    if let Some(recovery) = recovery {
        recovery.budget.deposit_at(started);
    }
    let Some(pool) = route else {
        let reason = format!(
            "no route for host `{}` and path `{path}`",
            facts.host.unwrap_or("-")
        );
        // An unread body would be taken for the next request: close instead.
        let close = facts.close || facts.content_length > 0;
        local_error(proxy, ProxyError::NoRoute, &reason, close, &mut scratch.out);
        return Parsed::Local(LocalAnswer { head_len, close });
    };
    proxy.counters().count_class(class);
    if let Some(limit) = rate_limit {
        let header = |name: &http::HeaderName| {
            let mut fields = request.headers.iter();
            let field = fields.find(|field| field.name.eq_ignore_ascii_case(name.as_str()));
            field.map(|field| field.value)
        };
        if let Err(limited) = limit.admit(started, info.address.ip(), header) {
            let close = facts.close || facts.content_length > 0;
            rate_limited(proxy, limit, limited, close, &mut scratch.out);
            return Parsed::Local(LocalAnswer { head_len, close });
        }
    }
    let request_info = RequestInfo {
        priority: class,
        hash: Some(hash),
        ..RequestInfo::default()
    };
    let headers = RequestHeaders::Raw(request.headers);
    let mut placement = crate::engine::Placement::NONE;
    let Some(endpoint) = pick_avoiding(pool, request_info, headers, None, &mut placement) else {
        let close = facts.close || facts.content_length > 0;
        no_endpoint(proxy, pool, close, &mut scratch.out);
        return Parsed::Local(LocalAnswer { head_len, close });
    };
    write_request_head(
        &mut scratch.request,
        method,
        target,
        request.headers,
        &facts,
        info,
        rewrite.as_deref(),
    );
    Parsed::Forward(Plan {
        placement,
        head_len,
        close: facts.close,
        head_method: method == "HEAD",
        idempotent,
        replayable: recovery.is_some(),
        body_len: facts.content_length,
        pool: Arc::clone(pool),
        endpoint,
        hash,
        class,
        started,
        timeout,
        recovery: recovery_of,
        rewrite,
        after,
    })
}

/// A request target's path and query (without `?`), a fragment left out.
fn split_target(target: &str) -> (&str, Option<&str>) {
    let target = target.split('#').next().unwrap_or(target);
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// What the fast path needs to know of a request's header fields.
struct RequestFacts<'a> {
    /// Without its port. Always there: a request without one goes to hyper.
    host: Option<&'a str>,
    close: bool,
    content_length: u64,
    forwarded_for: usize,
    forwarded_proto: bool,
}

impl<'a> RequestFacts<'a> {
    /// `None` when the request is not the fast path's: a chunked body or a
    /// length that is not one plain number, an upgrade, an expectation, no
    /// host or more than one, or a `Connection` field
    /// naming other fields (which could name `Host` or the forwarding
    /// fields; hyper's path removes them and then adds its own).
    fn of(fields: &'a [httparse::Header<'a>]) -> Option<Self> {
        let mut facts = RequestFacts {
            host: None,
            close: false,
            content_length: 0,
            forwarded_for: 0,
            forwarded_proto: false,
        };
        let mut hosts = 0;
        let mut lengths = 0;
        for field in fields {
            let name = field.name;
            if name.eq_ignore_ascii_case("host") {
                hosts += 1;
                facts.host = Some(host_without_port(std::str::from_utf8(field.value).ok()?));
            } else if name.eq_ignore_ascii_case("content-length") {
                lengths += 1;
                facts.content_length = content_length(field.value)?;
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                || name.eq_ignore_ascii_case("upgrade")
                || name.eq_ignore_ascii_case("expect")
            {
                return None;
            } else if name.eq_ignore_ascii_case("connection") {
                let mut named = ConnectionTokens::default();
                facts.close |= named.add(field.value)?;
                if !named.names.is_empty() {
                    return None;
                }
            } else if name.eq_ignore_ascii_case("x-forwarded-for") {
                facts.forwarded_for += 1;
            } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
                facts.forwarded_proto = true;
            }
        }
        (hosts == 1 && lengths <= 1).then_some(facts)
    }
}

/// The header names a `Connection` field lists (besides `close` and
/// `keep-alive`), which stop at this hop. Empty, and not allocated, for the
/// common `Connection` values.
#[derive(Default)]
struct ConnectionTokens<'a> {
    names: Vec<&'a str>,
}

impl<'a> ConnectionTokens<'a> {
    /// Adds the tokens of one `Connection` value; whether it says `close`.
    /// `None` for a value that is not text.
    fn add(&mut self, value: &'a [u8]) -> Option<bool> {
        let mut close = false;
        for token in std::str::from_utf8(value).ok()?.split(',').map(str::trim) {
            if token.eq_ignore_ascii_case("close") {
                close = true;
            } else if !token.is_empty() && !token.eq_ignore_ascii_case("keep-alive") {
                self.names.push(token);
            }
        }
        Some(close)
    }

    fn lists(&self, name: &str) -> bool {
        self.names
            .iter()
            .any(|listed| listed.eq_ignore_ascii_case(name))
    }
}

/// The endpoint's request head: the route's path rewrite, every field
/// but the hop-by-hop ones, the forwarding fields, and last the route's
/// header edits, which apply to the head as it would otherwise be sent.
fn write_request_head(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    fields: &[httparse::Header<'_>],
    facts: &RequestFacts<'_>,
    info: &ClientInfo,
    rewrite: Option<&Rewrite>,
) {
    let edits = rewrite.map(|rewrite| &rewrite.request_headers);
    let dropped = |name: &str| edits.is_some_and(|edits| edits.drops(name));
    let target = match rewrite {
        Some(rewrite) => rewrite.path.target(target),
        None => std::borrow::Cow::Borrowed(target),
    };
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut forwarded_for_written = false;
    for field in fields {
        let name = field.name;
        if is_hop_by_hop(name) || dropped(name) {
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            // Every value the client sent, in order, then the client.
            if !forwarded_for_written {
                forwarded_for_written = true;
                out.extend_from_slice(b"x-forwarded-for: ");
                for (index, other) in fields
                    .iter()
                    .filter(|f| f.name.eq_ignore_ascii_case("x-forwarded-for"))
                    .enumerate()
                {
                    if index > 0 {
                        out.extend_from_slice(b", ");
                    }
                    out.extend_from_slice(other.value);
                }
                if let Some(client) = &info.forwarded_for {
                    out.extend_from_slice(b", ");
                    out.extend_from_slice(client.as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
            continue;
        }
        push_field(out, name.as_bytes(), field.value);
    }
    if facts.forwarded_for == 0 && !dropped("x-forwarded-for") {
        if let Some(value) = &info.forwarded_for {
            push_field(out, b"x-forwarded-for", value.as_bytes());
        }
    }
    if !facts.forwarded_proto && !dropped("x-forwarded-proto") {
        push_field(out, b"x-forwarded-proto", info.proto.as_bytes());
    }
    push_added(out, edits);
    out.extend_from_slice(b"\r\n");
}

/// The fields a route adds.
fn push_added(out: &mut Vec<u8>, edits: Option<&HeaderEdits>) {
    for (name, value) in edits.map_or(&[][..], |edits| &edits.add) {
        push_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes a local error answer into `out`, as [`Proxy::error`] builds it.
/// `close`: the connection closes after it, and the head says so.
fn local_error(proxy: &Proxy, kind: ProxyError, reason: &str, close: bool, out: &mut Vec<u8>) {
    proxy.counters().count_error(kind);
    local_answer(proxy, kind.status(), kind.code(), reason, close, out);
}

/// Writes the answer for a pool without an eligible endpoint.
fn no_endpoint(proxy: &Proxy, pool: &Pool, close: bool, out: &mut Vec<u8>) {
    let reason = format!("no endpoint available in pool `{}`", pool.name);
    local_error(proxy, ProxyError::NoEndpoint, &reason, close, out);
}

/// Writes the answer for a request the pool did not admit: no endpoint,
/// or shed (503 with `Retry-After`).
fn not_admitted(
    proxy: &Proxy,
    pool: &Pool,
    not_started: &NotStarted,
    close: bool,
    out: &mut Vec<u8>,
) {
    match not_started {
        NotStarted::NoEndpoint => no_endpoint(proxy, pool, close, out),
        NotStarted::Shed {
            reason,
            retry_after_s,
        } => {
            let reason = format!("pool `{}` {reason}", pool.name);
            local_error(proxy, ProxyError::Shed, &reason, close, out);
            add_retry_after(out, u64::from(*retry_after_s));
        }
    }
}

/// Writes the 429 for a request its route's rate limit refused.
fn rate_limited(
    proxy: &Proxy,
    limit: &RateLimit,
    limited: Limited,
    close: bool,
    out: &mut Vec<u8>,
) {
    let reason = super::rate_limited_reason(limit);
    local_error(proxy, ProxyError::RateLimited, &reason, close, out);
    add_retry_after(out, limited.retry_after_secs());
}

/// Adds `Retry-After` to the local answer in `out`, after its status line.
fn add_retry_after(out: &mut Vec<u8>, seconds: u64) {
    let at = out.iter().position(|&b| b == b'\n').map_or(0, |at| at + 1);
    let field = format!("retry-after: {seconds}\r\n");
    out.splice(at..at, field.into_bytes());
}

/// Writes a local answer with this status and `x-switchyard-error` code.
fn local_answer(
    proxy: &Proxy,
    status: http::StatusCode,
    code: &str,
    reason: &str,
    close: bool,
    out: &mut Vec<u8>,
) {
    proxy.counters().count_status(status);
    tracing::debug!(status = status.as_u16(), "{reason}");
    let body = format!("switchyard: {reason}\n");
    out.clear();
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\nx-switchyard-error: {}\r\ncontent-length: {}\r\n{}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            code,
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        )
        .as_bytes(),
    );
    out.extend_from_slice(body.as_bytes());
}

/// How an endpoint's response body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body: a HEAD request, 204 or 304.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked, passed through as it comes and followed to its last chunk.
    Chunked,
    /// Until the endpoint closes; the client connection closes after it.
    UntilClose,
}

/// The parts of an endpoint's response head the exchange acts on.
struct ResponseHead {
    status: http::StatusCode,
    head_len: usize,
    framing: Framing,
    /// The endpoint keeps the connection open after this response.
    reusable: bool,
}

/// Forwards a planned request and its response, retrying failed attempts
/// of a replayable request as the pool's recovery policy and the host's
/// limits allow. `Ok(keep_open)` says whether the client connection can
/// take another request.
async fn forward<S: ClientStream>(
    proxy: &Proxy,
    client: &mut S,
    inbound: &mut BytesMut,
    mut plan: Plan,
    scratch: &mut Scratch,
) -> io::Result<bool> {
    let deadline = plan.started + plan.timeout;
    let mut body = RequestBody {
        client,
        inbound,
        left: plan.body_len,
    };
    // The body bytes already read go in the same write as the head; a
    // replayable request's whole body is read now, so every attempt has it.
    body.take_buffered(&mut scratch.request);
    if plan.replayable && body.left > 0 {
        match tokio::time::timeout_at(deadline.into(), body.read_rest(&mut scratch.request)).await {
            Ok(read) => read?,
            Err(_elapsed) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not send its body within the request timeout",
                ))
            }
        }
    }
    let pool = &plan.pool;
    let mut info = RequestInfo {
        priority: plan.class,
        hash: Some(plan.hash),
        ..RequestInfo::default()
    };
    let mut avoid = None;
    let (mut endpoint_conn, head, guard) = loop {
        let guard = match pool.try_start(&plan.endpoint, plan.class) {
            Some(guard) => guard,
            None => {
                let request = &scratch.request;
                let placement = &mut plan.placement;
                let pick = || repick(pool, info, request, avoid, placement);
                match pool.wait_for_room(plan.class, deadline, pick).await {
                    Ok(guard) => guard,
                    Err(not_started) => {
                        let close = plan.close || body.left > 0;
                        not_admitted(proxy, pool, &not_started, close, &mut scratch.out);
                        write_client(proxy, body.client, &scratch.out).await?;
                        return Ok(!close);
                    }
                }
            }
        };
        if !Arc::ptr_eq(guard.endpoint(), &plan.endpoint) {
            plan.endpoint = Arc::clone(guard.endpoint());
        }
        let sent = Instant::now();
        if info.attempt == 0 {
            pool.added_latency
                .observe(plan.class, sent.saturating_duration_since(plan.started));
        }
        let exchanged = tokio::time::timeout_at(
            deadline.into(),
            exchange_head(proxy, &plan, scratch, &mut body),
        )
        .await;
        let elapsed = sent.elapsed().as_nanos() as u64;
        // A body not read to its end leaves the connection unusable.
        let close = plan.close || body.left > 0;
        // The endpoint's answer, or the local one made only if it is sent:
        // a retried attempt is not an error the client saw.
        let (kind, answer): (_, Result<_, (ProxyError, String)>) = match exchanged {
            Ok(Ok((conn, head))) => {
                let failed = head.status.is_server_error();
                pool.record_outcome(&plan.endpoint, elapsed, !failed, &plan.placement);
                if !plan.replayable
                    || !(failed || head.status == http::StatusCode::TOO_MANY_REQUESTS)
                {
                    break (conn, head, guard);
                }
                (FailureKind::Status(head.status.as_u16()), Ok((conn, head)))
            }
            // Not the endpoint's doing: nothing to record against it.
            Ok(Err(ExchangeError::Client(error))) => return Err(error),
            Ok(Err(ExchangeError::Endpoint(error))) => {
                pool.record_outcome(&plan.endpoint, elapsed, false, &plan.placement);
                if error.is_connect() {
                    pool.record_connect_failure(&plan.endpoint, &error.to_string());
                }
                let (kind, error_kind, what) = classify(&error);
                let reason = format!("{what} endpoint {}: {error}", plan.endpoint.address);
                (kind, Err((error_kind, reason)))
            }
            Err(_elapsed) => {
                pool.record_outcome(&plan.endpoint, elapsed, false, &plan.placement);
                let reason = format!(
                    "endpoint {} sent no response within {} ms",
                    plan.endpoint.address,
                    plan.timeout.as_millis()
                );
                (
                    FailureKind::ResponseTimeout,
                    Err((ProxyError::Timeout, reason)),
                )
            }
        };
        let next = match plan.recovery.get(pool) {
            Some(recovery) => {
                let failure = Failure {
                    endpoint: plan.endpoint.id,
                    kind,
                    request: info,
                    method: request_method(&scratch.request).to_string(),
                    replayable: plan.replayable,
                    elapsed: plan.started.elapsed(),
                };
                proxy.after_failure(pool, recovery, &failure, deadline)
            }
            None => NextStep::GiveUp(None),
        };
        match (next, answer) {
            // The endpoint's own answer goes to the client.
            (NextStep::GiveUp(None), Ok((conn, head))) => break (conn, head, guard),
            (NextStep::GiveUp(None), Err((kind, reason))) => {
                local_error(proxy, kind, &reason, close, &mut scratch.out);
                write_client(proxy, body.client, &scratch.out).await?;
                return Ok(!close);
            }
            (NextStep::GiveUp(Some(status)), _) => {
                let status =
                    http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
                let reason = "the recovery policy gave up";
                local_answer(proxy, status, "recovery", reason, close, &mut scratch.out);
                write_client(proxy, body.client, &scratch.out).await?;
                return Ok(!close);
            }
            (NextStep::Retry(retry), answer) => {
                // A response not read to its end: its connection is closed.
                drop(answer);
                drop(guard);
                if !retry.delay.is_zero() {
                    tokio::time::sleep(retry.delay).await;
                }
                info.attempt += 1;
                if !retry.same_endpoint {
                    avoid = Some(plan.endpoint.id);
                    match repick(pool, info, &scratch.request, avoid, &mut plan.placement) {
                        Some(next) => plan.endpoint = next,
                        None => {
                            no_endpoint(proxy, pool, close, &mut scratch.out);
                            write_client(proxy, body.client, &scratch.out).await?;
                            return Ok(!close);
                        }
                    }
                }
            }
        }
    };
    let took = plan.started.elapsed();
    pool.duration.observe(took);
    if let Some(route) = &plan.after.duration {
        route.observe(took);
    }
    proxy.counters().count_status(head.status);
    proxy.counters().count_fast_path();
    let client = body.client;
    let client_close = plan.close || head.framing == Framing::UntilClose;

    // The client's head (written while parsing) and as much of the body as
    // has arrived, in one write.
    let Scratch {
        out, from_endpoint, ..
    } = scratch;
    from_endpoint.advance(head.head_len);
    let mut tracker = BodyTracker::new(head.framing);
    let mut complete = tracker.take(from_endpoint, out)?;
    write_client(proxy, client, out).await?;
    let mut clean = from_endpoint.is_empty();
    while !complete {
        from_endpoint.clear();
        from_endpoint.reserve(READ_SIZE);
        let stall = proxy.limits.upstream_read_timeout;
        let read = match tokio::time::timeout(stall, endpoint_conn.read_buf(from_endpoint)).await {
            Err(_elapsed) => {
                proxy.counters().count_limit(Limit::UpstreamStall);
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the endpoint sent nothing of the body within proxy.upstream_read_timeout_ms",
                ))
            }
            Ok(read) => read,
        };
        let read = match read {
            Ok(0) if head.framing == Framing::UntilClose => break,
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the endpoint closed the connection in the middle of a body",
            )),
            Ok(read) => Ok(read),
            Err(error) => Err(error),
        };
        if let Err(error) = read {
            // The head has reached the client: nothing can be retried.
            proxy.counters().count_cut();
            pool.record_cut(&plan.endpoint);
            return Err(error);
        }
        out.clear();
        complete = match tracker.take(from_endpoint, out) {
            Ok(complete) => complete,
            Err(error) => {
                proxy.counters().count_cut();
                pool.record_cut(&plan.endpoint);
                return Err(error);
            }
        };
        clean = from_endpoint.is_empty();
        write_client(proxy, client, out).await?;
    }
    drop(guard);
    if head.reusable && clean && head.framing != Framing::UntilClose {
        proxy
            .upstreams
            .give_back_raw(&plan.endpoint.address, endpoint_conn);
    }
    // Copied, as on hyper's path, when the primary served it; and only a
    // request whose whole body is in hand (none, or read whole to be
    // replayable).
    let served =
        !head.status.is_server_error() && head.status != http::StatusCode::TOO_MANY_REQUESTS;
    if let Some(mirror) = plan.after.mirror.take() {
        if served && (plan.body_len == 0 || plan.replayable) {
            if let Some(copy) = MirrorCopy::of_written(&scratch.request, plan.class, plan.hash) {
                proxy.mirror(mirror, copy);
            }
        }
    }
    Ok(!client_close)
}

/// The method of a request head written by `write_request_head`.
fn request_method(request: &[u8]) -> &str {
    let end = request.iter().position(|b| *b == b' ').unwrap_or(0);
    std::str::from_utf8(&request[..end]).unwrap_or("")
}

/// Picks the endpoint for a retry, or for a request woken in the queue:
/// other than `avoid` when another is eligible. The balancer sees the
/// request's fields as sent upstream (the client's head is no longer in
/// hand), parsed again only on this path.
fn repick(
    pool: &Pool,
    info: RequestInfo,
    request: &[u8],
    avoid: Option<crate::engine::EndpointId>,
    placement: &mut crate::engine::Placement,
) -> Option<Arc<Endpoint>> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let count = match parsed.parse(request) {
        Ok(_) => parsed.headers.len(),
        Err(_) => 0,
    };
    pick_avoiding(
        pool,
        info,
        RequestHeaders::Raw(&fields[..count]),
        avoid,
        placement,
    )
}

/// The client's side of a request body on its way through.
struct RequestBody<'a, S> {
    client: &'a mut S,
    /// Bytes read from the client and not yet used: the body's start, and
    /// perhaps the requests pipelined behind it.
    inbound: &'a mut BytesMut,
    /// Body bytes not yet taken from the client.
    left: u64,
}

impl<S: ClientStream> RequestBody<'_, S> {
    /// Moves the body bytes already read onto `request`.
    fn take_buffered(&mut self, request: &mut Vec<u8>) {
        let take = (self.inbound.len() as u64).min(self.left) as usize;
        request.extend_from_slice(&self.inbound[..take]);
        self.inbound.advance(take);
        self.left -= take as u64;
    }

    /// Reads the rest of the body from the client onto `request`.
    async fn read_rest(&mut self, request: &mut Vec<u8>) -> io::Result<()> {
        while self.left > 0 {
            self.inbound.reserve(READ_SIZE);
            if self.client.read_buf(self.inbound).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed the connection in the middle of a body",
                ));
            }
            self.take_buffered(request);
        }
        Ok(())
    }
}

enum ExchangeError {
    /// The client went away in the middle of its body.
    Client(io::Error),
    Endpoint(UpstreamError),
}

/// Sends the request in `scratch.request` to `endpoint`, with the rest of
/// the body copied from the client as it comes, and reads the endpoint's
/// response head into `scratch.from_endpoint`. A pooled connection found
/// closed before any of the response arrived is set aside and the request
/// sent again, when it may be sent twice and the whole of it is still in
/// hand.
async fn exchange_head<S: ClientStream>(
    proxy: &Proxy,
    plan: &Plan,
    scratch: &mut Scratch,
    body: &mut RequestBody<'_, S>,
) -> Result<(TcpStream, ResponseHead), ExchangeError> {
    let resendable = plan.idempotent && body.left == 0;
    let address = plan.endpoint.address.as_str();
    let mut stale_tries = 0;
    loop {
        let pooled = if stale_tries < STALE_TRIES {
            proxy.upstreams.checkout_raw(address)
        } else {
            None
        };
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => proxy
                .upstreams
                .connect_raw(&plan.endpoint)
                .await
                .map_err(ExchangeError::Endpoint)?,
        };
        scratch.from_endpoint.clear();
        let broken = |error| ExchangeError::Endpoint(UpstreamError::Broken(error));
        match send_and_read_head(&mut conn, plan, scratch, body).await {
            Ok(head) => return Ok((conn, head)),
            Err(HeadError::Closed(_)) if reused && resendable => stale_tries += 1,
            Err(HeadError::Closed(error)) | Err(HeadError::Io(error)) => return Err(broken(error)),
            Err(HeadError::Client(error)) => return Err(ExchangeError::Client(error)),
            Err(HeadError::Invalid(reason)) => {
                return Err(ExchangeError::Endpoint(UpstreamError::BadResponse(reason)))
            }
        }
    }
}

enum HeadError {
    /// Closed or reset before any byte of a response.
    Closed(io::Error),
    Io(io::Error),
    Invalid(&'static str),
    /// Reading the body from the client failed.
    Client(io::Error),
}

async fn send_and_read_head<S: ClientStream>(
    conn: &mut TcpStream,
    plan: &Plan,
    scratch: &mut Scratch,
    body: &mut RequestBody<'_, S>,
) -> Result<ResponseHead, HeadError> {
    if let Err(error) = conn.write_all(&scratch.request).await {
        return Err(HeadError::Closed(error));
    }
    while body.left > 0 {
        if body.inbound.is_empty() {
            body.inbound.reserve(READ_SIZE);
            match body.client.read_buf(body.inbound).await {
                Ok(0) => {
                    return Err(HeadError::Client(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed the connection in the middle of a body",
                    )))
                }
                Ok(_) => {}
                Err(error) => return Err(HeadError::Client(error)),
            }
        }
        let take = (body.inbound.len() as u64).min(body.left) as usize;
        conn.write_all(&body.inbound[..take])
            .await
            .map_err(HeadError::Io)?;
        body.inbound.advance(take);
        body.left -= take as u64;
    }
    let buffer = &mut scratch.from_endpoint;
    loop {
        buffer.reserve(READ_SIZE);
        match conn.read_buf(buffer).await {
            Ok(0) if buffer.is_empty() => {
                return Err(HeadError::Closed(io::ErrorKind::UnexpectedEof.into()))
            }
            Ok(0) => {
                return Err(HeadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the endpoint closed the connection within a response head",
                )))
            }
            Ok(_) => {}
            Err(error) if buffer.is_empty() => return Err(HeadError::Closed(error)),
            Err(error) => return Err(HeadError::Io(error)),
        }
        loop {
            let edits = plan.rewrite.as_deref().map(|r| &r.response_headers);
            match parse_response(
                buffer,
                plan.head_method,
                plan.close,
                edits,
                &mut scratch.out,
            )? {
                None => break,
                // 1xx answers are dropped, as hyper's client does.
                Some(Informational(len)) => buffer.advance(len),
                Some(Final(head)) => return Ok(head),
            }
            if buffer.is_empty() {
                break;
            }
        }
        if buffer.len() > MAX_RESPONSE_HEAD {
            return Err(HeadError::Invalid("the response head is too long"));
        }
    }
}

enum ParsedResponse {
    Informational(usize),
    Final(ResponseHead),
}
use ParsedResponse::{Final, Informational};

/// Parses the endpoint's response head at the front of `buffer`. For a final
/// response, the client's head is written into `out` (`client_close`: the
/// client asked to close after it).
fn parse_response(
    buffer: &[u8],
    head_method: bool,
    client_close: bool,
    edits: Option<&HeaderEdits>,
    out: &mut Vec<u8>,
) -> Result<Option<ParsedResponse>, HeadError> {
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buffer,
        &mut fields,
    );
    let head_len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::Invalid(
                "the response has too many header fields",
            ))
        }
        Err(_) => return Err(HeadError::Invalid("the response head does not parse")),
    };
    let code = response.code.unwrap_or(0);
    let status = http::StatusCode::from_u16(code)
        .map_err(|_| HeadError::Invalid("the response status is out of range"))?;
    if status == http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(HeadError::Invalid(
            "switching protocols, which was not asked for",
        ));
    }
    if status.is_informational() {
        return Ok(Some(Informational(head_len)));
    }
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = response.version != Some(1);
    for field in response.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = content_length(field.value).ok_or(HeadError::Invalid(
                "the response has an invalid content-length",
            ))?;
            if length.is_some_and(|seen| seen != value) {
                return Err(HeadError::Invalid(
                    "the response has conflicting content-lengths",
                ));
            }
            length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding decides the framing.
            let last = field.value.rsplit(|b| *b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            let value = std::str::from_utf8(field.value).unwrap_or("");
            if value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
            {
                close = true;
            }
        }
    }
    let framing = if head_method
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(_), Some(_)) => {
                return Err(HeadError::Invalid(
                    "the response has both transfer-encoding and content-length",
                ))
            }
            (Some(true), None) => Framing::Chunked,
            (Some(false), None) | (None, None) => Framing::UntilClose,
            (None, Some(length)) => Framing::Length(length),
        }
    };
    let close_client = client_close || framing == Framing::UntilClose;
    write_response_head(
        out,
        code,
        response.reason,
        response.headers,
        close_client,
        edits,
    );
    Ok(Some(Final(ResponseHead {
        status,
        head_len,
        framing,
        reusable: !close,
    })))
}

/// Writes the client's response head from the endpoint's: the status line
/// as HTTP/1.1, every field but the hop-by-hop ones, with the route's
/// edits.
fn write_response_head(
    out: &mut Vec<u8>,
    code: u16,
    reason: Option<&str>,
    fields: &[httparse::Header<'_>],
    close: bool,
    edits: Option<&HeaderEdits>,
) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut digits = [b'0'; 3];
    digits[0] += (code / 100 % 10) as u8;
    digits[1] += (code / 10 % 10) as u8;
    digits[2] += (code % 10) as u8;
    out.extend_from_slice(&digits);
    out.push(b' ');
    out.extend_from_slice(reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut named = ConnectionTokens::default();
    for field in fields {
        if field.name.eq_ignore_ascii_case("connection") {
            // A value that is not text names nothing.
            let _ = named.add(field.value);
        }
    }
    for field in fields {
        let name = field.name;
        // The body passes through framed as it came, so the fields that
        // frame it stay whatever `Connection` names.
        let frames = name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding");
        let dropped = edits.is_some_and(|edits| edits.drops(name));
        if !is_hop_by_hop(name) && (frames || !named.lists(name)) && !dropped {
            push_field(out, name.as_bytes(), field.value);
        }
    }
    push_added(out, edits);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Follows a response body through the bytes read from the endpoint.
#[derive(Debug)]
struct BodyTracker {
    framing: Framing,
    remaining: u64,
    chunked: ChunkedTracker,
}

impl BodyTracker {
    fn new(framing: Framing) -> Self {
        BodyTracker {
            framing,
            remaining: match framing {
                Framing::Length(length) => length,
                _ => 0,
            },
            chunked: ChunkedTracker::default(),
        }
    }

    /// Moves the body bytes at the front of `from` to `to`; whether the body
    /// is complete. Bytes past the body's end stay in `from`.
    fn take(&mut self, from: &mut BytesMut, to: &mut Vec<u8>) -> io::Result<bool> {
        let (take, complete) = match self.framing {
            Framing::Empty => (0, true),
            Framing::Length(_) => {
                let take = (from.len() as u64).min(self.remaining) as usize;
                self.remaining -= take as u64;
                (take, self.remaining == 0)
            }
            Framing::Chunked => match self.chunked.feed(from)? {
                Some(end) => (end, true),
                None => (from.len(), false),
            },
            Framing::UntilClose => (from.len(), false),
        };
        to.extend_from_slice(&from[..take]);
        from.advance(take);
        Ok(complete)
    }
}

/// Finds the end of a chunked body (RFC 9112 §7.1) in the bytes as they
/// pass, without copying them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkedTracker {
    /// In a chunk-size line; its digits so far.
    #[default]
    SizeStart,
    Size(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    TrailerLine,
    TrailerLineLf,
    EndLf,
    Done,
}

impl ChunkedTracker {
    /// Feeds the next bytes; `Some(n)` when the body ends after `n` of them.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> io::Result<Option<usize>> {
        use ChunkedTracker::*;
        let invalid = || io::Error::new(io::ErrorKind::InvalidData, "invalid chunked body");
        let mut at = 0;
        while at < bytes.len() {
            if let Data(left) = *self {
                let skip = (bytes.len() - at).min(usize::try_from(left).unwrap_or(usize::MAX));
                at += skip;
                let left = left - skip as u64;
                *self = if left == 0 { DataCr } else { Data(left) };
                continue;
            }
            let byte = bytes[at];
            at += 1;
            *self = match (*self, byte) {
                (SizeStart, b) if b.is_ascii_hexdigit() => Size(hex(b)),
                (Size(size), b) if b.is_ascii_hexdigit() => Size(
                    size.checked_mul(16)
                        .map(|s| s | hex(b))
                        .filter(|s| *s < 1 << 60)
                        .ok_or_else(invalid)?,
                ),
                (Size(size), b';' | b' ' | b'\t') => Extension(size),
                (Size(size), b'\r') | (Extension(size), b'\r') => SizeLf(size),
                (Extension(size), b) if b != b'\n' => Extension(size),
                (SizeLf(0), b'\n') => TrailerStart,
                (SizeLf(size), b'\n') => Data(size),
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => SizeStart,
                (TrailerStart, b'\r') => EndLf,
                (TrailerStart | TrailerLine, b) if b != b'\r' && b != b'\n' => TrailerLine,
                (TrailerLine, b'\r') => TrailerLineLf,
                (TrailerLineLf, b'\n') => TrailerStart,
                (EndLf, b'\n') => {
                    *self = Done;
                    return Ok(Some(at));
                }
                _ => return Err(invalid()),
            };
        }
        Ok(None)
    }
}

fn hex(digit: u8) -> u64 {
    (digit as char).to_digit(16).unwrap_or(0) as u64
}

/// A client connection handed to hyper: the bytes already read are read
/// again first.
#[derive(Debug)]
pub(super) struct Rewind<S> {
    replay: Bytes,
    stream: S,
}

impl<S> Rewind<S> {
    pub(super) fn new(replay: Bytes, stream: S) -> Self {
        Rewind { replay, stream }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.replay.is_empty() {
            let take = self.replay.len().min(buf.remaining());
            buf.put_slice(&self.replay[..take]);
            self.replay.advance(take);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\nNEXT";

    #[test]
    fn chunked_end_is_found_however_the_bytes_are_split() {
        let end = BODY.len() - 4;
        for split in 0..BODY.len() {
            let mut tracker = ChunkedTracker::default();
            let first = tracker.feed(&BODY[..split]).unwrap();
            let found = match first {
                Some(at) => at,
                None => split + tracker.feed(&BODY[split..]).unwrap().expect("the end"),
            };
            assert_eq!(found, end, "split at {split}");
        }
    }

    #[test]
    fn chunked_body_without_trailers_ends_after_the_empty_line() {
        let mut tracker = ChunkedTracker::default();
        assert_eq!(tracker.feed(b"3\r\nabc\r\n0\r\n\r\n").unwrap(), Some(13));
    }

    #[test]
    fn malformed_chunked_bodies_are_refused() {
        for bad in [
            &b"g\r\n"[..],
            b"3\r\nabcX",
            b"3\n",
            b"\r\n",
            b"fffffffffffffffff\r\n",
        ] {
            let mut tracker = ChunkedTracker::default();
            assert!(
                tracker.feed(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let framing = |head: &str, head_method: bool| match parse_response(
            head.as_bytes(),
            head_method,
            false,
            None,
            &mut Vec::new(),
        ) {
            Ok(Some(Final(head))) => Ok((head.framing, head.reusable)),
            Ok(_) => Err("not final"),
            Err(HeadError::Invalid(reason)) => Err(reason),
            Err(_) => Err("io"),
        };
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false),
            Ok((Framing::Length(5), true))
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true),
            Ok((Framing::Empty, true))
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
                false
            ),
            Ok((Framing::Chunked, true))
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n", false),
            Ok((Framing::UntilClose, false))
        );
        assert_eq!(
            framing("HTTP/1.0 204 No Content\r\n\r\n", false),
            Ok((Framing::Empty, false))
        );
        assert!(framing(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            false
        )
        .is_err());
        assert!(framing(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            false
        )
        .is_err());
        assert!(matches!(
            parse_response(
                b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
                false,
                false,
                None,
                &mut Vec::new()
            ),
            Ok(Some(Informational(_)))
        ));
    }

    #[test]
    fn response_head_drops_hop_by_hop_fields_and_those_connection_names() {
        let mut out = Vec::new();
        let head = b"HTTP/1.1 200 Fine\r\nConnection: keep-alive, x-private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\ncontent-length: 2\r\nx-kept: yes\r\n\r\n";
        let parsed = parse_response(head, false, true, None, &mut out);
        assert!(matches!(parsed, Ok(Some(Final(_)))));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 Fine\r\ncontent-length: 2\r\nx-kept: yes\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn a_route_s_edits_replace_and_remove_fields_in_both_heads() {
        let edits = HeaderEdits {
            add: vec![(
                http::HeaderName::from_static("x-kept"),
                http::HeaderValue::from_static("added"),
            )],
            remove: vec![http::HeaderName::from_static("server")],
        };
        let mut out = Vec::new();
        let head =
            b"HTTP/1.1 200 OK\r\nServer: up\r\nX-Kept: 1\r\nX-Kept: 2\r\ncontent-length: 0\r\n\r\n";
        let parsed = parse_response(head, false, false, Some(&edits), &mut out);
        assert!(matches!(parsed, Ok(Some(Final(_)))));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-kept: added\r\n\r\n"
        );

        let rewrite = Rewrite {
            request_headers: HeaderEdits {
                add: vec![(
                    http::HeaderName::from_static("x-forwarded-proto"),
                    http::HeaderValue::from_static("https"),
                )],
                remove: vec![http::HeaderName::from_static("x-secret")],
            },
            path: crate::engine::PathRewrite::Strip("/api".into()),
            ..Rewrite::default()
        };
        let fields = [
            httparse::Header {
                name: "Host",
                value: b"a.test",
            },
            httparse::Header {
                name: "X-Secret",
                value: b"s",
            },
        ];
        let facts = RequestFacts::of(&fields).unwrap();
        let info = ClientInfo::new("10.0.0.1:5000".parse().unwrap());
        let mut out = Vec::new();
        write_request_head(
            &mut out,
            "GET",
            "/api/x?q=1",
            &fields,
            &facts,
            &info,
            Some(&rewrite),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /x?q=1 HTTP/1.1\r\nHost: a.test\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: https\r\n\r\n"
        );
    }

    #[test]
    fn chunked_bodies_odd_lengths_upgrades_or_two_hosts_are_not_the_fast_paths() {
        let facts = |fields: &[(&'static str, &'static [u8])]| {
            let fields: Vec<httparse::Header<'static>> = fields
                .iter()
                .map(|(name, value)| httparse::Header { name, value })
                .collect();
            let fields: &'static [httparse::Header<'static>] = Box::leak(fields.into_boxed_slice());
            RequestFacts::of(fields).map(|f| (f.host, f.close, f.content_length))
        };
        assert_eq!(
            facts(&[("Host", b"a.example:80")]),
            Some((Some("a.example"), false, 0))
        );
        assert_eq!(
            facts(&[("host", b"a"), ("connection", b"close")]),
            Some((Some("a"), true, 0))
        );
        assert_eq!(
            facts(&[("host", b"a"), ("content-length", b" 3 ")]),
            Some((Some("a"), false, 3))
        );
        for odd in [&b"+3"[..], b"3,3", b"", b"-1", b"99999999999999999999999"] {
            assert_eq!(facts(&[("host", b"a"), ("content-length", odd)]), None);
        }
        assert_eq!(
            facts(&[
                ("host", b"a"),
                ("content-length", b"3"),
                ("content-length", b"3")
            ]),
            None
        );
        assert_eq!(
            facts(&[("host", b"a"), ("transfer-encoding", b"chunked")]),
            None
        );
        assert_eq!(facts(&[("host", b"a"), ("upgrade", b"websocket")]), None);
        assert_eq!(facts(&[("host", b"a"), ("expect", b"100-continue")]), None);
        assert_eq!(facts(&[("host", b"a"), ("host", b"b")]), None);
        assert_eq!(facts(&[]), None);
    }
}
