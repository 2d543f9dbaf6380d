//! What makes role mode fast, against a real nats-server, without its
//! safety: a pull takes as many messages as asked for and no more (a pool
//! asks for its idle workers, so the server never counts more jobs in
//! flight than it has workers), and a pipelined `publish_many` stores every
//! message once and in order, large payloads included.

mod nats_support;
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::Actor;
use nats_support::NatsServer;
use nats_support::edge::{bus, consumer_info, source};
use orchestrator_actors::actors::{PoolConfig, ProverPool, Route};
use orchestrator_actors::backoff::Backoff;
use orchestrator_actors::edges::nats::{NatsSource, PayloadConfig};
use orchestrator_actors::edges::{Delivery, Job, JobFailure, JobRunner, JobSource, Publisher};
use orchestrator_actors::messages::{Envelope, queues};
use tokio::sync::Semaphore;

/// Deadlock guard for one wait; never a speed expectation.
const WAIT: Duration = Duration::from_secs(20);

/// Waits until `condition` holds, failing with `what` after [`WAIT`].
async fn until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}: not after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `next_up_to(max)`, failing the test if it takes longer than [`WAIT`].
async fn take(source: &mut NatsSource, max: usize) -> Vec<Delivery> {
    tokio::time::timeout(WAIT, source.next_up_to(max))
        .await
        .expect("a pull with messages available answered")
}

#[tokio::test]
async fn a_pull_takes_up_to_what_is_asked_for_and_only_what_is_there() {
    let server = NatsServer::start();
    let bus = bus(&server, "throughput-test").await;
    let blocks = (0..10).map(Envelope::block).collect();
    bus.publisher()
        .publish_many(queues::BLOCKS, blocks)
        .await
        .unwrap();
    let mut blocks = source(&bus, "batcher", queues::BLOCKS).await;

    let first = take(&mut blocks, 4).await;
    let ids: Vec<&str> = first.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["block-0", "block-1", "block-2", "block-3"]);
    let info = consumer_info(&server, "batcher").await;
    assert_eq!(
        (info.num_ack_pending, info.num_pending),
        (4, 6),
        "the server counts a different number of messages handed out than the 4 asked for"
    );
    for delivery in &first {
        delivery.ack.ack().await.unwrap();
    }

    // Six are left: asking for more takes them at once instead of waiting
    // for the rest (which would take the pull's whole expiry).
    let rest = take(&mut blocks, 100).await;
    assert_eq!(rest.len(), 6, "{rest:?}");
    for delivery in &rest {
        delivery.ack.ack_unconfirmed().await.unwrap();
    }

    // Nothing left: the pull waits for the next message, and returns it.
    let publisher = bus.publisher();
    let (late, published) = tokio::join!(take(&mut blocks, 5), async {
        publisher.publish(queues::BLOCKS, Envelope::block(10)).await
    });
    published.unwrap();
    let ids: Vec<&str> = late.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["block-10"]);
}

/// A prover that holds every job until the test lets it go.
struct Gate {
    open: Semaphore,
    running: AtomicUsize,
    done: AtomicUsize,
}

// Written out as `#[async_trait]` would expand it: this crate does not
// depend on async-trait.
impl JobRunner for Gate {
    fn run<'a, 'b, 'f>(
        &'a self,
        job: &'b Job,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, JobFailure>> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            self.running.fetch_add(1, Ordering::SeqCst);
            self.open.acquire().await.expect("gate open").forget();
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.done.fetch_add(1, Ordering::SeqCst);
            Ok(job.input.clone())
        })
    }
}

#[actix_rt::test]
async fn a_pool_holds_no_more_jobs_than_it_has_idle_workers() {
    let server = NatsServer::start();
    let bus = bus(&server, "throughput-pool").await;
    let blocks = (0..10).map(Envelope::block).collect();
    bus.publisher()
        .publish_many(queues::BLOCKS, blocks)
        .await
        .unwrap();
    let quick = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
    let config = PoolConfig {
        name: "gated".into(),
        workers: 3,
        gpus: Vec::new(),
        max_attempts: 3,
        retry: quick,
        pause_after_failure: false,
        restart: quick,
        progress_interval: Duration::from_secs(5),
        routes: vec![Route {
            input: queues::BLOCKS.into(),
            output: "gated_out".into(),
            multiple_output: false,
        }],
        max_age: None,
    };
    let gate = Arc::new(Gate {
        open: Semaphore::new(0),
        running: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
    });
    let jobs = source(&bus, "gated", queues::BLOCKS).await;
    let _pool = ProverPool::new(
        config,
        gate.clone(),
        Box::new(jobs),
        Arc::new(bus.publisher()),
    )
    .start();

    let in_flight = || async {
        let info = consumer_info(&server, "gated").await;
        info.num_ack_pending
    };
    until("three jobs running", || async {
        gate.running.load(Ordering::SeqCst) == 3
    })
    .await;
    assert_eq!(
        in_flight().await,
        3,
        "the pool took more jobs than its 3 workers"
    );

    // One job done: its worker takes exactly one more.
    gate.open.add_permits(1);
    until("one job done and its worker busy again", || async {
        gate.done.load(Ordering::SeqCst) == 1 && gate.running.load(Ordering::SeqCst) == 3
    })
    .await;
    until("the done job acknowledged", || async {
        consumer_info(&server, "gated").await.num_pending == 6
    })
    .await;
    assert_eq!(
        in_flight().await,
        3,
        "the pool took more jobs than its 3 workers"
    );

    // All done: the pool ends with every job acknowledged.
    gate.open.add_permits(100);
    until("every job acknowledged", || async {
        let info = consumer_info(&server, "gated").await;
        (info.num_pending, info.num_ack_pending) == (0, 0)
    })
    .await;
    assert_eq!(gate.done.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn publish_many_stores_each_message_once_and_in_order() {
    let server = NatsServer::start();
    // A low inline limit, so two of the messages go to the object store,
    // which they reach later than the pipelined ones around them.
    let bus = bus(&server, "throughput-publish")
        .await
        .with_payloads(PayloadConfig {
            inline_limit: 1024,
            ..PayloadConfig::default()
        });
    let payload = |i: usize| {
        let size = if i == 7 || i == 20 { 4096 } else { 10 };
        vec![b'a' + (i % 26) as u8; size]
    };
    let batch = || {
        (0..30)
            .map(|i| Envelope::new(format!("m-{i:02}"), payload(i)))
            .collect::<Vec<_>>()
    };
    let publisher = bus.publisher();
    publisher
        .publish_many(queues::STEPS, batch())
        .await
        .unwrap();
    // The same batch again, as a caller retrying a failed one would: the
    // ids make it a no-op.
    publisher
        .publish_many(queues::STEPS, batch())
        .await
        .unwrap();

    let mut steps = source(&bus, "reader", queues::STEPS).await;
    let mut read: Vec<Delivery> = Vec::new();
    while read.len() < 30 {
        read.extend(take(&mut steps, 30).await);
    }
    let ids: Vec<String> = read.iter().map(|d| d.id.clone()).collect();
    let expected: Vec<String> = (0..30).map(|i| format!("m-{i:02}")).collect();
    assert_eq!(ids, expected, "stored out of order, or more than once");
    for (i, delivery) in read.iter().enumerate() {
        assert_eq!(delivery.payload, payload(i), "payload of {}", delivery.id);
        delivery.ack.ack().await.unwrap();
    }
    let info = consumer_info(&server, "reader").await;
    assert_eq!(
        (info.num_pending, info.num_ack_pending),
        (0, 0),
        "a message was stored twice"
    );
}
