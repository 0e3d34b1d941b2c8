//! The in-process test network: same trait, with drops, delays, partitions and heal.
// Test helpers outside #[test] fns may unwrap too: a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use cairn_net::{Body, CallOptions, Delay, NetError, RequestId, RpcClient, TestNetwork};
use common::*;
use tokio::time::Instant;

fn addr(n: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n as u8], 6000))
}

fn net(seed: u64) -> (TestNetwork, [RpcClient; 3]) {
    eprintln!("test network seed {seed}");
    let net = TestNetwork::new(seed);
    for n in 1..=3 {
        net.register(addr(n), &format!("node-{n}"), TestHandler::default());
    }
    let clients = [1, 2, 3].map(|n| {
        RpcClient::new(std::sync::Arc::new(
            net.transport(addr(n), &format!("node-{n}")),
        ))
    });
    (net, clients)
}

const SHORT: CallOptions = CallOptions {
    timeout: Duration::from_millis(500),
    request_id: None,
};

async fn ping(c: &RpcClient, to: u16) -> Result<Reply, NetError> {
    c.call_with::<_, Reply>(addr(to), &Msg::Echo("ping".into()), Body::Empty, SHORT)
        .await
        .map(|r| r.0)
}

#[tokio::test(start_paused = true)]
async fn round_trip_carries_id_and_name() {
    let (_net, [a, _, _]) = net(1);
    let opts = CallOptions {
        request_id: Some(RequestId(77)),
        ..SHORT
    };
    let (reply, _) = a
        .call_with::<_, Reply>(addr(2), &Msg::Echo("x".into()), Body::Empty, opts)
        .await
        .unwrap();
    assert_eq!(
        reply,
        Reply::Echo {
            text: "x".into(),
            request_id: 77,
            peer_name: "node-1".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn partition_isolate_and_heal() {
    let (net, [a, b, c]) = net(2);
    net.partition(&[addr(1)], &[addr(2)]);
    assert!(matches!(ping(&a, 2).await, Err(NetError::Timeout { .. })));
    assert!(matches!(ping(&b, 1).await, Err(NetError::Timeout { .. })));
    assert!(ping(&a, 3).await.is_ok());
    net.isolate(addr(3));
    assert!(matches!(ping(&c, 2).await, Err(NetError::Timeout { .. })));
    assert!(matches!(ping(&b, 3).await, Err(NetError::Timeout { .. })));
    net.heal();
    for (client, to) in [(&a, 2), (&b, 1), (&c, 2), (&b, 3)] {
        assert!(ping(client, to).await.is_ok());
    }
}

#[tokio::test(start_paused = true)]
async fn drops_are_seeded_and_replay() {
    async fn outcomes(seed: u64) -> Vec<bool> {
        let (net, [a, _, _]) = net(seed);
        net.set_drop_probability(0.3);
        let mut v = Vec::new();
        for _ in 0..40 {
            v.push(ping(&a, 2).await.is_ok());
        }
        v
    }
    let first = outcomes(7).await;
    assert_eq!(first, outcomes(7).await, "same seed, same drops");
    let ok = first.iter().filter(|&&x| x).count();
    assert!(ok > 5 && ok < 40, "ok {ok} of 40");

    let (net, [a, _, _]) = net(8);
    net.set_drop_probability(1.0);
    assert!(matches!(ping(&a, 2).await, Err(NetError::Timeout { .. })));
    net.heal();
    assert!(ping(&a, 2).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn delays_and_missing_nodes() {
    let (net, [a, _, _]) = net(3);
    net.set_delay(Delay::Fixed(Duration::from_millis(100)));
    let t = Instant::now();
    ping(&a, 2).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "request and response each delayed"
    );
    net.set_delay(Delay::Fixed(Duration::from_secs(1)));
    assert!(matches!(ping(&a, 2).await, Err(NetError::Timeout { .. })));
    net.set_delay(Delay::Uniform {
        min: Duration::from_millis(1),
        max: Duration::from_millis(50),
    });
    ping(&a, 2).await.unwrap();
    net.unregister(addr(2));
    assert!(matches!(
        ping(&a, 2).await,
        Err(NetError::Unreachable { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn filter_drops_one_kind_of_message() {
    let (net, [a, _, _]) = net(4);
    let sleep_header = postcard::to_stdvec(&Msg::Sleep(0)).unwrap();
    net.set_drop_request_filter(std::sync::Arc::new(move |_, to, header: &[u8]| {
        to == addr(2) && header == sleep_header.as_slice()
    }));
    let sleep = a
        .call_with::<_, Reply>(addr(2), &Msg::Sleep(0), Body::Empty, SHORT)
        .await;
    assert!(matches!(sleep, Err(NetError::Timeout { .. })));
    assert!(ping(&a, 2).await.is_ok());
    assert!(
        a.call_with::<_, Reply>(addr(3), &Msg::Sleep(0), Body::Empty, SHORT)
            .await
            .is_ok()
    );
    net.heal();
    assert!(
        a.call_with::<_, Reply>(addr(2), &Msg::Sleep(0), Body::Empty, SHORT)
            .await
            .is_ok()
    );
}
