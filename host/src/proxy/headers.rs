//! Header rules of a forwarding proxy (RFC 9110 §7.6.1): hop-by-hop headers
//! stop here, and the client's address is passed on in `X-Forwarded-For`.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1,
/// plus the de-facto `keep-alive` and `proxy-connection`).
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Whether `name` (any case) is one of the hop-by-hop headers listed above;
/// the HTTP/1 fast path, which works on header names as received, asks this.
/// `Transfer-Encoding` is not among them: that path passes a chunked body
/// through as it came.
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|hop| hop.as_str().eq_ignore_ascii_case(name))
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
/// `Transfer-Encoding` is left to hyper, which re-frames bodies per hop.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none or only `Connection`: a pass over the few
    // headers present costs less than a hashed removal per listed name, and
    // the bit set of those present needs no allocation.
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(index) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present |= 1 << index;
        }
    }
    if present == 0 {
        return;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim) {
            // The common tokens name no header or one already listed.
            if token.is_empty()
                || token.eq_ignore_ascii_case("close")
                || token.eq_ignore_ascii_case("keep-alive")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                named.push(name);
            }
        }
    }
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
    for name in &named {
        headers.remove(name);
    }
}

/// Turns an HTTP/2 WebSocket CONNECT (RFC 8441) into the HTTP/1.1
/// upgrade request of RFC 6455: `GET` with `Upgrade: websocket` and a new
/// `Sec-WebSocket-Key`; the client's `Sec-WebSocket-Version`, `-Protocol`
/// and `-Extensions` pass as they are.
pub fn websocket_over_http1(parts: &mut http::request::Parts) {
    use base64::Engine as _;
    parts.method = http::Method::GET;
    parts.version = http::Version::HTTP_11;
    let nonce: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    if let Ok(key) = HeaderValue::from_str(&key) {
        parts.headers.insert(header::SEC_WEBSOCKET_KEY, key);
    }
    parts
        .headers
        .entry(header::SEC_WEBSOCKET_VERSION)
        .or_insert(HeaderValue::from_static("13"));
}

/// Whether the request's `TE` lists `trailers` (gRPC clients send it).
pub fn asks_for_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("trailers"))
}

/// The protocol an HTTP/1.1 request asks to upgrade to: its `Upgrade`
/// value, when `Connection` lists `upgrade` (RFC 9110 §7.8).
pub fn upgrade_asked<B>(request: &http::Request<B>) -> Option<HeaderValue> {
    if request.version() != http::Version::HTTP_11 {
        return None;
    }
    let protocol = request.headers().get(header::UPGRADE)?;
    let listed = request
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    listed.then(|| protocol.clone())
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The `X-Forwarded-For` value of a connection's requests that carry none:
/// its client's address, formatted once per connection.
pub fn forwarded_for(client: IpAddr) -> Option<HeaderValue> {
    HeaderValue::from_str(&client.to_string()).ok()
}

/// Appends the client's address to `X-Forwarded-For` and sets
/// `X-Forwarded-Proto` when absent. `client_value` is [`forwarded_for`] of
/// `client`.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    client_value: Option<&HeaderValue>,
    proto: &'static str,
) {
    // Every value received, in order, then the client: one field.
    let mut existing = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let value = match existing.next() {
        Some(first) => {
            let mut joined = first.to_owned();
            for more in existing {
                joined.push_str(", ");
                joined.push_str(more);
            }
            HeaderValue::from_str(&format!("{joined}, {client}")).ok()
        }
        None => client_value.cloned(),
    };
    if let Some(value) = value {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-session-hop"),
        );
        headers.insert("x-session-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("x-end-to-end", HeaderValue::from_static("kept"));
        remove_hop_by_hop(&mut headers);
        let names: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-end-to-end"]);

        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::HOST, HeaderValue::from_static("kept"));
        remove_hop_by_hop(&mut headers);
        let names: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["host"]);
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
        let client = "127.0.0.9".parse().unwrap();
        let value = forwarded_for(client);
        add_forwarded(&mut headers, client, value.as_ref(), "http");
        assert_eq!(headers["x-forwarded-for"], "10.1.1.1, 127.0.0.9");
        assert_eq!(headers["x-forwarded-proto"], "http");

        let mut headers = HeaderMap::new();
        add_forwarded(&mut headers, client, value.as_ref(), "http");
        assert_eq!(headers["x-forwarded-for"], "127.0.0.9");
    }
}
