//! `switchyard:plugin/host`: log, clock, randomness, live load, headers.

use std::sync::OnceLock;
use std::time::Instant;

use crate::plugins::bindings::host::{Host, LogLevel};
use crate::plugins::bindings::types::{self, EndpointId, Health, Load};
use crate::plugins::recording::HostCall;
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
        if let Some(feed) = &mut self.replay {
            return feed.now_ns();
        }
        let now = clock_base().elapsed().as_nanos() as u64;
        if let Some(calls) = &mut self.recording {
            calls.push(HostCall::NowNs(now));
        }
        now
    }

    fn random_u64(&mut self) -> u64 {
        if let Some(feed) = &mut self.replay {
            return feed.random_u64();
        }
        let drawn = fastrand::u64(..);
        if let Some(calls) = &mut self.recording {
            calls.push(HostCall::RandomU64(drawn));
        }
        drawn
    }

    fn endpoint_load(&mut self, id: EndpointId) -> Option<Load> {
        if let Some(feed) = &mut self.replay {
            return feed.endpoint_load(id);
        }
        let load = self.live_load(id);
        if let Some(calls) = &mut self.recording {
            calls.push(HostCall::EndpointLoad {
                id,
                load: load.as_ref().map(Into::into),
            });
        }
        load
    }

    fn endpoint_load_pair(
        &mut self,
        first: EndpointId,
        second: EndpointId,
    ) -> (Option<Load>, Option<Load>) {
        if let Some(feed) = &mut self.replay {
            return feed.endpoint_load_pair(first, second);
        }
        let loads = (self.live_load(first), self.live_load(second));
        if let Some(calls) = &mut self.recording {
            calls.push(HostCall::EndpointLoadPair {
                ids: (first, second),
                loads: (
                    loads.0.as_ref().map(Into::into),
                    loads.1.as_ref().map(Into::into),
                ),
            });
        }
        loads
    }

    fn request_header(&mut self, name: String) -> Option<String> {
        if let Some(feed) = &mut self.replay {
            return feed.request_header(&name);
        }
        let value = self.header(&name);
        if let Some(calls) = &mut self.recording {
            calls.push(HostCall::RequestHeader {
                name,
                value: value.clone(),
            });
        }
        value
    }
}

impl StoreState {
    /// The live load of endpoint `id` of the pool being served.
    fn live_load(&self, id: EndpointId) -> Option<Load> {
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

    /// Every value of the request's header `name`, joined by `, `.
    fn header(&self, name: &str) -> Option<String> {
        let mut values = self.headers.get_all(name).iter();
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
