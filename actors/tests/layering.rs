//! The crate's layers, checked in the source so a wrong import fails a test
//! instead of waiting for a reviewer:
//!
//! - `messages`, `backoff`, `shutdown`: plain data and small tools; they use
//!   neither `edges` nor `actors`.
//! - `edges` (every file under `src/edges/`): may use `messages`, `backoff`
//!   and `shutdown`, never `actors`. Whatever both need (the match store
//!   trait, for one) lives in `edges`.
//! - `actors`: may use everything above.
//!
//! The check reads the code with comments removed, so prose and doc links
//! may name any module; code may not, in a path (`crate::actors::X`,
//! `super::super::actors`) or a `use` (`use crate::{actors, ...}`).

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The code of `source` as tokens (identifiers, `::`, single characters),
/// each with its line number; comments dropped.
fn tokens(source: &str) -> Vec<(usize, String)> {
    let mut tokens = Vec::new();
    for (number, line) in source.lines().enumerate() {
        // Also cuts `//` inside a string (a URL): harmless, it only hides text.
        let code = line.split("//").next().unwrap_or_default();
        let mut chars = code.chars().peekable();
        while let Some(c) = chars.next() {
            let token = if c.is_alphanumeric() || c == '_' {
                let mut word = c.to_string();
                while let Some(&next) = chars.peek().filter(|n| n.is_alphanumeric() || **n == '_') {
                    word.push(next);
                    chars.next();
                }
                word
            } else if c == ':' && chars.peek() == Some(&':') {
                chars.next();
                "::".to_owned()
            } else if c.is_whitespace() {
                continue;
            } else {
                c.to_string()
            };
            tokens.push((number + 1, token));
        }
    }
    tokens
}

/// The lines of `source` that use module `module`, as a path segment or
/// named in a `use` item.
fn uses_of(source: &str, module: &str) -> Vec<usize> {
    let tokens = tokens(source);
    let token = |i: usize| tokens.get(i).map(|(_, t)| t.as_str());
    let mut lines = Vec::new();
    let mut in_use = false;
    for (i, (line, text)) in tokens.iter().enumerate() {
        match text.as_str() {
            "use" => in_use = true,
            ";" => in_use = false,
            _ => {}
        }
        let before = i.checked_sub(1).and_then(token);
        if text == module
            && (in_use || before == Some("::") || token(i + 1) == Some("::"))
            && !lines.contains(line)
        {
            lines.push(*line);
        }
    }
    lines
}

/// Panics listing every file among `files` that uses one of `forbidden`.
fn assert_no_uses(layer: &str, files: &[PathBuf], forbidden: &[&str]) {
    let mut broken = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(file).expect("source file");
        for module in forbidden {
            for line in uses_of(&source, module) {
                let text = source.lines().nth(line - 1).unwrap_or_default().trim();
                broken.push(format!("{}:{line} uses `{module}`: {text}", file.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "{layer} must not use {forbidden:?} (see ARCHITECTURE.md):\n{}",
        broken.join("\n")
    );
}

#[test]
fn edges_do_not_use_actors() {
    let files = rust_files(&src().join("edges"));
    assert!(files.len() > 5, "edges not found: {files:?}");
    assert_no_uses("the edges", &files, &["actors"]);
}

#[test]
fn messages_and_tools_use_neither_edges_nor_actors() {
    let files = ["messages.rs", "backoff.rs", "shutdown.rs"].map(|f| src().join(f));
    assert_no_uses(
        "messages, backoff and shutdown",
        &files,
        &["edges", "actors"],
    );
}

#[test]
fn the_check_sees_every_form_of_import() {
    for code in [
        "use crate::actors::ProofMatcher;",
        "use super::super::actors::BlockRecord;",
        "use crate::{actors, messages::Envelope};",
        "use crate::{\n    actors::{ProofMatcher, pump},\n};",
        "fn f(_: crate::actors::Inbound) {}",
    ] {
        assert!(!uses_of(code, "actors").is_empty(), "missed: {code}");
    }
    for prose in [
        "//! Core actors never see NATS; see crate::actors::ProofMatcher.",
        "let actors = 3; // the actors",
        "/// [`ProofMatcher`]: crate::actors::ProofMatcher",
    ] {
        assert!(uses_of(prose, "actors").is_empty(), "false alarm: {prose}");
    }
}
