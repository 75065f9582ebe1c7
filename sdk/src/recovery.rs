//! The recovery world: decide what happens after a failed attempt.

use crate::{EndpointId, RequestInfo};

/// How an attempt failed. More kinds may come: match with a `_` arm.
///
/// ```
/// use switchyard_sdk::FailureKind;
/// assert!(FailureKind::Status(503).is_status());
/// assert!(FailureKind::GrpcStatus(14).is_status());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The endpoint refused the connection.
    ConnectRefused,
    /// The connection was not established in time.
    ConnectTimeout,
    /// The connection broke mid-request.
    Reset,
    /// The endpoint did not answer in time.
    ResponseTimeout,
    /// The endpoint answered with this status (one the route counts as failed).
    Status(u16),
    /// A gRPC endpoint answered the call with this status in a
    /// trailers-only response: 2 unknown, 4 deadline exceeded, 8 resource
    /// exhausted, 13 internal, 14 unavailable, 15 data loss.
    ///
    /// ```
    /// use switchyard_sdk::FailureKind;
    /// const UNAVAILABLE: u32 = 14;
    /// let kind = FailureKind::GrpcStatus(UNAVAILABLE);
    /// assert!(matches!(kind, FailureKind::GrpcStatus(14)));
    /// ```
    GrpcStatus(u32),
}

impl FailureKind {
    /// Whether the endpoint answered at all (with an HTTP or a gRPC status).
    ///
    /// ```
    /// assert!(!switchyard_sdk::FailureKind::Reset.is_status());
    /// ```
    pub fn is_status(self) -> bool {
        matches!(self, FailureKind::Status(_) | FailureKind::GrpcStatus(_))
    }
}

/// One failed attempt, as the host reports it.
///
/// ```
/// use switchyard_sdk::{Failure, FailureKind, RequestInfo};
/// let failure = Failure {
///     endpoint: 2,
///     kind: FailureKind::ConnectRefused,
///     request: RequestInfo::default(),
///     method: "GET".into(),
///     replayable: true,
///     elapsed_ms: 3,
/// };
/// assert_eq!(failure.request.attempt, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The endpoint that failed.
    pub endpoint: EndpointId,
    /// How it failed.
    pub kind: FailureKind,
    /// The request, with the attempt number that failed.
    pub request: RequestInfo,
    /// The request's method.
    pub method: String,
    /// Whether the host can send the request again (idempotent, small body).
    pub replayable: bool,
    /// Time since the request arrived, in milliseconds.
    pub elapsed_ms: u32,
}

/// Send the request again.
///
/// ```
/// let retry = switchyard_sdk::Retry { delay_ms: 10, same_endpoint: false };
/// assert!(!retry.same_endpoint);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Retry {
    /// Wait this long first, in milliseconds.
    pub delay_ms: u32,
    /// Try the same endpoint rather than another.
    pub same_endpoint: bool,
}

/// Take the endpoint out of the eligible set for a while.
///
/// ```
/// use switchyard_sdk::{Ejection, Retry};
/// let ejection = Ejection { duration_ms: 30_000, retry: Some(Retry { delay_ms: 0, same_endpoint: false }) };
/// assert!(ejection.retry.is_some());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ejection {
    /// How long the endpoint stays out, in milliseconds.
    pub duration_ms: u32,
    /// Retry the request on another endpoint after ejecting.
    pub retry: Option<Retry>,
}

/// What the host should do with a failed attempt. The host still enforces
/// its retry budget, the route's deadline, and never replays a request it
/// cannot.
///
/// ```
/// use switchyard_sdk::Decision;
/// assert_eq!(Decision::GiveUp(Some(503)), Decision::GiveUp(Some(503)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Send the request again.
    Retry(Retry),
    /// Eject the endpoint, and maybe retry elsewhere.
    Eject(Ejection),
    /// Answer the client: the endpoint's own response, or this status.
    GiveUp(Option<u16>),
}

/// A recovery policy for one pool.
///
/// For each pool that uses the plugin, on each worker thread, the host
/// makes one value of your type with [`configure`](Recovery::configure)
/// and asks it about every failed attempt in that pool. One instance of the
/// plugin holds the values of every pool on its thread, so keep what
/// belongs to a pool in `self`.
///
/// ```
/// use switchyard_sdk::{export_recovery, Decision, Failure, Recovery, Retry};
///
/// /// Retries once elsewhere, then gives up.
/// struct RetryOnce;
///
/// impl Recovery for RetryOnce {
///     fn configure(_config: &str) -> Result<Self, String> {
///         Ok(RetryOnce)
///     }
///     fn on_failure(&mut self, failure: &Failure) -> Decision {
///         if failure.replayable && failure.request.attempt == 0 {
///             Decision::Retry(Retry { delay_ms: 0, same_endpoint: false })
///         } else {
///             Decision::GiveUp(None)
///         }
///     }
/// }
///
/// export_recovery!(RetryOnce);
/// ```
pub trait Recovery: Sized + 'static {
    /// Builds the policy from the pool's `recovery.config`, given as JSON.
    ///
    /// ```
    /// # use switchyard_sdk::{Decision, Failure, Recovery};
    /// struct Never;
    /// impl Recovery for Never {
    ///     fn configure(_config: &str) -> Result<Self, String> { Ok(Never) }
    ///     # fn on_failure(&mut self, _: &Failure) -> Decision { Decision::GiveUp(None) }
    /// }
    /// ```
    fn configure(config: &str) -> Result<Self, String>;

    /// Decides what to do with one failed attempt.
    ///
    /// ```
    /// # use switchyard_sdk::{Decision, Ejection, Failure, FailureKind, Recovery};
    /// # struct EjectRefusing;
    /// # impl Recovery for EjectRefusing {
    /// #     fn configure(_: &str) -> Result<Self, String> { Ok(EjectRefusing) }
    /// fn on_failure(&mut self, failure: &Failure) -> Decision {
    ///     match failure.kind {
    ///         FailureKind::ConnectRefused => Decision::Eject(Ejection { duration_ms: 10_000, retry: None }),
    ///         _ => Decision::GiveUp(None),
    ///     }
    /// }
    /// # }
    /// ```
    fn on_failure(&mut self, failure: &Failure) -> Decision;

    /// The pool's state, to be carried to the next version of the plugin
    /// when its file is swapped, as [`crate::Balancer::snapshot`] does for
    /// a balancer. The default carries nothing. State every worker shares
    /// is better kept in the [`crate::store`], which outlives versions by
    /// itself.
    ///
    /// ```
    /// # use switchyard_sdk::{Decision, Failure, Recovery};
    /// # struct Budget { spent: u16 }
    /// # impl Recovery for Budget {
    /// #     fn configure(_: &str) -> Result<Self, String> { Ok(Budget { spent: 0 }) }
    /// #     fn on_failure(&mut self, _: &Failure) -> Decision { Decision::GiveUp(None) }
    /// fn snapshot(&mut self) -> Vec<u8> {
    ///     self.spent.to_le_bytes().to_vec()
    /// }
    /// # }
    /// assert_eq!(Budget { spent: 2 }.snapshot(), vec![2, 0]);
    /// ```
    fn snapshot(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// Takes over the pool's state from an earlier version's
    /// [`snapshot`](Recovery::snapshot) (never called with an empty one);
    /// an error refuses the new version, with the message shown. The
    /// default ignores it.
    ///
    /// ```
    /// # use switchyard_sdk::{Decision, Failure, Recovery};
    /// # struct Budget { spent: u16 }
    /// # impl Recovery for Budget {
    /// #     fn configure(_: &str) -> Result<Self, String> { Ok(Budget { spent: 0 }) }
    /// #     fn on_failure(&mut self, _: &Failure) -> Decision { Decision::GiveUp(None) }
    /// fn restore(&mut self, state: &[u8]) -> Result<(), String> {
    ///     let bytes: [u8; 2] = state.try_into().map_err(|_| "not a budget".to_string())?;
    ///     self.spent = u16::from_le_bytes(bytes);
    ///     Ok(())
    /// }
    /// # }
    /// let mut budget = Budget { spent: 0 };
    /// budget.restore(&[5, 0]).unwrap();
    /// assert_eq!(budget.spent, 5);
    /// ```
    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let _ = state;
        Ok(())
    }
}

/// Registers a [`Recovery`] policy as the plugin's export. Use it once per
/// crate, with `switchyard-sdk` built with the `recovery` feature.
///
/// ```
/// use switchyard_sdk::{export_recovery, Decision, Failure, Recovery};
/// struct GiveUp;
/// impl Recovery for GiveUp {
///     fn configure(_: &str) -> Result<Self, String> { Ok(GiveUp) }
///     fn on_failure(&mut self, _: &Failure) -> Decision { Decision::GiveUp(None) }
/// }
/// export_recovery!(GiveUp);
/// ```
#[macro_export]
macro_rules! export_recovery {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::recovery_world::exports::switchyard::plugin::recovery as wit;

            struct Export;
            struct Pool($crate::__private::PoolState<$plugin>);

            impl wit::Guest for Export {
                type PoolRecovery = Pool;
            }

            impl wit::GuestPoolRecovery for Pool {
                fn create(config: ::std::string::String) -> ::std::result::Result<wit::PoolRecovery, ::std::string::String> {
                    $crate::__private::PoolState::create(&config, <$plugin as $crate::Recovery>::configure)
                        .map(|state| wit::PoolRecovery::new(Pool(state)))
                }
                fn on_failure(&self, failure: wit::Failure) -> wit::Decision {
                    $crate::__private::recovery_on_failure::<$plugin>(&self.0, failure)
                }
            }

            impl $crate::__private::recovery_world::exports::switchyard::plugin::recovery_state::Guest for Export {
                fn snapshot(pool: wit::PoolRecoveryBorrow<'_>) -> ::std::vec::Vec<u8> {
                    $crate::__private::state_snapshot(&pool.get::<Pool>().0, <$plugin as $crate::Recovery>::snapshot)
                }
                fn restore(pool: wit::PoolRecoveryBorrow<'_>, state: ::std::vec::Vec<u8>) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::state_restore(&pool.get::<Pool>().0, &state, <$plugin as $crate::Recovery>::restore)
                }
            }

            $crate::__private::recovery_world::export_recovery_world!(Export with_types_in $crate::__private::recovery_world);
        };
    };
}
