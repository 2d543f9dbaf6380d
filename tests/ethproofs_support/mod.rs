//! A local EthProofs API for the reporter tests: `POST /proofs/queued`,
//! `/proofs/proving` and `/proofs/proved` as documented (bearer key checked,
//! unknown cluster 404, a second `proved` of a block 409), every request
//! recorded, and answers that a test can script ahead (500, 429 with
//! `Retry-After`, 400, ...).
#![allow(dead_code)] // each test file uses a different part of it

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// The key the fake accepts.
pub const KEY: &str = "test-key-0123456789";
/// The cluster the fake knows.
pub const CLUSTER: u64 = 42;

/// One request as received, with the status it was answered.
#[derive(Debug, Clone)]
pub struct Request {
    /// `queued`, `proving` or `proved`.
    pub call: String,
    /// The `Authorization` header.
    pub auth: Option<String>,
    /// The JSON body.
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
    /// The status it was answered with.
    pub status: u16,
}

impl Request {
    /// `block_number` of the body.
    pub fn block(&self) -> u64 {
        self.body["block_number"].as_u64().expect("block_number")
    }
}

/// A scripted answer: a status and an optional `Retry-After` in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Scripted {
    pub status: u16,
    pub retry_after: Option<u64>,
}

#[derive(Default)]
struct Books {
    requests: Vec<Request>,
    script: VecDeque<Scripted>,
    proved: BTreeSet<u64>,
    next_id: u64,
}

/// The running fake; stops with the test process.
#[derive(Clone)]
pub struct FakeEthProofs {
    books: Arc<Mutex<Books>>,
    url: String,
}

impl FakeEthProofs {
    /// Starts the server on a free loopback port, on its own thread.
    pub fn start() -> FakeEthProofs {
        let books = Arc::new(Mutex::new(Books::default()));
        let app = Router::new()
            .route("/api/v0/proofs/{call}", post(answer))
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(books.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake EthProofs");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, app).await.expect("serve");
            });
        });
        FakeEthProofs {
            books,
            url: format!("http://127.0.0.1:{port}/api/v0"),
        }
    }

    /// The API's base URL, as `ETHPROOFS_API_URL` takes it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The next requests are answered with these, in order, before the
    /// contract's own rules apply again.
    pub fn script(&self, answers: &[(u16, Option<u64>)]) {
        let mut books = self.books.lock().unwrap();
        books
            .script
            .extend(answers.iter().map(|&(status, retry_after)| Scripted {
                status,
                retry_after,
            }));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.books.lock().unwrap().requests.clone()
    }

    /// The requests to `call` (`queued`, `proving`, `proved`).
    pub fn calls(&self, call: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.call == call)
            .collect()
    }

    /// Waits up to `timeout` until the requests so far satisfy `done`.
    pub fn wait_for(&self, timeout: Duration, what: &str, done: impl Fn(&[Request]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if done(&requests) {
                return;
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = requests
                    .iter()
                    .map(|r| format!("{} {} -> {}", r.call, r.body["block_number"], r.status))
                    .collect();
                panic!("timed out after {timeout:?} waiting for {what}; requests: {seen:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn answer(
    State(books): State<Arc<Mutex<Books>>>,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut books = books.lock().unwrap();
    let scripted = books.script.pop_front();
    let (status, retry_after, reply) = match scripted {
        Some(s) => (s.status, s.retry_after, json!({"error": "scripted"})),
        None => contract(&mut books, &call, auth.as_deref(), &parsed),
    };
    books.requests.push(Request {
        call,
        auth,
        body: parsed,
        at: Instant::now(),
        status,
    });
    let mut response = (
        StatusCode::from_u16(status).expect("status"),
        reply.to_string(),
    )
        .into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", seconds.to_string().parse().unwrap());
    }
    response
}

/// The documented answer to a request.
fn contract(
    books: &mut Books,
    call: &str,
    auth: Option<&str>,
    body: &Value,
) -> (u16, Option<u64>, Value) {
    if auth != Some(&format!("Bearer {KEY}")) {
        return (401, None, json!({"error": "invalid API key"}));
    }
    if body["cluster_id"].as_u64() != Some(CLUSTER) {
        return (404, None, json!({"error": "cluster not found"}));
    }
    let Some(block) = body["block_number"].as_u64() else {
        return (400, None, json!({"error": "block_number is required"}));
    };
    if call == "proved" {
        let fine = body["proving_time"].as_u64().is_some_and(|t| t > 0)
            && body["proof"].is_string()
            && body
                .get("proving_cycles")
                .is_none_or(|c| c.as_u64().is_some_and(|c| c > 0));
        if !fine {
            return (400, None, json!({"error": "invalid proved body"}));
        }
    }
    if books.proved.contains(&block) {
        return (409, None, json!({"error": "already proved"}));
    }
    if call == "proved" {
        books.proved.insert(block);
    }
    books.next_id += 1;
    (200, None, json!({"proof_id": books.next_id}))
}
