//! A health check built against contract 0.1.1 with wit-bindgen alone, as a
//! plugin from before one instance served many pools: `GET /` through the
//! 0.1 probe import, healthy on 2xx. The host must keep loading it and
//! answer its probes under the 0.1 names.

// The generated glue is `unsafe` by nature (the canonical ABI).
#[allow(unsafe_code, missing_docs, missing_debug_implementations)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit-compat/0.1.1",
        world: "health-plugin",
    });

    use exports::switchyard::plugin::health_check::{Guest, Verdict};
    use switchyard::plugin::probe::{self, HttpRequest};
    use switchyard::plugin::types::{Endpoint, Health};

    // Exported only to wasm: the export symbols' names are not valid for a
    // native shared library.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    struct Get;

    impl Guest for Get {
        fn configure(_config: String) -> Result<(), String> {
            Ok(())
        }

        fn check(_target: Endpoint) -> Verdict {
            let request = HttpRequest {
                method: "GET".into(),
                path: "/".into(),
                headers: Vec::new(),
                timeout_ms: 5_000,
            };
            match probe::http(&request) {
                Ok(response) if (200..300).contains(&response.status) => Verdict {
                    health: Health::Healthy,
                    reason: format!("status {}", response.status),
                },
                Ok(response) => Verdict {
                    health: Health::Unhealthy,
                    reason: format!("status {}", response.status),
                },
                Err(error) => Verdict {
                    health: Health::Unhealthy,
                    reason: format!("{error:?}"),
                },
            }
        }
    }

    #[cfg(target_arch = "wasm32")]
    export!(Get);
}
