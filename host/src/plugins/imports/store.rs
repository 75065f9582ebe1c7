//! `switchyard:plugin/store`: the counters and values a plugin's instances
//! share per pool (`plugins::pool_store`).

//!
//! A recorded pick records each call with its answer, and a replayed one is
//! answered from the recording (`plugins::replay`), as the `host` calls are.

use crate::plugins::bindings::store::{Host, StoreError};
use crate::plugins::bindings::types::EndpointId;
use crate::plugins::pool_store;
use crate::plugins::recording::HostCall;
use crate::plugins::state::StoreState;

fn to_wit(error: pool_store::StoreError) -> StoreError {
    match error {
        pool_store::StoreError::Full => StoreError::Full,
        pool_store::StoreError::BadName => StoreError::BadName,
    }
}

/// How a recording names a refusal.
fn recorded(answer: Result<i64, StoreError>) -> Result<i64, String> {
    answer.map_err(|error| {
        match error {
            StoreError::Full => "full",
            StoreError::BadName => "bad-name",
            StoreError::NoPool => "no-pool",
        }
        .to_string()
    })
}

/// A recorded answer as the contract's.
fn replayed(answer: Result<i64, String>) -> Result<i64, StoreError> {
    answer.map_err(|error| match error.as_str() {
        "full" => StoreError::Full,
        "bad-name" => StoreError::BadName,
        _ => StoreError::NoPool,
    })
}

impl Host for StoreState {
    fn get(&mut self, endpoint: Option<EndpointId>, name: String) -> i64 {
        if let Some(feed) = &mut self.replay {
            return feed.store_get(endpoint, &name);
        }
        let value = self
            .pool_store
            .as_ref()
            .map_or(0, |store| store.get(endpoint, &name));
        if let Some(calls) = &mut self.recording {
            calls.push(HostCall::StoreGet {
                endpoint,
                name,
                value,
            });
        }
        value
    }

    fn add(
        &mut self,
        endpoint: Option<EndpointId>,
        name: String,
        delta: i64,
    ) -> Result<i64, StoreError> {
        if let Some(feed) = &mut self.replay {
            return replayed(feed.store_add(endpoint, &name, delta));
        }
        let answer = match self.pool_store.as_ref() {
            Some(store) => store.add(endpoint, &name, delta).map_err(to_wit),
            None => Err(StoreError::NoPool),
        };
        if let Some(calls) = &mut self.recording {
            calls.push(HostCall::StoreAdd {
                endpoint,
                name,
                delta,
                answer: recorded(answer),
            });
        }
        answer
    }

    fn compare_and_swap(
        &mut self,
        endpoint: Option<EndpointId>,
        name: String,
        expected: i64,
        new: i64,
    ) -> Result<i64, StoreError> {
        if let Some(feed) = &mut self.replay {
            return replayed(feed.store_compare_and_swap(endpoint, &name, expected, new));
        }
        let answer = match self.pool_store.as_ref() {
            Some(store) => store
                .compare_and_swap(endpoint, &name, expected, new)
                .map_err(to_wit),
            None => Err(StoreError::NoPool),
        };
        if let Some(calls) = &mut self.recording {
            calls.push(HostCall::StoreCompareAndSwap {
                endpoint,
                name,
                expected,
                new,
                answer: recorded(answer),
            });
        }
        answer
    }
}
