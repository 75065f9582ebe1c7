//! Probes a health check uses to reach the endpoint under check, and nothing
//! else.

use std::fmt;

/// An HTTP/1.1 request to the endpoint under check.
///
/// ```
/// use switchyard_sdk::probe::HttpRequest;
/// let request = HttpRequest::get("/healthz").with_header("accept", "application/json");
/// assert_eq!(request.method, "GET");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method, such as `GET` or `HEAD`.
    pub method: String,
    /// Path and query, starting with `/`.
    pub path: String,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Give up after this many milliseconds (the host caps it at the check's timeout).
    pub timeout_ms: u32,
}

impl HttpRequest {
    /// The default probe timeout, in milliseconds.
    pub const DEFAULT_TIMEOUT_MS: u32 = 1_000;

    /// A `GET` of `path` with no extra headers and the default timeout.
    ///
    /// ```
    /// let request = switchyard_sdk::probe::HttpRequest::get("/ready");
    /// assert_eq!(request.path, "/ready");
    /// ```
    pub fn get(path: impl Into<String>) -> Self {
        HttpRequest {
            method: "GET".to_string(),
            path: path.into(),
            headers: Vec::new(),
            timeout_ms: Self::DEFAULT_TIMEOUT_MS,
        }
    }

    /// The same request with one more header.
    ///
    /// ```
    /// let request = switchyard_sdk::probe::HttpRequest::get("/").with_header("x-probe", "1");
    /// assert_eq!(request.headers.len(), 1);
    /// ```
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The endpoint's answer to an [`HttpRequest`].
///
/// ```
/// use switchyard_sdk::probe::HttpResponse;
/// let response = HttpResponse { status: 200, headers: vec![], body: b"ok".to_vec(), latency_us: 150 };
/// assert_eq!(response.body_text(), "ok");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: Vec<(String, String)>,
    /// The body, cut at 64 KiB.
    pub body: Vec<u8>,
    /// Time from sending the request to the end of the body, in µs.
    pub latency_us: u32,
}

impl HttpResponse {
    /// The body as text, with invalid UTF-8 replaced.
    ///
    /// ```
    /// let response = switchyard_sdk::probe::HttpResponse { body: b"up".to_vec(), ..Default::default() };
    /// assert_eq!(response.body_text(), "up");
    /// ```
    pub fn body_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

/// Why a probe got no answer.
///
/// ```
/// use switchyard_sdk::probe::ProbeError;
/// assert_eq!(ProbeError::Timeout.to_string(), "timed out");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProbeError {
    /// The connection was refused.
    Refused,
    /// No answer within the timeout.
    Timeout,
    /// The connection broke.
    Reset,
    /// The answer was not valid HTTP.
    InvalidResponse(String),
    /// The host would not send the request (bad method, path or header).
    NotAllowed(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Refused => f.write_str("connection refused"),
            ProbeError::Timeout => f.write_str("timed out"),
            ProbeError::Reset => f.write_str("connection reset"),
            ProbeError::InvalidResponse(why) => write!(f, "invalid response: {why}"),
            ProbeError::NotAllowed(why) => write!(f, "not allowed: {why}"),
        }
    }
}

impl std::error::Error for ProbeError {}

/// Sends one HTTP/1.1 request to the endpoint under check.
///
/// ```
/// use switchyard_sdk::{probe, testing::TestHost};
/// let test_host = TestHost::new();
/// test_host.on_http(|request| Ok(probe::HttpResponse { status: if request.path == "/up" { 200 } else { 404 }, ..Default::default() }));
/// assert_eq!(probe::http(&probe::HttpRequest::get("/up")).unwrap().status, 200);
/// ```
pub fn http(request: &HttpRequest) -> Result<HttpResponse, ProbeError> {
    #[cfg(all(target_arch = "wasm32", feature = "health-check"))]
    return crate::__private::raw_http(request);
    #[cfg(all(target_arch = "wasm32", not(feature = "health-check")))]
    return {
        let _ = request;
        Err(ProbeError::NotAllowed(
            "probes are for health checks".into(),
        ))
    };
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::native::http(request);
}

/// Opens and closes a TCP connection to the endpoint under check; the connect
/// time in microseconds.
///
/// ```
/// use switchyard_sdk::{probe, testing::TestHost};
/// let test_host = TestHost::new();
/// test_host.on_tcp_connect(|_timeout_ms| Err(probe::ProbeError::Refused));
/// assert_eq!(probe::tcp_connect(100), Err(probe::ProbeError::Refused));
/// ```
pub fn tcp_connect(timeout_ms: u32) -> Result<u32, ProbeError> {
    #[cfg(all(target_arch = "wasm32", feature = "health-check"))]
    return crate::__private::raw_tcp_connect(timeout_ms);
    #[cfg(all(target_arch = "wasm32", not(feature = "health-check")))]
    return {
        let _ = timeout_ms;
        Err(ProbeError::NotAllowed(
            "probes are for health checks".into(),
        ))
    };
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::native::tcp_connect(timeout_ms);
}
