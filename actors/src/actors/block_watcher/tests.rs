//! The watcher as an actor, against scripted chains.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;

/// A chain whose answers are scripted: a head, or an error.
struct ScriptedChain(Mutex<VecDeque<Option<u64>>>);

#[async_trait]
impl ChainHead for ScriptedChain {
    async fn head(&self, _: Follow) -> Result<BlockHeader, EdgeError> {
        let mut script = self.0.lock().unwrap();
        let answer = if script.len() > 1 {
            script.pop_front().unwrap()
        } else {
            script[0]
        };
        answer.map(header).ok_or(EdgeError::Rpc {
            url: "fake".into(),
            reason: "connection refused".into(),
        })
    }

    async fn header(&self, number: u64) -> Result<BlockHeader, EdgeError> {
        Ok(header(number))
    }
}

fn header(number: u64) -> BlockHeader {
    BlockHeader {
        number,
        hash: format!("0x{number:x}"),
        parent_hash: format!("0x{:x}", number.wrapping_sub(1)),
        timestamp: 0,
    }
}

/// Records publishes; fails every `fail_every`-th one.
#[derive(Default)]
struct RecordingPublisher {
    blocks: Mutex<Vec<u64>>,
    /// Each published announcement's id and block hash.
    announced: Mutex<Vec<(String, Option<String>)>>,
    calls: Mutex<u32>,
    fail_every: u32,
}

#[async_trait]
impl Publisher for RecordingPublisher {
    async fn publish(&self, queue: &str, message: Envelope) -> Result<(), EdgeError> {
        let mut calls = self.calls.lock().unwrap();
        *calls += 1;
        if self.fail_every > 0 && calls.is_multiple_of(self.fail_every) {
            return Err(EdgeError::Publish {
                queue: queue.into(),
                id: message.id,
                reason: "timeout".into(),
            });
        }
        // As every publisher promises: an id already stored is stored once.
        if self
            .announced
            .lock()
            .unwrap()
            .iter()
            .any(|(id, _)| *id == message.id)
        {
            return Ok(());
        }
        let block = String::from_utf8(message.payload).unwrap().parse().unwrap();
        self.blocks.lock().unwrap().push(block);
        let hash = message.meta.get(meta::BLOCK_HASH).cloned();
        self.announced.lock().unwrap().push((message.id, hash));
        Ok(())
    }
}

fn fast(from: Option<u64>, to: Option<u64>, every: u64) -> WatcherConfig {
    WatcherConfig {
        from,
        to,
        every,
        poll_interval: Some(Duration::from_millis(5)),
        backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(5)),
        ..WatcherConfig::default()
    }
}

async fn watch(
    script: Vec<Option<u64>>,
    publisher: Arc<RecordingPublisher>,
    config: WatcherConfig,
    until: usize,
) -> Vec<u64> {
    let chain = Arc::new(ScriptedChain(Mutex::new(script.into())));
    let addr = BlockWatcher::new(chain, publisher.clone(), config).start();
    for _ in 0..2000 {
        if publisher.blocks.lock().unwrap().len() >= until || !addr.connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    publisher.blocks.lock().unwrap().clone()
}

#[actix_rt::test]
async fn big_jump_and_flapping_rpc_give_no_gap_and_no_duplicate() {
    // Errors, a head going backwards (a lagging node behind a balancer), a
    // jump of 2000 blocks, and failing publishes along the way.
    let script = vec![
        None,
        Some(100),
        None,
        Some(103),
        Some(101),
        None,
        Some(2100),
        Some(2100),
    ];
    let publisher = Arc::new(RecordingPublisher {
        fail_every: 7,
        ..Default::default()
    });
    let seen = watch(script, publisher, fast(None, None, 1), 2001).await;
    assert_eq!(seen, (100..=2100).collect::<Vec<_>>());
}

#[actix_rt::test]
async fn starts_at_from_and_samples_every_nth() {
    let publisher = Arc::new(RecordingPublisher::default());
    let seen = watch(
        vec![Some(53), Some(80)],
        publisher,
        fast(Some(41), None, 10),
        4,
    )
    .await;
    assert_eq!(seen, [50, 60, 70, 80]);
}

#[actix_rt::test]
async fn range_waits_for_finality_then_stops() {
    let publisher = Arc::new(RecordingPublisher::default());
    let seen = watch(
        vec![Some(8), Some(9), None, Some(30)],
        publisher,
        fast(Some(5), Some(12), 1),
        100,
    )
    .await;
    assert_eq!(seen, (5..=12).collect::<Vec<_>>());
}

/// A chain whose blocks from `fork_at` on are replaced when `version`
/// changes, as in a reorg.
struct ForkingChain {
    state: Mutex<(u64, u64, u32)>,
}

impl ForkingChain {
    fn hash(&self, number: u64) -> String {
        let (_, fork_at, version) = *self.state.lock().unwrap();
        let version = if number >= fork_at { version } else { 0 };
        format!("0x{number:02x}{version:02x}")
    }
}

#[async_trait]
impl ChainHead for ForkingChain {
    async fn head(&self, _: Follow) -> Result<BlockHeader, EdgeError> {
        let head = self.state.lock().unwrap().0;
        self.header(head).await
    }

    async fn header(&self, number: u64) -> Result<BlockHeader, EdgeError> {
        Ok(BlockHeader {
            number,
            hash: self.hash(number),
            parent_hash: self.hash(number - 1),
            timestamp: 0,
        })
    }
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..2000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("timed out waiting for {what}");
}

#[actix_rt::test]
async fn following_latest_a_reorg_announces_the_replaced_blocks_again_with_their_hash() {
    let chain = Arc::new(ForkingChain {
        state: Mutex::new((12, u64::MAX, 0)),
    });
    let publisher = Arc::new(RecordingPublisher::default());
    let config = WatcherConfig {
        follow: Follow::Latest,
        ..fast(Some(10), None, 1)
    };
    let _watcher = BlockWatcher::new(chain.clone(), publisher.clone(), config).start();
    let announced = || publisher.announced.lock().unwrap().clone();
    until("blocks 10..=12", || announced().len() == 3).await;
    // Blocks 11 and 12 replaced, and block 13 on top of the new 12.
    *chain.state.lock().unwrap() = (13, 11, 1);
    until("the reorg's blocks", || announced().len() == 6).await;
    let ids: Vec<String> = announced().into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids,
        [
            "block-10-0a00",
            "block-11-0b00",
            "block-12-0c00",
            "block-11-0b01",
            "block-12-0c01",
            "block-13-0d01"
        ]
    );
    let hashes: Vec<Option<String>> = announced().into_iter().map(|(_, h)| h).collect();
    assert_eq!(hashes[3].as_deref(), Some("0x0b01"));
    // No further reorg is seen in a chain that only grows.
    chain.state.lock().unwrap().0 = 14;
    until("block 14", || announced().len() == 7).await;
    assert_eq!(announced()[6].0, "block-14-0e01");
}

#[test]
fn the_smart_poll_waits_after_a_move_and_chases_before_the_next() {
    let s = Duration::from_secs;
    // Mainnet, finalized: an epoch between moves, at most a minute a wait.
    assert_eq!(smart_poll(Follow::Finalized, None, None), s(2));
    assert_eq!(smart_poll(Follow::Finalized, Some(s(10)), None), s(60));
    assert_eq!(smart_poll(Follow::Finalized, Some(s(340)), None), s(20));
    assert_eq!(smart_poll(Follow::Finalized, Some(s(400)), None), s(2));
    // Latest: a slot.
    assert_eq!(smart_poll(Follow::Latest, Some(s(1)), None), s(10));
    assert_eq!(
        smart_poll(Follow::Latest, Some(s(12)), None),
        Duration::from_millis(250)
    );
    // A chain moving every second (a devnet) is not waited on for minutes.
    let fast = Some(s(1));
    assert_eq!(
        smart_poll(Follow::Finalized, Some(Duration::ZERO), fast),
        Duration::from_millis(750)
    );
    assert_eq!(
        smart_poll(Follow::Finalized, Some(s(1)), fast),
        Duration::from_millis(750)
    );
}
