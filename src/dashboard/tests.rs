//! The board's rules on plain data: which events win, what is kept, and
//! the per-prover numbers (success rate, real-time share, liveness).

use orchestrator_actors::messages::{CompletedProof, DeadLetter, JobEvent, JobStatus, queues};

use super::state::{Board, LIVENESS_WINDOW_MS};

const MIN: u64 = 60_000;

fn event(block: u64, pool: &str, attempt: u32, status: JobStatus, at_ms: u64) -> JobEvent {
    JobEvent {
        block: Some(block),
        pool: pool.into(),
        queue: queues::BLOCKS.into(),
        job: format!("block-{block}"),
        attempt,
        status,
        at_ms,
        proving_ms: None,
        output_bytes: None,
        error: None,
    }
}

/// `pool` proves `block`: taken at `at_ms`, proved `proving_ms` later.
fn prove(board: &mut Board, block: u64, pool: &str, at_ms: u64, proving_ms: u64) {
    board.job_event(&event(block, pool, 1, JobStatus::Queued, at_ms));
    board.job_event(&JobEvent {
        proving_ms: Some(proving_ms),
        output_bytes: Some(1500),
        ..event(block, pool, 1, JobStatus::Proved, at_ms + proving_ms)
    });
}

fn letter(consumer: &str, block: u64, attempts: u32) -> DeadLetter {
    DeadLetter {
        queue: queues::BLOCKS.into(),
        consumer: consumer.into(),
        id: format!("block-{block}"),
        attempts,
        error: "prover exited with code 1".into(),
        payload: block.to_string(),
    }
}

#[test]
fn success_rate_counts_proved_against_dead_lettered_jobs_only() {
    let mut board = Board::default();
    for block in 1..=3 {
        prove(&mut board, block, "sp1", 1000, 2000);
    }
    // Block 4 fails for good; block 5 failed once and is being retried.
    board.job_event(&event(4, "sp1", 3, JobStatus::Failed, 1000));
    board.dead_letter(&letter("sp1", 4, 3));
    board.job_event(&event(5, "sp1", 1, JobStatus::Failed, 1000));

    let stats = board.stats("sp1", 2000);
    assert_eq!((stats.proved, stats.failed), (3, 1));
    assert_eq!(stats.success_rate, Some(0.75));
    assert_eq!(Board::default().stats("sp1", 0).success_rate, None);
}

#[test]
fn under_10s_is_the_share_of_proofs_faster_than_the_real_time_mark() {
    let mut board = Board::default();
    prove(&mut board, 1, "zisk", 0, 3_000);
    prove(&mut board, 2, "zisk", 0, 9_999);
    prove(&mut board, 3, "zisk", 0, 10_000);
    prove(&mut board, 4, "zisk", 0, 45_000);
    assert_eq!(board.stats("zisk", 60_000).under_10s, Some(0.5));
}

#[test]
fn liveness_counts_blocks_proved_within_20_minutes_of_being_seen() {
    let mut board = Board::default();
    let t0 = 100 * MIN;
    // Seen before the prover joined and never taken by it: not expected.
    board.block_seen(1, t0 - 5 * MIN);
    for block in 2..=5 {
        board.block_seen(block, t0);
    }
    // Proved just inside the window: on time.
    prove(&mut board, 2, "risc0", t0, 19 * MIN);
    // Proved after it: missed, however good the proof.
    prove(&mut board, 3, "risc0", t0 + 2 * MIN, 19 * MIN);
    // Block 4 never taken, block 5 stuck proving: both past the window.
    board.job_event(&event(5, "risc0", 1, JobStatus::Proving, t0));
    // Seen recently, not proved yet: not judged.
    board.block_seen(6, t0 + 15 * MIN);

    let now = t0 + LIVENESS_WINDOW_MS + MIN;
    let stats = board.stats("risc0", now);
    assert_eq!(
        (stats.on_time, stats.missed),
        (1, 3),
        "blocks 3, 4, 5 are paralyzed"
    );
    assert_eq!(stats.liveness, Some(0.25));

    // Before the deadline passed, an unproved block is not held against
    // the prover yet.
    let early = board.stats("risc0", t0 + 19 * MIN + 30_000);
    assert_eq!(
        (early.on_time, early.missed, early.liveness),
        (1, 0, Some(1.0))
    );
}

#[test]
fn late_events_do_not_undo_newer_ones() {
    let mut board = Board::default();
    // Published in the background, events may arrive out of order.
    board.job_event(&event(7, "sp1", 1, JobStatus::Proving, 10));
    board.job_event(&event(7, "sp1", 1, JobStatus::Queued, 5));
    let cell = |board: &Board| board.snapshot(0).blocks[0].row.cells["sp1"].clone();
    assert_eq!(cell(&board).status, JobStatus::Proving);

    board.job_event(&event(7, "sp1", 1, JobStatus::Failed, 20));
    board.job_event(&event(7, "sp1", 2, JobStatus::Queued, 30));
    assert_eq!(
        (cell(&board).status, cell(&board).attempt),
        (JobStatus::Queued, 2)
    );
    board.job_event(&event(7, "sp1", 1, JobStatus::Proving, 15));
    assert_eq!(cell(&board).attempt, 2, "attempt 1's late event is ignored");

    // The dead letter may come before the last attempt's Failed event.
    board.dead_letter(&letter("sp1", 7, 2));
    board.job_event(&event(7, "sp1", 2, JobStatus::Failed, 40));
    assert!(
        cell(&board).gave_up,
        "a late Failed keeps the dead letter's verdict"
    );
}

#[test]
fn only_the_most_recent_blocks_are_kept() {
    let mut board = Board::new(3);
    for block in 1..=5 {
        prove(&mut board, block, "sp1", block, 1);
    }
    // An event about a block older than all kept ones is dropped, and
    // must not evict a newer block.
    board.job_event(&event(1, "sp1", 2, JobStatus::Queued, 99));
    let blocks: Vec<u64> = board.snapshot(0).blocks.iter().map(|b| b.block).collect();
    assert_eq!(blocks, [5, 4, 3], "newest first, at most 3");
}

#[test]
fn only_block_jobs_of_known_provers_get_cells() {
    let mut board = Board::default();
    prove(&mut board, 1, "sp1", 0, 1);
    // A multistep step job is not a block's proof.
    board.job_event(&JobEvent {
        queue: queues::STEPS.into(),
        ..event(2, "sp1", 1, JobStatus::Proving, 0)
    });
    // The matcher dead-letters a `blocks` message: listed, but no column.
    board.dead_letter(&letter("proof-matcher", 1, 1));
    board.completed(&CompletedProof {
        block: 1,
        prover: "mock-prover".into(),
        proof: serde_json::json!("0xff"),
        latency_ms: 1200,
        proving_ms: Some(1),
        block_hash: None,
        orphaned: false,
        extra: Default::default(),
    });

    let snapshot = board.snapshot(0);
    let provers: Vec<&str> = snapshot.provers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(provers, ["sp1"]);
    assert_eq!(snapshot.blocks.len(), 1, "no row for the step job's block");
    assert_eq!(snapshot.blocks[0].row.completed["mock-prover"], 1200);
    assert_eq!(snapshot.dead_letters.len(), 1);
    assert_eq!(snapshot.dead_letters[0].block, Some(1));
}
