//! Follows the finalized head and announces every block, in order, once.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::backoff::Backoff;
use crate::edges::{ChainHead, EdgeError, Publisher};
use crate::messages::{Envelope, queues};
use crate::metrics;
use crate::shutdown::Lifeline;

/// At most this many blocks are announced per poll, so a big backlog is worked
/// off in slices and the watcher stays responsive to shutdown.
const MAX_ANNOUNCE_PER_POLL: usize = 500;

/// What the watcher announces and how it polls.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    /// First block to consider; `None`: the finalized head at the first poll.
    pub from: Option<u64>,
    /// Last block to consider; the watcher stops after announcing it.
    pub to: Option<u64>,
    /// Announce only blocks with `block % every == 0` (1: every block).
    pub every: u64,
    /// Time between polls once caught up.
    pub poll_interval: Duration,
    /// Delay schedule after RPC or publish errors.
    pub backoff: Backoff,
    /// Queue the announcements go to.
    pub queue: String,
}

impl Default for WatcherConfig {
    fn default() -> Self {
        Self {
            from: None,
            to: None,
            every: 1,
            poll_interval: Duration::from_secs(12),
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            queue: queues::BLOCKS.to_owned(),
        }
    }
}

/// Polls the chain for the finalized head and publishes each block number
/// from its cursor up to the head: never skipping one, never publishing one
/// twice (a publish id per block covers retries after a failed publish).
pub struct BlockWatcher {
    chain: Arc<dyn ChainHead>,
    publisher: Arc<dyn Publisher>,
    config: WatcherConfig,
    /// The next block to consider; `None` until the first successful poll.
    cursor: Option<u64>,
    failures: u32,
    /// Dropped with the actor; see [`Lifeline`].
    lifeline: Option<Lifeline>,
}

/// The result of one poll, applied to the actor's state afterwards.
struct PollOutcome {
    cursor: Option<u64>,
    error: Option<EdgeError>,
    /// More blocks are due right away (the slice limit was hit).
    more: bool,
}

impl BlockWatcher {
    /// A watcher reading `chain` and publishing to `publisher`.
    pub fn new(
        chain: Arc<dyn ChainHead>,
        publisher: Arc<dyn Publisher>,
        config: WatcherConfig,
    ) -> Self {
        Self {
            chain,
            publisher,
            cursor: config.from,
            config,
            failures: 0,
            lifeline: None,
        }
    }

    /// Exits the process through `lifeline` when this actor stops: a role
    /// without it would hold its consumer and do nothing.
    pub fn with_lifeline(mut self, lifeline: Lifeline) -> Self {
        self.lifeline = Some(lifeline);
        self
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        let chain = self.chain.clone();
        let publisher = self.publisher.clone();
        let config = self.config.clone();
        let cursor = self.cursor;
        let work =
            async move { announce_due(chain.as_ref(), publisher.as_ref(), &config, cursor).await };
        ctx.spawn(
            work.into_actor(self)
                .map(|outcome, act, ctx| act.after_poll(outcome, ctx)),
        );
    }

    fn after_poll(&mut self, outcome: PollOutcome, ctx: &mut Context<Self>) {
        self.cursor = outcome.cursor;
        let delay = match outcome.error {
            Some(error) => {
                self.failures += 1;
                let delay = self.config.backoff.delay(self.failures);
                tracing::warn!(%error, retry_in = ?delay, failures = self.failures, "block watcher: poll failed, retrying");
                delay
            }
            None => {
                self.failures = 0;
                if outcome.more {
                    Duration::ZERO
                } else {
                    self.config.poll_interval
                }
            }
        };
        if let (Some(cursor), Some(to)) = (self.cursor, self.config.to)
            && cursor > to
        {
            tracing::info!(to, "block watcher: every block of the range announced");
            ctx.stop();
            return;
        }
        ctx.run_later(delay, |act, ctx| act.poll(ctx));
    }
}

impl Actor for BlockWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(from = ?self.config.from, to = ?self.config.to, every = self.config.every, "block watcher started");
        self.poll(ctx);
    }
}

/// One poll: read the finalized head, publish the due blocks from `cursor`.
async fn announce_due(
    chain: &dyn ChainHead,
    publisher: &dyn Publisher,
    config: &WatcherConfig,
    cursor: Option<u64>,
) -> PollOutcome {
    let finalized = match chain.finalized_block().await {
        Ok(n) => {
            metrics::finalized_head(n);
            n
        }
        Err(error) => {
            return PollOutcome {
                cursor,
                error: Some(error),
                more: false,
            };
        }
    };
    let mut next = cursor.unwrap_or(finalized);
    let last = config.to.map_or(finalized, |to| to.min(finalized));
    let mut announced = 0;
    while next <= last {
        if announced == MAX_ANNOUNCE_PER_POLL {
            return PollOutcome {
                cursor: Some(next),
                error: None,
                more: true,
            };
        }
        if next.is_multiple_of(config.every) {
            if let Err(error) = publisher
                .publish(&config.queue, Envelope::block(next))
                .await
            {
                return PollOutcome {
                    cursor: Some(next),
                    error: Some(error),
                    more: false,
                };
            }
            tracing::debug!(block = next, "block announced");
            metrics::block_published();
            announced += 1;
        } else if config.every > 1 {
            // Jump straight to the next sampled block instead of walking to it.
            let sampled = (next / config.every + 1) * config.every;
            metrics::blocks_seen(sampled - next);
            next = sampled;
            continue;
        }
        metrics::blocks_seen(1);
        next += 1;
    }
    PollOutcome {
        cursor: Some(next),
        error: None,
        more: false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;

    /// A chain whose answers are scripted: a head, or an error.
    struct ScriptedChain(Mutex<VecDeque<Option<u64>>>);

    #[async_trait]
    impl ChainHead for ScriptedChain {
        async fn finalized_block(&self) -> Result<u64, EdgeError> {
            let mut script = self.0.lock().unwrap();
            let answer = if script.len() > 1 {
                script.pop_front().unwrap()
            } else {
                script[0]
            };
            answer.ok_or(EdgeError::Rpc {
                url: "fake".into(),
                reason: "connection refused".into(),
            })
        }
    }

    /// Records publishes; fails every `fail_every`-th one.
    #[derive(Default)]
    struct RecordingPublisher {
        blocks: Mutex<Vec<u64>>,
        calls: Mutex<u32>,
        fail_every: u32,
    }

    #[async_trait]
    impl Publisher for RecordingPublisher {
        async fn publish(&self, queue: &str, message: Envelope) -> Result<(), EdgeError> {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            if self.fail_every > 0 && calls.is_multiple_of(self.fail_every) {
                return Err(EdgeError::Publish {
                    queue: queue.into(),
                    id: message.id,
                    reason: "timeout".into(),
                });
            }
            let block = String::from_utf8(message.payload).unwrap().parse().unwrap();
            self.blocks.lock().unwrap().push(block);
            Ok(())
        }
    }

    fn fast(from: Option<u64>, to: Option<u64>, every: u64) -> WatcherConfig {
        WatcherConfig {
            from,
            to,
            every,
            poll_interval: Duration::from_millis(5),
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(5)),
            ..WatcherConfig::default()
        }
    }

    async fn watch(
        script: Vec<Option<u64>>,
        publisher: Arc<RecordingPublisher>,
        config: WatcherConfig,
        until: usize,
    ) -> Vec<u64> {
        let chain = Arc::new(ScriptedChain(Mutex::new(script.into())));
        let addr = BlockWatcher::new(chain, publisher.clone(), config).start();
        for _ in 0..2000 {
            if publisher.blocks.lock().unwrap().len() >= until || !addr.connected() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        publisher.blocks.lock().unwrap().clone()
    }

    #[actix_rt::test]
    async fn big_jump_and_flapping_rpc_give_no_gap_and_no_duplicate() {
        // Errors, a head going backwards (a lagging node behind a balancer), a
        // jump of 2000 blocks, and failing publishes along the way.
        let script = vec![
            None,
            Some(100),
            None,
            Some(103),
            Some(101),
            None,
            Some(2100),
            Some(2100),
        ];
        let publisher = Arc::new(RecordingPublisher {
            fail_every: 7,
            ..Default::default()
        });
        let seen = watch(script, publisher, fast(None, None, 1), 2001).await;
        assert_eq!(seen, (100..=2100).collect::<Vec<_>>());
    }

    #[actix_rt::test]
    async fn starts_at_from_and_samples_every_nth() {
        let publisher = Arc::new(RecordingPublisher::default());
        let seen = watch(
            vec![Some(53), Some(80)],
            publisher,
            fast(Some(41), None, 10),
            4,
        )
        .await;
        assert_eq!(seen, [50, 60, 70, 80]);
    }

    #[actix_rt::test]
    async fn range_waits_for_finality_then_stops() {
        let publisher = Arc::new(RecordingPublisher::default());
        let seen = watch(
            vec![Some(8), Some(9), None, Some(30)],
            publisher,
            fast(Some(5), Some(12), 1),
            100,
        )
        .await;
        assert_eq!(seen, (5..=12).collect::<Vec<_>>());
    }
}
