//! The live dashboard: a page at `/` and its data at `/api/dashboard`, on the
//! metrics port of `orchestrator run` and of the proof matcher. The page is
//! one embedded HTML file with plain JavaScript that polls the API, so no
//! front-end toolchain is needed to build or run it.
//!
//! Its state ([`state::Board`]) is fed by a source of its own on
//! `job_events`, `completed_proofs`, `dead_letter` and `blocks`
//! ([`QUEUES`]): on NATS a follower (an ordered consumer without acks),
//! which never dead-letters. The dashboard watches the pipeline, it takes no
//! part in it.

pub mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::prelude::*;
use axum::Router;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use orchestrator_actors::actors::{Inbound, pump};
use orchestrator_actors::edges::{Delivery, JobSource};
use orchestrator_actors::messages::{CompletedProof, DeadLetter, JobEvent, queues, unix_ms};
use orchestrator_actors::shutdown::Shutdown;

use state::Board;

/// The queues the dashboard reads.
pub const QUEUES: [&str; 4] = [
    queues::JOB_EVENTS,
    queues::COMPLETED_PROOFS,
    queues::DEAD_LETTER,
    queues::BLOCKS,
];

/// The page, compiled into the binary.
const PAGE: &str = include_str!("page.html");

/// The dashboard's shared state: cloned into the HTTP handlers that read it
/// and the feed that writes it.
#[derive(Clone, Default)]
pub struct Dashboard(Arc<Mutex<Board>>);

impl Dashboard {
    /// The routes to merge into the metrics server: `/` and
    /// `/api/dashboard`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(|| async { Html(PAGE) }))
            .route("/api/dashboard", get(snapshot).with_state(self.clone()))
    }

    /// Feeds the board from `source` (a consumer on [`QUEUES`]) until
    /// `shutdown`.
    pub fn follow(&self, source: Box<dyn JobSource>, shutdown: &Shutdown) {
        let feed = Feed(self.clone()).start();
        pump(source, feed.recipient(), shutdown);
    }

    fn board(&self) -> MutexGuard<'_, Board> {
        // A panic while holding the lock leaves a board that is still
        // plain data: showing it beats showing nothing.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies one delivery. Unreadable messages are skipped with a debug
    /// line: they are someone else's to dead-letter, not the dashboard's.
    fn take(&self, delivery: &Delivery) {
        let payload = delivery.payload.as_slice();
        let mut board = self.board();
        let read = match delivery.queue.as_str() {
            queues::JOB_EVENTS => {
                serde_json::from_slice::<JobEvent>(payload).map(|event| board.job_event(&event))
            }
            queues::COMPLETED_PROOFS => serde_json::from_slice::<CompletedProof>(payload)
                .map(|proof| board.completed(&proof)),
            queues::DEAD_LETTER => serde_json::from_slice::<DeadLetter>(payload)
                .map(|letter| board.dead_letter(&letter)),
            queues::BLOCKS => serde_json::from_slice::<u64>(payload)
                .map(|block| board.block_seen(block, unix_ms())),
            _ => Ok(()),
        };
        if let Err(error) = read {
            tracing::debug!(queue = %delivery.queue, id = %delivery.id, %error, "dashboard: skipping an unreadable message");
        }
    }
}

async fn snapshot(State(dashboard): State<Dashboard>) -> impl IntoResponse {
    let snapshot = dashboard.board().snapshot(unix_ms());
    (
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-store"),
        ],
        serde_json::to_string(&snapshot).unwrap_or_else(|_| "{}".into()),
    )
}

/// The actor [`pump`] hands deliveries to; it exists because `pump` feeds
/// actors, which keeps the dashboard's consumer under the same shutdown as
/// every other one.
struct Feed(Dashboard);

impl Actor for Feed {
    type Context = Context<Self>;
}

impl Handler<Inbound> for Feed {
    type Result = ();

    fn handle(&mut self, Inbound(delivery): Inbound, ctx: &mut Self::Context) {
        self.0.take(&delivery);
        ctx.spawn(fut::wrap_future(async move {
            // Unconfirmed: a redelivery only updates the board again (a
            // no-op for a follower; the local bus needs it).
            if let Err(error) = delivery.ack.ack_unconfirmed().await {
                tracing::debug!(%error, "dashboard: could not ack a message");
            }
        }));
    }
}
