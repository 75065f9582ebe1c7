//! The imports of contract 0.1, answered by the current implementations:
//! the same functions and types, registered under the 0.1 names.

use crate::plugins::bindings::v0_1::common::switchyard::plugin::{host as old, types};
use crate::plugins::bindings::v0_1::health::switchyard::plugin::probe as old_probe;
use crate::plugins::bindings::{host, probe, types as current};
use crate::plugins::state::StoreState;

impl types::Host for StoreState {}

fn health(health: current::Health) -> types::Health {
    match health {
        current::Health::Healthy => types::Health::Healthy,
        current::Health::Degraded => types::Health::Degraded,
        current::Health::Unhealthy => types::Health::Unhealthy,
        current::Health::Unknown => types::Health::Unknown,
    }
}

fn load(load: current::Load) -> types::Load {
    types::Load {
        in_flight: load.in_flight,
        capacity: load.capacity,
        ewma_latency_us: load.ewma_latency_us,
        success_permille: load.success_permille,
        health: health(load.health),
    }
}

impl old::Host for StoreState {
    fn log(&mut self, level: old::LogLevel, message: String) {
        let level = match level {
            old::LogLevel::Trace => host::LogLevel::Trace,
            old::LogLevel::Debug => host::LogLevel::Debug,
            old::LogLevel::Info => host::LogLevel::Info,
            old::LogLevel::Warn => host::LogLevel::Warn,
            old::LogLevel::Error => host::LogLevel::Error,
        };
        host::Host::log(self, level, message)
    }

    fn now_ns(&mut self) -> u64 {
        host::Host::now_ns(self)
    }

    fn random_u64(&mut self) -> u64 {
        host::Host::random_u64(self)
    }

    fn endpoint_load(&mut self, id: types::EndpointId) -> Option<types::Load> {
        host::Host::endpoint_load(self, id).map(load)
    }

    fn endpoint_load_pair(
        &mut self,
        first: types::EndpointId,
        second: types::EndpointId,
    ) -> (Option<types::Load>, Option<types::Load>) {
        let (first, second) = host::Host::endpoint_load_pair(self, first, second);
        (first.map(load), second.map(load))
    }

    fn request_header(&mut self, name: String) -> Option<String> {
        host::Host::request_header(self, name)
    }
}

fn probe_error(error: probe::ProbeError) -> old_probe::ProbeError {
    match error {
        probe::ProbeError::Refused => old_probe::ProbeError::Refused,
        probe::ProbeError::Timeout => old_probe::ProbeError::Timeout,
        probe::ProbeError::Reset => old_probe::ProbeError::Reset,
        probe::ProbeError::InvalidResponse(why) => old_probe::ProbeError::InvalidResponse(why),
        probe::ProbeError::NotAllowed(why) => old_probe::ProbeError::NotAllowed(why),
    }
}

impl old_probe::Host for StoreState {
    async fn http(
        &mut self,
        request: old_probe::HttpRequest,
    ) -> Result<old_probe::HttpResponse, old_probe::ProbeError> {
        let request = probe::HttpRequest {
            method: request.method,
            path: request.path,
            headers: request.headers,
            timeout_ms: request.timeout_ms,
        };
        probe::Host::http(self, request)
            .await
            .map(|response| old_probe::HttpResponse {
                status: response.status,
                headers: response.headers,
                body: response.body,
                latency_us: response.latency_us,
            })
            .map_err(probe_error)
    }

    async fn tcp_connect(&mut self, timeout_ms: u32) -> Result<u32, old_probe::ProbeError> {
        probe::Host::tcp_connect(self, timeout_ms)
            .await
            .map_err(probe_error)
    }
}
