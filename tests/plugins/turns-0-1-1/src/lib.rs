//! A balancer built against contract 0.1.1 with wit-bindgen alone, as a
//! plugin from before one instance served many pools: its state lives in
//! the instance (one per pool), it takes turns over the pushed endpoints,
//! and it skips an endpoint whose live load the host does not know. The
//! host must keep loading it, under the one-instance-per-pool model.

// The generated glue is `unsafe` by nature (the canonical ABI).
#[allow(unsafe_code, missing_docs, missing_debug_implementations)]
mod bindings {
    use std::cell::RefCell;

    wit_bindgen::generate!({
        path: "../../../wit-compat/0.1.1",
        world: "balancer-plugin",
    });

    use exports::switchyard::plugin::balancer::Guest;
    use switchyard::plugin::host;
    use switchyard::plugin::types::{Endpoint, EndpointId, RequestInfo};

    thread_local! {
        static ENDPOINTS: RefCell<Vec<EndpointId>> = const { RefCell::new(Vec::new()) };
        static NEXT: RefCell<usize> = const { RefCell::new(0) };
    }

    // Exported only to wasm: the export symbols' names are not valid for a
    // native shared library.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    struct Turns;

    impl Guest for Turns {
        fn configure(_config: String) -> Result<(), String> {
            Ok(())
        }

        fn set_endpoints(endpoints: Vec<Endpoint>) {
            ENDPOINTS.with(|ids| *ids.borrow_mut() = endpoints.iter().map(|e| e.id).collect());
        }

        fn pick(_request: RequestInfo) -> Option<EndpointId> {
            let ids = ENDPOINTS.with(|ids| ids.borrow().clone());
            if ids.is_empty() {
                return None;
            }
            let turn = NEXT.with(|next| {
                let mut next = next.borrow_mut();
                *next += 1;
                *next - 1
            });
            let id = ids[turn % ids.len()];
            // The 0.1 imports answer from the same host as 0.2's.
            host::endpoint_load(id).map(|_| id)
        }
    }

    #[cfg(target_arch = "wasm32")]
    export!(Turns);
}
