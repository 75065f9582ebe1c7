//! A balancer built against contract 0.2.0 with wit-bindgen alone, as a
//! plugin from before the store and the state exports (0.2.1): it takes
//! turns over the pushed endpoints, per pool, and skips an endpoint whose
//! live load the host does not know. The host must keep loading it, with
//! its 0.2.0 imports matched to 0.2.1's and no state carried on a swap.

// The generated glue is `unsafe` by nature (the canonical ABI).
#[allow(unsafe_code, missing_docs, missing_debug_implementations)]
mod bindings {
    use std::cell::RefCell;

    wit_bindgen::generate!({
        path: "../../../wit-compat/0.2.0",
        world: "balancer-plugin",
    });

    use exports::switchyard::plugin::balancer::{Guest, GuestPoolBalancer, PoolBalancer};
    use switchyard::plugin::host;
    use switchyard::plugin::types::{Endpoint, EndpointId, RequestInfo};

    // Exported only to wasm: the export symbols' names are not valid for a
    // native shared library.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    struct Turns;

    /// One pool's place.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    struct Pool {
        endpoints: RefCell<Vec<EndpointId>>,
        next: RefCell<usize>,
    }

    impl Guest for Turns {
        type PoolBalancer = Pool;
    }

    impl GuestPoolBalancer for Pool {
        fn create(_config: String) -> Result<PoolBalancer, String> {
            Ok(PoolBalancer::new(Pool {
                endpoints: RefCell::new(Vec::new()),
                next: RefCell::new(0),
            }))
        }

        fn set_endpoints(&self, endpoints: Vec<Endpoint>) {
            *self.endpoints.borrow_mut() = endpoints.iter().map(|e| e.id).collect();
        }

        fn pick(&self, _request: RequestInfo) -> Option<EndpointId> {
            let ids = self.endpoints.borrow();
            if ids.is_empty() {
                return None;
            }
            let mut next = self.next.borrow_mut();
            let id = ids[*next % ids.len()];
            *next += 1;
            // The 0.2.0 imports answer from the host's 0.2.1 ones.
            host::endpoint_load(id).map(|_| id)
        }
    }

    #[cfg(target_arch = "wasm32")]
    export!(Turns);
}
