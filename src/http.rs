//! The operators' HTTP endpoints, on `METRICS_PORT` (`--metrics-port`):
//!
//! - `/metrics`: Prometheus text of every metric in
//!   [`orchestrator_actors::metrics`];
//! - `/healthz`: 200 while the process runs;
//! - `/readyz`: 200 when what this process needs answers (NATS connected,
//!   the RPC answered recently), else 503 with a one-line reason.
//!
//! More pages (the dashboard) join the same server: build an
//! [`axum::Router`] and pass it to [`serve`] as `extra`, where `standalone.rs`
//! and `roles.rs` call it today with `Router::new()`. Its routes are merged
//! next to the three above, so it may take `/` but none of theirs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use orchestrator_actors::edges::nats::NatsBus;
use orchestrator_actors::edges::rpc::RpcHealth;
use orchestrator_actors::metrics as m;

use crate::config::Settings;

/// What `/readyz` checks for this process, filled in as start-up connects
/// things: a check that is needed but not set yet reads as not ready.
#[derive(Clone, Default)]
pub struct Readiness(Arc<Mutex<Checks>>);

#[derive(Default)]
struct Checks {
    /// `Some(None)`: NATS is needed but not connected yet.
    nats: Option<Option<NatsBus>>,
    /// The RPC must have answered within the duration.
    rpc: Option<(RpcHealth, Duration)>,
}

impl Readiness {
    /// Ready only once [`Readiness::nats_connected`] gave the bus, and while
    /// its client is connected.
    pub fn needs_nats(&self) -> &Self {
        self.lock().nats.get_or_insert(None);
        self
    }

    /// The bus whose connection `/readyz` reports.
    pub fn nats_connected(&self, bus: &NatsBus) {
        self.lock().nats = Some(Some(bus.clone()));
    }

    /// Ready only while the RPC answered within `within`.
    pub fn needs_rpc(&self, health: RpcHealth, within: Duration) -> &Self {
        self.lock().rpc = Some((health, within));
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Checks> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Err` with the reason when not ready.
    fn check(&self) -> Result<(), String> {
        let checks = self.lock();
        match &checks.nats {
            Some(None) => return Err("NATS: not connected yet".into()),
            Some(Some(bus)) if !bus.is_connected() => {
                return Err("NATS: disconnected; reconnecting".into());
            }
            _ => {}
        }
        if let Some((health, within)) = &checks.rpc {
            match health.since_last_answer() {
                None => return Err("RPC: no answer yet".into()),
                Some(age) if age > *within => {
                    return Err(format!(
                        "RPC: last answer {}s ago, more than {}s",
                        age.as_secs(),
                        within.as_secs()
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// How long ago the RPC may have answered last for a watcher to be ready:
/// three polls (the smart schedule's longest wait is a minute), and never
/// under a minute (the watcher backs off up to a minute after errors, and
/// one request may take 15 s).
pub fn rpc_window(s: &Settings) -> Duration {
    let poll = s
        .poll_interval
        .unwrap_or(orchestrator_actors::actors::LONGEST_SMART_POLL);
    (poll * 3).max(Duration::from_secs(60))
}

/// The process's Prometheus recorder, installed on first use: metrics are
/// recorded only in a process that serves them.
fn recorder() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(m::PROVING_SECONDS.into()),
            m::PROVING_SECONDS_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(m::PROOF_BYTES.into()), m::PROOF_BYTES_BUCKETS)?
        .install_recorder()
        .context("installing the metrics recorder")?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Binds `0.0.0.0:port` (port 0: any free port) and serves `/metrics`,
/// `/healthz`, `/readyz` and the routes of `extra` on it until the process
/// stops. Returns the bound address, which is logged. A port that cannot
/// be bound is an error naming it; call this early in start-up so that
/// error stops the process before it takes work.
pub async fn serve(port: u16, readiness: Readiness, extra: Router) -> anyhow::Result<SocketAddr> {
    let metrics = recorder()?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| {
            format!(
                "cannot serve metrics on port {port} (METRICS_PORT / --metrics-port): the port is taken or not allowed; pick a free one, or 0 for any free port"
            )
        })?;
    let address = listener
        .local_addr()
        .context("the metrics listener's address")?;
    let app = Router::new()
        .route("/metrics", get(render).with_state(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready).with_state(readiness))
        .merge(extra);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, %address, "the metrics server stopped");
        }
    });
    tracing::info!(%address, "serving /metrics, /healthz and /readyz");
    Ok(address)
}

/// The port to serve on: `METRICS_PORT` when set; unset, none for `run`
/// (`role` false) and any free port for a role, which the template's
/// services always serve.
pub fn port(s: &Settings, role: bool) -> Option<u16> {
    s.metrics_port.or(role.then_some(0))
}

async fn render(State(metrics): State<PrometheusHandle>) -> impl IntoResponse {
    // Upkeep drains histogram samples; rendering is the natural beat for it.
    metrics.run_upkeep();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

async fn ready(State(readiness): State<Readiness>) -> impl IntoResponse {
    match readiness.check() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}
