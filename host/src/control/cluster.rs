//! `GET /v1/cluster`: the fleet this instance is in, and who lags.

use axum::extract::State as Extract;
use axum::Json;

use super::State;
use crate::cluster::ClusterView;

/// The fleet (`[cluster]`): this instance's applied revision of the shared
/// config, whether etcd answers (and since when not), and every instance
/// with a live entry — its addresses, version, applied revision, last
/// heartbeat, and whether it lags behind the newest revision.
/// `enabled: false` when this instance is in no fleet.
#[utoipa::path(get, path = "/v1/cluster", tag = "status",
    responses((status = 200, description = "The fleet", body = ClusterView)))]
pub(super) async fn show(Extract(state): State) -> Json<ClusterView> {
    match state.reloader.fleet() {
        Some(fleet) => Json(fleet.view().await),
        None => Json(ClusterView::alone()),
    }
}
