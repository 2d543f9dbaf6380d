//! A prover's stdout and stderr, read for the child's whole life.
//!
//! Real provers log progress for minutes to hours. A pipe that nobody reads
//! fills up and blocks the prover; a pipe that is closed kills it with
//! SIGPIPE at its next write. So both pipes are drained until the child and
//! everything it started have closed them, each line goes to our log tagged
//! with the job, and only a bounded tail of stderr is kept for the failure
//! message, however much the prover writes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Longest line passed on to the log; the rest of a longer line is dropped.
pub const MAX_LINE_BYTES: usize = 4096;
/// How much of stderr is kept for the failure message.
pub const TAIL_BYTES: usize = 2048;
/// One read from a pipe. Twice a longest line; a larger buffer (it was
/// 64 KiB) made two zeroed allocations per job big enough for the heap to
/// grow and shrink at every job, while the reads it saves are few next to
/// the log lines a busy prover costs anyway.
const READ_BUFFER_BYTES: usize = 2 * MAX_LINE_BYTES;
/// Marks a line that was cut at [`MAX_LINE_BYTES`].
const TRUNCATED: &str = " [line truncated]";

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipe {
    /// The child's stdout.
    Stdout,
    /// The child's stderr.
    Stderr,
}

impl Pipe {
    fn name(self) -> &'static str {
        match self {
            Pipe::Stdout => "stdout",
            Pipe::Stderr => "stderr",
        }
    }
}

/// The job a prover's lines belong to, for the log.
#[derive(Debug, Clone)]
pub struct LineTags {
    /// The job's message id.
    pub job: String,
    /// The worker slot running it.
    pub slot: usize,
}

/// The last lines of a pipe, at most [`TAIL_BYTES`] of them. Shared with the
/// reader so the tail survives a reader cut short by a helper that keeps the
/// pipe open.
#[derive(Debug, Default, Clone)]
pub struct Tail(Arc<Mutex<TailLines>>);

#[derive(Debug, Default)]
struct TailLines {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Tail {
    fn push(&self, line: &str) {
        let mut tail = self.0.lock().expect("tail lock");
        tail.bytes += line.len() + 1;
        tail.lines.push_back(line.to_owned());
        while tail.bytes > TAIL_BYTES && tail.lines.len() > 1 {
            let dropped = tail.lines.pop_front().expect("more than one line");
            tail.bytes -= dropped.len() + 1;
        }
    }

    /// The kept lines, joined by newlines; at most [`TAIL_BYTES`] long.
    pub fn text(&self) -> String {
        let tail = self.0.lock().expect("tail lock");
        let text = Vec::from(tail.lines.clone()).join("\n");
        // A single line can be longer than the tail: keep its end.
        let mut start = text.len().saturating_sub(TAIL_BYTES);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].trim().to_owned()
    }
}

/// Reads `pipe` to its end, logging each line (target `prover`, with the
/// job, slot and pipe) and keeping the tail in `tail`. Memory stays bounded
/// by the read buffer and one line, whatever the prover writes.
pub async fn forward(pipe: impl AsyncRead + Unpin, which: Pipe, tags: LineTags, tail: Tail) {
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, pipe);
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut truncated = false;
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(error) => {
                tracing::debug!(job = %tags.job, pipe = which.name(), %error, "prover pipe read failed");
                break;
            }
        };
        if buf.is_empty() {
            break;
        }
        let newline = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        let room = MAX_LINE_BYTES - line.len();
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        truncated |= chunk.len() > room;
        let used = newline.map_or(buf.len(), |at| at + 1);
        reader.consume(used);
        if newline.is_some() {
            emit(&line, truncated, which, &tags, &tail);
            line.clear();
            truncated = false;
        }
    }
    if !line.is_empty() {
        emit(&line, truncated, which, &tags, &tail);
    }
}

fn emit(line: &[u8], truncated: bool, which: Pipe, tags: &LineTags, tail: &Tail) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    let suffix = if truncated { TRUNCATED } else { "" };
    tracing::info!(target: "prover", job = %tags.job, slot = tags.slot, pipe = which.name(), "{text}{suffix}");
    if which == Pipe::Stderr {
        tail.push(&format!("{text}{suffix}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags() -> LineTags {
        LineTags {
            job: "block-1".into(),
            slot: 0,
        }
    }

    #[tokio::test]
    async fn tail_keeps_the_last_lines_within_its_bound() {
        let mut input = String::new();
        for i in 0..10_000 {
            input.push_str(&format!("line {i}\n"));
        }
        let tail = Tail::default();
        forward(input.as_bytes(), Pipe::Stderr, tags(), tail.clone()).await;
        let text = tail.text();
        assert!(text.len() <= TAIL_BYTES, "{}", text.len());
        assert!(text.ends_with("line 9999"), "{text}");
        assert!(!text.contains("line 0\n"), "{text}");
        assert_eq!(
            tail.0
                .lock()
                .unwrap()
                .lines
                .front()
                .map(|l| l.starts_with("line ")),
            Some(true)
        );
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_marked() {
        let long = "x".repeat(MAX_LINE_BYTES * 10);
        let tail = Tail::default();
        forward(
            format!("{long}\n").as_bytes(),
            Pipe::Stderr,
            tags(),
            tail.clone(),
        )
        .await;
        let lines = tail.0.lock().unwrap().lines.clone();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].len(), MAX_LINE_BYTES + TRUNCATED.len());
        assert!(lines[0].ends_with(TRUNCATED));
        // The cut-off rest is dropped, not taken for the next lines.
        let tail = Tail::default();
        let input = format!("{long}\nshort\n");
        forward(input.as_bytes(), Pipe::Stderr, tags(), tail.clone()).await;
        assert_eq!(tail.text(), "short");
    }

    #[tokio::test]
    async fn stdout_is_logged_but_not_kept_and_a_last_line_without_newline_counts() {
        let tail = Tail::default();
        forward(&b"out\n"[..], Pipe::Stdout, tags(), tail.clone()).await;
        assert_eq!(tail.text(), "");
        forward(&b"a\r\nno newline"[..], Pipe::Stderr, tags(), tail.clone()).await;
        assert_eq!(tail.text(), "a\nno newline");
    }
}
