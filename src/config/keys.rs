//! Every setting, declared once: its key (TOML and internal name), its
//! environment variable, its flag, its default as shown to users and its
//! meaning. The environment mapping and README.md's two configuration tables
//! come from [`SETTINGS`]; the tests in `config/keys/tests.rs` check that the
//! `Settings` fields, their defaults, the command line's flags (and the env
//! variables their help names) and README.md agree with it.

/// Where README.md documents a setting.
#[cfg_attr(not(test), allow(dead_code, reason = "read by the README tests"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The table under "Configuration", rendered by [`config_table`].
    Main,
    /// The role-settings table under "Distributed mode", rendered by
    /// [`config_table`].
    Roles,
    /// The hand-written NATS connection table (secrets have no flag).
    Nats,
    /// The hand-written template mapping ("From the original template").
    Template,
    /// The hand-written table under "EthProofs reporting" (the key has no flag).
    EthProofs,
}

/// A default as shown to users.
#[cfg_attr(not(test), allow(dead_code, reason = "read by the README tests"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// A value as it would be written in the environment or the TOML file;
    /// checked against `Settings::default()` (or the flag's own default).
    Value(&'static str),
    /// A value (checked like [`Shown::Value`]) and a note shown after it.
    ValueNote(&'static str, &'static str),
    /// Prose, for a default that is not one value: unset, derived, per role.
    Text(&'static str),
}

#[cfg(test)]
impl Shown {
    /// The value, when the default is one.
    pub fn value(self) -> Option<&'static str> {
        match self {
            Shown::Value(value) | Shown::ValueNote(value, _) => Some(value),
            Shown::Text(_) => None,
        }
    }

    /// As a markdown table cell.
    fn render(self) -> String {
        match self {
            Shown::Value(value) => format!("`{value}`"),
            Shown::ValueNote(value, note) => format!("`{value}` ({note})"),
            Shown::Text(text) => text.to_owned(),
        }
    }
}

/// One setting. Only `key` and `env` are read at run time; the rest is
/// for README.md and the tests that keep it, the flags and the defaults true.
#[cfg_attr(not(test), allow(dead_code, reason = "read by the README tests"))]
#[derive(Debug, Clone, Copy)]
pub struct SettingDoc {
    /// The `Settings` field and TOML key; `None` for the two settings the
    /// command line reads itself (`--config`, `--log-format`).
    pub key: Option<&'static str>,
    /// The environment variable.
    pub env: &'static str,
    /// The original template's variable (shown in bold).
    pub template: bool,
    /// The long flag without `--`, if the setting has one.
    pub flag: Option<&'static str>,
    /// The default as shown to users.
    pub default: Shown,
    /// One line for the README table. Empty for a setting that shares the
    /// flag of the one declared before it: it joins that one's table row.
    pub meaning: &'static str,
    /// Which README table shows it.
    pub table: Table,
}

use Shown::{Text, Value, ValueNote};
use Table::{EthProofs, Main, Nats, Roles, Template};

/// Every setting, in README order. Template names are kept as they were so
/// its `.env` files work.
pub const SETTINGS: &[SettingDoc] = &[
    SettingDoc {
        key: Some("l1_rpc"),
        env: "L1_RPC",
        template: true,
        flag: Some("rpc"),
        default: Value(super::DEFAULT_RPC),
        meaning: "Ethereum JSON-RPC endpoint; only scheme, host and port are ever logged",
        table: Main,
    },
    SettingDoc {
        key: Some("binary"),
        env: "BINARY",
        template: true,
        flag: Some("binary"),
        default: Text("bundled `mock-prover` (`mock-multistep-prover` with `--multistep`)"),
        meaning: "prover binary, a path or a name on `PATH`",
        table: Main,
    },
    SettingDoc {
        key: Some("next_block"),
        env: "NEXT_BLOCK",
        template: true,
        flag: Some("from"),
        default: Text("the finalized head at start"),
        meaning: "first block",
        table: Main,
    },
    SettingDoc {
        key: Some("to_block"),
        env: "ORCHESTRATOR_TO_BLOCK",
        template: false,
        flag: Some("to"),
        default: Text("none"),
        meaning: "last block; the run exits when the range is done",
        table: Main,
    },
    SettingDoc {
        key: Some("every"),
        env: "ORCHESTRATOR_EVERY",
        template: false,
        flag: Some("every"),
        default: Value("1"),
        meaning: "prove only blocks with `block % N == 0`",
        table: Main,
    },
    SettingDoc {
        key: Some("workers"),
        env: "ORCHESTRATOR_WORKERS",
        template: false,
        flag: Some("workers"),
        default: Value("1"),
        meaning: "prover processes at once",
        table: Main,
    },
    SettingDoc {
        key: Some("gpus"),
        env: "ORCHESTRATOR_GPUS",
        template: false,
        flag: Some("gpus"),
        default: Text("none"),
        meaning: "GPU devices, e.g. `0,1,2,3`: one worker per device, each prover started with `CUDA_VISIBLE_DEVICES` set to its device; sets the worker count",
        table: Main,
    },
    SettingDoc {
        key: Some("max_attempts"),
        env: "ORCHESTRATOR_MAX_ATTEMPTS",
        template: false,
        flag: Some("max-attempts"),
        default: Value("3"),
        meaning: "attempts per job before it is reported failed",
        table: Main,
    },
    SettingDoc {
        key: Some("job_timeout"),
        env: "ORCHESTRATOR_JOB_TIMEOUT",
        template: false,
        flag: Some("job-timeout"),
        default: Value("30m"),
        meaning: "a prover run longer than this is killed with its children",
        table: Main,
    },
    SettingDoc {
        key: Some("retry_delay"),
        env: "ORCHESTRATOR_RETRY_DELAY",
        template: false,
        flag: Some("retry-delay"),
        default: Value("5s"),
        meaning: "delay before the first retry; doubles per attempt",
        table: Main,
    },
    SettingDoc {
        key: Some("poll_interval"),
        env: "ORCHESTRATOR_POLL_INTERVAL",
        template: false,
        flag: Some("poll-interval"),
        default: Value("12s"),
        meaning: "time between finalized-head polls",
        table: Main,
    },
    SettingDoc {
        key: Some("multistep"),
        env: "ORCHESTRATOR_MULTISTEP",
        template: false,
        flag: Some("multistep"),
        default: Value("false"),
        meaning: "partition → prove steps → collect by `group_id` → aggregate",
        table: Main,
    },
    SettingDoc {
        key: Some("steps"),
        env: "ORCHESTRATOR_STEPS",
        template: false,
        flag: Some("steps"),
        default: Value("10"),
        meaning: "steps per block in multistep mode",
        table: Main,
    },
    SettingDoc {
        key: Some("json"),
        env: "ORCHESTRATOR_JSON",
        template: false,
        flag: Some("json"),
        default: Value("false"),
        meaning: "JSON lines on stdout",
        table: Main,
    },
    SettingDoc {
        key: Some("work_dir"),
        env: "ORCHESTRATOR_WORK_DIR",
        template: false,
        flag: Some("work-dir"),
        default: Text("`$TMPDIR/orchestrator-jobs`"),
        meaning: "where job input/output files live (removed after each job; those of a killed process at the next start)",
        table: Main,
    },
    SettingDoc {
        key: None,
        env: "ORCHESTRATOR_CONFIG",
        template: false,
        flag: Some("config"),
        default: Text("`./orchestrator.toml`"),
        meaning: "the TOML file",
        table: Main,
    },
    SettingDoc {
        key: Some("group_timeout"),
        env: "ORCHESTRATOR_GROUP_TIMEOUT",
        template: false,
        flag: Some("group-timeout"),
        default: Value("30m"),
        meaning: "multistep: a group of step proofs still incomplete after this is dead-lettered",
        table: Main,
    },
    SettingDoc {
        key: Some("expected_provers"),
        env: "ORCHESTRATOR_EXPECTED_PROVERS",
        template: false,
        flag: Some("expected-provers"),
        default: Text("none"),
        meaning: "provers a block waits for before it is logged as fully proved, comma separated",
        table: Main,
    },
    SettingDoc {
        key: None,
        env: "ORCHESTRATOR_LOG_FORMAT",
        template: false,
        flag: Some("log-format"),
        default: Value("text"),
        meaning: "`text` or `json` logs on stderr; filter with `RUST_LOG`",
        table: Main,
    },
    SettingDoc {
        key: Some("nats_url"),
        env: "NATS_URL",
        template: true,
        flag: Some("nats"),
        default: Text("none"),
        meaning: "server URL(s), comma separated; `tls://` for TLS",
        table: Nats,
    },
    SettingDoc {
        key: Some("nats_user"),
        env: "NATS_USER",
        template: false,
        flag: None,
        default: Text("none"),
        meaning: "user, with `nats_password`",
        table: Nats,
    },
    SettingDoc {
        key: Some("nats_password"),
        env: "NATS_PASSWORD",
        template: false,
        flag: None,
        default: Text("none"),
        meaning: "password, with `nats_user`",
        table: Nats,
    },
    SettingDoc {
        key: Some("nats_token"),
        env: "NATS_TOKEN",
        template: false,
        flag: None,
        default: Text("none"),
        meaning: "token",
        table: Nats,
    },
    SettingDoc {
        key: Some("nats_creds"),
        env: "NATS_CREDS",
        template: false,
        flag: Some("nats-creds"),
        default: Text("none"),
        meaning: "credentials file (JWT + NKey)",
        table: Nats,
    },
    SettingDoc {
        key: Some("nats_ca"),
        env: "NATS_CA",
        template: false,
        flag: Some("nats-ca"),
        default: Text("none"),
        meaning: "CA certificate (PEM) of the server's TLS certificate; requires TLS",
        table: Nats,
    },
    SettingDoc {
        key: Some("input_stream"),
        env: "INPUT_STREAM",
        template: true,
        flag: Some("stream"),
        default: Value("modularorchestrator"),
        meaning: "the stream; subjects are `<stream>.<queue>`",
        table: Roles,
    },
    SettingDoc {
        key: Some("output_stream"),
        env: "OUTPUT_STREAM",
        template: true,
        flag: Some("stream"),
        default: Text(""),
        meaning: "",
        table: Roles,
    },
    SettingDoc {
        key: Some("input_queue"),
        env: "INPUT_QUEUE",
        template: true,
        flag: Some("input-queue"),
        default: Text("per role, see above"),
        meaning: "queues consumed, comma separated",
        table: Roles,
    },
    SettingDoc {
        key: Some("output_queue"),
        env: "OUTPUT_QUEUE",
        template: true,
        flag: Some("output-queue"),
        default: Text("per role, see above"),
        meaning: "queue published to",
        table: Roles,
    },
    SettingDoc {
        key: Some("consumer_name"),
        env: "CONSUMER_NAME",
        template: true,
        flag: Some("consumer-name"),
        default: Text("derived"),
        meaning: "durable consumer name",
        table: Roles,
    },
    SettingDoc {
        key: Some("strategy"),
        env: "STRATEGY",
        template: true,
        flag: Some("strategy"),
        default: Text(""),
        meaning: "`collector`: Block, Proof or Match",
        table: Roles,
    },
    SettingDoc {
        key: Some("num_inputs"),
        env: "NUM_INPUTS",
        template: true,
        flag: Some("num-inputs"),
        default: Text("`--steps` (10)"),
        meaning: "step proofs per group",
        table: Roles,
    },
    SettingDoc {
        key: Some("multiple_output"),
        env: "MULTIPLE_OUTPUT",
        template: true,
        flag: Some("multiple-output"),
        default: Value("false"),
        meaning: "publish each element of the output array",
        table: Roles,
    },
    SettingDoc {
        key: Some("ack_wait"),
        env: "ORCHESTRATOR_ACK_WAIT",
        template: false,
        flag: Some("ack-wait"),
        default: Value("30s"),
        meaning: "time NATS waits for an ack or an in-progress ack before it gives a job to another consumer",
        table: Roles,
    },
    SettingDoc {
        key: Some("progress_interval"),
        env: "ORCHESTRATOR_PROGRESS_INTERVAL",
        template: false,
        flag: Some("progress-interval"),
        default: Value("10s"),
        meaning: "how often a running job (or a held step proof) is reported alive; must be below `--ack-wait`",
        table: Roles,
    },
    SettingDoc {
        key: Some("inline_payload_limit"),
        env: "ORCHESTRATOR_INLINE_PAYLOAD_LIMIT",
        template: false,
        flag: Some("inline-payload-limit"),
        default: ValueNote("524288", "512 KiB"),
        meaning: "messages larger than this many bytes go through the object store; keep it below the server's `max_payload` (1 MiB by default)",
        table: Roles,
    },
    SettingDoc {
        key: Some("payload_retention"),
        env: "ORCHESTRATOR_PAYLOAD_RETENTION",
        template: false,
        flag: Some("payload-retention"),
        default: Value("7d"),
        meaning: "how long payloads in the object store are kept",
        table: Roles,
    },
    SettingDoc {
        key: Some("max_payload"),
        env: "ORCHESTRATOR_MAX_PAYLOAD",
        template: false,
        flag: Some("max-payload"),
        default: ValueNote("67108864", "64 MiB"),
        meaning: "largest output, stored or inline; a larger one is dead-lettered at once",
        table: Roles,
    },
    SettingDoc {
        key: Some("replicas"),
        env: "ORCHESTRATOR_REPLICAS",
        template: false,
        flag: Some("replicas"),
        default: Value("1"),
        meaning: "`init`: copies a NATS cluster keeps of the stream, the matcher's key-value bucket and the payload bucket (at most the cluster's size, up to 5), so a lost node loses nothing; a role that creates them before `init` uses it too",
        table: Roles,
    },
    SettingDoc {
        key: Some("executor_type"),
        env: "EXECUTOR_TYPE",
        template: true,
        flag: None,
        default: Value("JsonExecutor"),
        meaning: "how the prover binary is called; only `JsonExecutor` exists",
        table: Template,
    },
    SettingDoc {
        key: Some("single_output"),
        env: "SINGLE_OUTPUT",
        template: true,
        flag: None,
        default: Text("none"),
        meaning: "accepted and checked to be a boolean; changes nothing",
        table: Template,
    },
    SettingDoc {
        key: Some("collect_timeout_period_millis"),
        env: "COLLECT_TIMEOUT_PERIOD_MILLIS",
        template: true,
        flag: None,
        default: Text("none"),
        meaning: "accepted and checked to be a number; changes nothing",
        table: Template,
    },
    SettingDoc {
        key: Some("metrics_port"),
        env: "METRICS_PORT",
        template: true,
        flag: Some("metrics-port"),
        default: Text("off in `run`; any free port in a role (logged)"),
        meaning: "port of `/metrics`, `/healthz` and `/readyz` (see [Metrics and health](#metrics-and-health)); `0`: any free port, logged",
        table: Main,
    },
    SettingDoc {
        key: Some("message_bus_type"),
        env: "MESSAGE_BUS_TYPE",
        template: true,
        flag: None,
        default: Text("none"),
        meaning: "accepted; only `NatsBasic`",
        table: Template,
    },
    SettingDoc {
        key: Some("storage_type"),
        env: "STORAGE_TYPE",
        template: true,
        flag: None,
        default: Text("none"),
        meaning: "accepted; only `Nats`",
        table: Template,
    },
    SettingDoc {
        key: Some("ethproofs_api_url"),
        env: "ETHPROOFS_API_URL",
        template: false,
        flag: Some("ethproofs-api-url"),
        default: Text("none (no reporting)"),
        meaning: "EthProofs API, e.g. `https://ethproofs.org/api/v0`; with the key and cluster id, turns reporting on",
        table: EthProofs,
    },
    SettingDoc {
        key: Some("ethproofs_api_key"),
        env: "ETHPROOFS_API_KEY",
        template: false,
        flag: None,
        default: Text("none"),
        meaning: "the team's API key (secret: never logged)",
        table: EthProofs,
    },
    SettingDoc {
        key: Some("ethproofs_cluster_id"),
        env: "ETHPROOFS_CLUSTER_ID",
        template: false,
        flag: Some("ethproofs-cluster-id"),
        default: Text("none"),
        meaning: "the cluster's id on EthProofs",
        table: EthProofs,
    },
];

/// Every `Settings` key with its environment variable.
pub fn keys() -> impl Iterator<Item = (&'static str, &'static str)> {
    SETTINGS
        .iter()
        .filter_map(|setting| Some((setting.key?, setting.env)))
}

/// README.md's markdown table of the settings in `table` (`Main` or
/// `Roles`), header included, each line ending in a newline. A setting with
/// an empty meaning joins the row before it.
#[cfg(test)]
pub fn config_table(table: Table) -> String {
    let mut rows: Vec<[Vec<String>; 5]> = Vec::new();
    for setting in SETTINGS.iter().filter(|s| s.table == table) {
        let env = if setting.template {
            format!("**`{}`**", setting.env)
        } else {
            format!("`{}`", setting.env)
        };
        let key = setting.key.map(|k| format!("`{k}`")).unwrap_or_default();
        match rows.last_mut() {
            Some(row) if setting.meaning.is_empty() => {
                row[1].push(env);
                row[2].push(key);
            }
            _ => rows.push([
                vec![setting.flag.map(|f| format!("`--{f}`")).unwrap_or_default()],
                vec![env],
                vec![key],
                vec![setting.default.render()],
                vec![setting.meaning.to_owned()],
            ]),
        }
    }
    let mut out = String::from(
        "| flag | environment | TOML key | default | meaning |\n|---|---|---|---|---|\n",
    );
    for row in rows {
        out.push('|');
        for cell in row.iter().map(|cell| cell.join(", ")) {
            if cell.is_empty() {
                out.push_str(" |");
            } else {
                out.push_str(&format!(" {cell} |"));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
