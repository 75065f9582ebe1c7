//! The balancer world: pick an endpoint for each request.

use crate::{Endpoint, EndpointId, RequestInfo};

/// A load-balancing strategy for one pool.
///
/// For each pool that uses the plugin, on each worker thread, the host
/// makes one value of your type with [`configure`](Balancer::configure)
/// (given the pool's `balancer.config` as JSON), pushes the eligible endpoints with
/// [`set_endpoints`](Balancer::set_endpoints) whenever they change, and calls
/// [`pick`](Balancer::pick) for every request. `pick` is the hot path: keep it
/// O(1) in the pool's size and ask [`crate::host::load`] only for the few
/// endpoints you sample.
///
/// One instance of the plugin holds the values of every pool on its
/// thread, so keep what belongs to a pool in `self`, not in statics.
///
/// An answer outside the pushed set, a panic, or a call that runs past its
/// time budget never reaches the client: the host counts a fault and serves
/// the request with its native round robin. A panic ends the instance, with
/// every pool's value in it; each is made again by `configure` at its
/// pool's next request.
///
/// ```
/// use switchyard_sdk::{export_balancer, host, Balancer, Endpoint, EndpointId, RequestInfo};
///
/// /// Picks uniformly at random.
/// #[derive(Default)]
/// struct Random(Vec<EndpointId>);
///
/// impl Balancer for Random {
///     fn configure(_config: &str) -> Result<Self, String> {
///         Ok(Random::default())
///     }
///     fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
///         self.0 = endpoints.into_iter().map(|e| e.id).collect();
///     }
///     fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
///         if self.0.is_empty() {
///             return None;
///         }
///         Some(self.0[host::random_below(self.0.len() as u32) as usize])
///     }
/// }
///
/// export_balancer!(Random);
/// ```
pub trait Balancer: Sized + 'static {
    /// Builds the strategy from the pool's config, given as JSON (`{}` when
    /// the pool gives none). An `Err` rejects the plugin file for that pool
    /// with your message.
    ///
    /// ```
    /// # use switchyard_sdk::{Balancer, Endpoint, EndpointId, RequestInfo};
    /// struct Fixed(EndpointId);
    /// impl Balancer for Fixed {
    ///     fn configure(config: &str) -> Result<Self, String> {
    ///         config.trim().parse().map(Fixed).map_err(|e| format!("expected an id: {e}"))
    ///     }
    ///     # fn set_endpoints(&mut self, _: Vec<Endpoint>) {}
    ///     # fn pick(&mut self, _: &RequestInfo) -> Option<EndpointId> { Some(self.0) }
    /// }
    /// assert!(Fixed::configure("x").is_err());
    /// ```
    fn configure(config: &str) -> Result<Self, String>;

    /// Replaces the eligible endpoints. Called after `configure` and whenever
    /// the set changes (endpoints added, removed, ejected or readmitted).
    ///
    /// ```
    /// # use switchyard_sdk::{Balancer, Endpoint, EndpointId, RequestInfo};
    /// # struct Ids(Vec<EndpointId>);
    /// # impl Balancer for Ids {
    /// #     fn configure(_: &str) -> Result<Self, String> { Ok(Ids(vec![])) }
    /// fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
    ///     self.0 = endpoints.iter().map(|e| e.id).collect();
    /// }
    /// #     fn pick(&mut self, _: &RequestInfo) -> Option<EndpointId> { None }
    /// # }
    /// ```
    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>);

    /// Picks an endpoint id from the last `set_endpoints`, or `None` to let
    /// the host's round robin place the request.
    ///
    /// ```
    /// # use switchyard_sdk::{Balancer, Endpoint, EndpointId, RequestInfo};
    /// # struct Ids(Vec<EndpointId>, usize);
    /// # impl Balancer for Ids {
    /// #     fn configure(_: &str) -> Result<Self, String> { Ok(Ids(vec![], 0)) }
    /// #     fn set_endpoints(&mut self, _: Vec<Endpoint>) {}
    /// fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
    ///     let id = *self.0.get(self.1 % self.0.len().max(1))?;
    ///     self.1 += 1;
    ///     Some(id)
    /// }
    /// # }
    /// ```
    fn pick(&mut self, request: &RequestInfo) -> Option<EndpointId>;

    /// The pool's state, to be carried to the next version of the plugin
    /// when its file is swapped: each worker asks its old instance's value
    /// for it and hands it to [`restore`](Balancer::restore) of the new
    /// version's value for the same pool. The default carries nothing (an
    /// empty snapshot), and the new version starts afresh. The bytes are
    /// yours to shape; put a version in them if the shape may change.
    ///
    /// ```
    /// # use switchyard_sdk::{Balancer, Endpoint, EndpointId, RequestInfo};
    /// # struct Turns { next: u32 }
    /// # impl Balancer for Turns {
    /// #     fn configure(_: &str) -> Result<Self, String> { Ok(Turns { next: 0 }) }
    /// #     fn set_endpoints(&mut self, _: Vec<Endpoint>) {}
    /// #     fn pick(&mut self, _: &RequestInfo) -> Option<EndpointId> { None }
    /// fn snapshot(&mut self) -> Vec<u8> {
    ///     self.next.to_le_bytes().to_vec()
    /// }
    /// #     fn restore(&mut self, state: &[u8]) -> Result<(), String> {
    /// #         let bytes: [u8; 4] = state.try_into().map_err(|_| "not a turn".to_string())?;
    /// #         self.next = u32::from_le_bytes(bytes);
    /// #         Ok(())
    /// #     }
    /// # }
    /// let mut turns = Turns::configure("{}").unwrap();
    /// turns.next = 7;
    /// assert_eq!(turns.snapshot(), vec![7, 0, 0, 0]);
    /// ```
    fn snapshot(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// Takes over the pool's state from an earlier version's
    /// [`snapshot`](Balancer::snapshot) (never called with an empty one).
    /// An error refuses the new version: the host keeps the running one and
    /// shows the message, so answer an error for bytes you cannot read
    /// rather than starting cold by mistake. The default ignores them.
    ///
    /// ```
    /// # use switchyard_sdk::{Balancer, Endpoint, EndpointId, RequestInfo};
    /// # struct Turns { next: u32 }
    /// # impl Balancer for Turns {
    /// #     fn configure(_: &str) -> Result<Self, String> { Ok(Turns { next: 0 }) }
    /// #     fn set_endpoints(&mut self, _: Vec<Endpoint>) {}
    /// #     fn pick(&mut self, _: &RequestInfo) -> Option<EndpointId> { None }
    /// fn restore(&mut self, state: &[u8]) -> Result<(), String> {
    ///     let bytes: [u8; 4] = state
    ///         .try_into()
    ///         .map_err(|_| format!("expected 4 bytes of turn, got {}", state.len()))?;
    ///     self.next = u32::from_le_bytes(bytes);
    ///     Ok(())
    /// }
    /// # }
    /// let mut turns = Turns::configure("{}").unwrap();
    /// turns.restore(&[3, 0, 0, 0]).unwrap();
    /// assert_eq!(turns.next, 3);
    /// assert!(turns.restore(&[1]).is_err());
    /// ```
    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let _ = state;
        Ok(())
    }
}

/// Registers a [`Balancer`] as the plugin's export. Use it once per crate,
/// with the crate's `switchyard-sdk` dependency built with the `balancer`
/// feature. Natively it expands to nothing, so unit tests are unaffected.
///
/// ```
/// use switchyard_sdk::{export_balancer, Balancer, Endpoint, EndpointId, RequestInfo};
/// struct Nothing;
/// impl Balancer for Nothing {
///     fn configure(_: &str) -> Result<Self, String> { Ok(Nothing) }
///     fn set_endpoints(&mut self, _: Vec<Endpoint>) {}
///     fn pick(&mut self, _: &RequestInfo) -> Option<EndpointId> { None }
/// }
/// export_balancer!(Nothing);
/// ```
#[macro_export]
macro_rules! export_balancer {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::balancer_world::exports::switchyard::plugin::balancer as wit;
            use $crate::__private::common::switchyard::plugin::types as wit_types;

            struct Export;
            struct Pool($crate::__private::PoolState<$plugin>);

            impl wit::Guest for Export {
                type PoolBalancer = Pool;
            }

            impl wit::GuestPoolBalancer for Pool {
                fn create(config: ::std::string::String) -> ::std::result::Result<wit::PoolBalancer, ::std::string::String> {
                    $crate::__private::PoolState::create(&config, <$plugin as $crate::Balancer>::configure)
                        .map(|state| wit::PoolBalancer::new(Pool(state)))
                }
                fn set_endpoints(&self, endpoints: ::std::vec::Vec<wit_types::Endpoint>) {
                    $crate::__private::balancer_set_endpoints::<$plugin>(&self.0, endpoints)
                }
                fn pick(&self, request: wit_types::RequestInfo) -> ::std::option::Option<u32> {
                    $crate::__private::balancer_pick::<$plugin>(&self.0, request)
                }
            }

            impl $crate::__private::balancer_world::exports::switchyard::plugin::balancer_state::Guest for Export {
                fn snapshot(pool: wit::PoolBalancerBorrow<'_>) -> ::std::vec::Vec<u8> {
                    $crate::__private::state_snapshot(&pool.get::<Pool>().0, <$plugin as $crate::Balancer>::snapshot)
                }
                fn restore(pool: wit::PoolBalancerBorrow<'_>, state: ::std::vec::Vec<u8>) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::state_restore(&pool.get::<Pool>().0, &state, <$plugin as $crate::Balancer>::restore)
                }
            }

            $crate::__private::balancer_world::export_balancer_world!(Export with_types_in $crate::__private::balancer_world);
        };
    };
}
