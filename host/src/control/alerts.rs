//! `GET /v1/alerts`: the last 1,000 health alerts, P0 to P4.

use axum::extract::State as Extract;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::State;
use crate::engine::{Alert, Severity};

/// The kept alerts, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AlertsView {
    alerts: Vec<AlertView>,
}

/// One alert.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AlertView {
    /// When, in ms since the Unix epoch.
    at_unix_ms: u64,
    /// How urgent: P0 a pool without a healthy endpoint, P1 a failover, panic
    /// mode or a plugin serving its last good version, P2 an endpoint out or
    /// a pool's DNS discovery failing, P4 a recovery.
    severity: SeverityView,
    /// The pool.
    pool: String,
    /// The endpoint, when it concerns one.
    endpoint: Option<String>,
    /// What happened.
    message: String,
}

/// Alert severities.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub(super) enum SeverityView {
    /// A pool cannot serve.
    P0,
    /// Failover, panic mode, a fallback version.
    P1,
    /// An endpoint ejected, down or held out; a discovery name failing.
    P2,
    /// A warning that needs no action.
    P3,
    /// A recovery.
    P4,
}

impl From<&Alert> for AlertView {
    fn from(alert: &Alert) -> Self {
        AlertView {
            at_unix_ms: alert.at_unix_ms,
            severity: match alert.severity {
                Severity::P0 => SeverityView::P0,
                Severity::P1 => SeverityView::P1,
                Severity::P2 => SeverityView::P2,
                Severity::P3 => SeverityView::P3,
                Severity::P4 => SeverityView::P4,
            },
            pool: alert.pool.clone(),
            endpoint: alert.endpoint.clone(),
            message: alert.message.clone(),
        }
    }
}

/// The last 1,000 health alerts, oldest first.
#[utoipa::path(get, path = "/v1/alerts", tag = "alerts",
    responses((status = 200, description = "The last 1,000 alerts, oldest first", body = AlertsView)))]
pub(super) async fn list(Extract(state): State) -> Json<AlertsView> {
    Json(AlertsView {
        alerts: state.alerts.history().iter().map(AlertView::from).collect(),
    })
}
