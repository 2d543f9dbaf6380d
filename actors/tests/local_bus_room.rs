//! The in-process bus's bounded groups (`LocalBus::subscribe_bounded`): a
//! publish to a full queue waits for its group, and nothing else does —
//! not the group's other queues, not redeliveries, not a group that is gone,
//! not a group nobody bounded. Futures are polled by hand (`now_or_never`),
//! so "waits" is a fact of one poll, never a timing.

use std::time::Duration;

use futures_util::FutureExt;
use orchestrator_actors::edges::local::LocalBus;
use orchestrator_actors::edges::{JobSource, Publisher};
use orchestrator_actors::messages::{Envelope, queues};

/// Publishes block `n` to `blocks` and says whether that finished at once.
fn publish_now(bus: &LocalBus, n: u64) -> bool {
    bus.publish(queues::BLOCKS, Envelope::block(n))
        .now_or_never()
        .map(|r| r.expect("local publish"))
        .is_some()
}

#[tokio::test]
async fn a_full_queue_makes_the_publisher_wait_for_its_group() {
    let bus = LocalBus::new();
    let mut pool = bus.subscribe_bounded(&[queues::BLOCKS, queues::STEPS], &[queues::BLOCKS], 2);
    // Unbounded and never read: it holds nobody up.
    let _idle = bus.subscribe(&[queues::BLOCKS]);
    assert!(publish_now(&bus, 1) && publish_now(&bus, 2));

    let mut third = Box::pin(bus.publish(queues::BLOCKS, Envelope::block(3)));
    assert!(
        (&mut third).now_or_never().is_none(),
        "a third block got into a queue with room for 2"
    );
    // The group's own unbounded queue still takes messages: a multistep
    // pool publishing steps into its input never waits for itself.
    bus.publish(queues::STEPS, Envelope::new("step-1", "{}"))
        .now_or_never()
        .expect("an unbounded queue never waits")
        .unwrap();

    assert_eq!(pool.next().await.unwrap().id, "block-1");
    third.await.unwrap();
    let order: Vec<String> = [
        pool.next().await.unwrap(),
        pool.next().await.unwrap(),
        pool.next().await.unwrap(),
    ]
    .into_iter()
    .map(|d| d.id)
    .collect();
    assert_eq!(order, ["block-2", "step-1", "block-3"]);
}

#[tokio::test]
async fn redeliveries_never_wait_for_room() {
    let bus = LocalBus::new();
    let mut pool = bus.subscribe_bounded(&[queues::BLOCKS], &[queues::BLOCKS], 1);
    assert!(publish_now(&bus, 1));
    let first = pool.next().await.unwrap();
    assert!(publish_now(&bus, 2), "taking block 1 made room");
    // The queue is full again (block 2); the nak'ed block 1 gets back in.
    first.ack.nak(Duration::ZERO).await.unwrap();
    let mut seen = vec![];
    for _ in 0..2 {
        let d = pool.next().await.unwrap();
        seen.push((d.id, d.attempt));
    }
    seen.sort();
    assert_eq!(seen, [("block-1".to_owned(), 2), ("block-2".to_owned(), 1)]);
}

#[tokio::test]
async fn a_group_that_is_gone_holds_no_one_up() {
    let bus = LocalBus::new();
    let pool = bus.subscribe_bounded(&[queues::BLOCKS], &[queues::BLOCKS], 1);
    let mut matcher = bus.subscribe(&[queues::BLOCKS]);
    assert!(publish_now(&bus, 1));
    drop(pool);
    assert!(publish_now(&bus, 2), "waited for a group that was dropped");
    assert_eq!(matcher.next().await.unwrap().id, "block-1");
    assert_eq!(matcher.next().await.unwrap().id, "block-2");
}

#[tokio::test]
async fn a_publish_dropped_while_waiting_is_not_taken_for_sent() {
    let bus = LocalBus::new();
    let mut pool = bus.subscribe_bounded(&[queues::BLOCKS], &[queues::BLOCKS], 1);
    assert!(publish_now(&bus, 1));
    assert!(
        !publish_now(&bus, 2),
        "no room: the publish waits, then is dropped"
    );
    assert_eq!(pool.next().await.unwrap().id, "block-1");
    // Its retry is a first publish, not a duplicate to ignore.
    assert!(publish_now(&bus, 2));
    assert_eq!(pool.next().await.unwrap().id, "block-2");
}
