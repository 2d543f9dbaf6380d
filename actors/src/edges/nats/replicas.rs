//! Copies of the deployment's streams on a NATS cluster. `init --replicas N`
//! gives the stream, the matcher's key-value bucket and the payload bucket N
//! copies, so losing a node loses no message and no matcher state; it also
//! raises the copies of what a role created earlier with the default (1),
//! and returns only once every copy has caught up, so the roles started
//! after it can create their consumers at once.

use std::time::Duration;

use super::{NatsBus, NatsError};

/// How long `init` waits for new copies to catch up with their leader.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(60);

impl NatsBus {
    /// Gives the stream, the matcher's key-value bucket `matcher_bucket` and
    /// the payload bucket this topology's replicas, then waits until every
    /// copy is current (`init` calls it once they exist).
    pub async fn ensure_replicas(&self, matcher_bucket: &str) -> Result<(), NatsError> {
        let streams = [
            self.topology.stream.clone(),
            format!("KV_{matcher_bucket}"),
            format!("OBJ_{}", self.payloads.bucket),
        ];
        for name in &streams {
            self.set_replicas(name).await?;
        }
        for name in &streams {
            self.await_current(name).await?;
        }
        Ok(())
    }

    /// Sets the replicas of stream `name` to the topology's, if they differ.
    async fn set_replicas(&self, name: &str) -> Result<(), NatsError> {
        let replicas = self.topology.replicas;
        let mut stream = self
            .js
            .get_stream(name)
            .await
            .map_err(|e| failed(name, replicas, e))?;
        let mut config = stream
            .info()
            .await
            .map_err(|e| failed(name, replicas, e))?
            .config
            .clone();
        if config.num_replicas != replicas {
            tracing::info!(stream = %name, from = config.num_replicas, to = replicas, "changing the number of replicas");
            config.num_replicas = replicas;
            self.js
                .update_stream(config)
                .await
                .map_err(|e| failed(name, replicas, e))?;
        }
        Ok(())
    }

    /// Waits until stream `name` has a leader and `replicas - 1` current
    /// followers: a consumer created on a stream still copying itself is
    /// refused ("insufficient resources").
    async fn await_current(&self, name: &str) -> Result<(), NatsError> {
        let replicas = self.topology.replicas;
        if replicas == 1 {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + CATCH_UP_LIMIT;
        loop {
            let mut stream = self
                .js
                .get_stream(name)
                .await
                .map_err(|e| failed(name, replicas, e))?;
            let info = stream.info().await.map_err(|e| failed(name, replicas, e))?;
            let current = info.cluster.as_ref().map_or(0, |cluster| {
                let leader = usize::from(cluster.leader.is_some());
                leader + cluster.replicas.iter().filter(|p| p.current).count()
            });
            if current >= replicas {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(NatsError::JetStream {
                    what: format!("waiting for {replicas} copies of stream {name}"),
                    reason: format!(
                        "only {current} are current after {CATCH_UP_LIMIT:?}; the cluster needs {replicas} servers with JetStream up, or lower --replicas (ORCHESTRATOR_REPLICAS)"
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The error of setting `replicas` copies on stream `name`.
fn failed(name: &str, replicas: usize, error: impl std::fmt::Display) -> NatsError {
    NatsError::JetStream {
        what: format!("setting {replicas} replicas (ORCHESTRATOR_REPLICAS) on stream {name}"),
        reason: error.to_string(),
    }
}
