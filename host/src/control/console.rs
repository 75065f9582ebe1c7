//! The web console: a page of pools, endpoints, plugins, rollouts, alerts,
//! events and charts of the last minutes, kept live from `/v1/events`. Its
//! files (and the vendored chart library) are compiled into the binary (no
//! build step, nothing fetched from elsewhere) and served without a token:
//! they hold no data, and the page reads everything through the API with
//! the token its user gives it. Each file is gzipped once, on first use,
//! for the browsers that accept it, and carries an `ETag` so a revisit
//! costs a `304`.

use std::io::Write as _;
use std::sync::OnceLock;

use axum::http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest as _, Sha256};

/// The console's paths, served without a token.
pub(super) const PATHS: [&str; 6] = [
    "/",
    "/ui/",
    "/ui/console.js",
    "/ui/console.css",
    "/ui/uplot.js",
    "/ui/uplot.css",
];

/// One of the console's files, as compiled in.
struct Asset {
    content_type: &'static str,
    body: &'static str,
    prepared: OnceLock<Prepared>,
}

/// What is worked out once per file: its gzipped bytes and its tag.
struct Prepared {
    gzipped: Vec<u8>,
    etag: HeaderValue,
}

impl Asset {
    const fn new(content_type: &'static str, body: &'static str) -> Asset {
        Asset {
            content_type,
            body,
            prepared: OnceLock::new(),
        }
    }

    fn prepared(&self) -> &Prepared {
        self.prepared.get_or_init(|| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            // Writing to memory cannot fail.
            encoder
                .write_all(self.body.as_bytes())
                .expect("gzip in memory");
            let gzipped = encoder.finish().expect("gzip in memory");
            let digest = Sha256::digest(self.body.as_bytes());
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            let etag = HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a header value");
            Prepared { gzipped, etag }
        })
    }

    /// The file for a request: `304` when the browser holds this version,
    /// gzipped when it accepts that.
    fn serve(&self, request: &HeaderMap) -> Response {
        let prepared = self.prepared();
        let common = [
            (CONTENT_TYPE, HeaderValue::from_static(self.content_type)),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (VARY, HeaderValue::from_static("accept-encoding")),
            (ETAG, prepared.etag.clone()),
        ];
        let held = request
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|tag| tag.trim() == prepared.etag || tag.trim() == "*");
        if held {
            return (StatusCode::NOT_MODIFIED, common).into_response();
        }
        if accepts_gzip(request) {
            let encoding = [(CONTENT_ENCODING, HeaderValue::from_static("gzip"))];
            (common, encoding, prepared.gzipped.clone()).into_response()
        } else {
            (common, self.body).into_response()
        }
    }
}

/// Whether `Accept-Encoding` takes gzip (named, or `*`, with a weight
/// above zero).
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|param| {
                param
                    .trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

static INDEX: Asset = Asset::new(
    "text/html; charset=utf-8",
    include_str!("../../console/index.html"),
);
static SCRIPT: Asset = Asset::new(
    "text/javascript; charset=utf-8",
    include_str!("../../console/console.js"),
);
static STYLE: Asset = Asset::new(
    "text/css; charset=utf-8",
    include_str!("../../console/console.css"),
);
static CHARTS: Asset = Asset::new(
    "text/javascript; charset=utf-8",
    include_str!("../../console/vendor/uplot-1.6.32/uPlot.iife.min.js"),
);
static CHARTS_STYLE: Asset = Asset::new(
    "text/css; charset=utf-8",
    include_str!("../../console/vendor/uplot-1.6.32/uPlot.min.css"),
);

/// `/`: the console.
pub(super) async fn root() -> Redirect {
    Redirect::to("/ui/")
}

/// `/ui/`: the page.
pub(super) async fn index(request: HeaderMap) -> Response {
    INDEX.serve(&request)
}

/// `/ui/console.js`.
pub(super) async fn script(request: HeaderMap) -> Response {
    SCRIPT.serve(&request)
}

/// `/ui/uplot.js`: the charts' library (uPlot, vendored).
pub(super) async fn charts(request: HeaderMap) -> Response {
    CHARTS.serve(&request)
}

/// `/ui/uplot.css`.
pub(super) async fn charts_style(request: HeaderMap) -> Response {
    CHARTS_STYLE.serve(&request)
}

/// `/ui/console.css`.
pub(super) async fn style(request: HeaderMap) -> Response {
    STYLE.serve(&request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    axum::http::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn gzip_is_taken_when_named_or_starred_and_not_weighed_zero() {
        for taken in ["gzip", "br, gzip;q=0.8", "deflate, *", "GZIP"] {
            assert!(
                accepts_gzip(&request(&[("accept-encoding", taken)])),
                "{taken}"
            );
        }
        for refused in ["", "br", "gzip;q=0", "identity, gzip; q=0.0"] {
            assert!(
                !accepts_gzip(&request(&[("accept-encoding", refused)])),
                "{refused}"
            );
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn the_script_goes_gzipped_and_a_held_version_costs_a_304() {
        let gzipped = SCRIPT.serve(&request(&[("accept-encoding", "gzip")]));
        assert_eq!(gzipped.status(), StatusCode::OK);
        assert_eq!(gzipped.headers()[CONTENT_ENCODING], "gzip");
        let mut decoded = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&SCRIPT.prepared().gzipped[..]),
            &mut decoded,
        )
        .unwrap();
        assert_eq!(decoded, SCRIPT.body);
        assert!(SCRIPT.prepared().gzipped.len() * 2 < SCRIPT.body.len());

        let plain = SCRIPT.serve(&HeaderMap::new());
        assert!(plain.headers().get(CONTENT_ENCODING).is_none());
        let etag = plain.headers()[ETAG].clone();
        let mut revisit = HeaderMap::new();
        revisit.insert(IF_NONE_MATCH, etag);
        assert_eq!(SCRIPT.serve(&revisit).status(), StatusCode::NOT_MODIFIED);
        revisit.insert(IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(SCRIPT.serve(&revisit).status(), StatusCode::OK);
    }
}
