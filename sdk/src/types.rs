//! The values every world shares: endpoints, their live load, and requests.

/// An endpoint's id, stable for the endpoint's life in its pool.
///
/// ```
/// let id: switchyard_sdk::EndpointId = 3;
/// assert_eq!(id, 3);
/// ```
pub type EndpointId = u32;

/// What the host currently believes about an endpoint.
///
/// ```
/// use switchyard_sdk::Health;
/// assert!(Health::Degraded.is_serving());
/// assert!(!Health::Unhealthy.is_serving());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Health {
    /// Passing its checks.
    Healthy,
    /// Serving, but slow or partly failing.
    Degraded,
    /// Failing its checks; not given traffic.
    Unhealthy,
    /// Not checked yet.
    #[default]
    Unknown,
}

impl Health {
    /// Whether an endpoint in this state takes traffic.
    ///
    /// ```
    /// assert!(switchyard_sdk::Health::Unknown.is_serving());
    /// ```
    pub fn is_serving(self) -> bool {
        !matches!(self, Health::Unhealthy)
    }
}

/// A request's priority class, from `P0` (critical) to `P4` (background).
///
/// ```
/// use switchyard_sdk::Priority;
/// assert!(Priority::P0 < Priority::P4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    /// Critical: the last to be shed.
    P0,
    /// High.
    P1,
    /// Normal, the default.
    #[default]
    P2,
    /// Low.
    P3,
    /// Background: the first to be shed.
    P4,
}

/// One eligible endpoint of the pool, as pushed to `set_endpoints`.
///
/// ```
/// use switchyard_sdk::Endpoint;
/// let endpoint = Endpoint::new(0, "127.0.0.1:8080").with_weight(3);
/// assert_eq!(endpoint.weight, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The id a balancer returns from `pick`.
    pub id: EndpointId,
    /// `host:port`.
    pub address: String,
    /// Relative share of traffic; at least 1.
    pub weight: u32,
    /// The endpoint's zone, when the config gives one.
    pub zone: Option<String>,
    /// Free-form labels from the config.
    pub labels: Vec<(String, String)>,
}

impl Endpoint {
    /// An endpoint of weight 1 with no zone and no labels.
    ///
    /// ```
    /// let endpoint = switchyard_sdk::Endpoint::new(7, "10.0.0.7:80");
    /// assert_eq!((endpoint.id, endpoint.weight), (7, 1));
    /// ```
    pub fn new(id: EndpointId, address: impl Into<String>) -> Self {
        Endpoint {
            id,
            address: address.into(),
            weight: 1,
            zone: None,
            labels: Vec::new(),
        }
    }

    /// The same endpoint with another weight.
    ///
    /// ```
    /// let endpoint = switchyard_sdk::Endpoint::new(1, "a:80").with_weight(5);
    /// assert_eq!(endpoint.weight, 5);
    /// ```
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
}

/// Live statistics of one endpoint, kept by the host; see [`crate::host::load`].
///
/// ```
/// use switchyard_sdk::Load;
/// let load = Load { in_flight: 3, ..Load::default() };
/// assert_eq!(load.in_flight, 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    /// Requests the endpoint is serving now.
    pub in_flight: u32,
    /// The endpoint's maximum in-flight requests; 0 when unlimited.
    pub capacity: u32,
    /// Moving average of response latency, in microseconds.
    pub ewma_latency_us: u32,
    /// Share of recent responses that succeeded, in thousandths.
    pub success_permille: u16,
    /// The endpoint's health as the host sees it.
    pub health: Health,
}

/// What a balancer knows about the request it places.
///
/// ```
/// use switchyard_sdk::RequestInfo;
/// let request = RequestInfo { hash: Some(42), ..RequestInfo::default() };
/// assert_eq!(request.attempt, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RequestInfo {
    /// The request's priority class.
    pub priority: Priority,
    /// 0 for the first attempt, 1 for the first retry, and so on.
    pub attempt: u32,
    /// The request's hash key, if any: by its route's `hash_key` (the
    /// client's address, the path, a header or a cookie; the client's
    /// address when the header or cookie is missing).
    pub hash: Option<u64>,
}
