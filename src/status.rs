//! `orchestrator status`: one screen of the cluster's state on NATS, read by
//! the NATS edge ([`orchestrator_actors::edges::nats::status`]) and printed
//! here as text, or as one JSON object with `--json`.

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context;
use orchestrator_actors::edges::nats::Topology;
use orchestrator_actors::edges::nats::status::{ClusterStatus, cluster_status};

use tracing_subscriber::EnvFilter;

use crate::config::Settings;
use crate::wiring;

/// Reads the status of the stream of `s` and prints it to stdout, as JSON
/// when `s.json` (`--json`). Returns the exit code: 0, or 1 with one error
/// line when the server or the stream cannot be read (2, a settings error,
/// comes back as `Err`).
pub fn run(s: &Settings) -> anyhow::Result<i32> {
    crate::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let options = wiring::nats_options(s, "status")?;
    let topology = Topology::new(&s.input_stream);
    let matcher_bucket = wiring::matcher_bucket(s);
    let read = cluster_status(&options, &topology, &matcher_bucket);
    // The answer (or the one error line) says it all: the client's
    // connection and retry logs would bury it, unless RUST_LOG asks for them.
    // The runtime runs on this thread only, so the scoped subscriber sees
    // every line logged while reading.
    let status = match std::env::var_os("RUST_LOG") {
        Some(_) => runtime.block_on(read),
        None => {
            let quiet = tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::new("error"))
                .with_writer(std::io::stderr)
                .finish();
            tracing::subscriber::with_default(quiet, || runtime.block_on(read))
        }
    };
    let status = match status {
        Ok(status) => status,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(1);
        }
    };
    let out = if s.json {
        serde_json::to_string_pretty(&status).context("writing the status as JSON")? + "\n"
    } else {
        render(&status, &topology)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing the status to stdout")?;
    Ok(0)
}

/// The status as text: one screen, one fact per line, queues by their
/// short names.
fn render(status: &ClusterStatus, topology: &Topology) -> String {
    let mut out = String::new();
    let s = &status.stream;
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "stream {} on {} ({})",
        s.name,
        status.server,
        s.subjects.join(", ")
    );
    let _ = writeln!(
        out,
        "  {} messages, {}, replicas {}, sequences {}..{}",
        s.messages,
        size(s.bytes),
        s.replicas,
        s.first_sequence,
        s.last_sequence
    );
    let _ = writeln!(out, "consumers: {}", status.consumers.len());
    if !status.consumers.is_empty() {
        let width = status
            .consumers
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0)
            .max("NAME".len());
        let _ = writeln!(
            out,
            "  {:width$}  {:>8}  {:>9}  {:>11}  QUEUES",
            "NAME", "PENDING", "IN FLIGHT", "REDELIVERED"
        );
        for c in &status.consumers {
            let queues: Vec<&str> = c
                .filter_subjects
                .iter()
                .map(|subject| topology.queue(subject))
                .collect();
            let _ = writeln!(
                out,
                "  {:width$}  {:>8}  {:>9}  {:>11}  {}",
                c.name,
                c.pending,
                c.in_flight,
                c.redelivered,
                if queues.is_empty() {
                    "(all)".to_owned()
                } else {
                    queues.join(", ")
                }
            );
        }
    }
    let _ = match status.last_block {
        Some(block) => writeln!(out, "last block published: {block}"),
        None => writeln!(out, "last block published: none"),
    };
    let _ = match &status.last_completed {
        Some(p) => writeln!(
            out,
            "last completed proof: block {} by {}",
            p.block.map_or("?".to_owned(), |b| b.to_string()),
            p.prover.as_deref().unwrap_or("?")
        ),
        None => writeln!(out, "last completed proof: none"),
    };
    let d = &status.dead_letters;
    let _ = writeln!(out, "dead letters: {}", d.count);
    for letter in &d.newest {
        let _ = writeln!(
            out,
            "  #{} {} on {}, job {} (attempt {}): {}",
            letter.sequence,
            if letter.consumer.is_empty() {
                "?"
            } else {
                &letter.consumer
            },
            letter.queue,
            letter.id,
            letter.attempts,
            letter.error
        );
    }
    for (what, bucket, unit) in [
        ("object store", &status.payloads, "objects"),
        ("matcher bucket", &status.matcher, "keys"),
    ] {
        let _ = match bucket {
            Some(b) => writeln!(
                out,
                "{what} {}: {} {unit}, {}",
                b.name,
                b.entries,
                size(b.bytes)
            ),
            None => writeln!(out, "{what}: not created yet"),
        };
    }
    out
}

/// `bytes` for people: exact below 1 KiB, else one decimal in KiB, MiB, GiB.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_person_would_write_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(size(5 * 1024 * 1024 * 1024 * 1024), "5120.0 GiB");
    }
}
