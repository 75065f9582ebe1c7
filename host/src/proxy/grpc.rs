//! What the proxy knows of gRPC (over HTTP/2, `application/grpc`): the
//! client's deadline in `grpc-timeout`, and its own answers given as gRPC
//! statuses, so a gRPC client reads "unavailable" or "deadline exceeded"
//! rather than a bare 502 or 504 it cannot parse.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::ProxyBody;

/// Whether the request is a gRPC call.
pub(super) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The client's deadline: `grpc-timeout`, at most 8 digits and a unit
/// (`H`, `M`, `S`, `m`, `u`, `n`).
pub(super) fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.as_bytes();
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(amount * 3600),
        b"M" => Duration::from_secs(amount * 60),
        b"S" => Duration::from_secs(amount),
        b"m" => Duration::from_millis(amount),
        b"u" => Duration::from_micros(amount),
        b"n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// gRPC statuses that say the endpoint failed the call (rather than the
/// call being wrong): unknown, deadline exceeded, resource exhausted,
/// internal, unavailable, data loss. They count against the endpoint, and
/// recovery policies see them as `grpc-status`.
pub(crate) const FAILING_STATUSES: [u32; 6] = [2, 4, 8, 13, 14, 15];

/// The failing status of a trailers-only gRPC response, if it is one.
pub(super) fn failing_status(headers: &HeaderMap) -> Option<u32> {
    let code: u32 = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    FAILING_STATUSES.contains(&code).then_some(code)
}

/// A local answer of the proxy (one with `x-switchyard-error`) made a
/// trailers-only gRPC response: HTTP 200, `grpc-status` by the HTTP status
/// as the gRPC spec maps them, `grpc-message` with the cause. The
/// endpoint's own responses pass untouched.
pub(super) fn local_answer_as_status(response: Response<ProxyBody>) -> Response<ProxyBody> {
    let Some(code) = response.headers().get("x-switchyard-error").cloned() else {
        return response;
    };
    let status = match response.status() {
        StatusCode::BAD_REQUEST => 13,       // INTERNAL
        StatusCode::NOT_FOUND => 12,         // UNIMPLEMENTED
        StatusCode::PAYLOAD_TOO_LARGE => 8,  // RESOURCE_EXHAUSTED
        StatusCode::TOO_MANY_REQUESTS => 14, // UNAVAILABLE
        StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => 4, // DEADLINE_EXCEEDED
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
        _ => 2,                              // UNKNOWN
    };
    let mut answer = Response::new(ProxyBody::text(""));
    let headers = answer.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(status));
    let message = format!(
        "switchyard: {} ({})",
        code.to_str().unwrap_or("error"),
        response.status().as_u16()
    );
    if let Ok(message) = HeaderValue::from_str(&message) {
        headers.insert("grpc-message", message);
    }
    headers.insert("x-switchyard-error", code);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_every_unit_and_refuse_the_rest() {
        let parse = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", HeaderValue::from_str(value).unwrap());
            timeout(&headers)
        };
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "10", "10x", "-1S", "1.5S"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
