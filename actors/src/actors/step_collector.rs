//! The `Match` strategy: groups step proofs by `group_id` and emits each
//! complete group as one JSON array, ready for the aggregator.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::Inbound;
use crate::edges::{AckHandle, Publisher};
use crate::messages::{Envelope, StepProof, queues};
use crate::shutdown::Lifeline;

/// Completed group ids remembered to ignore late duplicates.
const DONE_WINDOW: usize = 10_000;
/// How long a group may stay incomplete unless configured otherwise.
pub const DEFAULT_GROUP_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// One group being collected: its steps by task id, and the acks of the
/// messages that carried them. Acks are held until the group is published,
/// so a crash before that redelivers the steps instead of losing them.
struct Group {
    /// Each step proof's payload, byte for byte, by task id.
    steps: BTreeMap<String, Vec<u8>>,
    acks: Vec<Arc<dyn AckHandle>>,
    /// When the first step arrived; a group open too long is given up.
    opened: Instant,
}

impl Default for Group {
    fn default() -> Self {
        Self {
            steps: BTreeMap::new(),
            acks: Vec::new(),
            opened: Instant::now(),
        }
    }
}

/// Collects `num_inputs` step proofs per `group_id` (duplicates by `task_id`
/// ignored) and publishes each complete group once.
pub struct StepCollector {
    num_inputs: usize,
    publisher: Arc<dyn Publisher>,
    output_queue: String,
    groups: HashMap<String, Group>,
    done: HashSet<String>,
    done_order: VecDeque<String>,
    /// How often held step proofs are reported in progress to their source.
    keepalive: Duration,
    /// How long a group may stay incomplete before its steps are dead-lettered.
    group_timeout: Duration,
    /// Dropped with the actor; see [`Lifeline`].
    lifeline: Option<Lifeline>,
}

impl StepCollector {
    /// A collector emitting a group once it holds `num_inputs` distinct steps.
    pub fn new(num_inputs: usize, publisher: Arc<dyn Publisher>) -> Self {
        Self {
            num_inputs: num_inputs.max(1),
            publisher,
            output_queue: queues::COLLECTED_STEP_PROOFS.to_owned(),
            groups: HashMap::new(),
            done: HashSet::new(),
            done_order: VecDeque::new(),
            keepalive: Duration::from_secs(10),
            group_timeout: DEFAULT_GROUP_TIMEOUT,
            lifeline: None,
        }
    }

    /// Exits the process through `lifeline` when this actor stops: a role
    /// without it would hold its consumer and do nothing.
    pub fn with_lifeline(mut self, lifeline: Lifeline) -> Self {
        self.lifeline = Some(lifeline);
        self
    }

    /// Reports held step proofs in progress every `every` (default 10 s), so
    /// their source does not redeliver them while the group fills.
    pub fn with_keepalive(mut self, every: Duration) -> Self {
        self.keepalive = every.max(Duration::from_millis(10));
        self
    }

    /// Gives up a group still incomplete `timeout` after its first step
    /// (default 30 min): a lost step, or a partitioner that made another
    /// number of steps than `num_inputs`, must not hold the others forever.
    pub fn with_group_timeout(mut self, timeout: Duration) -> Self {
        self.group_timeout = timeout;
        self
    }

    /// Publishes groups to `queue` instead of the default.
    pub fn with_output(mut self, queue: impl Into<String>) -> Self {
        self.output_queue = queue.into();
        self
    }

    fn mark_done(&mut self, group: String) {
        if self.done_order.len() == DONE_WINDOW
            && let Some(old) = self.done_order.pop_front()
        {
            self.done.remove(&old);
        }
        self.done.insert(group.clone());
        self.done_order.push_back(group);
    }
}

impl Actor for StepCollector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.keepalive, |collector, ctx| {
            collector.give_up_stale_groups(ctx);
            let held: Vec<Arc<dyn AckHandle>> = collector
                .groups
                .values()
                .flat_map(|g| g.acks.iter().cloned())
                .collect();
            settle_all(ctx, held, |ack| async move { ack.in_progress().await });
        });
    }
}

impl StepCollector {
    /// Dead-letters the steps of every group open longer than the timeout.
    fn give_up_stale_groups(&mut self, ctx: &mut Context<Self>) {
        let stale: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.opened.elapsed() >= self.group_timeout)
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            let group = self.groups.remove(&key).expect("stale group present");
            let reason = Arc::new(format!(
                "group {key} incomplete after {:?}: {} of {} step proofs arrived",
                self.group_timeout,
                group.steps.len(),
                self.num_inputs
            ));
            tracing::warn!(group = %key, %reason, "giving up an incomplete group");
            self.mark_done(key);
            settle_all(ctx, group.acks, move |ack| {
                let reason = reason.clone();
                async move { ack.reject(&reason).await }
            });
        }
    }
}

/// Settles each of `acks` with `settle`, in the background of the collector
/// (which owns the work: it ends with the collector).
fn settle_all<F, Fut>(ctx: &mut Context<StepCollector>, acks: Vec<Arc<dyn AckHandle>>, settle: F)
where
    F: Fn(Arc<dyn AckHandle>) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<(), crate::edges::EdgeError>> + 'static,
{
    if acks.is_empty() {
        return;
    }
    ctx.spawn(fut::wrap_future(async move {
        for ack in acks {
            if let Err(error) = settle(ack).await {
                tracing::debug!(%error, "settling a held step proof failed");
            }
        }
    }));
}

impl Handler<Inbound> for StepCollector {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, Inbound(delivery): Inbound, _ctx: &mut Self::Context) -> Self::Result {
        let parsed = serde_json::from_slice::<StepProof>(&delivery.payload);
        let step = match parsed {
            Ok(step) => step,
            Err(e) => {
                let reason = super::proof_matcher::malformed(
                    "not a step proof; expected {\"data\",\"task_id\",\"group_id\"}",
                    &delivery.payload,
                    &e,
                );
                let (id, bytes) = (delivery.id.clone(), delivery.payload.len());
                let work = async move {
                    match delivery.ack.reject(&reason).await {
                        Ok(()) => {
                            tracing::warn!(%id, bytes, %reason, "malformed step proof dead-lettered")
                        }
                        Err(error) => {
                            tracing::warn!(%id, bytes, %reason, %error, "could not dead-letter a malformed step proof; it will be delivered again")
                        }
                    }
                };
                return AtomicResponse::new(Box::pin(work.into_actor(self)));
            }
        };
        let key = match &step.group_id {
            serde_json::Value::String(id) => id.clone(),
            other => other.to_string(),
        };
        let group = self.groups.entry(key.clone()).or_default();
        if self.done.contains(&key) || group.steps.contains_key(&step.task_id) {
            tracing::debug!(group = %key, task = %step.task_id, "duplicate step proof ignored");
            if group.steps.is_empty() {
                self.groups.remove(&key);
            }
            return settle_now(self, async move { delivery.ack.ack().await });
        }
        group.steps.insert(step.task_id, delivery.payload);
        group.acks.push(Arc::from(delivery.ack));
        if group.steps.len() < self.num_inputs {
            return AtomicResponse::new(Box::pin(async {}.into_actor(self)));
        }

        let group = self.groups.remove(&key).expect("group present");
        // A JSON array of the step proofs exactly as the step provers wrote them.
        let payload = [
            b"[".as_slice(),
            &group
                .steps
                .into_values()
                .collect::<Vec<_>>()
                .join(b",".as_slice()),
            b"]",
        ]
        .concat();
        let publisher = self.publisher.clone();
        let output = self.output_queue.clone();
        let id = format!("group-{key}");
        let work = async move {
            let published = publisher.publish(&output, Envelope::new(id, payload)).await;
            for ack in &group.acks {
                let settled = match &published {
                    Ok(()) => ack.ack().await,
                    Err(_) => ack.nak(Duration::from_secs(1)).await,
                };
                if let Err(error) = settled {
                    tracing::warn!(%error, "could not settle a step proof");
                }
            }
            published
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(move |published, collector, _| match published {
            Ok(()) => {
                tracing::info!(group = %key, steps = collector.num_inputs, "step proofs collected");
                collector.mark_done(key);
            }
            Err(error) => tracing::warn!(group = %key, %error, "could not publish a collected group; its steps will be redelivered"),
        })))
    }
}

/// Settles a delivery without touching the collector's state.
fn settle_now<F>(collector: &StepCollector, settle: F) -> AtomicResponse<StepCollector, ()>
where
    F: std::future::Future<Output = Result<(), crate::edges::EdgeError>> + 'static,
{
    let work = async move {
        if let Err(error) = settle.await {
            tracing::warn!(%error, "could not settle a step proof");
        }
    };
    AtomicResponse::new(Box::pin(work.into_actor(collector)))
}
