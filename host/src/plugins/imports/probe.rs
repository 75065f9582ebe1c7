//! `switchyard:plugin/probe`: reaches only the endpoint under check, and
//! only until the check's deadline. Outside a health check there is no
//! endpoint under check, so every probe is refused. Both probes are async:
//! their wait yields the check's task to the runtime.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

use crate::engine::UpstreamProtocol;
use crate::plugins::bindings::probe::{Host, HttpRequest, HttpResponse, ProbeError};
use crate::plugins::state::{ProbeClient, ProbeTarget, StoreState};

/// Probe response bodies are cut here.
pub const MAX_PROBE_BODY: usize = 64 * 1024;

const NO_TARGET: &str = "no endpoint is under check";

fn target(state: &StoreState) -> Result<&ProbeTarget, ProbeError> {
    state
        .probe
        .as_ref()
        .ok_or_else(|| ProbeError::NotAllowed(NO_TARGET.to_string()))
}

/// The time a probe may take: its own timeout, capped by the check's deadline.
fn budget(target: &ProbeTarget, timeout_ms: u32) -> Result<Duration, ProbeError> {
    let left = target.deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ProbeError::Timeout);
    }
    Ok(left.min(Duration::from_millis(u64::from(timeout_ms.max(1)))))
}

fn classify(error: &(dyn std::error::Error + 'static)) -> ProbeError {
    let mut source = Some(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => ProbeError::Refused,
                std::io::ErrorKind::TimedOut => ProbeError::Timeout,
                _ => ProbeError::Reset,
            };
        }
        source = cause.source();
    }
    ProbeError::InvalidResponse(error.to_string())
}

fn build_request(
    target: &ProbeTarget,
    request: &HttpRequest,
) -> Result<http::Request<Empty<Bytes>>, ProbeError> {
    let method = match request.method.to_ascii_uppercase().as_str() {
        "GET" => http::Method::GET,
        "HEAD" => http::Method::HEAD,
        "OPTIONS" => http::Method::OPTIONS,
        other => {
            return Err(ProbeError::NotAllowed(format!(
                "method `{other}`: probes may use GET, HEAD or OPTIONS"
            )))
        }
    };
    if !request.path.starts_with('/') {
        return Err(ProbeError::NotAllowed(format!(
            "path `{}` must start with `/`",
            request.path
        )));
    }
    let uri: http::Uri = format!("http://{}{}", target.address, request.path)
        .parse()
        .map_err(|e| ProbeError::NotAllowed(format!("path `{}`: {e}", request.path)))?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in &request.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ProbeError::NotAllowed(format!("header name `{name}`")))?;
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "upgrade"
        ) {
            return Err(ProbeError::NotAllowed(format!(
                "header `{name}` is set by the host"
            )));
        }
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| ProbeError::NotAllowed(format!("value of header `{name}`")))?;
        builder = builder.header(name, value);
    }
    builder
        .body(Empty::new())
        .map_err(|e| ProbeError::NotAllowed(e.to_string()))
}

/// Sends a probe over a new connection, as the pool speaks to the
/// endpoint at `address`: over TLS, in HTTP/2, or both.
async fn dial(
    address: &str,
    protocol: &UpstreamProtocol,
    mut request: http::Request<Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, ProbeError> {
    use hyper_util::rt::TokioIo;
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| classify(&e))?;
    let _ = stream.set_nodelay(true);
    let alpn: &[u8] = if protocol.http2 { b"h2" } else { b"http/1.1" };
    let stream = match &protocol.tls {
        None => tokio_util::either::Either::Left(stream),
        Some(tls) => tokio_util::either::Either::Right(
            crate::proxy::tls::connect(stream, tls, address, alpn)
                .await
                .map_err(|e| ProbeError::InvalidResponse(format!("TLS: {e}")))?,
        ),
    };
    let exchange = |e: hyper::Error| classify(&e);
    if protocol.http2 {
        let scheme = if protocol.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = format!("{scheme}://{address}{path}")
            .parse()
            .map_err(|e| ProbeError::NotAllowed(format!("{e}")))?;
        *request.version_mut() = http::Version::HTTP_2;
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        .map_err(exchange)?;
        tokio::spawn(connection);
        sender.send_request(request).await.map_err(exchange)
    } else {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = path
            .parse()
            .map_err(|e| ProbeError::NotAllowed(format!("{e}")))?;
        if let Ok(host) = http::HeaderValue::from_str(address) {
            request
                .headers_mut()
                .entry(http::header::HOST)
                .or_insert(host);
        }
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(exchange)?;
        tokio::spawn(connection);
        sender.send_request(request).await.map_err(exchange)
    }
}

impl Host for StoreState {
    async fn http(&mut self, request: HttpRequest) -> Result<HttpResponse, ProbeError> {
        let target = target(self)?;
        let budget = budget(target, request.timeout_ms)?;
        let request = build_request(target, &request)?;
        let started = Instant::now();
        let exchange = async {
            let response = match &*target.client {
                ProbeClient::Pooled(client) => {
                    client.request(request).await.map_err(|e| classify(&e))?
                }
                ProbeClient::Dialed(protocol) => dial(&target.address, protocol, request).await?,
            };
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
                .collect();
            let mut body = Vec::new();
            let mut stream = response.into_body();
            while body.len() < MAX_PROBE_BODY {
                match stream.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            body.extend_from_slice(data);
                        }
                    }
                    Some(Err(error)) => return Err(classify(&error)),
                    None => break,
                }
            }
            body.truncate(MAX_PROBE_BODY);
            Ok(HttpResponse {
                status,
                headers,
                body,
                latency_us: started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32,
            })
        };
        tokio::time::timeout(budget, exchange)
            .await
            .unwrap_or(Err(ProbeError::Timeout))
    }

    async fn tcp_connect(&mut self, timeout_ms: u32) -> Result<u32, ProbeError> {
        let target = target(self)?;
        let budget = budget(target, timeout_ms)?;
        let started = Instant::now();
        let connect = tokio::net::TcpStream::connect(target.address.as_str());
        match tokio::time::timeout(budget, connect).await {
            Ok(Ok(_stream)) => Ok(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32),
            Ok(Err(error)) => Err(classify(&error)),
            Err(_) => Err(ProbeError::Timeout),
        }
    }
}
