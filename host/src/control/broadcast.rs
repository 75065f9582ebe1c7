//! `POST /v1/pools/{pool}/broadcast`: one request sent to every eligible
//! endpoint of a pool, answered with each endpoint's status (cache purges
//! and other fan-out). Changes nothing in the config: an operator may.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as Extract};
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::endpoints::body_error;
use super::{ApiError, ErrorBody, State};
use crate::engine::Priority;
use crate::proxy::broadcast::{self, Broadcast, Summary};

/// The request to send to every endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BroadcastBody {
    /// The method, as sent (methods are case-sensitive); `CONNECT` is
    /// refused. Default `POST`.
    #[schema(example = "PURGE")]
    method: Option<String>,
    /// The path and query, starting with `/`.
    #[schema(example = "/cache/x?y=1")]
    path: String,
    /// Header fields to send, by name. Hop-by-hop fields are dropped and
    /// `X-Forwarded-For`/`-Proto` added, as for a forwarded request;
    /// `Host` is the endpoint's address unless given here.
    #[schema(example = json!({"x-a": "1"}))]
    headers: Option<BTreeMap<String, String>>,
    /// The body, as text; empty by default.
    body: Option<String>,
}

/// The method a broadcast sends when the body names none.
const DEFAULT_METHOD: Method = Method::POST;

/// Sends one request to every endpoint of the pool eligible now, all at
/// once, and answers with each one's status or error. Each attempt counts
/// against its endpoint like any request (in flight, outcome, outlier
/// detection); an endpoint at its capacity is reported refused, not waited
/// for. The whole broadcast ends by `proxy.request_timeout_ms`. A pool with
/// no eligible endpoint answers 200 with no endpoints.
#[utoipa::path(post, path = "/v1/pools/{pool}/broadcast", tag = "pools",
    params(("pool" = String, Path, description = "The pool's name")),
    request_body = BroadcastBody,
    responses(
        (status = 200, description = "Every eligible endpoint's answer; `succeeded` counts the 2xx ones", body = Summary),
        (status = 400, description = "A field is missing, unknown or invalid (`invalid_body`, with `field`)", body = ErrorBody),
        (status = 404, description = "No such pool (`no_such_pool`)", body = ErrorBody),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", body = ErrorBody),
    ))]
pub(super) async fn broadcast(
    Extract(state): State,
    Path(pool): Path<String>,
    from: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Summary>, ApiError> {
    let Json(body) = body.map_err(body_error)?;
    let asked = BroadcastBody::parse(body)?;
    let (method, uri, headers, body) = asked.request()?;
    let topology = state.topology.load_full();
    let Some(pool) = topology.pools.iter().find(|p| p.name == pool) else {
        return Err(invalid(
            StatusCode::NOT_FOUND,
            "no_such_pool",
            "pool",
            format!("no pool is named `{pool}`"),
        ));
    };
    let client = from.map_or(std::net::Ipv4Addr::LOCALHOST.into(), |info| info.0 .0.ip());
    let request = Broadcast::new(method, uri, headers, body, client, "http");
    let timeouts = state.broadcast;
    let upstreams = timeouts.upstreams();
    let deadline = Instant::now() + timeouts.request;
    let outcomes =
        broadcast::send_to_all(pool, &upstreams, &request, Priority::default(), deadline).await;
    Ok(Json(Summary::of(&pool.name, &outcomes)))
}

/// A refusal naming the input at fault.
fn invalid(status: StatusCode, code: &str, field: &str, message: String) -> ApiError {
    let mut error = ApiError::new(status, code, message);
    error.detail.field = Some(field.into());
    error
}

fn bad_field(field: &str, message: String) -> ApiError {
    invalid(StatusCode::BAD_REQUEST, "invalid_body", field, message)
}

impl BroadcastBody {
    /// The body, with the field at fault named when it is not one: serde's
    /// messages name the line and column of a wrong type, not the field.
    fn parse(value: Value) -> Result<Self, ApiError> {
        let Value::Object(fields) = &value else {
            return Err(bad_field(
                "body",
                "the body must be a JSON object: {\"path\": \"/...\"}".into(),
            ));
        };
        for (name, field) in fields {
            let fits = match name.as_str() {
                "method" | "body" => field.is_string() || field.is_null(),
                "path" => field.is_string(),
                "headers" => match field {
                    Value::Null => true,
                    Value::Object(headers) => {
                        if let Some((header, _)) = headers.iter().find(|(_, v)| !v.is_string()) {
                            return Err(bad_field(
                                &format!("headers.{header}"),
                                format!("the value of header `{header}` must be a string"),
                            ));
                        }
                        true
                    }
                    _ => false,
                },
                other => {
                    return Err(bad_field(
                        other,
                        format!("unknown field `{other}` (method, path, headers, body)"),
                    ))
                }
            };
            if !fits {
                let what = match name.as_str() {
                    "headers" => "an object of header names to string values",
                    _ => "a string",
                };
                return Err(bad_field(name, format!("`{name}` must be {what}")));
            }
        }
        if !fields.contains_key("path") {
            return Err(bad_field(
                "path",
                "`path` is required: the path and query to send, starting with `/`".into(),
            ));
        }
        serde_json::from_value(value)
            .map_err(|error| bad_field("body", format!("the body is not valid: {error}")))
    }

    /// The request it asks for, each part checked.
    fn request(self) -> Result<(Method, Uri, HeaderMap, Bytes), ApiError> {
        let method = match &self.method {
            None => DEFAULT_METHOD,
            Some(name) => match Method::from_bytes(name.as_bytes()) {
                Ok(Method::CONNECT) => {
                    return Err(bad_field(
                        "method",
                        "CONNECT opens a tunnel: it cannot be broadcast".into(),
                    ))
                }
                Ok(method) => method,
                Err(_) => {
                    return Err(bad_field(
                        "method",
                        format!("`{name}` is not a method (an HTTP token, such as PURGE)"),
                    ))
                }
            },
        };
        let uri = match self.path.parse::<Uri>() {
            Ok(uri) if self.path.starts_with('/') && uri.authority().is_none() => uri,
            _ => {
                return Err(bad_field(
                    "path",
                    format!("`{}` is not a path and query starting with `/`", self.path),
                ))
            }
        };
        let mut headers = HeaderMap::new();
        for (name, value) in self.headers.unwrap_or_default() {
            let field = format!("headers.{name}");
            let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
                return Err(bad_field(
                    &field,
                    format!("`{name}` is not a valid header name"),
                ));
            };
            let Ok(value) = HeaderValue::from_str(&value) else {
                return Err(bad_field(
                    &field,
                    format!("the value of `{name}` is not a valid header value"),
                ));
            };
            headers.append(header, value);
        }
        let body = Bytes::from(self.body.unwrap_or_default());
        Ok((method, uri, headers, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(value: Value) -> (String, String) {
        let error = BroadcastBody::parse(value)
            .and_then(BroadcastBody::request)
            .expect_err("refused");
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        (error.detail.field.unwrap(), error.detail.message)
    }

    #[test]
    fn a_body_is_read_with_its_defaults() {
        let asked = BroadcastBody::parse(serde_json::json!({ "path": "/cache/x?y=1" })).unwrap();
        let (method, uri, headers, body) = asked.request().unwrap();
        assert_eq!(method, Method::POST);
        assert_eq!(uri, "/cache/x?y=1");
        assert!(headers.is_empty() && body.is_empty());
        let asked = BroadcastBody::parse(serde_json::json!({
            "method": "PURGE", "path": "/a", "headers": { "X-A": "1" }, "body": "b"
        }))
        .unwrap();
        let (method, _, headers, body) = asked.request().unwrap();
        assert_eq!(method.as_str(), "PURGE");
        assert_eq!(headers["x-a"], "1");
        assert_eq!(&body[..], b"b");
    }

    #[test]
    fn each_bad_field_is_named() {
        use serde_json::json;
        let cases = [
            (json!([]), "body"),
            (json!({ "method": "GET" }), "path"),
            (json!({ "path": 5 }), "path"),
            (json!({ "path": "cache/x" }), "path"),
            (json!({ "path": "http://a/b" }), "path"),
            (json!({ "path": "/a b" }), "path"),
            (json!({ "path": "/", "method": "PU RGE" }), "method"),
            (json!({ "path": "/", "method": "CONNECT" }), "method"),
            (json!({ "path": "/", "method": 1 }), "method"),
            (json!({ "path": "/", "headers": ["x"] }), "headers"),
            (
                json!({ "path": "/", "headers": { "x a": "1" } }),
                "headers.x a",
            ),
            (
                json!({ "path": "/", "headers": { "x-a": "\n" } }),
                "headers.x-a",
            ),
            (
                json!({ "path": "/", "headers": { "x-a": 1 } }),
                "headers.x-a",
            ),
            (json!({ "path": "/", "body": {} }), "body"),
            (json!({ "path": "/", "bdy": "x" }), "bdy"),
        ];
        for (body, field) in cases {
            let (named, message) = refused(body.clone());
            assert_eq!(named, field, "{body}: {message}");
        }
    }
}
