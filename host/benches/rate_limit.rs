//! The cost of ONE rate-limit decision (`RateLimit::admit`, as both proxy
//! paths call it right after the route is found, with the instant the
//! request began): the key's hash, and the bucket's load and
//! compare-and-swap.
//!
//! Benchmark ids read as a table: `rate_limit/<key>/<outcome>`.
//!
//! - `route/admitted`: one bucket for the route, every request admitted
//!   (a burst larger than the run), so each decision writes the bucket.
//! - `route/admitted+clock`: the same with a clock read of its own
//!   (`Instant::now()`), which the proxy does not need: the difference is
//!   what a limiter that read the clock itself would cost more.
//! - `route/refused`: the same bucket kept empty, so each decision only
//!   reads it (a refusal writes nothing).
//! - `client/admitted`: keyed by the client's address: its hash first.
//! - `header/admitted`: keyed by a 32-byte `x-api-key` value.
//! - `route/admitted-contended`: `route/admitted` while another thread
//!   decides on the same bucket as fast as it can, so their
//!   compare-and-swaps collide (the worst case: two workers, one bucket).
//!
//! `cargo bench -p switchyard --bench rate_limit -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use http::HeaderName;
use switchyard::engine::{RateKey, RateLimit};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
const API_KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

/// A limit that admits everything a benchmark can send: a burst of
/// `u32::MAX` at 1,000,000 a second lasts over an hour of admissions.
fn admitting(key: RateKey) -> RateLimit {
    RateLimit::new(1_000_000, u32::MAX, key, 4096)
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut group = criterion.benchmark_group("rate_limit");
    // The instant the request began, read once by the proxy.
    let at = Instant::now();

    let route = admitting(RateKey::Route);
    group.bench_function("route/admitted", |b| {
        b.iter(|| route.admit(at, black_box(CLIENT), |_| None).is_ok())
    });

    let clocked = admitting(RateKey::Route);
    group.bench_function("route/admitted+clock", |b| {
        b.iter(|| {
            clocked
                .admit(Instant::now(), black_box(CLIENT), |_| None)
                .is_ok()
        })
    });

    let empty = RateLimit::new(1, 1, RateKey::Route, 1);
    let _ = empty.admit(Instant::now(), CLIENT, |_| None);
    group.bench_function("route/refused", |b| {
        b.iter(|| empty.admit(at, black_box(CLIENT), |_| None).is_err())
    });

    let client = admitting(RateKey::Client);
    group.bench_function("client/admitted", |b| {
        b.iter(|| client.admit(at, black_box(CLIENT), |_| None).is_ok())
    });

    let header = admitting(RateKey::Header(HeaderName::from_static("x-api-key")));
    group.bench_function("header/admitted", |b| {
        b.iter(|| {
            header
                .admit(at, CLIENT, |_| Some(black_box(API_KEY)))
                .is_ok()
        })
    });

    let shared = Arc::new(admitting(RateKey::Route));
    let stop = Arc::new(AtomicBool::new(false));
    let rival = {
        let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                black_box(shared.admit(Instant::now(), CLIENT, |_| None).is_ok());
            }
        })
    };
    group.bench_function("route/admitted-contended", |b| {
        b.iter_custom(|iterations| {
            let started = Instant::now();
            for _ in 0..iterations {
                black_box(shared.admit(at, black_box(CLIENT), |_| None).is_ok());
            }
            started.elapsed()
        })
    });
    stop.store(true, Ordering::Relaxed);
    rival.join().unwrap();

    group.finish();
    criterion.final_summary();
}
