//! RFC 9112's rules for a request head, shared by both HTTP/1 paths: the
//! fast path checks each head it parses, and the screen in front of hyper
//! (`screen.rs`) checks the heads of the connections hyper serves. A head
//! that breaks them is answered 400 (or 431, 408) by the proxy and never
//! forwarded, so no endpoint behind can read it differently.

use std::time::Duration;

use crate::config::ProxyConfig;
use crate::metrics::{Limit, Malformed, WorkerCounters};

/// What the proxy holds clients to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientLimits {
    /// Request line and fields, in bytes.
    pub max_header_bytes: usize,
    /// Header fields per request.
    pub max_header_fields: usize,
    /// From the first byte of a head to its end.
    pub header_read_timeout: Duration,
    /// Between requests.
    pub keepalive_timeout: Duration,
    /// Between two reads of a response body from an endpoint.
    pub upstream_read_timeout: Duration,
    /// For one write to a client to make progress.
    pub client_write_timeout: Duration,
}

impl ClientLimits {
    pub(crate) fn of(config: &ProxyConfig) -> Self {
        ClientLimits {
            max_header_bytes: config.max_header_bytes,
            max_header_fields: config.max_header_fields,
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            keepalive_timeout: Duration::from_millis(config.keepalive_timeout_ms),
            upstream_read_timeout: Duration::from_millis(config.upstream_read_timeout_ms),
            client_write_timeout: Duration::from_millis(config.client_write_timeout_ms),
        }
    }
}

/// How a request's body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestBodyFraming {
    /// `Content-Length` bytes (0: none).
    Length(u64),
    /// Chunked.
    Chunked,
}

/// A request the proxy answers itself, and closes the connection after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: http::StatusCode,
    /// The `x-switchyard-error` code.
    pub code: &'static str,
    pub reason: String,
    /// What the metrics count it as.
    pub counted: Counted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    Limit(Limit),
    Malformed(Malformed),
}

impl Refusal {
    pub(crate) fn malformed(reason: Malformed, text: impl Into<String>) -> Self {
        Refusal {
            status: http::StatusCode::BAD_REQUEST,
            code: "bad_request",
            reason: text.into(),
            counted: Counted::Malformed(reason),
        }
    }

    pub(crate) fn limit(limit: Limit, text: impl Into<String>) -> Self {
        let status = match limit {
            Limit::HeaderBytes | Limit::HeaderFields => {
                http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Limit::HeaderTimeout => http::StatusCode::REQUEST_TIMEOUT,
            Limit::BodyBytes => http::StatusCode::PAYLOAD_TOO_LARGE,
            _ => http::StatusCode::SERVICE_UNAVAILABLE,
        };
        Refusal {
            status,
            code: limit.label(),
            reason: text.into(),
            counted: Counted::Limit(limit),
        }
    }

    /// A head over `max_header_bytes`.
    pub(crate) fn head_too_large(limits: &ClientLimits) -> Self {
        Refusal::limit(
            Limit::HeaderBytes,
            format!(
                "the request head is larger than {} bytes (proxy.max_header_bytes)",
                limits.max_header_bytes
            ),
        )
    }

    /// A body over the route's `max_body_bytes`.
    pub(crate) fn body_too_large(limit: u64) -> Self {
        Refusal::limit(
            Limit::BodyBytes,
            format!("the request body is larger than {limit} bytes (max_body_bytes)"),
        )
    }

    /// A head that `httparse` refused.
    pub(crate) fn unparsable(error: httparse::Error, limits: &ClientLimits) -> Self {
        match error {
            httparse::Error::TooManyHeaders => Refusal::limit(
                Limit::HeaderFields,
                format!(
                    "the request has more than {} header fields (proxy.max_header_fields)",
                    limits.max_header_fields
                ),
            ),
            other => Refusal::malformed(
                Malformed::Head,
                format!("the request head is malformed: {other}"),
            ),
        }
    }

    /// Counts it; the text of its answer.
    pub(crate) fn answer_body(&self, counters: &WorkerCounters) -> String {
        match self.counted {
            Counted::Limit(limit) => counters.count_limit(limit),
            Counted::Malformed(reason) => counters.count_malformed(reason),
        }
        counters.count_status(self.status);
        tracing::debug!(status = self.status.as_u16(), "{}", self.reason);
        format!("switchyard: {}\n", self.reason)
    }

    /// Counts it, and writes the whole answer, with `connection: close`.
    pub(crate) fn answer(&self, counters: &WorkerCounters) -> Vec<u8> {
        let body = self.answer_body(counters);
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\nx-switchyard-error: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            self.code,
            body.len(),
        )
        .into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// Checks a parsed request head against RFC 9112's framing rules (§3.2,
/// §6.1, §6.3): exactly one `Host` on HTTP/1.1 (at most one on 1.0), a
/// `Content-Length` that is one number, no `Content-Length` beside a
/// `Transfer-Encoding`, and a `Transfer-Encoding` only on HTTP/1.1 and
/// ending in `chunked`. The body's framing when they hold.
pub(crate) fn check_request_head(
    version: u8,
    fields: &[httparse::Header<'_>],
) -> Result<RequestBodyFraming, Refusal> {
    let mut hosts = 0;
    let mut length: Option<u64> = None;
    let mut chunked: Option<bool> = None;
    for field in fields {
        let name = field.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            let value = content_length_list(field.value).ok_or_else(|| {
                Refusal::malformed(
                    Malformed::BadLength,
                    "the request's content-length is not a number",
                )
            })?;
            if length.is_some_and(|seen| seen != value) {
                return Err(Refusal::malformed(
                    Malformed::BadLength,
                    "the request has conflicting content-lengths",
                ));
            }
            length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if version == 0 {
                return Err(Refusal::malformed(
                    Malformed::BadTransferCoding,
                    "an HTTP/1.0 request cannot have a transfer-encoding",
                ));
            }
            // Only the last coding of the last field decides the framing.
            let last = field.value.rsplit(|b| *b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
    }
    if hosts > 1 {
        return Err(Refusal::malformed(
            Malformed::HostRepeated,
            "the request has more than one host field",
        ));
    }
    if hosts == 0 && version == 1 {
        return Err(Refusal::malformed(
            Malformed::HostMissing,
            "an HTTP/1.1 request must have a host field",
        ));
    }
    match (chunked, length) {
        (Some(_), Some(_)) => Err(Refusal::malformed(
            Malformed::LengthAndChunked,
            "the request has both content-length and transfer-encoding",
        )),
        (Some(false), None) => Err(Refusal::malformed(
            Malformed::BadTransferCoding,
            "the request's transfer-encoding does not end in chunked",
        )),
        (Some(true), None) => Ok(RequestBodyFraming::Chunked),
        (None, length) => Ok(RequestBodyFraming::Length(length.unwrap_or(0))),
    }
}

/// A `Content-Length` value: digits only (RFC 9110 §8.6), around optional
/// whitespace.
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A `Content-Length` value that may repeat one number as a list (`5, 5`),
/// which RFC 9110 §8.6 lets a recipient take as that number.
fn content_length_list(value: &[u8]) -> Option<u64> {
    let mut found = None;
    for part in value.split(|b| *b == b',') {
        let number = content_length(part)?;
        if found.is_some_and(|seen| seen != number) {
            return None;
        }
        found = Some(number);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        version: u8,
        fields: &[(&'static str, &'static [u8])],
    ) -> Result<RequestBodyFraming, Malformed> {
        let fields: Vec<httparse::Header<'static>> = fields
            .iter()
            .map(|(name, value)| httparse::Header { name, value })
            .collect();
        check_request_head(version, &fields).map_err(|refusal| match refusal.counted {
            Counted::Malformed(reason) => reason,
            Counted::Limit(_) => unreachable!(),
        })
    }

    #[test]
    fn framing_rules_of_rfc_9112() {
        use RequestBodyFraming::*;
        assert_eq!(check(1, &[("Host", b"a")]), Ok(Length(0)));
        assert_eq!(check(0, &[]), Ok(Length(0)));
        assert_eq!(check(1, &[]), Err(Malformed::HostMissing));
        assert_eq!(
            check(1, &[("host", b"a"), ("HOST", b"b")]),
            Err(Malformed::HostRepeated)
        );
        assert_eq!(
            check(1, &[("host", b"a"), ("content-length", b"5, 5")]),
            Ok(Length(5))
        );
        assert_eq!(
            check(1, &[("host", b"a"), ("content-length", b"5, 6")]),
            Err(Malformed::BadLength)
        );
        assert_eq!(
            check(1, &[("host", b"a"), ("content-length", b"+5")]),
            Err(Malformed::BadLength)
        );
        assert_eq!(
            check(
                1,
                &[
                    ("host", b"a"),
                    ("content-length", b"5"),
                    ("content-length", b"6")
                ]
            ),
            Err(Malformed::BadLength)
        );
        assert_eq!(
            check(
                1,
                &[
                    ("host", b"a"),
                    ("content-length", b"5"),
                    ("transfer-encoding", b"chunked")
                ]
            ),
            Err(Malformed::LengthAndChunked)
        );
        assert_eq!(
            check(
                1,
                &[("host", b"a"), ("transfer-encoding", b"gzip, chunked")]
            ),
            Ok(Chunked)
        );
        assert_eq!(
            check(
                1,
                &[("host", b"a"), ("transfer-encoding", b"chunked, gzip")]
            ),
            Err(Malformed::BadTransferCoding)
        );
        assert_eq!(
            check(0, &[("transfer-encoding", b"chunked")]),
            Err(Malformed::BadTransferCoding)
        );
    }
}
