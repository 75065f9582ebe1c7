//! The web console: a page of pools, endpoints, plugins, alerts and charts
//! of the last minutes, kept live from `/v1/events`. Its files (and the
//! vendored chart library) are compiled into the binary
//! (no build step, nothing fetched from elsewhere) and served without a
//! token: they hold no data, and the page reads everything through the API
//! with the token its user gives it.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Redirect, Response};

const INDEX: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/console.js");
const STYLE: &str = include_str!("../../console/console.css");
const CHARTS: &str = include_str!("../../console/vendor/uplot-1.6.32/uPlot.iife.min.js");
const CHARTS_STYLE: &str = include_str!("../../console/vendor/uplot-1.6.32/uPlot.min.css");

/// The console's paths, served without a token.
pub(super) const PATHS: [&str; 6] = [
    "/",
    "/ui/",
    "/ui/console.js",
    "/ui/console.css",
    "/ui/uplot.js",
    "/ui/uplot.css",
];

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

/// `/`: the console.
pub(super) async fn root() -> Redirect {
    Redirect::to("/ui/")
}

/// `/ui/`: the page.
pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `/ui/console.js`.
pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `/ui/uplot.js`: the charts' library (uPlot, vendored).
pub(super) async fn charts() -> Response {
    asset("text/javascript; charset=utf-8", CHARTS)
}

/// `/ui/uplot.css`.
pub(super) async fn charts_style() -> Response {
    asset("text/css; charset=utf-8", CHARTS_STYLE)
}

/// `/ui/console.css`.
pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
