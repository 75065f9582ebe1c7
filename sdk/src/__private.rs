//! Generated bindings and the glue the export macros expand to. Not part of
//! the public API: plugin authors never name anything in here.

#[cfg(target_arch = "wasm32")]
pub use wasm::*;

#[cfg(target_arch = "wasm32")]
mod wasm {
    #![allow(missing_docs, missing_debug_implementations)]

    use std::cell::RefCell;

    pub use wit_bindgen;

    #[cfg(not(any(feature = "balancer", feature = "health-check", feature = "recovery")))]
    compile_error!(
        "switchyard-sdk: enable the feature of the world this plugin implements: \
         `balancer`, `health-check` or `recovery`"
    );

    /// The shared imports (`types` and `host`), generated once and reused by
    /// every world below so that the conversions exist once.
    pub mod common {
        wit_bindgen::generate!({
            path: "../wit",
            world: "host-imports",
            runtime_path: "switchyard_sdk::__private::wit_bindgen::rt",
        });
    }

    #[cfg(feature = "balancer")]
    pub mod balancer_world {
        wit_bindgen::generate!({
            path: "../wit",
            world: "balancer-plugin",
            runtime_path: "switchyard_sdk::__private::wit_bindgen::rt",
            pub_export_macro: true,
            export_macro_name: "export_balancer_world",
            default_bindings_module: "switchyard_sdk::__private::balancer_world",
            with: {
                "switchyard:plugin/types@0.2.1": crate::__private::common::switchyard::plugin::types,
                "switchyard:plugin/host@0.2.1": crate::__private::common::switchyard::plugin::host,
            },
        });
    }

    #[cfg(feature = "health-check")]
    pub mod health_world {
        wit_bindgen::generate!({
            path: "../wit",
            world: "health-plugin",
            runtime_path: "switchyard_sdk::__private::wit_bindgen::rt",
            pub_export_macro: true,
            export_macro_name: "export_health_world",
            default_bindings_module: "switchyard_sdk::__private::health_world",
            with: {
                "switchyard:plugin/types@0.2.1": crate::__private::common::switchyard::plugin::types,
                "switchyard:plugin/host@0.2.1": crate::__private::common::switchyard::plugin::host,
            },
        });
    }

    #[cfg(feature = "recovery")]
    pub mod recovery_world {
        wit_bindgen::generate!({
            path: "../wit",
            world: "recovery-plugin",
            runtime_path: "switchyard_sdk::__private::wit_bindgen::rt",
            pub_export_macro: true,
            export_macro_name: "export_recovery_world",
            default_bindings_module: "switchyard_sdk::__private::recovery_world",
            with: {
                "switchyard:plugin/types@0.2.1": crate::__private::common::switchyard::plugin::types,
                "switchyard:plugin/host@0.2.1": crate::__private::common::switchyard::plugin::host,
            },
        });
    }

    use common::switchyard::plugin::{host as raw_host, types as wit};

    /// One pool's plugin value inside the resource the host holds for the
    /// pool. The host never calls into a resource while another call runs
    /// (an instance serves one call at a time), so the borrow never fails.
    pub struct PoolState<P>(RefCell<P>);

    impl<P> PoolState<P> {
        pub fn create(config: &str, build: fn(&str) -> Result<P, String>) -> Result<Self, String> {
            build(config).map(|plugin| PoolState(RefCell::new(plugin)))
        }

        pub fn with<R>(&self, call: impl FnOnce(&mut P) -> R) -> R {
            call(&mut self.0.borrow_mut())
        }
    }

    fn health_from_wit(health: wit::Health) -> crate::Health {
        match health {
            wit::Health::Healthy => crate::Health::Healthy,
            wit::Health::Degraded => crate::Health::Degraded,
            wit::Health::Unhealthy => crate::Health::Unhealthy,
            wit::Health::Unknown => crate::Health::Unknown,
        }
    }

    #[cfg_attr(not(feature = "health-check"), allow(dead_code))]
    fn health_to_wit(health: crate::Health) -> wit::Health {
        match health {
            crate::Health::Healthy => wit::Health::Healthy,
            crate::Health::Degraded => wit::Health::Degraded,
            crate::Health::Unhealthy => wit::Health::Unhealthy,
            crate::Health::Unknown => wit::Health::Unknown,
        }
    }

    #[cfg_attr(
        not(any(feature = "balancer", feature = "health-check")),
        allow(dead_code)
    )]
    fn endpoint_from_wit(endpoint: wit::Endpoint) -> crate::Endpoint {
        crate::Endpoint {
            id: endpoint.id,
            address: endpoint.address,
            weight: endpoint.weight,
            zone: endpoint.zone,
            labels: endpoint.labels,
        }
    }

    #[cfg_attr(not(any(feature = "balancer", feature = "recovery")), allow(dead_code))]
    fn request_from_wit(request: wit::RequestInfo) -> crate::RequestInfo {
        crate::RequestInfo {
            priority: match request.priority {
                wit::Priority::P0 => crate::Priority::P0,
                wit::Priority::P1 => crate::Priority::P1,
                wit::Priority::P2 => crate::Priority::P2,
                wit::Priority::P3 => crate::Priority::P3,
                wit::Priority::P4 => crate::Priority::P4,
            },
            attempt: request.attempt,
            hash: request.hash,
        }
    }

    pub fn raw_log(level: crate::host::LogLevel, message: &str) {
        use crate::host::LogLevel;
        let level = match level {
            LogLevel::Trace => raw_host::LogLevel::Trace,
            LogLevel::Debug => raw_host::LogLevel::Debug,
            LogLevel::Info => raw_host::LogLevel::Info,
            LogLevel::Warn => raw_host::LogLevel::Warn,
            LogLevel::Error => raw_host::LogLevel::Error,
        };
        raw_host::log(level, message);
    }

    #[cfg(feature = "balancer")]
    use balancer_world::switchyard::plugin::store as raw_store;
    #[cfg(all(feature = "recovery", not(feature = "balancer")))]
    use recovery_world::switchyard::plugin::store as raw_store;

    #[cfg(any(feature = "balancer", feature = "recovery"))]
    fn store_error_from_wit(error: raw_store::StoreError) -> crate::store::StoreError {
        match error {
            raw_store::StoreError::Full => crate::store::StoreError::Full,
            raw_store::StoreError::BadName => crate::store::StoreError::BadName,
            raw_store::StoreError::NoPool => crate::store::StoreError::NoPool,
        }
    }

    pub fn raw_store_get(endpoint: Option<crate::EndpointId>, name: &str) -> i64 {
        #[cfg(any(feature = "balancer", feature = "recovery"))]
        return raw_store::get(endpoint, name);
        #[cfg(not(any(feature = "balancer", feature = "recovery")))]
        return {
            let _ = (endpoint, name);
            0
        };
    }

    pub fn raw_store_add(
        endpoint: Option<crate::EndpointId>,
        name: &str,
        delta: i64,
    ) -> Result<i64, crate::store::StoreError> {
        #[cfg(any(feature = "balancer", feature = "recovery"))]
        return raw_store::add(endpoint, name, delta).map_err(store_error_from_wit);
        #[cfg(not(any(feature = "balancer", feature = "recovery")))]
        return {
            let _ = (endpoint, name, delta);
            Err(crate::store::StoreError::NoPool)
        };
    }

    pub fn raw_store_compare_and_swap(
        endpoint: Option<crate::EndpointId>,
        name: &str,
        expected: i64,
        new: i64,
    ) -> Result<i64, crate::store::StoreError> {
        #[cfg(any(feature = "balancer", feature = "recovery"))]
        return raw_store::compare_and_swap(endpoint, name, expected, new)
            .map_err(store_error_from_wit);
        #[cfg(not(any(feature = "balancer", feature = "recovery")))]
        return {
            let _ = (endpoint, name, expected, new);
            Err(crate::store::StoreError::NoPool)
        };
    }

    /// A pool's state for `snapshot`, given the plugin value.
    pub fn state_snapshot<P>(state: &PoolState<P>, snapshot: fn(&mut P) -> Vec<u8>) -> Vec<u8> {
        state.with(snapshot)
    }

    /// Restores a pool's state from an earlier version's `snapshot`.
    pub fn state_restore<P>(
        state: &PoolState<P>,
        bytes: &[u8],
        restore: fn(&mut P, &[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        state.with(|plugin| restore(plugin, bytes))
    }

    pub fn raw_load(id: crate::EndpointId) -> Option<crate::Load> {
        raw_host::endpoint_load(id).map(load_from_wit)
    }

    pub fn raw_load_pair(
        first: crate::EndpointId,
        second: crate::EndpointId,
    ) -> (Option<crate::Load>, Option<crate::Load>) {
        let (first, second) = raw_host::endpoint_load_pair(first, second);
        (first.map(load_from_wit), second.map(load_from_wit))
    }

    fn load_from_wit(load: wit::Load) -> crate::Load {
        crate::Load {
            in_flight: load.in_flight,
            capacity: load.capacity,
            ewma_latency_us: load.ewma_latency_us,
            success_permille: load.success_permille,
            health: health_from_wit(load.health),
        }
    }

    #[cfg(feature = "balancer")]
    pub fn balancer_set_endpoints<P: crate::Balancer>(
        state: &PoolState<P>,
        endpoints: Vec<wit::Endpoint>,
    ) {
        let endpoints = endpoints.into_iter().map(endpoint_from_wit).collect();
        state.with(|plugin| plugin.set_endpoints(endpoints));
    }

    #[cfg(feature = "balancer")]
    pub fn balancer_pick<P: crate::Balancer>(
        state: &PoolState<P>,
        request: wit::RequestInfo,
    ) -> Option<u32> {
        let request = request_from_wit(request);
        state.with(|plugin| plugin.pick(&request))
    }

    #[cfg(feature = "health-check")]
    pub fn health_check<P: crate::HealthCheck>(
        state: &PoolState<P>,
        target: wit::Endpoint,
    ) -> health_world::exports::switchyard::plugin::health_check::Verdict {
        let target = endpoint_from_wit(target);
        let verdict = state.with(|plugin| plugin.check(&target));
        health_world::exports::switchyard::plugin::health_check::Verdict {
            health: health_to_wit(verdict.health),
            reason: verdict.reason,
        }
    }

    #[cfg(feature = "health-check")]
    fn probe_error_from_wit(
        error: health_world::switchyard::plugin::probe::ProbeError,
    ) -> crate::probe::ProbeError {
        use health_world::switchyard::plugin::probe::ProbeError as Raw;
        match error {
            Raw::Refused => crate::probe::ProbeError::Refused,
            Raw::Timeout => crate::probe::ProbeError::Timeout,
            Raw::Reset => crate::probe::ProbeError::Reset,
            Raw::InvalidResponse(why) => crate::probe::ProbeError::InvalidResponse(why),
            Raw::NotAllowed(why) => crate::probe::ProbeError::NotAllowed(why),
        }
    }

    #[cfg(feature = "health-check")]
    pub fn raw_http(
        request: &crate::probe::HttpRequest,
    ) -> Result<crate::probe::HttpResponse, crate::probe::ProbeError> {
        use health_world::switchyard::plugin::probe as raw;
        let request = raw::HttpRequest {
            method: request.method.clone(),
            path: request.path.clone(),
            headers: request.headers.clone(),
            timeout_ms: request.timeout_ms,
        };
        raw::http(&request)
            .map(|response| crate::probe::HttpResponse {
                status: response.status,
                headers: response.headers,
                body: response.body,
                latency_us: response.latency_us,
            })
            .map_err(probe_error_from_wit)
    }

    #[cfg(feature = "health-check")]
    pub fn raw_tcp_connect(timeout_ms: u32) -> Result<u32, crate::probe::ProbeError> {
        health_world::switchyard::plugin::probe::tcp_connect(timeout_ms)
            .map_err(probe_error_from_wit)
    }

    #[cfg(feature = "recovery")]
    pub fn recovery_on_failure<P: crate::Recovery>(
        state: &PoolState<P>,
        failure: recovery_world::exports::switchyard::plugin::recovery::Failure,
    ) -> recovery_world::exports::switchyard::plugin::recovery::Decision {
        use recovery_world::exports::switchyard::plugin::recovery as raw;
        let failure = crate::Failure {
            endpoint: failure.endpoint,
            kind: match failure.kind {
                raw::FailureKind::ConnectRefused => crate::FailureKind::ConnectRefused,
                raw::FailureKind::ConnectTimeout => crate::FailureKind::ConnectTimeout,
                raw::FailureKind::Reset => crate::FailureKind::Reset,
                raw::FailureKind::ResponseTimeout => crate::FailureKind::ResponseTimeout,
                raw::FailureKind::Status(status) => crate::FailureKind::Status(status),
                raw::FailureKind::GrpcStatus(code) => crate::FailureKind::GrpcStatus(code),
            },
            request: request_from_wit(failure.request),
            method: failure.method,
            replayable: failure.replayable,
            elapsed_ms: failure.elapsed_ms,
        };
        let decision = state.with(|plugin| plugin.on_failure(&failure));
        let retry = |retry: crate::Retry| raw::Retry {
            delay_ms: retry.delay_ms,
            same_endpoint: retry.same_endpoint,
        };
        match decision {
            crate::Decision::Retry(r) => raw::Decision::Retry(retry(r)),
            crate::Decision::Eject(ejection) => raw::Decision::Eject(raw::Ejection {
                duration_ms: ejection.duration_ms,
                retry: ejection.retry.map(retry),
            }),
            crate::Decision::GiveUp(status) => raw::Decision::GiveUp(status),
        }
    }
}
