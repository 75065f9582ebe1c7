//! The one place the host generates bindings from `wit/`. The shared imports
//! are generated once and each world reuses them, so `types` and `host` have
//! a single Rust definition.
//!
//! `v0_1` holds the worlds of contract 0.1 (free functions, one instance per
//! pool), generated from the frozen WIT in `wit-compat/`, so plugins built
//! against it keep loading.

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

/// Contract 0.1 (0.1.0 and 0.1.1): its shared imports are registered under
/// their own names (a 0.1 import does not match a 0.2 export by semver) and
/// answered by the current implementations (`imports/v0_1.rs`).
pub mod v0_1 {
    pub mod common {
        wasmtime::component::bindgen!({
            path: "../wit-compat/0.1.1",
            world: "host-imports",
        });
    }

    pub mod balancer {
        wasmtime::component::bindgen!({
            path: "../wit-compat/0.1.1",
            world: "balancer-plugin",
            with: {
                "switchyard:plugin/types": crate::plugins::bindings::v0_1::common::switchyard::plugin::types,
                "switchyard:plugin/host": crate::plugins::bindings::v0_1::common::switchyard::plugin::host,
            },
        });
    }

    pub mod health {
        wasmtime::component::bindgen!({
            path: "../wit-compat/0.1.1",
            world: "health-plugin",
            with: {
                "switchyard:plugin/types": crate::plugins::bindings::v0_1::common::switchyard::plugin::types,
                "switchyard:plugin/host": crate::plugins::bindings::v0_1::common::switchyard::plugin::host,
            },
        });
    }

    pub mod recovery {
        wasmtime::component::bindgen!({
            path: "../wit-compat/0.1.1",
            world: "recovery-plugin",
            with: {
                "switchyard:plugin/types": crate::plugins::bindings::v0_1::common::switchyard::plugin::types,
                "switchyard:plugin/host": crate::plugins::bindings::v0_1::common::switchyard::plugin::host,
            },
        });
    }

    /// The recovery world of contract 0.1.0 (before `grpc-status`). Its
    /// shared imports are 0.1.1's (the linker matches 0.1.0 imports to
    /// 0.1.1 by semver).
    pub mod recovery_0_1_0 {
        wasmtime::component::bindgen!({
            path: "../wit-compat/0.1.0",
            world: "recovery-plugin",
            with: {
                "switchyard:plugin/types": crate::plugins::bindings::v0_1::common::switchyard::plugin::types,
                "switchyard:plugin/host": crate::plugins::bindings::v0_1::common::switchyard::plugin::host,
            },
        });
    }
}

pub use common::switchyard::plugin::{host, types};
pub use health::switchyard::plugin::probe;
