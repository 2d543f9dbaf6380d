//! EthProofs reporting from settings: the `ethproofs-reporter` role and
//! `orchestrator run` both build their reporter here, so one set of
//! settings means the same in both.

use std::sync::Arc;
use std::time::Duration;

use actix::Actor as _;
use anyhow::bail;
use orchestrator_actors::actors::{EthProofsReporter, Inbound, ReporterConfig};
use orchestrator_actors::edges::JobSource;
use orchestrator_actors::edges::ethproofs::{EthProofsApi, HttpEthProofs};
use orchestrator_actors::shutdown::Shutdown;

use crate::config::Settings;

/// Bounds one request, the upload of a proof of several MB included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// In `run`, once a stop is asked for: the reporter goes on while messages
/// keep coming at least this often (within the drain limit).
const QUIET: Duration = Duration::from_millis(500);

/// What a reporter needs, checked before anything starts.
pub struct Reporting {
    api: Arc<dyn EthProofsApi>,
    config: ReporterConfig,
}

impl Reporting {
    /// The reporting `s` asks for: `None` when none of `ETHPROOFS_API_URL`,
    /// `ETHPROOFS_API_KEY` and `ETHPROOFS_CLUSTER_ID` is set, an error when
    /// only some are, or the URL is unusable.
    pub fn from_settings(s: &Settings) -> anyhow::Result<Option<Self>> {
        let (url, key, cluster) = (
            s.ethproofs_api_url.as_ref(),
            s.ethproofs_api_key.as_ref(),
            s.ethproofs_cluster_id,
        );
        let (Some(url), Some(key), Some(cluster)) = (url, key, cluster) else {
            let missing: Vec<&str> = [
                ("ETHPROOFS_API_URL", url.is_none()),
                ("ETHPROOFS_API_KEY", key.is_none()),
                ("ETHPROOFS_CLUSTER_ID", cluster.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, absent)| absent.then_some(name))
            .collect();
            if missing.len() == 3 {
                return Ok(None);
            }
            bail!(
                "invalid configuration: EthProofs reporting needs ETHPROOFS_API_URL, ETHPROOFS_API_KEY and ETHPROOFS_CLUSTER_ID together; {} not set",
                missing.join(" and ")
            );
        };
        let api = HttpEthProofs::new(url, key.clone(), REQUEST_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let mut config = ReporterConfig::new(cluster);
        config.keepalive = s.progress_interval;
        tracing::info!(url = %url, cluster, "reporting proofs to EthProofs");
        Ok(Some(Self {
            api: Arc::new(api),
            config,
        }))
    }

    /// The reporter actor (not started).
    pub fn reporter(self) -> EthProofsReporter {
        EthProofsReporter::new(self.api, self.config)
    }

    /// `run`'s reporter: fed from `source` like [`pump`] feeds an actor,
    /// but a stop does not cut it off: a range run stops as soon as its last
    /// proof is out, so the reporter goes on with what is already queued
    /// (that proof's report) until nothing came for [`QUIET`], within the
    /// drain limit. Without a lifeline a refused key turns reporting off,
    /// not the run.
    ///
    /// [`pump`]: orchestrator_actors::actors::pump
    pub fn follow(self, mut source: Box<dyn JobSource>, shutdown: &Shutdown) {
        let reporter = self.reporter().start().recipient::<Inbound>();
        let stop = shutdown.clone();
        shutdown.spawn(async move {
            loop {
                let delivery = if stop.is_triggered() {
                    tokio::time::timeout(QUIET, source.next())
                        .await
                        .ok()
                        .flatten()
                } else {
                    tokio::select! {
                        delivery = source.next() => delivery,
                        _ = stop.triggered() => continue,
                    }
                };
                let Some(delivery) = delivery else { break };
                if reporter.send(Inbound(delivery)).await.is_err() {
                    break;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> anyhow::Result<Option<Reporting>> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Reporting::from_settings(&Settings::load(None, &env, vec![])?)
    }

    #[test]
    fn all_three_settings_or_none() {
        assert!(load(&[]).unwrap().is_none());
        let full = [
            ("ETHPROOFS_API_URL", "https://ethproofs.org/api/v0"),
            ("ETHPROOFS_API_KEY", "k-secret"),
            ("ETHPROOFS_CLUSTER_ID", "7"),
        ];
        assert!(load(&full).unwrap().is_some());
        let err = load(&full[..1]).err().unwrap().to_string();
        assert!(
            err.contains("ETHPROOFS_API_KEY and ETHPROOFS_CLUSTER_ID not set"),
            "{err}"
        );
        let err = load(&[
            ("ETHPROOFS_API_URL", "ftp://x"),
            ("ETHPROOFS_API_KEY", "k-secret"),
            ("ETHPROOFS_CLUSTER_ID", "7"),
        ])
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("ETHPROOFS_API_URL") && !err.contains("k-secret"),
            "{err}"
        );
    }

    #[test]
    fn the_key_is_redacted_in_settings_debug() {
        let env: HashMap<String, String> = [("ETHPROOFS_API_KEY".into(), "k-secret".into())].into();
        let s = Settings::load(None, &env, vec![]).unwrap();
        assert!(!format!("{s:?}").contains("k-secret"));
    }
}
