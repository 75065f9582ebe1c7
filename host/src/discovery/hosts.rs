//! Hostnames in endpoints' static addresses (`api.internal:8080`), resolved
//! by the system's resolvers through the same DNS client as discovery, off
//! the request path: each name once however many endpoints and pools have
//! it, asked again as its TTL runs out (within [`MIN_REFRESH`] and
//! [`MAX_REFRESH`]), its last good answer kept through failures. A
//! connection reads the last answer without waiting.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use tokio::sync::Notify;

use crate::engine::ResolvedAddrs;

/// The shortest wait between two answers for a name, and the wait after a
/// failure.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// The longest.
pub const MAX_REFRESH: Duration = Duration::from_secs(30);

/// One name's answer and when to ask again.
#[derive(Debug)]
struct Entry {
    host: String,
    port: u16,
    resolved: Arc<ResolvedAddrs>,
    due: Instant,
    /// Why the last question failed, while it does.
    failing: Option<String>,
}

/// Every hostname some endpoint has.
#[derive(Debug, Default)]
pub struct HostCache {
    entries: Mutex<HashMap<String, Entry>>,
    /// Wakes the refresher for a new name.
    added: Notify,
}

impl HostCache {
    /// What `address` resolves to, kept up to date from now on; `None`
    /// when it is `ip:port` (or not `host:port`), which needs no resolving.
    pub fn resolved(&self, address: &str) -> Option<Arc<ResolvedAddrs>> {
        if address.parse::<SocketAddr>().is_ok() {
            return None;
        }
        let (host, port) = address.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let mut entries = self.entries.lock().unwrap();
        if let Some(entry) = entries.get(address) {
            return Some(Arc::clone(&entry.resolved));
        }
        let resolved = Arc::new(ResolvedAddrs::default());
        entries.insert(
            address.to_string(),
            Entry {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port,
                resolved: Arc::clone(&resolved),
                due: Instant::now(),
                failing: None,
            },
        );
        drop(entries);
        self.added.notify_one();
        Some(resolved)
    }

    /// Names kept now.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    /// Whether no name is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks each name again when it is due, until the process ends; a name
    /// no endpoint has any more is forgotten.
    pub async fn refresh(self: Arc<Self>) {
        let resolver = match super::dns::resolver(&[]) {
            Ok(resolver) => resolver,
            Err(error) => {
                // Connections resolve by name as they open instead.
                tracing::warn!("hostnames in endpoint addresses are not cached: {error}");
                return;
            }
        };
        loop {
            let due = self.due();
            for (address, host) in &due {
                self.ask(&resolver, address, host).await;
            }
            let next = {
                let mut entries = self.entries.lock().unwrap();
                entries.retain(|_, e| Arc::strong_count(&e.resolved) > 1);
                entries.values().map(|e| e.due).min()
            };
            let wait = next.map_or(MAX_REFRESH, |at| {
                at.saturating_duration_since(Instant::now())
            });
            let _ = tokio::time::timeout(wait, self.added.notified()).await;
        }
    }

    /// The names due now: (address, host).
    fn due(&self) -> Vec<(String, String)> {
        let now = Instant::now();
        self.entries
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| e.due <= now)
            .map(|(address, e)| (address.clone(), e.host.clone()))
            .collect()
    }

    async fn ask(&self, resolver: &TokioResolver, address: &str, host: &str) {
        let answer = resolver.lookup_ip(host).await;
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap();
        let Some(entry) = entries.get_mut(address) else {
            return;
        };
        match answer {
            Ok(ips) => {
                let addrs: Vec<SocketAddr> = ips
                    .iter()
                    .map(|ip| SocketAddr::new(ip, entry.port))
                    .collect();
                let ttl = ips.valid_until().saturating_duration_since(now);
                entry.due = now + ttl.clamp(MIN_REFRESH, MAX_REFRESH);
                if entry.failing.take().is_some() {
                    tracing::info!("endpoint address {address} resolves again");
                }
                if !addrs.is_empty() {
                    entry.resolved.set(addrs);
                }
            }
            Err(error) => {
                entry.due = now + MIN_REFRESH;
                let why = error.to_string();
                if entry.failing.as_deref() != Some(why.as_str()) {
                    tracing::warn!(
                        "endpoint address {address} did not resolve: {why}; keeping its last answer"
                    );
                }
                entry.failing = Some(why);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hostnames_are_kept_and_each_once() {
        let cache = HostCache::default();
        assert!(cache.resolved("127.0.0.1:80").is_none());
        assert!(cache.resolved("[::1]:80").is_none());
        let one = cache.resolved("api.internal:80").unwrap();
        let two = cache.resolved("api.internal:80").unwrap();
        assert!(Arc::ptr_eq(&one, &two));
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn localhost_resolves_off_the_request_path() {
        let cache = Arc::new(HostCache::default());
        let resolved = cache.resolved("localhost:8080").unwrap();
        let refresher = tokio::spawn(Arc::clone(&cache).refresh());
        let deadline = Instant::now() + Duration::from_secs(10);
        let addrs = loop {
            if let Some(addrs) = resolved.get() {
                break addrs;
            }
            assert!(Instant::now() < deadline, "localhost never resolved");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        refresher.abort();
        assert!(
            addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8080),
            "{addrs:?}"
        );
    }
}
