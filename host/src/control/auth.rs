//! Who may do what: bearer tokens, known by their SHA-256, each with a role.
//! Reads need `viewer`, changes `operator`; `/healthz`, `/readyz` and
//! `/metrics` stay open for probes and scrapers, and the console's files
//! (which hold no data) for browsers. With no tokens configured
//! the API is open, which the config allows only on a loopback listener.

use axum::extract::{Request, State as Extract};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::Digest as _;

use super::{ApiError, State};
use crate::config::{Role, TokenConfig};

/// Paths anyone may read.
const OPEN: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The configured tokens, by hash.
#[derive(Debug, Default)]
pub struct Tokens {
    entries: Vec<(String, Role, [u8; 32])>,
}

/// The token holder a request came from, for handlers and the audit trail.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Tokens {
    /// The tokens of `[[control.tokens]]` (validated: 64 hex digits each).
    pub fn new(tokens: &[TokenConfig]) -> Self {
        let entries = tokens
            .iter()
            .filter_map(|token| {
                let mut hash = [0u8; 32];
                for (i, byte) in hash.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(token.sha256.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
                Some((token.name.clone(), token.role, hash))
            })
            .collect();
        Tokens { entries }
    }

    /// Whether any token is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name and role of `presented`. Every entry is compared, each in
    /// time independent of where the bytes differ, so the answer's timing
    /// says nothing about the configured hashes.
    fn find(&self, presented: &str) -> Option<(&str, Role)> {
        let hash: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (name, role, expected) in &self.entries {
            let difference = expected
                .iter()
                .zip(&hash)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if difference == 0 {
                found = Some((name.as_str(), *role));
            }
        }
        found
    }
}

/// The role a request needs: reads need `viewer`; changes to pools and
/// routes `admin`; other changes (endpoints, registrations, reloads,
/// plugins) and broadcasts, which change nothing in the config,
/// `operator`.
fn needed(method: &Method, path: &str) -> Role {
    let pool_path = path.strip_prefix("/v1/pools/");
    // `/v1/pools/{pool}/broadcast`, not a pool named `broadcast`.
    let tail = pool_path
        .and_then(|rest| rest.split_once('/'))
        .map(|(_, tail)| tail);
    let broadcast = tail == Some("broadcast");
    let registrations = tail.is_some_and(|t| t.split('/').next() == Some("registrations"));
    let pools_or_routes = path == "/v1/pools"
        || path == "/v1/routes"
        || (pool_path.is_some() && !path.contains("/endpoints") && !broadcast && !registrations);
    if method == Method::GET || method == Method::HEAD {
        Role::Viewer
    } else if pools_or_routes {
        Role::Admin
    } else {
        Role::Operator
    }
}

/// Who the caller is to the API.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct SessionView {
    /// The token's name; none when the API takes no tokens.
    token: Option<String>,
    /// `viewer`, `operator` or `admin`: what the caller may do (`admin`
    /// when the API takes no tokens).
    role: &'static str,
}

/// Who the caller is and what it may do: the console shows an operator's
/// actions only to those who may take them.
#[utoipa::path(get, path = "/v1/session", tag = "status",
    responses((status = 200, description = "The caller's token and role", body = SessionView)))]
pub(super) async fn session(caller: Option<axum::Extension<Caller>>) -> axum::Json<SessionView> {
    axum::Json(match caller {
        Some(axum::Extension(caller)) => SessionView {
            role: role_name(caller.role),
            token: Some(caller.name),
        },
        None => SessionView {
            token: None,
            role: role_name(Role::Admin),
        },
    })
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Viewer => "viewer",
        Role::Operator => "operator",
        Role::Admin => "admin",
    }
}

/// Lets a request through when its token's role allows it: 401 without a
/// known token, 403 when the role is too low.
pub(super) async fn authorize(Extract(state): State, mut request: Request, next: Next) -> Response {
    let tokens = &state.tokens;
    let path = request.uri().path();
    if tokens.is_empty() || OPEN.contains(&path) || super::console::PATHS.contains(&path) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some((name, role)) = presented.and_then(|token| tokens.find(token)) else {
        let message = if presented.is_some() {
            "the bearer token is not one of [[control.tokens]]"
        } else {
            "send a token: `Authorization: Bearer TOKEN`"
        };
        let mut response =
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"switchyard\""),
        );
        return response;
    };
    let needed = needed(request.method(), request.uri().path());
    if role < needed {
        let mut response = ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token `{name}` is a {}; {} {} needs {}",
                role_name(role),
                request.method(),
                request.uri().path(),
                role_name(needed)
            ),
        )
        .into_response();
        response.extensions_mut().insert(Caller {
            name: name.to_string(),
            role,
        });
        return response;
    }
    let caller = Caller {
        name: name.to_string(),
        role,
    };
    tracing::debug!(token = %caller.name, method = %request.method(), path = request.uri().path(), "control request");
    request.extensions_mut().insert(caller.clone());
    let mut response = next.run(request).await;
    // For the audit trail, which wraps this.
    response.extensions_mut().insert(caller);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_known_by_its_hash_only() {
        // printf %s s3cret | sha256sum
        let tokens = Tokens::new(&[TokenConfig {
            name: "ops".into(),
            role: Role::Operator,
            sha256: format!("{:x}", sha2::Sha256::digest(b"s3cret")),
        }]);
        assert_eq!(tokens.find("s3cret"), Some(("ops", Role::Operator)));
        assert_eq!(tokens.find("s3cre"), None);
        assert_eq!(tokens.find(""), None);
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    }

    #[test]
    fn a_broadcast_needs_an_operator_and_a_pool_named_broadcast_an_admin() {
        let post = Method::POST;
        assert_eq!(needed(&post, "/v1/pools/web/broadcast"), Role::Operator);
        assert_eq!(
            needed(&post, "/v1/pools/broadcast/broadcast"),
            Role::Operator
        );
        assert_eq!(needed(&Method::PATCH, "/v1/pools/broadcast"), Role::Admin);
        assert_eq!(needed(&Method::DELETE, "/v1/pools/web"), Role::Admin);
        assert_eq!(needed(&post, "/v1/pools/web/endpoints"), Role::Operator);
        assert_eq!(needed(&post, "/v1/pools"), Role::Admin);
    }

    #[test]
    fn registering_needs_an_operator() {
        let path = "/v1/pools/web/registrations";
        assert_eq!(needed(&Method::POST, path), Role::Operator);
        assert_eq!(needed(&Method::GET, path), Role::Viewer);
        let one = "/v1/pools/web/registrations/0123";
        assert_eq!(needed(&Method::PUT, one), Role::Operator);
        assert_eq!(needed(&Method::DELETE, one), Role::Operator);
        assert_eq!(
            needed(&Method::PATCH, "/v1/pools/registrations"),
            Role::Admin
        );
    }
}
