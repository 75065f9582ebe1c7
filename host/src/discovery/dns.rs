//! A pool's DNS discovery: its name asked of its resolvers again as each
//! answer's TTL runs out (within the pool's bounds), each answer turned into
//! endpoints; a failed or empty answer keeps the last good set and alerts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::{Found, Update};
use crate::config::{DiscoveryConfig, DnsRecordType};
use crate::engine::{Alerts, Severity, Source};

/// How long one question may wait for its answer, per attempt.
const QUESTION_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a name gave no endpoints.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The resolver could not be set up (no `/etc/resolv.conf`).
    #[error("no resolver: {0}")]
    Resolver(String),
    /// The resolvers did not answer, or answered with an error.
    #[error("{0}")]
    Failed(String),
    /// The name has no records of the type asked.
    #[error("no {0} records")]
    Empty(&'static str),
}

/// One answer: its endpoints (sorted by address) and how long it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The endpoints, sorted by address.
    pub found: Vec<Found>,
    /// The shortest TTL among the records the answer was built from.
    pub ttl: Duration,
}

/// A resolver asking `resolvers` (each over UDP, and TCP for a truncated
/// answer), or the system's when there are none. It keeps no cache: every
/// question reaches a server, and the caller schedules by TTL.
pub fn resolver(resolvers: &[String]) -> Result<TokioResolver, LookupError> {
    let provider = TokioConnectionProvider::default();
    let mut builder = if resolvers.is_empty() {
        TokioResolver::builder(provider).map_err(|e| LookupError::Resolver(e.to_string()))?
    } else {
        let mut config = ResolverConfig::new();
        for resolver in resolvers {
            let address: SocketAddr = resolver
                .parse()
                .map_err(|_| LookupError::Resolver(format!("`{resolver}` is not ip:port")))?;
            config.add_name_server(NameServerConfig::new(address, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(address, Protocol::Tcp));
        }
        let mut builder = TokioResolver::builder_with_config(config, provider);
        builder.options_mut().use_hosts_file = ResolveHosts::Never;
        builder
    };
    let options: &mut ResolverOpts = builder.options_mut();
    options.cache_size = 0;
    options.timeout = QUESTION_TIMEOUT;
    options.attempts = 1;
    Ok(builder.build())
}

/// Asks `discovery`'s name once.
pub async fn lookup(
    resolver: &TokioResolver,
    discovery: &DiscoveryConfig,
) -> Result<Answer, LookupError> {
    let now = Instant::now();
    let failed = |e: hickory_resolver::ResolveError| {
        if e.is_no_records_found() {
            LookupError::Empty(record_name(discovery.record))
        } else {
            LookupError::Failed(e.to_string())
        }
    };
    let mut found = Vec::new();
    let valid_until = match discovery.record {
        DnsRecordType::A | DnsRecordType::Aaaa => {
            let (host, port) = split_port(&discovery.dns);
            let (ips, until): (Vec<IpAddr>, Instant) = if discovery.record == DnsRecordType::A {
                let answer = resolver.ipv4_lookup(host).await.map_err(failed)?;
                (
                    answer.iter().map(|a| IpAddr::V4(a.0)).collect(),
                    answer.valid_until(),
                )
            } else {
                let answer = resolver.ipv6_lookup(host).await.map_err(failed)?;
                (
                    answer.iter().map(|a| IpAddr::V6(a.0)).collect(),
                    answer.valid_until(),
                )
            };
            for ip in ips {
                found.push(Found::at(SocketAddr::new(ip, port), 1, 0));
            }
            until
        }
        DnsRecordType::Srv => {
            let answer = resolver
                .srv_lookup(discovery.dns.as_str())
                .await
                .map_err(failed)?;
            let mut until = answer.as_lookup().valid_until();
            // Each distinct priority a tier, the lowest priority the primary.
            let priorities: BTreeSet<u16> = answer.iter().map(|srv| srv.priority()).collect();
            for srv in answer.iter() {
                let tier = priorities.range(..srv.priority()).count() as u32;
                let ips = resolver
                    .lookup_ip(srv.target().clone())
                    .await
                    .map_err(|e| {
                        LookupError::Failed(format!("SRV target {}: {e}", srv.target()))
                    })?;
                until = until.min(ips.valid_until());
                for ip in ips.iter() {
                    let weight = u32::from(srv.weight()).max(1);
                    found.push(Found::at(SocketAddr::new(ip, srv.port()), weight, tier));
                }
            }
            until
        }
    };
    found.sort_by(|a, b| a.address.cmp(&b.address));
    found.dedup_by(|a, b| a.address == b.address);
    if found.is_empty() {
        return Err(LookupError::Empty(record_name(discovery.record)));
    }
    Ok(Answer {
        found,
        ttl: valid_until.saturating_duration_since(now),
    })
}

/// How long to wait before asking again after an answer of `ttl`.
pub fn next_wait(discovery: &DiscoveryConfig, ttl: Duration) -> Duration {
    ttl.clamp(discovery.min_refresh(), discovery.max_refresh())
}

fn record_name(record: DnsRecordType) -> &'static str {
    match record {
        DnsRecordType::A => "A",
        DnsRecordType::Aaaa => "AAAA",
        DnsRecordType::Srv => "SRV",
    }
}

/// `host` and `port` of `name:port` (validated by the config).
fn split_port(dns: &str) -> (&str, u16) {
    match dns.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or(0)),
        None => (dns, 0),
    }
}

/// Starts asking pool `pool`'s `discovery` name, sending each new set of
/// endpoints to `updates`, until the task is aborted.
pub fn spawn(
    pool: String,
    discovery: DiscoveryConfig,
    alerts: Arc<Alerts>,
    updates: UnboundedSender<Update>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut watch = Watch {
            pool,
            discovery,
            alerts,
            updates,
            last: None,
            failing: None,
        };
        let resolver = match resolver(&watch.discovery.resolvers) {
            Ok(resolver) => resolver,
            Err(error) => {
                watch.failed(&error);
                return;
            }
        };
        loop {
            let wait = match lookup(&resolver, &watch.discovery).await {
                Ok(answer) => {
                    let wait = next_wait(&watch.discovery, answer.ttl);
                    watch.answered(answer.found);
                    wait
                }
                Err(error) => {
                    watch.failed(&error);
                    watch.discovery.min_refresh()
                }
            };
            tokio::time::sleep(wait).await;
        }
    })
}

/// What one pool's discovery task knows between answers.
struct Watch {
    pool: String,
    discovery: DiscoveryConfig,
    alerts: Arc<Alerts>,
    updates: UnboundedSender<Update>,
    /// The last good set.
    last: Option<Vec<Found>>,
    /// Why the answers fail, while they do.
    failing: Option<String>,
}

impl Watch {
    fn answered(&mut self, found: Vec<Found>) {
        if self.failing.take().is_some() {
            self.alerts.raise(
                Severity::P4,
                &self.pool,
                None,
                format!("DNS discovery `{}` answers again", self.discovery.dns),
            );
        }
        if self.last.as_ref() == Some(&found) {
            return;
        }
        let addresses: Vec<&str> = found.iter().map(|f| f.address.as_str()).collect();
        self.alerts.events().publish(
            "discovery",
            serde_json::json!({
                "pool": self.pool,
                "source": Source::Dns.as_str(),
                "dns": self.discovery.dns,
                "endpoints": addresses,
            }),
        );
        let _ = self.updates.send(Update {
            pool: self.pool.clone(),
            source: Source::Dns,
            found: found.clone(),
        });
        self.last = Some(found);
    }

    fn failed(&mut self, error: &LookupError) {
        let why = error.to_string();
        if self.failing.as_deref() == Some(why.as_str()) {
            return;
        }
        let kept = match &self.last {
            Some(last) => format!("keeping the last {} endpoint(s) it gave", last.len()),
            None => "it has given no endpoints yet".to_string(),
        };
        self.alerts.events().publish(
            "discovery",
            serde_json::json!({
                "pool": self.pool,
                "source": Source::Dns.as_str(),
                "dns": self.discovery.dns,
                "error": why,
                "kept": self.last.as_ref().map_or(0, Vec::len),
            }),
        );
        self.alerts.raise(
            Severity::P2,
            &self.pool,
            None,
            format!(
                "DNS discovery `{}` failed: {why}; {kept}",
                self.discovery.dns
            ),
        );
        self.failing = Some(why);
    }
}

impl Found {
    fn at(address: SocketAddr, weight: u32, tier: u32) -> Found {
        Found {
            address: address.to_string(),
            weight,
            tier,
            labels: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery(min: u64, max: u64) -> DiscoveryConfig {
        DiscoveryConfig {
            dns: "api.internal:80".into(),
            record: DnsRecordType::A,
            refresh_ms: max,
            min_refresh_ms: min,
            resolvers: vec![],
        }
    }

    #[test]
    fn the_wait_is_the_ttl_within_the_bounds() {
        let d = discovery(500, 10_000);
        assert_eq!(next_wait(&d, Duration::ZERO), Duration::from_millis(500));
        assert_eq!(
            next_wait(&d, Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert_eq!(
            next_wait(&d, Duration::from_secs(300)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn ipv6_endpoints_are_bracketed() {
        let found = Found::at("[::1]:8080".parse().unwrap(), 1, 0);
        assert_eq!(found.address, "[::1]:8080");
    }
}
