//! The one place the host generates bindings from `wit/`. The shared imports
//! are generated once and each world reuses them, so `types` and `host` have
//! a single Rust definition.

#![allow(missing_docs, missing_debug_implementations)]

pub mod common {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "host-imports",
    });
}

pub mod balancer {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "balancer-plugin",
        with: {
            "switchyard:plugin/types": crate::plugins::bindings::common::switchyard::plugin::types,
            "switchyard:plugin/host": crate::plugins::bindings::common::switchyard::plugin::host,
        },
    });
}

pub mod health {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "health-plugin",
        with: {
            "switchyard:plugin/types": crate::plugins::bindings::common::switchyard::plugin::types,
            "switchyard:plugin/host": crate::plugins::bindings::common::switchyard::plugin::host,
        },
    });
}

pub mod recovery {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "recovery-plugin",
        with: {
            "switchyard:plugin/types": crate::plugins::bindings::common::switchyard::plugin::types,
            "switchyard:plugin/host": crate::plugins::bindings::common::switchyard::plugin::host,
        },
    });
}

/// The recovery world of contract 0.1.0 (before `grpc-status`), so
/// recovery policies built against it keep loading: the only world whose
/// types changed in 0.1.1. Its shared imports are the current ones (the
/// linker matches 0.1.0 imports to 0.1.1 by semver).
pub mod recovery_0_1_0 {
    wasmtime::component::bindgen!({
        path: "../wit-compat/0.1.0",
        world: "recovery-plugin",
        with: {
            "switchyard:plugin/types": crate::plugins::bindings::common::switchyard::plugin::types,
            "switchyard:plugin/host": crate::plugins::bindings::common::switchyard::plugin::host,
        },
    });
}

pub use common::switchyard::plugin::{host, types};
pub use health::switchyard::plugin::probe;
