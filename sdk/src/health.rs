//! The health-check world: judge one endpoint at a time through host probes.

use crate::{Endpoint, Health};

/// The outcome of one check.
///
/// ```
/// use switchyard_sdk::{Health, Verdict};
/// let verdict = Verdict::unhealthy("status 500");
/// assert_eq!(verdict.health, Health::Unhealthy);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What the check concluded.
    pub health: Health,
    /// Why, in a few words; shown in the API and in alerts.
    pub reason: String,
}

impl Verdict {
    /// A passing check.
    ///
    /// ```
    /// assert_eq!(switchyard_sdk::Verdict::healthy("200 OK").reason, "200 OK");
    /// ```
    pub fn healthy(reason: impl Into<String>) -> Self {
        Verdict {
            health: Health::Healthy,
            reason: reason.into(),
        }
    }

    /// A check that passed but found the endpoint slow or partly failing.
    ///
    /// ```
    /// let verdict = switchyard_sdk::Verdict::degraded("slow: 900 ms");
    /// assert!(verdict.health.is_serving());
    /// ```
    pub fn degraded(reason: impl Into<String>) -> Self {
        Verdict {
            health: Health::Degraded,
            reason: reason.into(),
        }
    }

    /// A failing check.
    ///
    /// ```
    /// let verdict = switchyard_sdk::Verdict::unhealthy("connection refused");
    /// assert!(!verdict.health.is_serving());
    /// ```
    pub fn unhealthy(reason: impl Into<String>) -> Self {
        Verdict {
            health: Health::Unhealthy,
            reason: reason.into(),
        }
    }
}

/// An active health check for the endpoints of one pool.
///
/// The host schedules checks (interval, timeout, jitter, rise and fall) and
/// calls [`check`](HealthCheck::check) for one endpoint at a time; the
/// [`crate::probe`] functions reach only that endpoint. A check that panics
/// or overruns its budget counts against the plugin, not the endpoint.
///
/// The host makes one value of your type per pool with
/// [`configure`](HealthCheck::configure); a few instances of the plugin,
/// shared by every pool that uses it, hold those values, so keep what
/// belongs to a pool in `self`.
///
/// ```
/// use switchyard_sdk::{export_health_check, probe, Endpoint, HealthCheck, Verdict};
///
/// struct TcpOpen;
///
/// impl HealthCheck for TcpOpen {
///     fn configure(_config: &str) -> Result<Self, String> {
///         Ok(TcpOpen)
///     }
///     fn check(&mut self, _target: &Endpoint) -> Verdict {
///         match probe::tcp_connect(500) {
///             Ok(micros) => Verdict::healthy(format!("connected in {micros} µs")),
///             Err(error) => Verdict::unhealthy(error.to_string()),
///         }
///     }
/// }
///
/// export_health_check!(TcpOpen);
/// ```
pub trait HealthCheck: Sized + 'static {
    /// Builds the check from the pool's `health.config`, given as JSON.
    ///
    /// ```
    /// # use switchyard_sdk::{Endpoint, HealthCheck, Verdict};
    /// struct Path(String);
    /// impl HealthCheck for Path {
    ///     fn configure(config: &str) -> Result<Self, String> {
    ///         Ok(Path(if config.contains("/ready") { "/ready" } else { "/" }.to_string()))
    ///     }
    ///     # fn check(&mut self, _: &Endpoint) -> Verdict { Verdict::healthy("") }
    /// }
    /// assert_eq!(Path::configure("{\"path\":\"/ready\"}").unwrap().0, "/ready");
    /// ```
    fn configure(config: &str) -> Result<Self, String>;

    /// Judges one endpoint.
    ///
    /// ```
    /// # use switchyard_sdk::{probe, Endpoint, HealthCheck, Verdict};
    /// # struct Http;
    /// # impl HealthCheck for Http {
    /// #     fn configure(_: &str) -> Result<Self, String> { Ok(Http) }
    /// fn check(&mut self, _target: &Endpoint) -> Verdict {
    ///     match probe::http(&probe::HttpRequest::get("/healthz")) {
    ///         Ok(response) if response.status == 200 => Verdict::healthy("200"),
    ///         Ok(response) => Verdict::unhealthy(format!("status {}", response.status)),
    ///         Err(error) => Verdict::unhealthy(error.to_string()),
    ///     }
    /// }
    /// # }
    /// ```
    fn check(&mut self, target: &Endpoint) -> Verdict;
}

/// Registers a [`HealthCheck`] as the plugin's export. Use it once per crate,
/// with `switchyard-sdk` built with the `health-check` feature.
///
/// ```
/// use switchyard_sdk::{export_health_check, Endpoint, HealthCheck, Verdict};
/// struct AlwaysUp;
/// impl HealthCheck for AlwaysUp {
///     fn configure(_: &str) -> Result<Self, String> { Ok(AlwaysUp) }
///     fn check(&mut self, _: &Endpoint) -> Verdict { Verdict::healthy("assumed") }
/// }
/// export_health_check!(AlwaysUp);
/// ```
#[macro_export]
macro_rules! export_health_check {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::health_world::exports::switchyard::plugin::health_check as wit;
            use $crate::__private::common::switchyard::plugin::types as wit_types;

            struct Export;
            struct Pool($crate::__private::PoolState<$plugin>);

            impl wit::Guest for Export {
                type PoolCheck = Pool;
            }

            impl wit::GuestPoolCheck for Pool {
                fn create(config: ::std::string::String) -> ::std::result::Result<wit::PoolCheck, ::std::string::String> {
                    $crate::__private::PoolState::create(&config, <$plugin as $crate::HealthCheck>::configure)
                        .map(|state| wit::PoolCheck::new(Pool(state)))
                }
                fn check(&self, target: wit_types::Endpoint) -> wit::Verdict {
                    $crate::__private::health_check::<$plugin>(&self.0, target)
                }
            }

            $crate::__private::health_world::export_health_world!(Export with_types_in $crate::__private::health_world);
        };
    };
}
