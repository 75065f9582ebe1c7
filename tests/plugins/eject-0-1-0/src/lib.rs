//! A recovery policy built against contract 0.1.0 with wit-bindgen alone,
//! as a plugin from before `grpc-status` was: it ejects an endpoint that
//! answered 503 for a minute and gives up on everything else. The host
//! must keep loading it, and hand it a gRPC UNAVAILABLE as the 503 the
//! gRPC spec pairs with it.

// The generated glue is `unsafe` by nature (the canonical ABI).
#[allow(unsafe_code, missing_docs, missing_debug_implementations)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit-compat/0.1.0",
        world: "recovery-plugin",
    });

    use exports::switchyard::plugin::recovery::{Decision, Ejection, Failure, FailureKind, Guest};

    // Exported only to wasm: the export symbols' names are not valid for a
    // native shared library.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    struct Eject503;

    impl Guest for Eject503 {
        fn configure(_config: String) -> Result<(), String> {
            Ok(())
        }

        fn on_failure(failure: Failure) -> Decision {
            match failure.kind {
                FailureKind::Status(503) => Decision::Eject(Ejection {
                    duration_ms: 60_000,
                    retry: None,
                }),
                _ => Decision::GiveUp(None),
            }
        }
    }

    #[cfg(target_arch = "wasm32")]
    export!(Eject503);
}
