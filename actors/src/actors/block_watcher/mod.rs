//! Follows a head of the chain (finalized, safe or latest) and announces
//! every block once, in the order the backlog policy asks, announcing again
//! what a reorg replaced.

mod gaps;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;

pub use self::gaps::Backlog;
use self::gaps::Gaps;
use crate::backoff::Backoff;
use crate::edges::{BlockHeader, ChainHead, EdgeError, Follow, Publisher};
use crate::messages::{Envelope, hash_in_id, meta, queues, unix_ms};
use crate::metrics;
use crate::shutdown::Lifeline;

/// At most this many blocks are announced per poll, so a big backlog is worked
/// off in slices and the watcher stays responsive to shutdown and new heads.
const MAX_ANNOUNCE_PER_POLL: usize = 500;

/// What the watcher announces and how it polls.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    /// First block to consider; `None`: the followed head at the first poll.
    pub from: Option<u64>,
    /// Last block to consider; the watcher stops after announcing it.
    pub to: Option<u64>,
    /// Announce only blocks with `block % every == 0` (1: every block).
    pub every: u64,
    /// The head followed.
    pub follow: Follow,
    /// Which blocks go first when several are due.
    pub backlog: Backlog,
    /// Time between polls once caught up; `None`: [`smart_poll`].
    pub poll_interval: Option<Duration>,
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
            follow: Follow::Finalized,
            backlog: Backlog::All,
            poll_interval: None,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            queue: queues::BLOCKS.to_owned(),
        }
    }
}

/// Mainnet's slot time: a new `latest` block at most this often.
const SLOT: Duration = Duration::from_secs(12);
/// An epoch (32 slots): `safe` and `finalized` move once per epoch.
const EPOCH: Duration = Duration::from_secs(32 * 12);
/// The longest wait between two polls on the smart schedule, so the node's
/// health stays known (`/readyz`) while no head is due.
pub const LONGEST_SMART_POLL: Duration = Duration::from_secs(60);

/// The wait before the next poll when no interval is set, given how long
/// ago the head was last seen to move (`None`: not seen yet) and the time
/// between its last two moves. Right after a move nothing is due for about a
/// slot (`latest`) or an epoch (`safe`, `finalized`) on mainnet, or for
/// about the last gap between moves on a faster chain: wait out most of it
/// (polling at least once a minute). Then the move is due any moment: ask
/// often. A block is noticed within a fraction of a second (`latest`) or
/// two seconds (`finalized`) of its arrival, at a few requests per slot.
pub fn smart_poll(follow: Follow, since_move: Option<Duration>, gap: Option<Duration>) -> Duration {
    let (quiet, chase) = match follow {
        Follow::Latest => (SLOT - Duration::from_secs(1), Duration::from_millis(250)),
        Follow::Safe | Follow::Finalized => (EPOCH - 2 * SLOT, Duration::from_secs(2)),
    };
    let quiet = gap.map_or(quiet, |gap| quiet.min(gap * 3 / 4));
    match since_move {
        Some(since) if since < quiet => (quiet - since).min(LONGEST_SMART_POLL),
        _ => chase.min(quiet.max(Duration::from_millis(100))),
    }
}

/// Reads the followed head and publishes each due block: never skipping
/// one, never publishing one twice (a publish id per block covers retries
/// after a failed publish), and, following `latest`, publishing again with
/// its new hash a block that a reorg replaced.
pub struct BlockWatcher {
    chain: Arc<dyn ChainHead>,
    publisher: Arc<dyn Publisher>,
    config: WatcherConfig,
    /// What is left to announce; taken by the poll in flight.
    gaps: Option<Gaps>,
    /// The head number of the last successful poll.
    last_head: Option<u64>,
    /// When the head was last seen to move.
    last_move: Option<std::time::Instant>,
    /// The time between the head's last two moves.
    move_gap: Option<Duration>,
    failures: u32,
    /// A poll is running.
    polling: bool,
    /// The node pushed a new head while a poll was running.
    woken: bool,
    /// The next scheduled poll, cancelled when the node pushes a head.
    next_poll: Option<SpawnHandle>,
    /// Dropped with the actor; see [`Lifeline`].
    lifeline: Option<Lifeline>,
}

/// The result of one poll, applied to the actor's state afterwards.
struct PollOutcome {
    gaps: Gaps,
    head: Option<u64>,
    error: Option<EdgeError>,
    /// More blocks are due right away (the slice limit was hit).
    more: bool,
}

/// The node has a new head: poll now.
#[derive(Message)]
#[rtype(result = "()")]
struct Wake;

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
            gaps: Some(Gaps::new(config.from)),
            config,
            last_head: None,
            last_move: None,
            move_gap: None,
            failures: 0,
            polling: false,
            woken: false,
            next_poll: None,
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
        let Some(gaps) = self.gaps.take() else {
            return;
        };
        self.polling = true;
        let chain = self.chain.clone();
        let publisher = self.publisher.clone();
        let config = self.config.clone();
        let after_failure = self.failures > 0;
        let work = async move {
            announce_due(
                chain.as_ref(),
                publisher.as_ref(),
                &config,
                gaps,
                after_failure,
            )
            .await
        };
        ctx.spawn(
            work.into_actor(self)
                .map(|outcome, act, ctx| act.after_poll(outcome, ctx)),
        );
    }

    fn after_poll(&mut self, outcome: PollOutcome, ctx: &mut Context<Self>) {
        self.polling = false;
        if matches!((self.last_head, outcome.head), (Some(last), Some(head)) if head > last) {
            let now = std::time::Instant::now();
            self.move_gap = self.last_move.map(|at| now - at);
            self.last_move = Some(now);
        }
        if outcome.head.is_some() {
            self.last_head = outcome.head;
        }
        let mut delay = match outcome.error {
            Some(error) => {
                self.failures += 1;
                let delay = self.config.backoff.delay(self.failures);
                tracing::warn!(%error, retry_in = ?delay, failures = self.failures, "block watcher: poll failed, retrying");
                delay
            }
            None if outcome.more => {
                self.failures = 0;
                Duration::ZERO
            }
            None => {
                self.failures = 0;
                self.config.poll_interval.unwrap_or_else(|| {
                    let since = self.last_move.map(|at| at.elapsed());
                    smart_poll(self.config.follow, since, self.move_gap)
                })
            }
        };
        if outcome.gaps.done(self.config.to) {
            tracing::info!(
                to = self.config.to,
                "block watcher: every block of the range announced"
            );
            ctx.stop();
            return;
        }
        self.gaps = Some(outcome.gaps);
        if std::mem::take(&mut self.woken) && self.failures == 0 {
            delay = Duration::ZERO;
        }
        self.next_poll = Some(ctx.run_later(delay, |act, ctx| act.poll(ctx)));
    }

    /// Turns the node's pushed heads into [`Wake`]s, subscribing again
    /// whenever the subscription is lost. Polling goes on meanwhile, so a
    /// lost subscription delays blocks by a poll interval at most.
    fn follow_pushed_heads(&self, ctx: &mut Context<Self>) {
        let chain = self.chain.clone();
        let backoff = self.config.backoff;
        let me = ctx.address();
        ctx.spawn(fut::wrap_future(async move {
            let mut failures = 0;
            loop {
                match chain.new_heads().await {
                    None => return,
                    Some(Ok(mut heads)) => {
                        tracing::info!("block watcher: following the heads the node pushes");
                        failures = 0;
                        while heads.next().await.is_some() {
                            me.do_send(Wake);
                        }
                        tracing::warn!("block watcher: the node's newHeads subscription ended; polling until it is back");
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "block watcher: could not subscribe to newHeads; polling meanwhile");
                    }
                }
                failures += 1;
                tokio::time::sleep(backoff.delay(failures)).await;
            }
        }));
    }
}

impl Actor for BlockWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let c = &self.config;
        tracing::info!(from = ?c.from, to = ?c.to, every = c.every, follow = %c.follow, backlog = ?c.backlog, "block watcher started");
        self.follow_pushed_heads(ctx);
        self.poll(ctx);
    }
}

impl Handler<Wake> for BlockWatcher {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        if self.polling {
            self.woken = true;
            return;
        }
        if let Some(handle) = self.next_poll.take() {
            ctx.cancel_future(handle);
        }
        self.poll(ctx);
    }
}

/// One poll: read the head, notice a reorg, publish the due blocks.
async fn announce_due(
    chain: &dyn ChainHead,
    publisher: &dyn Publisher,
    config: &WatcherConfig,
    mut gaps: Gaps,
    after_failure: bool,
) -> PollOutcome {
    let outcome = |gaps, head, error, more| PollOutcome {
        gaps,
        head,
        error,
        more,
    };
    let head = match chain.head(config.follow).await {
        Ok(head) => head,
        Err(error) => return outcome(gaps, None, Some(error), false),
    };
    metrics::finalized_head(head.number);
    if config.follow == Follow::Latest
        && let Err(error) = notice_reorg(chain, &mut gaps, &head).await
    {
        return outcome(gaps, Some(head.number), Some(error), false);
    }
    gaps.head(config.to.map_or(head.number, |to| to.min(head.number)));
    let needs_header =
        config.follow == Follow::Latest || matches!(config.backlog, Backlog::Newest { .. });
    let mut announced = 0;
    // After a failed publish, start with one block and double: a batch
    // that keeps failing part-way must not be retried whole forever.
    let mut size = if after_failure { 1 } else { BATCH };
    while announced < MAX_ANNOUNCE_PER_POLL && !gaps.is_empty() {
        let mut batch = Batch::default();
        let taken = batch
            .fill(chain, &mut gaps, config, &head, needs_header, size)
            .await;
        size = (size * 2).min(BATCH);
        announced += batch.messages.len();
        let published = match batch.messages.is_empty() {
            true => Ok(()),
            false => {
                publisher
                    .publish_many(&config.queue, std::mem::take(&mut batch.messages))
                    .await
            }
        };
        if let Err(error) = published.and(taken) {
            // Some of the batch may be stored: their ids deduplicate the
            // next try. Put back last first, so the first is taken first.
            for (block, stale_at) in batch.taken.into_iter().rev() {
                gaps.put_back(block, stale_at, config.backlog);
            }
            return outcome(gaps, Some(head.number), Some(error), false);
        }
        for (block, hash) in batch.hashes {
            gaps.announced(block, hash);
        }
        metrics::blocks_seen(batch.passed);
        for _ in &batch.taken {
            metrics::block_published();
        }
    }
    let more = !gaps.is_empty();
    outcome(gaps, Some(head.number), None, more)
}

/// Announcements published together: over NATS, their acks are awaited
/// together instead of one round trip per block.
#[derive(Default)]
struct Batch {
    messages: Vec<Envelope>,
    /// Each block taken from the gaps and its stale mark, to put back if
    /// the publish fails.
    taken: Vec<(u64, Option<u64>)>,
    /// Blocks whose hash is remembered once published (following `latest`).
    hashes: Vec<(u64, String)>,
    /// Blocks passed, sampled or not (`orchestrator_blocks_seen_total`).
    passed: u64,
}

/// Blocks announced in one publish at most.
const BATCH: usize = 64;

impl Batch {
    /// Takes up to `size` due blocks, reading the headers it needs: an
    /// error stops the batch there (what was taken is kept, to be put back).
    async fn fill(
        &mut self,
        chain: &dyn ChainHead,
        gaps: &mut Gaps,
        config: &WatcherConfig,
        head: &BlockHeader,
        needs_header: bool,
        size: usize,
    ) -> Result<(), EdgeError> {
        while self.messages.len() < size {
            let Some((block, mut stale_at, passed)) = gaps.take(config.backlog, config.every)
            else {
                break;
            };
            self.taken.push((block, stale_at));
            let header = match (needs_header && stale_at.is_none(), block == head.number) {
                (false, _) => None,
                (true, true) => Some(head.clone()),
                (true, false) => Some(chain.header(block).await?),
            };
            if let (Backlog::Newest { max_age }, Some(header)) = (config.backlog, &header)
                && unix_ms().saturating_sub(header.timestamp * 1000) > max_age.as_millis() as u64
            {
                // Newest first: every block still due is older than this one.
                gaps.mark_stale(header.timestamp);
                stale_at = Some(header.timestamp);
            }
            self.messages.push(announcement(
                block,
                header.as_ref(),
                stale_at,
                config.follow,
            ));
            if let Some(header) = header.filter(|_| config.follow == Follow::Latest) {
                self.hashes.push((block, header.hash));
            }
            self.passed += passed;
        }
        Ok(())
    }
}

/// The announcement of `block`: its bare number, as the prover contract
/// wants, with its hash and time beside it when known. Following `latest`,
/// the id holds the hash, so the block a reorg put in its place is a new
/// message rather than a duplicate of the one it replaced.
fn announcement(
    block: u64,
    header: Option<&BlockHeader>,
    stale_at: Option<u64>,
    follow: Follow,
) -> Envelope {
    let mut message = Envelope::block(block);
    if let Some(header) = header {
        if follow == Follow::Latest {
            message.id = format!("block-{block}-{}", hash_in_id(&header.hash));
        }
        message = message.with_meta(meta::BLOCK_HASH, &header.hash);
    }
    if let Some(time) = stale_at.or(header.map(|h| h.timestamp)) {
        message = message.with_meta(meta::BLOCK_TIME, time);
    }
    message
}

/// Following `latest`: if the head does not extend the blocks announced
/// (its hash, or its parent's, differs from what was announced at that
/// height), finds the first block that changed and queues it and the
/// ones after it again.
async fn notice_reorg(
    chain: &dyn ChainHead,
    gaps: &mut Gaps,
    head: &BlockHeader,
) -> Result<(), EdgeError> {
    let known = |n: u64| gaps.recent.get(&n).cloned();
    let extends = match (
        known(head.number),
        head.number.checked_sub(1).and_then(known),
    ) {
        (Some(hash), _) => hash == head.hash,
        (None, Some(parent)) => parent == head.parent_hash,
        (None, None) => true,
    };
    if extends {
        return Ok(());
    }
    let announced: Vec<(u64, String)> = gaps
        .recent
        .range(..=head.number)
        .rev()
        .map(|(n, h)| (*n, h.clone()))
        .collect();
    let old_top = gaps
        .recent
        .keys()
        .next_back()
        .copied()
        .unwrap_or(head.number);
    let mut first = head.number;
    for (number, old_hash) in announced {
        let now = if number == head.number {
            head.hash.clone()
        } else {
            chain.header(number).await?.hash
        };
        if now == old_hash {
            break;
        }
        first = number;
    }
    tracing::warn!(
        first,
        last = old_top,
        depth = old_top.saturating_sub(first) + 1,
        head = head.number,
        "block watcher: reorg, blocks {first}..={old_top} were replaced; announcing the new ones"
    );
    metrics::reorg(old_top.saturating_sub(first) + 1);
    gaps.rewind(first);
    Ok(())
}

#[cfg(test)]
mod tests;
