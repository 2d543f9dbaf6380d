//! A NATS cluster on loopback: three nats-server processes with JetStream,
//! joined by cluster routes, each a [`NatsServer`] (so each can be killed,
//! frozen or restarted on its own). Ready once JetStream's meta group has a
//! leader and every node is current with it, so a stream with 3 replicas
//! can be created at once.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::NatsServer;
use super::server::http_json;
use crate::support::node::free_port;

/// The cluster's name, shared by its nodes.
const CLUSTER_NAME: &str = "orchestrator-test";

/// Starts `size` clustered nodes named `node-0`, `node-1`, ... and waits
/// until their JetStream meta group has a leader and `size` peers.
pub fn start_nodes(size: usize) -> Vec<NatsServer> {
    let cluster_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
    let nodes: Vec<NatsServer> = (0..size)
        .map(|index| {
            let routes: Vec<String> = cluster_ports
                .iter()
                .enumerate()
                .filter(|&(other, _)| other != index)
                .map(|(_, port)| format!("nats://127.0.0.1:{port}"))
                .collect();
            let name = node_name(index);
            let listen = format!("nats://127.0.0.1:{}", cluster_ports[index]);
            let routes = routes.join(",");
            NatsServer::start_with(&[
                "-n",
                &name,
                "--cluster_name",
                CLUSTER_NAME,
                "--cluster",
                &listen,
                "--routes",
                &routes,
            ])
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Every node knows the leader and is healthy, and the leader (the
        // only node that tracks the others) sees every follower current.
        let formed = nodes.iter().all(|node| {
            let jsz = http_json(node.http_port(), "/jsz").unwrap_or(Value::Null);
            let meta = &jsz["meta_cluster"];
            let leader = meta["leader"].as_str().unwrap_or_default();
            let followers = meta["replicas"].as_array().cloned().unwrap_or_default();
            let leads = leader == node.name();
            !leader.is_empty()
                && (!leads
                    || followers.len() + 1 == size
                        && followers.iter().all(|p| p["current"] == true))
                && super::server::http_ok(node.http_port(), "/healthz")
        });
        if formed {
            return nodes;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = nodes.iter().map(NatsServer::log).collect();
            panic!(
                "the {size}-node NATS cluster did not form within 60 s:\n{}",
                logs.join("\n---\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The server name (`-n`) of node `index`, as JetStream reports leaders.
pub fn node_name(index: usize) -> String {
    format!("node-{index}")
}

/// The index of the node leading `stream`, from the monitoring endpoint of
/// whichever node hosts a copy of it, once it has a leader.
pub fn stream_leader(nodes: &[&NatsServer], stream: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = nodes.iter().find_map(|node| {
            let jsz = http_json(node.http_port(), "/jsz?accounts=true&streams=true")?;
            jsz["account_details"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|account| account["stream_detail"].as_array().into_iter().flatten())
                .find(|detail| detail["name"] == stream)
                .and_then(|detail| detail["cluster"]["leader"].as_str().map(str::to_owned))
        });
        if let Some(index) =
            leader.and_then(|name| (0..nodes.len()).find(|&i| node_name(i) == name))
        {
            return index;
        }
        if Instant::now() > deadline {
            panic!("stream {stream} has no leader after 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
