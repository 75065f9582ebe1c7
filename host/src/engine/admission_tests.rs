use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

fn endpoints(capacities: &[u32]) -> Arc<EndpointSet> {
    let all = capacities
        .iter()
        .enumerate()
        .map(|(id, &capacity)| {
            Arc::new(
                Endpoint::new(id as u32, &format!("127.0.0.1:{}", 9000 + id), 1, capacity).unwrap(),
            )
        })
        .collect();
    Arc::new(EndpointSet::all_eligible(1, all))
}

fn settings(max_in_flight: u32, queue_len: usize, wait_ms: [u64; 5]) -> AdmissionSettings {
    AdmissionSettings {
        max_in_flight,
        queue_len,
        max_wait: wait_ms.map(Duration::from_millis),
        ..AdmissionSettings::default()
    }
}

/// Queues a request of `class` on a task of its own; its result says which
/// endpoint it started on, or why not.
fn waiter(
    admission: &Arc<Admission>,
    set: &Arc<EndpointSet>,
    class: Priority,
) -> tokio::task::JoinHandle<Result<InFlightGuard, NotStarted>> {
    let admission = Arc::clone(admission);
    let set = Arc::clone(set);
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        let first = Arc::clone(&set.all[0]);
        admission
            .wait_for_room(class, deadline, || Arc::clone(&set), || Some(first.clone()))
            .await
    })
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Starts a request on the first endpoint, which must have room.
fn hold(admission: &Arc<Admission>, set: &EndpointSet) -> InFlightGuard {
    admission
        .try_start(set, &set.all[0], Priority::P2, false)
        .expect("room")
}

fn is_shed(result: &Result<InFlightGuard, NotStarted>) -> bool {
    matches!(result, Err(NotStarted::Shed { .. }))
}

#[test]
fn the_pool_limit_and_each_endpoints_capacity_hold() {
    let admission = Admission::new(settings(3, 8, [100; 5]));
    let set = endpoints(&[1, 0]);
    let first = Arc::clone(&set.all[0]);
    let a = admission
        .try_start(&set, &first, Priority::P2, false)
        .expect("room");
    assert_eq!(a.endpoint().id, 0);
    // The first is at its capacity: the next goes to the other.
    let b = admission
        .try_start(&set, &first, Priority::P2, false)
        .expect("room");
    assert_eq!(b.endpoint().id, 1);
    let _c = admission
        .try_start(&set, &first, Priority::P2, false)
        .expect("room");
    assert!(
        admission
            .try_start(&set, &first, Priority::P2, false)
            .is_none(),
        "the pool's limit of 3 is reached"
    );
    assert_eq!(admission.view().in_flight, 3);
    drop(a);
    let d = admission
        .try_start(&set, &first, Priority::P2, false)
        .expect("a slot was freed");
    assert_eq!(d.endpoint().id, 0, "and the first endpoint has room again");
    assert_eq!(set.all[0].stats.in_flight(), 1);
}

#[test]
fn endpoints_all_at_capacity_leave_no_room() {
    let admission = Admission::new(settings(0, 8, [100; 5]));
    let set = endpoints(&[1, 1]);
    let first = Arc::clone(&set.all[0]);
    let _a = admission
        .try_start(&set, &first, Priority::P2, false)
        .unwrap();
    let _b = admission
        .try_start(&set, &first, Priority::P2, false)
        .unwrap();
    assert!(admission
        .try_start(&set, &first, Priority::P2, false)
        .is_none());
    assert_eq!(
        admission.view().in_flight,
        2,
        "a failed try gives its slot back"
    );
    assert_eq!(admission.view().limit, None);
}

#[tokio::test]
async fn freed_room_goes_to_the_most_urgent_then_the_earliest() {
    let admission = Admission::new(settings(1, 8, [5_000; 5]));
    let set = endpoints(&[0]);
    let held = hold(&admission, &set);
    let p4 = waiter(&admission, &set, Priority::P4);
    settle().await;
    let p2_first = waiter(&admission, &set, Priority::P2);
    settle().await;
    let p2_second = waiter(&admission, &set, Priority::P2);
    settle().await;
    let p0 = waiter(&admission, &set, Priority::P0);
    settle().await;
    assert_eq!(admission.view().queued, 4);
    // Nobody may go ahead of the queue, even with room at the endpoint.
    assert!(admission
        .try_start(&set, &set.all[0], Priority::P2, false)
        .is_none());

    drop(held);
    let p0 = p0.await.unwrap().expect("P0 goes first");
    assert!(!p2_first.is_finished() && !p4.is_finished());
    drop(p0);
    let p2 = p2_first.await.unwrap().expect("then the earlier P2");
    assert!(!p2_second.is_finished());
    drop(p2);
    drop(p2_second.await.unwrap().expect("then the later P2"));
    drop(p4.await.unwrap().expect("P4 last"));
    assert_eq!(admission.view().queued, 0);
    assert_eq!(admission.view().in_flight, 0);
    assert_eq!(admission.queued_total(Priority::P2), 2);
    assert!(admission.queue_wait.observed().count() == 3);
}

#[tokio::test]
async fn a_class_past_its_wait_is_shed() {
    let admission = Admission::new(settings(1, 8, [5_000, 5_000, 5_000, 5_000, 30]));
    let set = endpoints(&[0]);
    let _held = hold(&admission, &set);
    let result = waiter(&admission, &set, Priority::P4).await.unwrap();
    match result {
        Err(NotStarted::Shed {
            reason,
            retry_after_s,
        }) => {
            assert!(reason.contains("30 ms a p4 request may wait"), "{reason}");
            assert_eq!(retry_after_s, 1);
        }
        other => panic!("not shed: {other:?}"),
    }
    assert_eq!(admission.shed_total(Priority::P4, ShedReason::Waited), 1);
    assert_eq!(admission.view().queued, 0);
}

#[tokio::test]
async fn a_full_queue_sheds_its_least_urgent_never_a_more_urgent_newcomer() {
    let admission = Admission::new(settings(1, 2, [5_000; 5]));
    let set = endpoints(&[0]);
    let held = hold(&admission, &set);
    let p4 = waiter(&admission, &set, Priority::P4);
    let p3 = waiter(&admission, &set, Priority::P3);
    settle().await;
    // A P0 takes the P4's place.
    let p0 = waiter(&admission, &set, Priority::P0);
    assert!(is_shed(&p4.await.unwrap()));
    assert_eq!(admission.shed_total(Priority::P4, ShedReason::QueueFull), 1);
    // A P4 arriving at a queue full of more urgent requests is shed itself.
    settle().await;
    assert!(is_shed(
        &waiter(&admission, &set, Priority::P4).await.unwrap()
    ));
    drop(held);
    drop(p0.await.unwrap().expect("the P0 is served"));
    drop(p3.await.unwrap().expect("then the P3"));
}

#[tokio::test]
async fn a_p0_past_its_wait_sheds_a_lower_class_instead() {
    let admission = Admission::new(settings(1, 8, [30, 5_000, 5_000, 5_000, 5_000]));
    let set = endpoints(&[0]);
    let held = hold(&admission, &set);
    let p4 = waiter(&admission, &set, Priority::P4);
    settle().await;
    let p0 = waiter(&admission, &set, Priority::P0);
    // The P0's 30 ms run out while the P4 waits: the P4 is shed.
    assert!(is_shed(&p4.await.unwrap()));
    assert!(!p0.is_finished(), "the P0 waits on");
    // With nothing lower left, its next 30 ms shed it.
    assert!(is_shed(&p0.await.unwrap()));
    drop(held);
}

#[tokio::test]
async fn a_waiter_that_goes_away_after_being_woken_passes_the_room_on() {
    let admission = Admission::new(settings(1, 8, [5_000; 5]));
    let set = endpoints(&[0]);
    let held = hold(&admission, &set);
    let first = waiter(&admission, &set, Priority::P1);
    settle().await;
    let second = waiter(&admission, &set, Priority::P2);
    settle().await;
    // The first's client goes away: its place is given up.
    first.abort();
    let _ = first.await;
    assert_eq!(admission.view().queued, 1);
    drop(held);
    drop(second.await.unwrap().expect("the room goes to the next"));
    assert_eq!(admission.view().in_flight, 0);
}

#[tokio::test]
async fn raising_the_limit_wakes_waiters() {
    let admission = Admission::new(settings(1, 8, [5_000; 5]));
    let set = endpoints(&[0]);
    let _held = hold(&admission, &set);
    let waiting = waiter(&admission, &set, Priority::P2);
    settle().await;
    admission.configure(settings(2, 8, [5_000; 5]));
    waiting.await.unwrap().expect("room under the new limit");
}

/// A backend whose latency grows once more than 10 requests are in it.
fn backend_latency_ns(in_flight: f64) -> f64 {
    1e6 * (in_flight / 10.0).max(1.0)
}

#[test]
fn the_adaptive_limit_settles_near_what_the_backend_takes() {
    let mut gradient = Gradient::new(AdaptiveSettings {
        initial_limit: 100,
        ..AdaptiveSettings::default()
    });
    // The unloaded latency is measured first, at the minimum limit.
    gradient.observe(1e6, 0);
    assert_eq!(gradient.limit, 4.0);
    gradient.observe(5e6, 4);
    gradient.observe(1e6, 4);
    assert_eq!(gradient.limit, 100.0, "the limit is back after measuring");
    for _ in 0..20 {
        gradient.observe(1e6, 0);
    }
    assert_eq!(gradient.limit, 100.0, "an idle backend leaves the limit");
    // Saturating traffic: as many in flight as the limit allows.
    for _ in 0..300 {
        let in_flight = gradient.limit;
        gradient.observe(backend_latency_ns(in_flight), in_flight as u32);
    }
    assert!(
        (10.0..40.0).contains(&gradient.limit),
        "limit {} is not near the backend's 10",
        gradient.limit
    );
}

#[test]
fn the_adaptive_limit_grows_while_latency_holds() {
    let mut gradient = Gradient::new(AdaptiveSettings {
        initial_limit: 10,
        max_limit: 200,
        ..AdaptiveSettings::default()
    });
    for _ in 0..200 {
        let in_flight = gradient.limit;
        gradient.observe(1e6, in_flight as u32);
    }
    assert_eq!(gradient.limit, 200.0, "a backend that does not slow down");
    // Every minute the unloaded latency is measured again.
    for _ in gradient.ticks_since_probe..PROBE_EVERY {
        gradient.observe(1e6, 200);
    }
    assert_eq!(gradient.limit, 4.0, "measuring");
}

#[test]
fn lower_classes_leave_the_reserve_to_more_urgent_ones() {
    assert_eq!(class_share(8, Priority::P4, 25), 6);
    assert_eq!(class_share(8, Priority::P2, 25), 7);
    assert_eq!(class_share(8, Priority::P0, 25), 8);
    assert_eq!(class_share(1, Priority::P4, 50), 1, "at least one");
    assert_eq!(class_share(0, Priority::P4, 50), 0, "unlimited stays so");

    let admission = Admission::new(AdmissionSettings {
        reserve_percent: 25,
        ..settings(8, 8, [5_000; 5])
    });
    let set = endpoints(&[0]);
    let endpoint = &set.all[0];
    let background: Vec<_> = (0..6)
        .map(|_| admission.try_start(&set, endpoint, Priority::P4, false))
        .collect();
    assert!(background.iter().all(Option::is_some));
    assert!(admission
        .try_start(&set, endpoint, Priority::P4, false)
        .is_none());
    let urgent = admission.try_start(&set, endpoint, Priority::P0, false);
    assert!(urgent.is_some(), "the reserve is there for a P0");
}

#[tokio::test]
async fn a_waiter_that_may_not_use_the_reserve_leaves_it_for_a_p0() {
    let admission = Admission::new(AdmissionSettings {
        reserve_percent: 50,
        ..settings(2, 8, [5_000; 5])
    });
    let set = endpoints(&[0]);
    let endpoint = &set.all[0];
    let first = admission.try_start(&set, endpoint, Priority::P0, false);
    let second = admission.try_start(&set, endpoint, Priority::P0, false);
    let p4 = waiter(&admission, &set, Priority::P4);
    settle().await;
    // One slot frees: a P4 may use only 1 of 2, and 1 is in flight.
    drop(first);
    settle().await;
    assert!(!p4.is_finished(), "the P4 waits on");
    assert_eq!(admission.view().queued, 1);
    let p0 = waiter(&admission, &set, Priority::P0);
    drop(
        p0.await
            .unwrap()
            .expect("the P0 takes the reserved slot at once"),
    );
    drop(second);
    drop(
        p4.await
            .unwrap()
            .expect("the P4 once a slot of its share frees"),
    );
}
