//! The HTTP/1.1 reverse proxy: accepts connections, routes each request to a
//! pool, asks the pool for an endpoint, forwards over keep-alive connection
//! pools, and streams the answer back.

mod body;
pub mod broadcast;
mod framing;
mod grpc;
mod h1;
pub mod headers;
mod mirror;
mod screen;
pub mod tls;
mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

pub use body::{ClientBody, ClientFault, CutReport, ProxyBody, UpstreamBody};
pub use upstream::{UpstreamError, Upstreams};

use crate::config::ProxyConfig;
use crate::engine::{
    Decision, Endpoint, EndpointId, Failure, FailureKind, Limited, NotStarted, PathRewrite,
    PickRequest, Placement, Pool, RateLimit, Recovery, RequestInfo, Retry, RouteRequest,
    SharedTopology,
};
use crate::metrics::{Limit, Metrics, ProxyError, WorkerCounters};
use framing::{ClientLimits, Refusal};
use h1::ClientStream;
use screen::ClientIo;

/// The forwarding half of the proxy, shared by every connection.
#[derive(Debug)]
pub struct Proxy {
    topology: SharedTopology,
    upstreams: Arc<Upstreams>,
    request_timeout: Duration,
    fast_path: bool,
    limits: ClientLimits,
    metrics: Arc<Metrics>,
    worker: usize,
    /// Copies for routes' mirror pools in flight on this worker.
    mirrors_in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl Proxy {
    /// The proxy of worker `worker`, over the routes of `topology` as they
    /// stand at each request, with the timeouts and pool settings of
    /// `config`. Each worker has its own upstream connections and its own
    /// shard of `metrics`.
    pub fn new(
        config: &ProxyConfig,
        topology: SharedTopology,
        metrics: Arc<Metrics>,
        worker: usize,
    ) -> Self {
        let upstreams = Arc::new(Upstreams::new(
            Duration::from_millis(config.connect_timeout_ms),
            Duration::from_millis(config.idle_timeout_ms),
        ));
        Proxy {
            topology,
            upstreams,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            fast_path: config.fast_path,
            limits: ClientLimits::of(config),
            metrics,
            worker,
            mirrors_in_flight: Arc::default(),
        }
    }

    /// Serves one request end to end: route, pick, forward, and on a failed
    /// attempt ask the recovery policy (the route's own, else the pool's),
    /// within its retry budget and the request's deadline. Errors become short local responses.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client: &ClientInfo,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let grpc = grpc::is_grpc(request.headers());
        // The client's own deadline bounds the request too.
        let client_deadline = grpc
            .then(|| grpc::timeout(request.headers()))
            .flatten()
            .map(|timeout| started + timeout);
        let response = self
            .forward(request, client, started, client_deadline, grpc)
            .await;
        if grpc {
            grpc::local_answer_as_status(response)
        } else {
            response
        }
    }

    /// Serves one request to its end or to its deadline: its route's
    /// timeout or the proxy's, or the client's if that is sooner.
    async fn forward(
        &self,
        mut request: Request<Incoming>,
        client: &ClientInfo,
        started: Instant,
        client_deadline: Option<Instant>,
        grpc: bool,
    ) -> Response<ProxyBody> {
        self.counters().count_request();
        let host = request_host(&request);
        // Held for the whole exchange, as the pool is: a reload meanwhile
        // does not change where this request goes.
        let topology = self.topology.load_full();
        let route_request = RouteRequest {
            method: request.method().as_str(),
            host,
            path: request.uri().path(),
            query: request.uri().query(),
            fields: request.headers(),
        };
        let Some(route) = topology.routes.find(&route_request) else {
            return self.error(
                ProxyError::NoRoute,
                format!(
                    "no route for host `{}` and path `{}`",
                    host.unwrap_or("-"),
                    request.uri().path()
                ),
            );
        };
        let hash = route.hash(&route_request, client.hash);
        let deadline = started + route.request_timeout.unwrap_or(self.request_timeout);
        let deadline = client_deadline.map_or(deadline, |client| client.min(deadline));
        let rewrite = route.rewrite.as_deref();
        let pool = topology.request_pool(route, hash);
        let mirror = topology.mirror_pool(route);
        let class = route.class(|name| request.headers().get(name).map(|v| v.as_bytes()));
        self.counters().count_class(class);
        // A declared body over the route's limit is refused before the rate
        // is asked, as on the fast path.
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if route.max_body_bytes > 0 && declared.is_some_and(|length| length > route.max_body_bytes)
        {
            return self.refused(&Refusal::body_too_large(route.max_body_bytes));
        }
        if let Some(limit) = &route.rate_limit {
            let header =
                |name: &http::HeaderName| request.headers().get(name).map(|v| v.as_bytes());
            if let Err(limited) = limit.admit(started, client.address.ip(), header) {
                return self.rate_limited(limit, limited);
            }
        }
        if route.broadcast {
            return self
                .broadcast(request, client, route, pool, class, (started, deadline))
                .await;
        }
        // An HTTP/1.1 upgrade (WebSocket and the like): the `Upgrade` value
        // is passed on, and on a 101 both connections become one tunnel.
        // A WebSocket over HTTP/2 (extended CONNECT, RFC 8441) becomes the
        // HTTP/1.1 upgrade the endpoint knows.
        let extended_connect = request.method() == Method::CONNECT
            && request
                .extensions()
                .get::<hyper::ext::Protocol>()
                .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
        let upgrade = if extended_connect {
            Some(http::HeaderValue::from_static("websocket"))
        } else {
            headers::upgrade_asked(&request)
        };
        let mut client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        let bodiless = hyper::body::Body::is_end_stream(&body);
        if extended_connect {
            if pool.upstream().http2 {
                return self.error(
                    ProxyError::BadRequest,
                    format!(
                        "pool `{}` speaks HTTP/2 to its endpoints: a WebSocket is tunnelled only to HTTP/1.1 endpoints",
                        pool.name
                    ),
                );
            }
            headers::websocket_over_http1(&mut parts);
        }
        let body = ClientBody::new(body, route.max_body_bytes);
        let client_fault = body.fault();
        let protocol = pool.upstream();
        // gRPC's `te: trailers` is hop-by-hop, and passed on to an HTTP/2
        // endpoint, which may ask for it.
        let wants_trailers = protocol.http2 && headers::asks_for_trailers(&parts.headers);
        headers::remove_hop_by_hop(&mut parts.headers);
        if let (Some(upgrade), false) = (&upgrade, protocol.http2) {
            parts.headers.insert(http::header::UPGRADE, upgrade.clone());
            parts.headers.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("upgrade"),
            );
        }
        headers::add_forwarded(
            &mut parts.headers,
            client.address.ip(),
            client.forwarded_for.as_ref(),
            client.proto,
        );
        if let Some(rewrite) = rewrite {
            rewrite.request_headers.apply(&mut parts.headers);
            parts.uri = rewritten_uri(&parts.uri, &rewrite.path);
        }
        let recovery = route.recovery(pool);
        if let Some(recovery) = recovery {
            recovery.budget.deposit_at(started);
        }
        let mut body = match recovery {
            Some(recovery) if is_idempotent(&parts.method) => {
                replayable_body(body, declared, recovery.max_replay_body).await
            }
            _ => Ok(Either::Left(body)),
        };
        if let Some(refusal) = client_fault.refusal(route.max_body_bytes) {
            return self.refused(&refusal);
        }
        if extended_connect {
            // Its stream is the tunnel's: the upgrade request has no body.
            body = Ok(Either::Right(
                http_body_util::Full::new(bytes::Bytes::new()),
            ));
        }
        let replayable = matches!(body, Ok(Either::Right(_)));
        // A copy for the route's mirror, of a request whose body is in hand
        // (none, or read whole to be replayable), as sent to the primary.
        let mut mirror = mirror.and_then(|pool| {
            let body = match &body {
                Ok(Either::Right(full)) => full.clone(),
                _ if bodiless => http_body_util::Full::new(bytes::Bytes::new()),
                _ => return None,
            };
            let copy = mirror::MirrorCopy {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                headers: parts.headers.clone(),
                body,
                class,
                hash,
            };
            Some((Arc::clone(pool), copy))
        });
        let mut info = RequestInfo {
            priority: class,
            hash: Some(hash),
            ..RequestInfo::default()
        };
        let mut avoid = None;
        let mut same = None;
        let mut placement = Placement::NONE;
        loop {
            let picked = match same.take() {
                Some(endpoint) => endpoint,
                None => match pick_avoiding(
                    pool,
                    info,
                    crate::engine::RequestHeaders::Map(&mut parts.headers),
                    avoid,
                    &mut placement,
                ) {
                    Some(endpoint) => endpoint,
                    None => return self.no_endpoint(pool),
                },
            };
            let guard = match pool.try_start(&picked, class) {
                Some(guard) => guard,
                None => {
                    let headers = &mut parts.headers;
                    let placement = &mut placement;
                    let pick = || {
                        let headers = crate::engine::RequestHeaders::Map(headers);
                        pick_avoiding(pool, info, headers, avoid, placement)
                    };
                    match pool.wait_for_room(class, deadline, pick).await {
                        Ok(guard) => guard,
                        Err(NotStarted::NoEndpoint) => return self.no_endpoint(pool),
                        Err(NotStarted::Shed {
                            reason,
                            retry_after_s,
                        }) => return self.shed(pool, &reason, retry_after_s),
                    }
                }
            };
            let endpoint = Arc::clone(guard.endpoint());
            if info.attempt == 0 {
                pool.added_latency.observe(class, started.elapsed());
            }
            let attempt_body = match &mut body {
                Ok(Either::Right(full)) => Either::Right(full.clone()),
                streaming => match std::mem::replace(streaming, Err(())) {
                    Ok(body) => body,
                    Err(()) => {
                        let refusal = client_fault
                            .refusal(route.max_body_bytes)
                            .unwrap_or_else(ClientFault::broken_body);
                        return self.refused(&refusal);
                    }
                },
            };
            let headers = if replayable {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            let upstream = upstream_request(
                &parts,
                headers,
                attempt_body,
                &endpoint,
                protocol,
                wants_trailers,
            );
            let sent = Instant::now();
            let outcome = tokio::time::timeout_at(
                deadline.into(),
                self.upstreams.send(&endpoint, upstream, protocol),
            )
            .await;
            let elapsed = sent.elapsed().as_nanos() as u64;
            // The local answer for a failed attempt is made only if it is
            // sent: a retried attempt is not an error the client saw.
            let (kind, response, failed): (
                FailureKind,
                Option<UpstreamResponse>,
                Option<(ProxyError, String)>,
            ) = match outcome {
                Ok(Ok((mut response, connection))) => {
                    let status = response.status();
                    // A gRPC call that failed before any message says so in
                    // a trailers-only response.
                    let grpc_failure = grpc
                        .then(|| grpc::failing_status(response.headers()))
                        .flatten();
                    let failed = status.is_server_error() || grpc_failure.is_some();
                    pool.record_outcome(&endpoint, elapsed, !failed, &placement);
                    if status == StatusCode::SWITCHING_PROTOCOLS {
                        if let Some(client_side) = client_upgrade.take() {
                            // The endpoint's connection is the tunnel's now.
                            drop(connection);
                            return self.tunnel(client_side, response, guard, extended_connect);
                        }
                    }
                    let connection = (connection, Arc::clone(&self.upstreams));
                    if !failed && status != StatusCode::TOO_MANY_REQUESTS {
                        let took = started.elapsed();
                        pool.duration.observe(took);
                        if let Some(route) = &route.duration {
                            route.observe(took);
                        }
                        if let Some((pool, copy)) = mirror.take() {
                            self.mirror(pool, copy);
                        }
                        self.counters().count_status(status);
                        headers::remove_hop_by_hop(response.headers_mut());
                        if let Some(rewrite) = rewrite {
                            rewrite.response_headers.apply(response.headers_mut());
                        }
                        let cut = self.cut_report(pool, &endpoint);
                        let stall = self.limits.upstream_read_timeout;
                        return response.map(|body| {
                            ProxyBody::upstream(body, Some(guard), connection, Some(cut), stall)
                        });
                    }
                    let kind = match grpc_failure {
                        Some(code) => FailureKind::GrpcStatus(code),
                        None => FailureKind::Status(status.as_u16()),
                    };
                    (kind, Some((response, connection)), None)
                }
                Ok(Err(error)) => {
                    // The client's body broke off or ran over its limit:
                    // not the endpoint's doing.
                    if let Some(refusal) = client_fault.refusal(route.max_body_bytes) {
                        return self.refused(&refusal);
                    }
                    pool.record_outcome(&endpoint, elapsed, false, &placement);
                    if error.is_connect() {
                        pool.record_connect_failure(&endpoint, &error.to_string());
                    }
                    let (kind, error_kind, what) = classify(&error);
                    (
                        kind,
                        None,
                        Some((
                            error_kind,
                            format!("{what} endpoint {}: {error}", endpoint.address),
                        )),
                    )
                }
                Err(_elapsed) => {
                    pool.record_outcome(&endpoint, elapsed, false, &placement);
                    (
                        FailureKind::ResponseTimeout,
                        None,
                        Some((
                            ProxyError::Timeout,
                            format!(
                                "endpoint {} sent no response within the request's {} ms",
                                endpoint.address,
                                deadline.saturating_duration_since(started).as_millis()
                            ),
                        )),
                    )
                }
            };
            drop(guard);
            let give_up = |response: Option<(Response<Incoming>, _)>,
                           failed: Option<(ProxyError, String)>,
                           status: Option<u16>| {
                match (response, status) {
                    (_, Some(status)) => self.error_status(status, "the recovery policy gave up"),
                    (Some((mut response, connection)), None) => {
                        let took = started.elapsed();
                        pool.duration.observe(took);
                        if let Some(route) = &route.duration {
                            route.observe(took);
                        }
                        self.counters().count_status(response.status());
                        headers::remove_hop_by_hop(response.headers_mut());
                        if let Some(rewrite) = rewrite {
                            rewrite.response_headers.apply(response.headers_mut());
                        }
                        let cut = self.cut_report(pool, &endpoint);
                        let stall = self.limits.upstream_read_timeout;
                        response.map(|body| {
                            ProxyBody::upstream(body, None, connection, Some(cut), stall)
                        })
                    }
                    (None, None) => {
                        let (kind, reason) =
                            failed.unwrap_or((ProxyError::Upstream, "no response".into()));
                        self.error(kind, reason)
                    }
                }
            };
            let Some(recovery) = recovery else {
                return give_up(response, failed, None);
            };
            let failure = Failure {
                endpoint: endpoint.id,
                kind,
                request: info,
                method: parts.method.to_string(),
                replayable,
                elapsed: started.elapsed(),
            };
            let retry = match self.after_failure(pool, recovery, &failure, deadline) {
                NextStep::Retry(retry) => retry,
                NextStep::GiveUp(status) => return give_up(response, failed, status),
            };
            drop(response);
            if !retry.delay.is_zero() {
                tokio::time::sleep(retry.delay).await;
            }
            info.attempt += 1;
            if retry.same_endpoint {
                same = Some(endpoint);
            } else {
                avoid = Some(endpoint.id);
            }
        }
    }

    /// Answers an upgrade the endpoint accepted with its 101, and joins the
    /// two upgraded connections into one tunnel, both ways, until either
    /// side closes. The request stays in flight at the endpoint for the
    /// life of the tunnel.
    fn tunnel(
        &self,
        client_side: hyper::upgrade::OnUpgrade,
        mut response: Response<Incoming>,
        guard: crate::engine::InFlightGuard,
        extended_connect: bool,
    ) -> Response<ProxyBody> {
        self.counters().count_tunnel();
        let endpoint_side = hyper::upgrade::on(&mut response);
        let (mut head, _) = response.into_parts();
        let protocol = head.headers.get(http::header::UPGRADE).cloned();
        headers::remove_hop_by_hop(&mut head.headers);
        if extended_connect {
            // An HTTP/2 client's CONNECT succeeds with a 200 (RFC 8441 §5).
            head.status = StatusCode::OK;
            head.headers.remove(http::header::SEC_WEBSOCKET_ACCEPT);
        } else {
            if let Some(protocol) = protocol {
                head.headers.insert(http::header::UPGRADE, protocol);
            }
            head.headers.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("upgrade"),
            );
        }
        self.counters().count_status(head.status);
        tokio::spawn(async move {
            let (client, endpoint) = match tokio::try_join!(client_side, endpoint_side) {
                Ok(both) => both,
                Err(error) => {
                    tracing::debug!("an upgrade did not complete: {error}");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut endpoint = TokioIo::new(endpoint);
            if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut endpoint).await {
                tracing::debug!("a tunnel ended: {error}");
            }
            drop(guard);
        });
        Response::from_parts(head, ProxyBody::text(""))
    }

    /// Asks `recovery` (the route's own policy, or the pool's) about a
    /// failed attempt in `pool`, and holds its answer to what the host
    /// allows: only a replayable request is sent again, within
    /// `MAX_ATTEMPTS`, the request's deadline and the policy's retry budget. A connection the endpoint refused is retried at once
    /// on another endpoint, whatever delay the policy asked for: nothing
    /// reached the endpoint, so there is nothing to back off from (the retry
    /// still counts against the budget). Shared by both paths.
    fn after_failure(
        &self,
        pool: &Pool,
        recovery: &Recovery,
        failure: &Failure,
        deadline: Instant,
    ) -> NextStep {
        let mut retry = match recovery.policy.on_failure(failure, &pool.endpoints()) {
            Decision::Retry(retry) => retry,
            Decision::Eject { duration, retry } => {
                pool.eject(
                    failure.endpoint,
                    Some(duration),
                    "the recovery policy ejected it",
                );
                match retry {
                    Some(retry) => retry,
                    None => return NextStep::GiveUp(None),
                }
            }
            Decision::GiveUp(status) => return NextStep::GiveUp(status),
        };
        if failure.kind == FailureKind::ConnectRefused {
            retry = Retry {
                delay: Duration::ZERO,
                same_endpoint: false,
            };
        }
        if !failure.replayable
            || failure.request.attempt + 1 >= MAX_ATTEMPTS
            || Instant::now() + retry.delay >= deadline
            || !recovery.budget.try_withdraw()
        {
            return NextStep::GiveUp(None);
        }
        self.counters().count_retry();
        NextStep::Retry(retry)
    }

    /// Where a cut in this endpoint's response body is reported.
    fn cut_report(&self, pool: &Arc<Pool>, endpoint: &Arc<Endpoint>) -> CutReport {
        CutReport {
            pool: Arc::clone(pool),
            endpoint: Arc::clone(endpoint),
            metrics: Arc::clone(&self.metrics),
            worker: self.worker,
        }
    }

    fn counters(&self) -> &WorkerCounters {
        self.metrics.worker(self.worker)
    }

    fn error_status(&self, status: u16, reason: &str) -> Response<ProxyBody> {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        self.counters().count_status(status);
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header("x-switchyard-error", "recovery")
            .body(ProxyBody::text(format!("switchyard: {reason}\n")))
            .expect("valid local response")
    }

    /// The answer to a request the proxy refuses; the connection closes
    /// after it (an HTTP/2 stream just ends).
    fn refused(&self, refusal: &Refusal) -> Response<ProxyBody> {
        let counters = self.counters();
        let body = refusal.answer_body(counters);
        Response::builder()
            .status(refusal.status)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header("x-switchyard-error", refusal.code)
            .header(http::header::CONNECTION, "close")
            .body(ProxyBody::text(body))
            .expect("valid local response")
    }

    fn no_endpoint(&self, pool: &Pool) -> Response<ProxyBody> {
        self.error(
            ProxyError::NoEndpoint,
            format!("no endpoint available in pool `{}`", pool.name),
        )
    }

    /// The answer to a request the pool shed: 503 with `Retry-After`.
    fn shed(&self, pool: &Pool, reason: &str, retry_after_s: u32) -> Response<ProxyBody> {
        let mut response = self.error(ProxyError::Shed, format!("pool `{}` {reason}", pool.name));
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, retry_after_s.into());
        response
    }

    /// The 429 for a request its route's rate limit refused.
    fn rate_limited(&self, limit: &RateLimit, limited: Limited) -> Response<ProxyBody> {
        let mut response = self.error(ProxyError::RateLimited, rate_limited_reason(limit));
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from(limited.retry_after_secs()),
        );
        response
    }

    fn error(&self, kind: ProxyError, reason: String) -> Response<ProxyBody> {
        self.counters().count_error(kind);
        let status = kind.status();
        self.counters().count_status(status);
        tracing::debug!(status = status.as_u16(), "{reason}");
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header("x-switchyard-error", kind.code())
            .body(ProxyBody::text(format!("switchyard: {reason}\n")))
            .expect("valid local response")
    }
}

/// Why a request was answered 429, the same on both paths.
fn rate_limited_reason(limit: &RateLimit) -> String {
    format!(
        "over the route's rate limit ({} a second, burst {})",
        limit.per_second(),
        limit.burst()
    )
}

/// What the proxy knows of a client connection, worked out once per
/// connection rather than per request.
#[derive(Debug)]
pub struct ClientInfo {
    /// The peer's address.
    pub address: SocketAddr,
    /// Its `X-Forwarded-For` value.
    pub forwarded_for: Option<http::HeaderValue>,
    /// Its address as a balancing hash key.
    pub hash: u64,
    /// The scheme it spoke to the proxy, for `X-Forwarded-Proto`.
    pub proto: &'static str,
}

impl ClientInfo {
    /// The facts of a connection from `address`.
    pub fn new(address: SocketAddr) -> Self {
        ClientInfo {
            address,
            forwarded_for: headers::forwarded_for(address.ip()),
            hash: hash_client(address.ip()),
            proto: "http",
        }
    }

    /// The same, for a connection that came over TLS.
    pub fn over_tls(self) -> Self {
        ClientInfo {
            proto: "https",
            ..self
        }
    }
}

/// The request for an endpoint from the client's: in origin form with
/// `Host` for HTTP/1.1 (an HTTP/2 client's `:authority`, or the endpoint's
/// for an HTTP/1.0 client that sent none), or in absolute form without
/// `Host` for an HTTP/2 endpoint.
fn upstream_request(
    parts: &http::request::Parts,
    mut headers: http::HeaderMap,
    body: UpstreamBody,
    endpoint: &Endpoint,
    protocol: &crate::engine::UpstreamProtocol,
    wants_trailers: bool,
) -> Request<UpstreamBody> {
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    if protocol.http2 {
        *request.version_mut() = http::Version::HTTP_2;
        // `Host` becomes the authority; `remove` hands its value over.
        let host = headers.remove(http::header::HOST);
        let authority = host
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or(endpoint.authority.as_str());
        if wants_trailers {
            headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        }
        let scheme = if protocol.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = format!("{scheme}://{authority}{path}")
            .parse()
            .unwrap_or_else(|_| upstream_uri(&parts.uri));
    } else {
        // Endpoints are spoken to in HTTP/1.1 whatever the client spoke, so
        // an HTTP/1.0 client's requests share kept-alive connections too.
        *request.version_mut() = http::Version::HTTP_11;
        *request.uri_mut() = upstream_uri(&parts.uri);
        // Only a request without `Host` needs one made: an HTTP/2 client's
        // `:authority`, or for an HTTP/1.0 client, the endpoint's.
        if !headers.contains_key(http::header::HOST) {
            let authority = parts
                .uri
                .authority()
                .map_or(endpoint.authority.as_str(), |a| a.as_str());
            if let Ok(host) = http::HeaderValue::from_str(authority) {
                headers.insert(http::header::HOST, host);
            }
        }
    }
    *request.headers_mut() = headers;
    request
}

/// What the proxy does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NextStep {
    /// Send the request again.
    Retry(Retry),
    /// Answer the client: with the endpoint's response, or this status.
    GiveUp(Option<u16>),
}

/// An endpoint's response and the connection it came on.
type UpstreamResponse = (Response<Incoming>, upstream::PooledConnection);

/// Attempts per request at most, whatever the recovery policy says.
const MAX_ATTEMPTS: u32 = 8;

/// Methods that may be sent twice (RFC 9110 §9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Buffers a small body so the request can be sent again; a large or
/// unsized one stays streamed.
async fn replayable_body(
    body: ClientBody,
    declared: Option<u64>,
    limit: u64,
) -> Result<UpstreamBody, ()> {
    use http_body::Body as _;
    use http_body_util::BodyExt as _;
    if body.is_end_stream() {
        return Ok(Either::Right(
            http_body_util::Full::new(bytes::Bytes::new()),
        ));
    }
    match declared {
        Some(length) if length <= limit => match body.collect().await {
            Ok(collected) => Ok(Either::Right(http_body_util::Full::new(
                collected.to_bytes(),
            ))),
            Err(_) => Err(()),
        },
        _ => Ok(Either::Left(body)),
    }
}

/// Picks an endpoint, trying twice more for one other than `avoid` when
/// other endpoints are eligible. One request serves every try. During a
/// plugin rollout, `placement` is set to who placed the endpoint returned.
pub(crate) fn pick_avoiding(
    pool: &Pool,
    info: RequestInfo,
    headers: crate::engine::RequestHeaders<'_>,
    avoid: Option<EndpointId>,
    placement: &mut Placement,
) -> Option<std::sync::Arc<Endpoint>> {
    let mut request = PickRequest::new(info, headers);
    let mut picked = pool.pick(&mut request)?;
    if let Some(avoid) = avoid {
        if pool.endpoints().eligible.len() > 1 {
            for _ in 0..2 {
                if picked.id != avoid {
                    break;
                }
                picked = pool.pick(&mut request)?;
            }
            if picked.id == avoid {
                let set = pool.endpoints();
                let next = set.eligible.iter().copied().find(|id| *id != avoid)?;
                picked = set.get(next)?.clone();
                request.placement = Placement::NONE;
            }
        }
    }
    *placement = request.placement;
    Some(picked)
}

/// How a failed exchange maps to a failure kind and a local answer.
fn classify(error: &UpstreamError) -> (FailureKind, ProxyError, &'static str) {
    match error {
        UpstreamError::ConnectRefused(_) => (
            FailureKind::ConnectRefused,
            ProxyError::Connect,
            "cannot connect to",
        ),
        UpstreamError::Connect(_) | UpstreamError::ConnectTimeout(_) => (
            FailureKind::ConnectTimeout,
            ProxyError::Connect,
            "cannot connect to",
        ),
        UpstreamError::Exchange(_) | UpstreamError::Broken(_) => (
            FailureKind::Reset,
            ProxyError::Upstream,
            "connection failed with",
        ),
        UpstreamError::BadResponse(_) => (
            FailureKind::Reset,
            ProxyError::Upstream,
            "bad response from",
        ),
        UpstreamError::Tls(_) => (
            FailureKind::ConnectTimeout,
            ProxyError::Connect,
            "cannot connect to",
        ),
    }
}

/// The request's host without port: the `Host` header, or the URI's host.
/// Its case is kept: routes compare hosts case-insensitively.
pub fn request_host<B>(request: &Request<B>) -> Option<&str> {
    let raw = request
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host())?;
    Some(host_without_port(raw))
}

/// A host value without its port; an IPv6 literal without its brackets.
pub(crate) fn host_without_port(raw: &str) -> &str {
    match raw.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => raw.split(':').next().unwrap_or(raw),
    }
}

/// `uri` with its path rewritten by a route; unchanged when the route keeps
/// the path (or the result is not a valid target).
fn rewritten_uri(uri: &Uri, rewrite: &PathRewrite) -> Uri {
    if *rewrite == PathRewrite::Keep {
        return uri.clone();
    }
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut parts = uri.clone().into_parts();
    match rewrite.target(target).parse() {
        Ok(path_and_query) => parts.path_and_query = Some(path_and_query),
        Err(_) => return uri.clone(),
    }
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// The request target sent to the endpoint: origin-form (`/path?query`).
/// A target in absolute-form (`http://host/path`, as sent to forward
/// proxies) is cut down to its path and query; others pass unchanged.
pub fn upstream_uri(original: &Uri) -> Uri {
    if original.scheme().is_none() && original.authority().is_none() {
        return original.clone();
    }
    let path_and_query = original
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    Uri::from(path_and_query)
}

/// The client address as a hash key (splitmix64 finaliser over its bits).
fn hash_client(ip: IpAddr) -> u64 {
    let bits = match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let value = u128::from(v6);
            (value as u64) ^ ((value >> 64) as u64)
        }
    };
    let mut z = bits.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How often a worker closes upstream connections idle too long.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

async fn prune_idle(upstreams: Arc<Upstreams>) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        upstreams.prune(Instant::now());
    }
}

/// A socket the proxy accepts on, plain or terminating TLS.
pub struct Listener {
    /// The bound socket.
    pub tcp: TcpListener,
    /// The TLS terminator, on a TLS listener.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Accepts connections on every one of `listeners` until `shutdown`
/// completes, then stops accepting and waits up to `grace` for in-flight
/// requests to finish. `connections` holds a permit per open client
/// connection, over every listener and worker: with none free, the next
/// connection waits in the listen backlog.
pub async fn serve(
    listeners: Vec<Listener>,
    proxy: Arc<Proxy>,
    connections: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let pruning = tokio::spawn(prune_idle(Arc::clone(&proxy.upstreams)));
    // Every connection holds a receiver: `true` asks it to finish the request
    // in hand and close, and the sender's `closed()` is all of them gone.
    let (stopping, stop) = watch::channel(false);
    let (closing, closed) = watch::channel(false);
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            tokio::spawn(accept(
                listener,
                Arc::clone(&proxy),
                Arc::clone(&connections),
                stop.clone(),
                wait_until(closed.clone()),
            ))
        })
        .collect();
    drop(stop);
    shutdown.await;
    let _ = closing.send(true);
    for task in accepting {
        let _ = task.await;
    }
    pruning.abort();
    let _ = stopping.send(true);
    if tokio::time::timeout(grace, stopping.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            "shutdown grace of {} ms ran out with requests in flight",
            grace.as_millis()
        );
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

async fn wait_until(mut receiver: watch::Receiver<bool>) {
    let _ = receiver.wait_for(|done| *done).await;
}

/// Accepts connections on `listener` until `closed` completes; each
/// connection gets a clone of `stop`.
async fn accept(
    listener: Listener,
    proxy: Arc<Proxy>,
    connections: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    closed: impl Future<Output = ()>,
) {
    tokio::pin!(closed);
    loop {
        let permit = match Arc::clone(&connections).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                proxy.counters().count_limit(Limit::Connections);
                tokio::select! {
                    permit = Arc::clone(&connections).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_closed) => return,
                    },
                    () = &mut closed => return,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.tcp.accept() => accepted,
            () = &mut closed => return,
        };
        let (stream, address) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let proxy = Arc::clone(&proxy);
        let stop = stop.clone();
        let tls = listener.tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_client(proxy, stream, Arc::new(ClientInfo::new(address)), stop).await,
                // Boxed: a plain connection's task stays small.
                Some(acceptor) => Box::pin(serve_tls(proxy, acceptor, stream, address, stop)).await,
            }
            drop(permit);
        });
    }
}

/// Completes a TLS handshake (within `proxy.header_read_timeout_ms`) and
/// serves the connection in the protocol ALPN chose: HTTP/2 for `h2`,
/// HTTP/1 otherwise, on the fast path when it is on.
async fn serve_tls(
    proxy: Arc<Proxy>,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    address: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    use crate::metrics::Handshake;
    let handshake = tokio::time::timeout(proxy.limits.header_read_timeout, acceptor.accept(stream));
    let stream = match handshake.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            proxy.counters().count_handshake(Handshake::Failed);
            tracing::debug!("TLS handshake with {address} failed: {error}");
            return;
        }
        Err(_elapsed) => {
            proxy.counters().count_handshake(Handshake::Failed);
            tracing::debug!("TLS handshake with {address} timed out");
            return;
        }
    };
    let session = stream.get_ref().1;
    let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    proxy.counters().count_handshake(if resumed {
        Handshake::Resumed
    } else {
        Handshake::Full
    });
    let h2 = session.alpn_protocol() == Some(b"h2");
    let client = Arc::new(ClientInfo::new(address).over_tls());
    if h2 {
        Box::pin(serve_h2(proxy, stream, client, stop)).await;
    } else if proxy.fast_path {
        h1::serve_connection(proxy, stream, client, stop).await;
    } else {
        Box::pin(serve_h1_with_hyper(proxy, stream, client, stop)).await;
    }
}

/// The first bytes of every HTTP/2 connection (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether `bytes`, the first of a connection, are HTTP/2's preface:
/// `None` while too few have come to tell.
fn is_h2_preface(bytes: &[u8]) -> Option<bool> {
    let seen = bytes.len().min(H2_PREFACE.len());
    if bytes[..seen] != H2_PREFACE[..seen] {
        Some(false)
    } else if seen == H2_PREFACE.len() {
        Some(true)
    } else {
        None
    }
}

/// Serves a client connection in whichever protocol it speaks: HTTP/2 when
/// it opens with the HTTP/2 preface (prior knowledge, h2c), HTTP/1 on the
/// fast path, or through hyper when the fast path is off.
async fn serve_client<S: ClientStream>(
    proxy: Arc<Proxy>,
    mut stream: S,
    client: Arc<ClientInfo>,
    stop: watch::Receiver<bool>,
) {
    if proxy.fast_path {
        return h1::serve_connection(proxy, stream, client, stop).await;
    }
    let mut first = bytes::BytesMut::with_capacity(H2_PREFACE.len());
    let keepalive = proxy.limits.keepalive_timeout;
    let is_h2 = loop {
        use tokio::io::AsyncReadExt as _;
        match tokio::time::timeout(keepalive, stream.read_buf(&mut first)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_elapsed) => {
                proxy.counters().count_limit(Limit::KeepaliveTimeout);
                return;
            }
        }
        if let Some(is_h2) = is_h2_preface(&first) {
            break is_h2;
        }
    };
    let stream = h1::Rewind::new(first.freeze(), stream);
    if is_h2 {
        Box::pin(serve_h2(proxy, stream, client, stop)).await;
    } else {
        Box::pin(serve_h1_with_hyper(proxy, stream, client, stop)).await;
    }
}

/// Waits until the server asks connections to close (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Drives a hyper connection to its end; when `stop` turns `true`, asks it
/// to finish the exchanges in hand and close (`graceful`).
async fn until_stopped<C, E>(
    connection: C,
    stop: &mut watch::Receiver<bool>,
    graceful: fn(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(connection);
    tokio::select! {
        ended = connection.as_mut() => ended,
        () = stopped(stop) => {
            graceful(connection.as_mut());
            connection.await
        }
    }
}

/// The service hyper calls for each request of a connection.
fn proxy_service(
    proxy: Arc<Proxy>,
    client: Arc<ClientInfo>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send,
> + Clone {
    service_fn(move |request| {
        let proxy = Arc::clone(&proxy);
        let client = Arc::clone(&client);
        async move { Ok::<_, Infallible>(proxy.handle(request, &client).await) }
    })
}

/// Serves an HTTP/1 client connection through hyper, behind the screen
/// that holds its requests to the proxy's rules, until it closes, or until
/// `stop` turns `true` and the request in hand is answered.
async fn serve_h1_with_hyper<S: ClientStream>(
    proxy: Arc<Proxy>,
    io: S,
    client: Arc<ClientInfo>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = proxy.limits;
    let mut http = hyper::server::conn::http1::Builder::new();
    // Responses are written whole from one buffer: for the small heads and
    // bodies of most exchanges, one copy costs less than a vectored write.
    // hyper's head timer runs from the end of one exchange to the next
    // head: it is the keep-alive timeout (the screen times heads begun).
    // Half-close: the end of the stream the screen gives after a refused
    // request (or a client that shuts its side) lets hyper finish the
    // responses it owes before it closes.
    http.timer(TokioTimer::new())
        .keep_alive(true)
        .half_close(true)
        .writev(false)
        .max_buf_size((2 * limits.max_header_bytes).max(8192))
        .max_headers(limits.max_header_fields)
        .header_read_timeout(limits.keepalive_timeout);
    let service = proxy_service(Arc::clone(&proxy), client);
    let io = ClientIo::screened(io, Arc::clone(&proxy));
    let connection = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let ended = until_stopped(connection, &mut stop, |c| c.graceful_shutdown()).await;
    if let Err(error) = ended {
        if error.is_timeout() {
            proxy.counters().count_limit(Limit::KeepaliveTimeout);
        }
        tracing::debug!("client connection ended: {error}");
    }
}

/// Streams a client may open at once on one HTTP/2 connection (NGINX's
/// `http2_max_concurrent_streams` is 128; hyper's default 200).
const H2_MAX_STREAMS: u32 = 128;

/// Serves an HTTP/2 client connection through hyper until it closes, or
/// until `stop` turns `true` and the streams in hand are answered.
async fn serve_h2<S: ClientStream>(
    proxy: Arc<Proxy>,
    io: S,
    client: Arc<ClientInfo>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = proxy.limits;
    let mut http = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    // Extended CONNECT (RFC 8441): WebSockets over HTTP/2.
    http.timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(limits.max_header_bytes as u32)
        .keep_alive_interval(Some(limits.keepalive_timeout / 2))
        .keep_alive_timeout(limits.header_read_timeout);
    let service = proxy_service(Arc::clone(&proxy), client);
    let io = ClientIo::unscreened(io, Arc::clone(&proxy));
    let connection = http.serve_connection(TokioIo::new(io), service);
    let ended = until_stopped(connection, &mut stop, |c| c.graceful_shutdown()).await;
    if let Err(error) = ended {
        tracing::debug!("client HTTP/2 connection ended: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_taken_without_port() {
        let request = Request::builder()
            .uri("/x")
            .header("host", "Example.COM:8080")
            .body(())
            .unwrap();
        assert_eq!(request_host(&request), Some("Example.COM"));
        let request = Request::builder()
            .uri("/x")
            .header("host", "[::1]:80")
            .body(())
            .unwrap();
        assert_eq!(request_host(&request), Some("::1"));
    }

    #[test]
    fn upstream_uri_is_origin_form() {
        let uri = upstream_uri(&"/a/b?c=d".parse().unwrap());
        assert_eq!(uri.to_string(), "/a/b?c=d");
        let uri = upstream_uri(&"http://example.com:8080/a?b".parse().unwrap());
        assert_eq!(uri.to_string(), "/a?b");
        let uri = upstream_uri(&"http://example.com".parse().unwrap());
        assert_eq!(uri.to_string(), "/");
    }

    #[test]
    fn client_hash_is_stable_and_spreads() {
        let a = hash_client("10.0.0.1".parse().unwrap());
        assert_eq!(a, hash_client("10.0.0.1".parse().unwrap()));
        assert_ne!(a, hash_client("10.0.0.2".parse().unwrap()));
    }
}
