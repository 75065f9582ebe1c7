//! `switchyard:plugin/host`: log, clock, randomness, live load, headers.

use std::sync::OnceLock;
use std::time::Instant;

use crate::plugins::bindings::host::{Host, LogLevel};
use crate::plugins::bindings::types::{self, EndpointId, Health, Load};
use crate::plugins::state::StoreState;

impl types::Host for StoreState {}

fn clock_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

impl Host for StoreState {
    fn log(&mut self, level: LogLevel, message: String) {
        let level = match level {
            LogLevel::Trace => tracing::Level::TRACE,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        };
        // Cut and rate-limited per plugin (`plugins::log`).
        self.log.write(level, &message);
    }

    fn now_ns(&mut self) -> u64 {
        clock_base().elapsed().as_nanos() as u64
    }

    fn random_u64(&mut self) -> u64 {
        fastrand::u64(..)
    }

    fn endpoint_load(&mut self, id: EndpointId) -> Option<Load> {
        let endpoint = self.endpoints.as_ref()?.get(id)?;
        let load = endpoint.stats.snapshot();
        Some(Load {
            in_flight: load.in_flight,
            capacity: endpoint.capacity,
            ewma_latency_us: load.ewma_latency_us,
            success_permille: load.success_permille,
            health: match endpoint.health() {
                crate::engine::Health::Healthy => Health::Healthy,
                crate::engine::Health::Degraded => Health::Degraded,
                crate::engine::Health::Unhealthy => Health::Unhealthy,
                crate::engine::Health::Unknown => Health::Unknown,
            },
        })
    }

    fn endpoint_load_pair(
        &mut self,
        first: EndpointId,
        second: EndpointId,
    ) -> (Option<Load>, Option<Load>) {
        (self.endpoint_load(first), self.endpoint_load(second))
    }

    fn request_header(&mut self, name: String) -> Option<String> {
        let mut values = self.headers.get_all(name.as_str()).iter();
        let first = values.next()?.to_str().ok()?.to_string();
        Some(values.fold(first, |mut joined, value| {
            if let Ok(value) = value.to_str() {
                joined.push_str(", ");
                joined.push_str(value);
            }
            joined
        }))
    }
}
