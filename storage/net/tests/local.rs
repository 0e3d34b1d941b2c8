//! In-process calls: a `LocalFirstTransport` reaches this process's handlers without sockets,
//! with the socket servers' limits, and everything else through its inner transport.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_net::{
    Body, CallContext, CallOptions, Handler, HandlerError, LocalFirstTransport, LocalServers,
    NetError, Response, RpcClient, ServerOptions, TestNetwork,
};
use common::*;

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 6000))
}

const SHORT: CallOptions = CallOptions {
    timeout: Duration::from_millis(500),
    request_id: None,
};

/// A client at node 9 whose process serves node 1 locally; node 2 is only on the test network.
fn setup(
    opts: &ServerOptions,
) -> (
    LocalServers,
    cairn_net::LocalRegistration,
    TestHandler,
    TestHandler,
    RpcClient,
) {
    let net = TestNetwork::new(1);
    let remote = TestHandler::default();
    net.register(addr(2), "node-2", remote.clone());
    let local = LocalServers::new();
    let here = TestHandler::default();
    let reg = local.register(&[addr(1)], "node-1", here.clone(), opts);
    let transport = LocalFirstTransport::new(
        local.clone(),
        Arc::new(net.transport(addr(9), "node-9")),
        "node-9",
        addr(9),
    );
    (
        local,
        reg,
        here,
        remote,
        RpcClient::new(Arc::new(transport)),
    )
}

#[tokio::test]
async fn local_handlers_are_called_directly_and_others_over_the_inner_transport() {
    let (_local, reg, here, remote, client) = setup(&ServerOptions::default());
    for to in [1, 2] {
        let (reply, _) = client
            .call_with::<_, Reply>(addr(to), &Msg::Echo("x".into()), Body::Empty, SHORT)
            .await
            .unwrap();
        let Reply::Echo { peer_name, .. } = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(peer_name, "node-9");
    }
    assert_eq!(here.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(remote.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Streamed bodies both ways.
    let body = stream_pattern(3 << 20, 100_000).await;
    let (reply, _) = client
        .call_with::<_, Reply>(addr(1), &Msg::Sink, body, SHORT)
        .await
        .unwrap();
    let (_, expected) = sink(stream_pattern(3 << 20, 100_000).await).await.unwrap();
    assert_eq!(
        reply,
        Reply::Sunk {
            bytes: 3 << 20,
            checksum: expected
        }
    );
    let (reply, body) = client
        .call_with::<_, Reply>(addr(1), &Msg::Source(1 << 20), Body::Empty, SHORT)
        .await
        .unwrap();
    assert_eq!(reply, Reply::Sourced);
    assert_eq!(sink(body).await.unwrap().0, 1 << 20);
    // Unregistered: the address is no longer served here (nor on the test network).
    drop(reg);
    let gone = client
        .call_with::<_, Reply>(addr(1), &Msg::Echo("x".into()), Body::Empty, SHORT)
        .await;
    assert!(
        matches!(gone, Err(NetError::Unreachable { .. })),
        "{gone:?}"
    );
}

#[tokio::test]
async fn local_calls_keep_the_servers_limits() {
    let opts = ServerOptions {
        concurrent_requests_max: 1,
    };
    let (_local, _reg, _here, _remote, client) = setup(&opts);
    // A handler slower than the caller's deadline: the call times out.
    let slow = client
        .call_with::<_, Reply>(addr(1), &Msg::Sleep(2_000), Body::Empty, SHORT)
        .await;
    assert!(matches!(slow, Err(NetError::Timeout { .. })), "{slow:?}");
    // The timed-out handler was dropped, so its slot is free again; hold it with another call.
    let busy = {
        let c = client.clone();
        tokio::spawn(async move {
            c.call_with::<_, Reply>(addr(1), &Msg::Sleep(300), Body::Empty, SHORT)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = client
        .call_with::<_, Reply>(addr(1), &Msg::Echo("x".into()), Body::Empty, SHORT)
        .await;
    assert!(
        matches!(refused, Err(NetError::TooBusy { .. })),
        "{refused:?}"
    );
    assert!(busy.await.unwrap().is_ok());
    // A handler's refusal reaches the caller as over the wire.
    let failed = client
        .call_with::<_, Reply>(addr(1), &Msg::Fail("no".into()), Body::Empty, SHORT)
        .await;
    assert!(
        matches!(&failed, Err(NetError::Remote(m)) if m == "no"),
        "{failed:?}"
    );
}

#[derive(Clone)]
struct Panics;

impl Handler for Panics {
    async fn handle(
        &self,
        _ctx: CallContext,
        header: Bytes,
        _body: Body,
    ) -> Result<Response, HandlerError> {
        if header.len() < 1_000_000 {
            panic!("handler bug");
        }
        Response::encode(&(), Body::Empty)
    }
}

#[tokio::test]
async fn a_panicking_handler_fails_only_its_call() {
    let local = LocalServers::new();
    let _reg = local.register(&[addr(1)], "node-1", Panics, &ServerOptions::default());
    let transport = LocalFirstTransport::new(
        local,
        Arc::new(TestNetwork::new(2).transport(addr(9), "node-9")),
        "node-9",
        addr(9),
    );
    let client = RpcClient::new(Arc::new(transport));
    for _ in 0..2 {
        let r = client
            .call_with::<_, ()>(addr(1), &"hi", Body::Empty, SHORT)
            .await;
        assert!(
            matches!(&r, Err(NetError::Remote(m)) if m.contains("panic")),
            "{r:?}"
        );
    }
}

/// Answers with a streamed body that sends one chunk and then nothing.
#[derive(Clone)]
struct Stalls;

impl Handler for Stalls {
    async fn handle(
        &self,
        _ctx: CallContext,
        _header: Bytes,
        _body: Body,
    ) -> Result<Response, HandlerError> {
        let (mut tx, body) = Body::channel();
        tokio::spawn(async move {
            let _ = tx.send(Bytes::from_static(b"first")).await;
            // Held open, never finished: the body stalls.
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            drop(tx);
        });
        Response::encode(&(), body)
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_local_body_fails_as_over_the_wire() {
    let local = LocalServers::new();
    let _reg = local.register(&[addr(1)], "node-1", Stalls, &ServerOptions::default());
    let transport = LocalFirstTransport::new(
        local,
        Arc::new(TestNetwork::new(3).transport(addr(9), "node-9")),
        "node-9",
        addr(9),
    );
    let client = RpcClient::new(Arc::new(transport));
    let ((), mut body) = client
        .call_with::<_, ()>(addr(1), &"hi", Body::Empty, SHORT)
        .await
        .unwrap();
    assert_eq!(body.next_chunk().await.unwrap().unwrap(), &b"first"[..]);
    let started = tokio::time::Instant::now();
    let stalled = body.next_chunk().await;
    assert!(
        matches!(&stalled, Some(Err(NetError::Protocol(m))) if m.contains("stalled")),
        "{stalled:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(cairn_net::limits::BODY_CHUNK_IDLE_TIMEOUT_MS),
        "{waited:?}"
    );
}

#[tokio::test]
async fn excess_local_calls_wait_for_an_in_flight_slot_instead_of_failing() {
    // The server would take 256 at once; the caller's own limit per peer (64) queues the rest.
    let (_local, _reg, here, _remote, client) = setup(&ServerOptions::default());
    let opts = CallOptions {
        timeout: Duration::from_secs(10),
        request_id: None,
    };
    let calls = (0..100).map(|_| {
        let c = client.clone();
        tokio::spawn(async move {
            c.call_with::<_, Reply>(addr(1), &Msg::Sleep(50), Body::Empty, opts)
                .await
        })
    });
    for r in futures::future::join_all(calls).await {
        assert!(r.unwrap().is_ok());
    }
    let most = here.active_max.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        most <= cairn_net::limits::CLIENT_INFLIGHT_PER_PEER_MAX_DEFAULT,
        "{most} calls ran at once"
    );
}

#[tokio::test]
async fn dropping_an_old_registration_keeps_a_newer_one_at_the_same_address() {
    let local = LocalServers::new();
    let old = local.register(
        &[addr(1)],
        "old",
        TestHandler::default(),
        &ServerOptions::default(),
    );
    let newer = TestHandler::default();
    let _new = local.register(&[addr(1)], "new", newer.clone(), &ServerOptions::default());
    drop(old);
    let transport = LocalFirstTransport::new(
        local,
        Arc::new(TestNetwork::new(4).transport(addr(9), "node-9")),
        "node-9",
        addr(9),
    );
    let client = RpcClient::new(Arc::new(transport));
    client
        .call_with::<_, Reply>(addr(1), &Msg::Echo("x".into()), Body::Empty, SHORT)
        .await
        .unwrap();
    assert_eq!(newer.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_handler_whose_caller_goes_away_still_finishes_within_the_deadline() {
    use std::sync::atomic::Ordering;
    let one_at_a_time = ServerOptions {
        concurrent_requests_max: 1,
    };
    let (_local, _reg, here, _remote, client) = setup(&one_at_a_time);
    // The caller gives up after 20 ms; the handler needs 100 ms, well within the 500 ms deadline.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(20),
        client.call_with::<_, Reply>(addr(1), &Msg::Sleep(100), Body::Empty, SHORT),
    )
    .await;
    assert!(gave_up.is_err());
    assert_eq!(here.active.load(Ordering::SeqCst), 1, "still running");
    // ... and still holding the server's only slot, as on a socket server.
    let busy = client
        .call_with::<_, Reply>(addr(1), &Msg::Echo("x".into()), Body::Empty, SHORT)
        .await;
    assert!(matches!(busy, Err(NetError::TooBusy { .. })), "{busy:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        here.active.load(Ordering::SeqCst),
        0,
        "the abandoned handler ran to its end"
    );

    // One that misses the deadline is dropped where it stands, as a socket server drops it.
    let late = client
        .call_with::<_, Reply>(addr(1), &Msg::Sleep(2_000), Body::Empty, SHORT)
        .await;
    assert!(matches!(late, Err(NetError::Timeout { .. })), "{late:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(here.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        here.active.load(Ordering::SeqCst),
        1,
        "the late handler never finished"
    );
    // Dropped at its deadline, it gave its slot back.
    let echoed = client
        .call_with::<_, Reply>(addr(1), &Msg::Echo("y".into()), Body::Empty, SHORT)
        .await;
    assert!(echoed.is_ok(), "{echoed:?}");
}
