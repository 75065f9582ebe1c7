//! The cost of the admission decision per request: what a pool with
//! `max_in_flight`, endpoint capacities and a class reserve adds to one
//! request's allocation, against the same pool without limits.
//!
//! Benchmark ids read as a table:
//!
//! - `admission/unlimited`: `Pool::pick`, `Pool::try_start` (no limit: the
//!   endpoint's in-flight count), `Pool::record_outcome`, dropping the
//!   guard, on a 10-endpoint native round robin pool: the request path of
//!   a pool without admission.
//! - `admission/limited/<class>`: the same on the same pool with
//!   `max_in_flight = 1000` and `capacity = 100` per endpoint (reserve 10%),
//!   for a P0 and a P4 request: the compare-and-swaps on the pool's and the
//!   endpoint's counts, and the adaptive sample.
//! - `admission/limited-full-endpoint`: as `limited/p2`, with the picked
//!   endpoint at its capacity, so the request goes to the least loaded one
//!   with room (a scan of the eligible set).
//! - `admission/added-latency`: one observation of the per-class
//!   added-latency histogram, which every request makes.
//!
//! `cargo bench -p switchyard --bench admission -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use switchyard::engine::{
    Admission, AdmissionSettings, Endpoint, PickRequest, Pool, Priority, RequestHeaders,
    RequestInfo,
};

/// Endpoints in the pool.
const ENDPOINTS: u32 = 10;

fn pool(capacity: u32, limited: bool) -> Arc<Pool> {
    let endpoints = (0..ENDPOINTS)
        .map(|id| {
            let address = format!("10.0.0.{}:8080", id + 1);
            Arc::new(Endpoint::new(id, &address, 1, capacity).expect("valid address"))
        })
        .collect();
    let pool = Pool::new("bench".into(), endpoints, None, None);
    let pool = if limited {
        pool.with_admission(Admission::new(AdmissionSettings {
            max_in_flight: 1000,
            ..AdmissionSettings::default()
        }))
    } else {
        pool
    };
    Arc::new(pool)
}

/// One request's allocation around its exchange.
fn allocate(pool: &Pool, class: Priority, headers: &mut http::HeaderMap) {
    let mut request = PickRequest {
        info: RequestInfo {
            priority: class,
            ..RequestInfo::default()
        },
        headers: RequestHeaders::Map(headers),
        placement: switchyard::engine::Placement::NONE,
    };
    let picked = pool.pick(&mut request).expect("eligible endpoints");
    let guard = pool.try_start(&picked, class).expect("room");
    pool.record_outcome(
        guard.endpoint(),
        1_000_000,
        true,
        &switchyard::engine::Placement::NONE,
    );
    black_box(&guard);
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut headers = http::HeaderMap::new();
    let mut group = criterion.benchmark_group("admission");

    let unlimited = pool(0, false);
    group.bench_function("unlimited", |b| {
        b.iter(|| allocate(&unlimited, Priority::P2, &mut headers))
    });
    let limited = pool(100, true);
    for class in [Priority::P0, Priority::P4] {
        group.bench_function(format!("limited/{}", class.name()), |b| {
            b.iter(|| allocate(&limited, class, &mut headers))
        });
    }
    // Every endpoint's first pick lands on a full endpoint: one held at
    // capacity 1, the rest free.
    let full = pool(1, true);
    let first = Arc::clone(&full.endpoints().all[0]);
    let _held = full.try_start(&first, Priority::P0).expect("room");
    group.bench_function("limited-full-endpoint", |b| {
        b.iter(|| {
            let guard = full
                .try_start(&first, Priority::P0)
                .expect("room elsewhere");
            black_box(&guard);
        })
    });
    group.bench_function("added-latency", |b| {
        b.iter(|| {
            unlimited
                .added_latency
                .observe(black_box(Priority::P2), Duration::from_micros(40))
        })
    });
    group.finish();
    criterion.final_summary();
}
