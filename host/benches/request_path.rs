//! The cost per request of the host's own routing and allocation: the CPU
//! work `Proxy::handle` does for one request apart from socket I/O and HTTP
//! parsing, in ns, and the heap allocations it makes.
//!
//! Benchmark ids read as a table:
//!
//! - `route/find/<routes>`: `Topology::find` over 1, 10 and 100 host routes,
//!   the match being the last one (the worst case: every route is tried).
//! - `route/find-mixed/<kind>-<first|last>/<routes>`: the same over 10,
//!   1,000 and 10,000 routes of four kinds in turn (exact host; wildcard
//!   host `*.wI.example.com`; exact host and exact path; exact host and
//!   path regex) behind two any-host regex routes that match nothing (tried
//!   for every request), finding the first and the last route of a kind.
//! - `allocate/native-rr/<endpoints>`: one request's endpoint allocation on
//!   a native round robin pool of 10, 1,000 and 10,000 endpoints:
//!   `Pool::pick`, `Endpoint::start` (the in-flight guard),
//!   `Pool::record_outcome`, dropping the guard — what happens around the
//!   upstream exchange.
//! - `request/host-work`: everything `Proxy::handle` does for a typical
//!   request that succeeds on the first attempt (a `GET /` with only `Host`,
//!   as wrk sends it; one catch-all route, as `Server::bind` makes without
//!   `[[routes]]`; a 10-endpoint native round robin pool without recovery):
//!   metric counters, clock reads, host and route lookup, hop-by-hop removal,
//!   `X-Forwarded-For`/`-Proto`, the pick, the upstream request (method, uri,
//!   version, headers), guard and outcome, and stripping `connection:
//!   keep-alive` from the response.
//! - `request/host-work+head`: the same plus building the request head from
//!   the raw bytes as hyper does after `httparse` (shared `Bytes` slices,
//!   `Uri::from_maybe_shared`, the header appended to the connection's
//!   cached map). That part is hyper's, not the host's: the difference
//!   between the two ids is its share.
//!
//! Header maps are given the capacity they have in steady state: hyper
//! parses each message into the emptied map of the last one it wrote on that
//! connection (see `recycled_map`), so on keep-alive connections the maps
//! cycle through the proxy already grown. A client connection's first
//! request comes in a new map; its allocations are printed separately.
//!
//! What is not measured: socket I/O, HTTP parsing and serialising, the tokio
//! timer of the request deadline, the upstream connection pool checkout and
//! the `ProxyBody` wrapping (all need a live exchange). Both request inputs
//! and outputs are built and dropped outside the timed loop (criterion's
//! `iter_batched`); in the proxy hyper frees them.
//!
//! Everything runs the proxy's own code through the public API: the header
//! rules of `switchyard::proxy::headers`, `request_host`, `upstream_uri`,
//! `Routes`, `Pool`, `Endpoint`, `ClientInfo` and `Metrics`.
//!
//! After criterion, the `request/host-work` body (without the head) runs
//! 10,000 times under a counting global allocator and the heap allocations
//! per request (calls to `alloc`/`realloc`, and bytes asked for) are
//! printed, in steady state and for a connection's first request.
//! Allocation is the other per-request cost the host adds beside CPU time
//! (allocator calls, and memory that grows with concurrency), and a time
//! figure alone does not show it. Counting is switched on only for that
//! run, so the timed benchmarks pay one relaxed load per allocation.
//!
//! `cargo bench -p switchyard --bench request_path -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use switchyard::engine::{
    Endpoint, HostMatch, PathMatch, PickRequest, Pool, Priority, RequestHeaders, RequestInfo,
    Route, Routes, Topology,
};
use switchyard::metrics::Metrics;
use switchyard::proxy::headers::{add_forwarded, remove_hop_by_hop};
use switchyard::proxy::{request_host, upstream_uri, ClientInfo};

/// Route table sizes measured.
const ROUTE_COUNTS: [usize; 4] = [1, 10, 1_000, 10_000];

/// Pool sizes measured.
const POOL_SIZES: [u32; 3] = [10, 1_000, 10_000];

/// The pool size of the typical request.
const TYPICAL_POOL: u32 = 10;

/// Requests run under the counting allocator.
const COUNTED_REQUESTS: u64 = 10_000;

/// Requests per timed batch of `request/...`: their inputs, built before
/// the batch, are in cache as a request hyper has just parsed would be; the
/// clock is read once a batch.
const BATCH: u64 = 32;

/// The latency recorded per outcome in `allocate/...`: a plausible 1 ms.
const LATENCY_NS: u64 = 1_000_000;

/// The proxy's default request timeout; only added to a clock reading.
const REQUEST_TIMEOUT: Duration =
    Duration::from_millis(switchyard::config::DEFAULT_REQUEST_TIMEOUT_MS);

/// What wrk sends for `wrk http://127.0.0.1:8080/`.
const WRK_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();

    bench_route_find(&mut criterion);
    bench_route_find_mixed(&mut criterion);
    bench_allocate(&mut criterion);
    let typical = Typical::new();
    bench_request(&mut criterion, &typical);
    criterion.final_summary();

    count_allocations(&typical);
}

fn address_of(id: u32) -> String {
    format!("10.{}.{}.{}:8080", id >> 16, (id >> 8) & 0xff, id & 0xff)
}

/// A native round robin pool (no plugin) of `size` endpoints, as in
/// `pick.rs`.
fn pool(size: u32) -> Arc<Pool> {
    let endpoints = (0..size)
        .map(|id| Arc::new(Endpoint::new(id, &address_of(id), 1, 0).expect("valid address")))
        .collect();
    Arc::new(Pool::new(format!("native-{size}"), endpoints, None, None))
}

fn bench_route_find(criterion: &mut Criterion) {
    let pool = pool(1);
    let mut group = criterion.benchmark_group("route/find");
    for count in ROUTE_COUNTS {
        let routes = Topology {
            routes: Arc::new(Routes::new(
                (0..count)
                    .map(|i| Route {
                        host: HostMatch::Exact(format!("svc{i}.example.com")),
                        path: PathMatch::Prefix("/".into()),
                        pool: 0,
                        max_body_bytes: 0,
                        priority: Priority::default(),
                        priority_header: None,
                        ..Route::default()
                    })
                    .collect(),
            )),
            pools: vec![Arc::clone(&pool)],
        };
        // The first route and the last: a scan would try every route
        // before the last.
        for (which, index) in [("first", 0), ("last", count - 1)] {
            let host = format!("svc{index}.example.com");
            group.bench_function(BenchmarkId::new(which, count), |b| {
                b.iter(|| {
                    routes
                        .find(black_box(Some(host.as_str())), black_box("/"))
                        .is_some()
                });
            });
        }
    }
    group.finish();
}

/// Route table sizes of the mixed table.
const MIXED_ROUTE_COUNTS: [usize; 3] = [10, 1_000, 10_000];

fn bench_route_find_mixed(criterion: &mut Criterion) {
    let pool = pool(1);
    let mut group = criterion.benchmark_group("route/find-mixed");
    let regex = |pattern: &str| {
        PathMatch::Regex(regex::Regex::new(&switchyard::config::anchored(pattern)).unwrap())
    };
    for count in MIXED_ROUTE_COUNTS {
        let mut routes: Vec<Route> = (0..2)
            .map(|_| Route {
                path: regex("/never/[0-9]+"),
                ..Route::default()
            })
            .collect();
        routes.extend((0..count).map(|i| match i % 4 {
            0 => Route {
                host: HostMatch::Exact(format!("svc{i}.example.com")),
                ..Route::default()
            },
            1 => Route {
                host: HostMatch::Suffix(format!("w{i}.example.com")),
                ..Route::default()
            },
            2 => Route {
                host: HostMatch::Exact(format!("svc{i}.example.com")),
                path: PathMatch::Exact("/exact".into()),
                ..Route::default()
            },
            _ => Route {
                host: HostMatch::Exact(format!("svc{i}.example.com")),
                path: regex("/users/[0-9]+"),
                ..Route::default()
            },
        }));
        let routes = Topology {
            routes: Arc::new(Routes::new(routes)),
            pools: vec![Arc::clone(&pool)],
        };
        let last_of =
            |kind: usize| (count - 1) / 4 * 4 + kind - if (count - 1) % 4 < kind { 4 } else { 0 };
        for (kind, name) in [
            (0, "exact-host"),
            (1, "wildcard"),
            (2, "exact-path"),
            (3, "regex"),
        ] {
            for (which, i) in [("first", kind), ("last", last_of(kind))] {
                let (host, path) = match kind {
                    1 => (format!("a.w{i}.example.com"), "/"),
                    2 => (format!("svc{i}.example.com"), "/exact"),
                    3 => (format!("svc{i}.example.com"), "/users/42"),
                    _ => (format!("svc{i}.example.com"), "/"),
                };
                assert!(
                    routes.find(Some(&host), path).is_some(),
                    "{name} {which} {count}: {host}{path}"
                );
                group.bench_function(BenchmarkId::new(format!("{name}-{which}"), count), |b| {
                    b.iter(|| {
                        routes
                            .find(black_box(Some(host.as_str())), black_box(path))
                            .is_some()
                    });
                });
            }
        }
    }
    group.finish();
}

fn bench_allocate(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("allocate/native-rr");
    let mut headers = HeaderMap::new();
    for size in POOL_SIZES {
        let pool = pool(size);
        let info = RequestInfo {
            hash: Some(1),
            ..RequestInfo::default()
        };
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| {
                let endpoint = pool
                    .pick(&mut PickRequest {
                        info,
                        headers: RequestHeaders::Map(&mut headers),
                        placement: switchyard::engine::Placement::NONE,
                    })
                    .expect("every endpoint is eligible");
                let guard = endpoint.start();
                pool.record_outcome(
                    &endpoint,
                    black_box(LATENCY_NS),
                    true,
                    &switchyard::engine::Placement::NONE,
                );
                drop(guard);
                endpoint
            });
        });
    }
    group.finish();
}

/// The typical request's surroundings: routes, client, metrics, and the raw
/// bytes hyper would have read.
struct Typical {
    routes: Topology,
    client: ClientInfo,
    metrics: Metrics,
    raw: Bytes,
}

impl Typical {
    fn new() -> Self {
        let routes = Topology {
            routes: Arc::new(Routes::new(vec![Route {
                host: HostMatch::Any,
                path: PathMatch::Prefix("/".into()),
                pool: 0,
                max_body_bytes: 0,
                priority: Priority::default(),
                priority_header: None,
                ..Route::default()
            }])),
            pools: vec![pool(TYPICAL_POOL)],
        };
        // Shared once, like hyper's read buffer: later slices only count
        // references.
        let raw = Bytes::from(WRK_REQUEST.to_vec());
        drop(raw.slice(0..1));
        Typical {
            routes,
            client: ClientInfo::new(SocketAddr::from(([127, 0, 0, 1], 40_000))),
            metrics: Metrics::new(1),
            raw,
        }
    }

    /// The request head as hyper builds it from `raw` once `httparse` has
    /// found the pieces (the offsets are those of `WRK_REQUEST`), into
    /// `headers`: the connection's cached map (see `recycled_map`).
    fn head(&self, mut headers: HeaderMap) -> Request<()> {
        let slice = self.raw.clone();
        let uri = Uri::from_maybe_shared(slice.slice(4..5)).expect("valid target");
        headers.reserve(1);
        let name = HeaderName::from_bytes(&slice[16..20]).expect("valid name");
        let value = HeaderValue::from_maybe_shared(slice.slice(22..36)).expect("valid value");
        headers.append(name, value);
        let mut request = Request::new(());
        *request.method_mut() = Method::from_bytes(&slice[0..3]).expect("valid method");
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        request
    }
}

/// A header map as hyper hands one over on a keep-alive connection. hyper
/// keeps the emptied map of each message it writes and parses the next
/// message it reads into it (`cached_headers` in `proto/h1`), so in steady
/// state the maps cycle between the proxy's two sides with the capacity a
/// forwarded request grew them to: `Host` plus the two `X-Forwarded-*`.
/// Only a client connection's first request comes in a new map.
fn recycled_map() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.reserve(1);
    headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
    headers.insert(
        HeaderName::from_static("x-forwarded-for"),
        HeaderValue::from_static("127.0.0.1"),
    );
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    headers.clear();
    headers
}

/// An upstream response head as hyper's client hands it over.
fn response_head() -> HeaderMap {
    let mut headers = recycled_map();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
    headers.insert(
        header::DATE,
        HeaderValue::from_static("Mon, 01 Jan 2024 00:00:00 GMT"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    headers
}

/// `Proxy::handle` for one request answered `200` on the first attempt, in
/// its order, minus the exchange. Returns what hyper would send and receive.
fn host_work(
    typical: &Typical,
    request: Request<()>,
    mut response: HeaderMap,
) -> (Request<()>, HeaderMap) {
    let counters = typical.metrics.worker(0);
    counters.count_request();
    let started = Instant::now();
    let deadline = started + REQUEST_TIMEOUT;
    let host = request_host(&request);
    let pool = typical
        .routes
        .find(host, request.uri().path())
        .expect("the catch-all route matches");
    let (mut parts, body) = request.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    add_forwarded(
        &mut parts.headers,
        typical.client.address.ip(),
        typical.client.forwarded_for.as_ref(),
        typical.client.proto,
    );
    let info = RequestInfo {
        hash: Some(typical.client.hash),
        ..RequestInfo::default()
    };
    let endpoint = pool
        .pick(&mut PickRequest {
            info,
            headers: RequestHeaders::Map(&mut parts.headers),
            placement: switchyard::engine::Placement::NONE,
        })
        .expect("every endpoint is eligible");
    let uri = upstream_uri(&parts.uri);
    let mut upstream = Request::new(body);
    *upstream.method_mut() = parts.method.clone();
    *upstream.uri_mut() = uri;
    *upstream.version_mut() = parts.version;
    // Without recovery the body is not replayable: the headers move.
    *upstream.headers_mut() = std::mem::take(&mut parts.headers);
    if !upstream.headers().contains_key(header::HOST) {
        if let Ok(host) = HeaderValue::from_str(endpoint.authority.as_str()) {
            upstream.headers_mut().insert(header::HOST, host);
        }
    }
    let guard = endpoint.start();
    let sent = Instant::now();
    // Here the proxy sends `upstream` with `deadline` as its timeout.
    black_box(deadline);
    let elapsed = sent.elapsed().as_nanos() as u64;
    let status = StatusCode::OK;
    pool.record_outcome(
        &endpoint,
        elapsed,
        !status.is_server_error(),
        &switchyard::engine::Placement::NONE,
    );
    if !status.is_server_error() && status != StatusCode::TOO_MANY_REQUESTS {
        counters.count_status(status);
        remove_hop_by_hop(&mut response);
    }
    // In the proxy the guard ends with the response body.
    drop(guard);
    (upstream, response)
}

fn bench_request(criterion: &mut Criterion, typical: &Typical) {
    let mut group = criterion.benchmark_group("request");
    group.bench_function("host-work", |b| {
        b.iter_batched(
            || (typical.head(recycled_map()), response_head()),
            |(request, response)| host_work(typical, request, response),
            BatchSize::NumIterations(BATCH),
        );
    });
    group.bench_function("host-work+head", |b| {
        b.iter_batched(
            || (recycled_map(), response_head()),
            |(cached, response)| host_work(typical, typical.head(cached), response),
            BatchSize::NumIterations(BATCH),
        );
    });
    group.finish();
}

/// Runs `host_work` `COUNTED_REQUESTS` times with allocations counted, its
/// inputs built beforehand and its outputs dropped afterwards (as in the
/// timed benchmark), and prints the figures per request: in steady state,
/// and for a client connection's first request (a new request map).
fn count_allocations(typical: &Typical) {
    let per_request = |new_map: fn() -> HeaderMap| {
        let mut inputs: Vec<_> = (0..COUNTED_REQUESTS)
            .map(|_| (typical.head(new_map()), response_head()))
            .collect();
        let mut outputs = Vec::with_capacity(inputs.len());
        let (calls, bytes) = counting::measure(&mut || {
            outputs.extend(
                inputs
                    .drain(..)
                    .map(|(request, response)| host_work(typical, request, response)),
            );
        });
        drop(outputs);
        (
            calls as f64 / COUNTED_REQUESTS as f64,
            bytes as f64 / COUNTED_REQUESTS as f64,
        )
    };
    let (calls, bytes) = per_request(recycled_map);
    println!();
    println!("host work per request: {calls} allocations, {bytes} bytes");
    let (calls, bytes) = per_request(HeaderMap::new);
    println!(
        "host work, a connection's first request (new header map): \
         {calls} allocations, {bytes} bytes"
    );
}

/// A global allocator that counts calls and bytes while switched on.
// `GlobalAlloc` is an unsafe trait and the workspace denies unsafe code:
// allowed here, for this module only.
#[allow(unsafe_code)]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    static ON: AtomicBool = AtomicBool::new(false);
    static CALLS: AtomicU64 = AtomicU64::new(0);
    static BYTES: AtomicU64 = AtomicU64::new(0);

    /// `System`, counting `alloc`, `alloc_zeroed` and `realloc` (one call of
    /// the new size each) while `ON`; frees are not counted.
    #[derive(Debug)]
    pub struct Counting;

    fn count(size: usize) {
        // One relaxed load when off: the timed benchmarks pay next to nothing.
        if ON.load(Ordering::Relaxed) {
            CALLS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(size as u64, Ordering::Relaxed);
        }
    }

    // SAFETY: every call is forwarded unchanged to `System`.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count(layout.size());
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count(layout.size());
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count(new_size);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// The allocations (calls, bytes) `f` makes. Single-threaded use only:
    /// other threads' allocations meanwhile would be counted too.
    pub fn measure(f: &mut dyn FnMut()) -> (u64, u64) {
        CALLS.store(0, Ordering::Relaxed);
        BYTES.store(0, Ordering::Relaxed);
        ON.store(true, Ordering::SeqCst);
        f();
        ON.store(false, Ordering::SeqCst);
        (CALLS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed))
    }
}
