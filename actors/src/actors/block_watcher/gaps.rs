//! Which blocks the watcher still has to announce, and in which order: plain
//! data, no I/O, so the order rules are tested on their own.

use std::collections::{BTreeMap, VecDeque};

/// What the watcher does when blocks pile up faster than they are proved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backlog {
    /// Every block, oldest first (the original template's behaviour).
    #[default]
    All,
    /// Newest first; blocks older than `max_age` when a host takes them are
    /// skipped, and reported as skipped (real-time proving).
    Newest {
        /// Oldest block worth proving.
        max_age: std::time::Duration,
    },
}

/// A run of blocks not yet announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gap {
    pub lo: u64,
    pub hi: u64,
    /// A timestamp no older block of this gap can be younger than, once one
    /// block of it was found too old (`--backlog newest`): the rest of the
    /// gap is announced as stale without asking the node for each block.
    pub stale_at: Option<u64>,
}

/// The blocks still to announce, and the hashes of those announced lately
/// (to notice a reorg when following `latest`).
#[derive(Debug, Default)]
pub(super) struct Gaps {
    /// Pending runs, oldest first.
    gaps: VecDeque<Gap>,
    /// The highest block ever queued; `None` before the first one.
    top: Option<u64>,
    /// The first block to queue while `top` is `None`; `None`: the first
    /// head seen.
    start: Option<u64>,
    /// Recently announced blocks and their hashes, at most [`RECENT`].
    pub recent: BTreeMap<u64, String>,
}

/// Announced hashes kept to detect reorgs: deeper than any reorg seen on
/// mainnet since the merge, and a finalized block cannot reorg at all.
pub(super) const RECENT: usize = 128;

impl Gaps {
    /// Starts at `from` (the first head seen, if `None`).
    pub fn new(from: Option<u64>) -> Self {
        Self {
            start: from,
            ..Self::default()
        }
    }

    /// The head moved to `head` (clamped to `to`): queues what is new.
    pub fn head(&mut self, head: u64) {
        let lo = match self.top {
            Some(top) => top + 1,
            None => self.start.unwrap_or(head),
        };
        if lo > head {
            return;
        }
        self.gaps.push_back(Gap {
            lo,
            hi: head,
            stale_at: None,
        });
        self.top = Some(head);
    }

    /// A reorg replaced every block from `first` on: they are queued again
    /// once the head passes them, and forgotten as announced.
    pub fn rewind(&mut self, first: u64) {
        self.recent.retain(|&n, _| n < first);
        for gap in &mut self.gaps {
            gap.hi = gap.hi.min(first.saturating_sub(1));
        }
        self.gaps.retain(|g| g.lo <= g.hi && g.hi < first);
        match first.checked_sub(1) {
            Some(before) => self.top = self.top.map(|top| top.min(before)),
            None => (self.top, self.start) = (None, Some(0)),
        }
    }

    /// The next block to announce under `backlog` that `every` samples,
    /// taken out of its gap, with the gap's stale mark and how many blocks
    /// were passed to reach it (itself included).
    pub fn take(&mut self, backlog: Backlog, every: u64) -> Option<(u64, Option<u64>, u64)> {
        let every = every.max(1);
        let newest = matches!(backlog, Backlog::Newest { .. });
        let mut passed = 0;
        loop {
            let gap = if newest {
                self.gaps.back_mut()?
            } else {
                self.gaps.front_mut()?
            };
            let (lo, hi, stale) = (gap.lo, gap.hi, gap.stale_at);
            // The sampled block nearest the end taken from, if the gap has one.
            let sampled = if newest {
                Some(hi - hi % every).filter(|&b| b >= lo)
            } else {
                lo.checked_next_multiple_of(every).filter(|&b| b <= hi)
            };
            let Some(block) = sampled else {
                passed += hi - lo + 1;
                self.pop(newest);
                continue;
            };
            passed += if newest {
                hi - block + 1
            } else {
                block - lo + 1
            };
            // What is left of the gap beyond `block` and the blocks passed.
            let left = if newest {
                (block > lo).then(|| (lo, block - 1))
            } else {
                (block < hi).then(|| (block + 1, hi))
            };
            match left {
                Some((lo, hi)) => (gap.lo, gap.hi) = (lo, hi),
                None => self.pop(newest),
            }
            return Some((block, stale, passed));
        }
    }

    /// Drops the gap [`Gaps::take`] takes from: the newest or the oldest.
    fn pop(&mut self, newest: bool) {
        if newest {
            self.gaps.pop_back();
        } else {
            self.gaps.pop_front();
        }
    }

    /// Puts `block` back where [`Gaps::take`] took it from (its publish
    /// failed), so it is the next one taken again.
    pub fn put_back(&mut self, block: u64, stale_at: Option<u64>, backlog: Backlog) {
        let single = Gap {
            lo: block,
            hi: block,
            stale_at,
        };
        match backlog {
            Backlog::All => match self.gaps.front_mut() {
                Some(gap) if gap.lo == block + 1 && gap.stale_at == stale_at => gap.lo = block,
                _ => self.gaps.push_front(single),
            },
            Backlog::Newest { .. } => match self.gaps.back_mut() {
                Some(gap) if gap.hi + 1 == block && gap.stale_at == stale_at => gap.hi = block,
                _ => self.gaps.push_back(single),
            },
        }
    }

    /// Marks every block left as older than `timestamp`: with newest first,
    /// all of them are below the block just found too old.
    pub fn mark_stale(&mut self, timestamp: u64) {
        for gap in &mut self.gaps {
            gap.stale_at.get_or_insert(timestamp);
        }
    }

    /// Remembers that `block` was announced with `hash`.
    pub fn announced(&mut self, block: u64, hash: String) {
        self.recent.insert(block, hash);
        while self.recent.len() > RECENT {
            self.recent.pop_first();
        }
    }

    /// Nothing is left to announce, and the head reached `to`.
    pub fn done(&self, to: Option<u64>) -> bool {
        self.gaps.is_empty() && to.is_some_and(|to| self.top.is_some_and(|top| top >= to))
    }

    /// Whether anything is left to announce.
    pub fn is_empty(&self) -> bool {
        self.gaps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const NEWEST: Backlog = Backlog::Newest {
        max_age: Duration::from_secs(60),
    };

    fn drain(gaps: &mut Gaps, backlog: Backlog, n: usize) -> Vec<u64> {
        (0..n)
            .filter_map(|_| gaps.take(backlog, 1).map(|(b, _, _)| b))
            .collect()
    }

    #[test]
    fn all_is_oldest_first_and_newest_is_newest_first_even_across_heads() {
        let mut gaps = Gaps::new(Some(10));
        gaps.head(14);
        assert_eq!(drain(&mut gaps, Backlog::All, 2), [10, 11]);
        gaps.head(16);
        assert_eq!(drain(&mut gaps, Backlog::All, 10), [12, 13, 14, 15, 16]);

        let mut gaps = Gaps::new(Some(10));
        gaps.head(14);
        assert_eq!(drain(&mut gaps, NEWEST, 2), [14, 13]);
        // A new head goes before what is left of the older backlog.
        gaps.head(16);
        assert_eq!(drain(&mut gaps, NEWEST, 10), [16, 15, 12, 11, 10]);
        assert!(gaps.is_empty());
    }

    #[test]
    fn a_failed_block_is_taken_again_first_and_heads_never_go_back() {
        for backlog in [Backlog::All, NEWEST] {
            let mut gaps = Gaps::new(None);
            gaps.head(5);
            gaps.head(8);
            gaps.head(7);
            let (block, stale, _) = gaps.take(backlog, 1).unwrap();
            gaps.put_back(block, stale, backlog);
            let mut all = drain(&mut gaps, backlog, 10);
            all.sort();
            assert_eq!(all, [5, 6, 7, 8], "{backlog:?}");
        }
    }

    #[test]
    fn genesis_and_a_start_ahead_of_the_head_are_handled() {
        let mut gaps = Gaps::new(Some(0));
        gaps.head(2);
        assert_eq!(drain(&mut gaps, Backlog::All, 5), [0, 1, 2]);
        gaps.rewind(0);
        gaps.head(1);
        assert_eq!(drain(&mut gaps, Backlog::All, 5), [0, 1]);
        let mut ahead = Gaps::new(Some(10));
        ahead.head(8);
        assert!(ahead.is_empty() && !ahead.done(Some(10)));
        ahead.head(10);
        assert_eq!(drain(&mut ahead, Backlog::All, 5), [10]);
        assert!(ahead.done(Some(10)));
    }

    #[test]
    fn rewind_queues_the_replaced_blocks_again() {
        let mut gaps = Gaps::new(Some(1));
        gaps.head(6);
        for b in drain(&mut gaps, Backlog::All, 6) {
            gaps.announced(b, format!("0x{b}"));
        }
        gaps.rewind(4);
        assert_eq!(gaps.recent.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        gaps.head(5);
        assert_eq!(drain(&mut gaps, Backlog::All, 10), [4, 5]);
        assert!(!gaps.done(Some(6)));
        gaps.head(6);
        assert_eq!(drain(&mut gaps, Backlog::All, 10), [6]);
        assert!(gaps.done(Some(6)));
    }

    #[test]
    fn the_stale_mark_stays_with_its_gap() {
        let mut gaps = Gaps::new(Some(1));
        gaps.head(5);
        assert_eq!(gaps.take(NEWEST, 1), Some((5, None, 1)));
        gaps.mark_stale(100);
        gaps.head(6);
        assert_eq!(gaps.take(NEWEST, 1), Some((6, None, 1)));
        assert_eq!(gaps.take(NEWEST, 1), Some((4, Some(100), 1)));
    }

    #[test]
    fn every_nth_is_sampled_in_both_orders_without_walking() {
        let mut gaps = Gaps::new(Some(41));
        gaps.head(95);
        let mut taken = Vec::new();
        while let Some((b, _, passed)) = gaps.take(Backlog::All, 10) {
            taken.push((b, passed));
        }
        assert_eq!(taken, [(50, 10), (60, 10), (70, 10), (80, 10), (90, 10)]);
        let mut gaps = Gaps::new(Some(41));
        gaps.head(95);
        let order = drain(&mut gaps, NEWEST, 0);
        assert!(order.is_empty());
        let mut newest = Vec::new();
        while let Some((b, _, _)) = gaps.take(NEWEST, 10) {
            newest.push(b);
        }
        assert_eq!(newest, [90, 80, 70, 60, 50]);
        // From block 0 to 10 million, sampling every 5 million: instant.
        let mut gaps = Gaps::new(Some(1));
        gaps.head(10_000_000);
        assert_eq!(
            gaps.take(Backlog::All, 5_000_000).map(|t| t.0),
            Some(5_000_000)
        );
        assert_eq!(
            gaps.take(Backlog::All, 5_000_000).map(|t| t.0),
            Some(10_000_000)
        );
        assert_eq!(gaps.take(Backlog::All, 5_000_000), None);
    }
}
