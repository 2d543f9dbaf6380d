//! Two consumers of one queue (the matcher and the provers both read
//! `blocks`) that both give up on the same message at the same attempt each
//! leave a dead letter: the letters' ids differ, so the bus's dedupe (and
//! JetStream's `Nats-Msg-Id` window) keeps both.

mod common;

use common::{assert_quiet, next_within};
use orchestrator_actors::edges::Publisher;
use orchestrator_actors::edges::local::LocalBus;
use orchestrator_actors::messages::{DeadLetter, Envelope, queues};

#[tokio::test]
async fn two_consumers_rejecting_one_message_leave_two_dead_letters() {
    let bus = LocalBus::new();
    let mut matcher = bus.subscribe(&[queues::BLOCK_PROOFS, queues::BLOCKS]);
    let mut prover = bus.subscribe(&[queues::BLOCKS]);
    let mut dead = bus.subscribe(&[queues::DEAD_LETTER]);
    bus.publish(
        queues::BLOCKS,
        Envelope::new("block-x", b"not a block".to_vec()),
    )
    .await
    .expect("publish");

    for source in [&mut matcher, &mut prover] {
        let delivery = next_within(source, 5).await;
        assert_eq!(delivery.attempt, 1);
        delivery
            .ack
            .reject("not a block number")
            .await
            .expect("reject");
    }

    let mut letters = Vec::new();
    for _ in 0..2 {
        let delivery = next_within(&mut dead, 5).await;
        let letter: DeadLetter = serde_json::from_slice(&delivery.payload).expect("a dead letter");
        assert_eq!((letter.id.as_str(), letter.attempts), ("block-x", 1));
        letters.push((delivery.id, letter.consumer));
    }
    assert_quiet(&mut dead).await;
    assert_ne!(
        letters[0].0, letters[1].0,
        "dead-letter ids must differ: {letters:?}"
    );
    assert_ne!(
        letters[0].1, letters[1].1,
        "each letter names its consumer: {letters:?}"
    );
}
