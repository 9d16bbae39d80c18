//! Chat across nodes: one room, people on different nodes.

use serde_json::json;

use crate::common::connect;
use crate::support::Cluster;

/// A message said through one node reaches a member on another, with the
/// seq the database gave it; history written through one is read through
/// the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_said_on_one_node_reaches_the_room_on_another() {
    let Some(cluster) = Cluster::start("chat across nodes", 2).await else {
        return;
    };
    let ann = connect(cluster.base(0), None).await;
    let mut ben = connect(cluster.base(1), None).await;
    ann.enter("lobby").await;
    ben.enter("lobby").await;
    let ack = ann.say("lobby", "hello from node 0").await;
    let seq = ack["seq"].as_u64().expect("seq");
    let got = ben.event("new_message").await;
    assert_eq!(got.args[0]["text"], json!("hello from node 0"));
    assert_eq!(got.args[0]["seq"], json!(seq));

    let history = ben.ok("history", &[json!("lobby")]).await;
    assert_eq!(crate::common::seqs(&history["messages"]), vec![seq]);
}
