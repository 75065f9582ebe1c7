//! The live event stream: alerts (health transitions, ejections, holds,
//! failovers), plugin loads, rejections, faults and quarantines, and config
//! changes, each with an id. The last events are kept so a client that
//! reconnects gets what it missed; listeners are broadcast to, and one that
//! falls behind is dropped rather than slowing whoever publishes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use super::health::unix_ms;

/// Events kept for clients that reconnect.
pub const EVENT_HISTORY: usize = 1_000;
/// Events a listener may fall behind by before it is dropped.
const LISTENER_BACKLOG: usize = 1_024;

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Increasing from 1.
    pub id: u64,
    /// When, in ms since the Unix epoch.
    pub at_unix_ms: u64,
    /// `health`, `alert`, `plugin` or `config`.
    pub kind: &'static str,
    /// What happened.
    pub data: serde_json::Value,
}

/// The stream's source, shared by every publisher.
#[derive(Debug)]
pub struct Events {
    next_id: AtomicU64,
    recent: Mutex<VecDeque<Arc<Event>>>,
    live: broadcast::Sender<Arc<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            next_id: AtomicU64::new(1),
            recent: Mutex::new(VecDeque::new()),
            live: broadcast::channel(LISTENER_BACKLOG).0,
        }
    }
}

impl Events {
    /// Publishes an event of `kind` with `data`.
    pub fn publish(&self, kind: &'static str, data: serde_json::Value) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        // Ids are given under the lock, so the kept events are in id order.
        let event = Arc::new(Event {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            at_unix_ms: unix_ms(),
            kind,
            data,
        });
        if recent.len() == EVENT_HISTORY {
            recent.pop_front();
        }
        recent.push_back(Arc::clone(&event));
        // No listener is not an error.
        let _ = self.live.send(event);
    }

    /// The kept events after `last_seen` (all kept with `None`), and a
    /// receiver of every later one: subscribed under the same lock, so
    /// nothing falls between the two.
    pub fn since(
        &self,
        last_seen: Option<u64>,
    ) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let receiver = self.live.subscribe();
        let missed = recent
            .iter()
            .filter(|event| last_seen.is_none_or(|seen| event.id > seen))
            .cloned()
            .collect();
        (missed, receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reconnecting_client_gets_what_it_missed_then_the_rest() {
        let events = Events::default();
        for n in 0..3 {
            events.publish("config", serde_json::json!({ "n": n }));
        }
        let (missed, mut live) = events.since(Some(1));
        assert_eq!(missed.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 3]);
        events.publish("alert", serde_json::json!({}));
        assert_eq!(live.recv().await.unwrap().id, 4);
    }
}
