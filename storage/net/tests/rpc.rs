//! Both socket transports against the same scenarios.
// Test helpers outside #[test] fns may unwrap too: a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn_net::{
    Body, CallOptions, ClientOptions, NetError, RequestId, RpcClient, ServerOptions, TransportKind,
};
use common::*;

async fn setup(
    kind: TransportKind,
    server_opts: ServerOptions,
    client_opts: ClientOptions,
) -> (cairn_net::ServerHandle, RpcClient, TestHandler) {
    let cluster = Cluster::new("test");
    let handler = TestHandler::default();
    let server = cairn_net::serve(
        kind,
        &cluster.identity("node-a"),
        bind_any(),
        handler.clone(),
        server_opts,
    )
    .await
    .unwrap();
    let client = cairn_net::client(kind, &cluster.identity("node-b"), client_opts).unwrap();
    (server, RpcClient::new(client), handler)
}

#[tokio::test]
async fn round_trip_carries_request_id_and_peer_name() {
    init_tracing();
    for kind in KINDS {
        let (server, client, _) =
            setup(kind, ServerOptions::default(), ClientOptions::default()).await;
        for i in 0..3u64 {
            let opts = CallOptions {
                request_id: Some(RequestId(0xabc0 + i)),
                ..Default::default()
            };
            let (reply, body): (Reply, Body) = client
                .call_with(
                    server.local_addr(),
                    &Msg::Echo(format!("hi {i}")),
                    Body::from(b"payload".to_vec()),
                    opts,
                )
                .await
                .unwrap();
            assert_eq!(
                reply,
                Reply::Echo {
                    text: format!("hi {i}"),
                    request_id: 0xabc0 + i,
                    peer_name: "node-b".into()
                },
                "{kind:?}"
            );
            assert_eq!(&body.collect(1024).await.unwrap()[..], b"payload");
        }
    }
}

#[tokio::test]
async fn handler_error_is_remote() {
    for kind in KINDS {
        let (server, client, _) =
            setup(kind, ServerOptions::default(), ClientOptions::default()).await;
        let err = client
            .call::<_, Reply>(
                server.local_addr(),
                &Msg::Fail("no such object".into()),
                Body::Empty,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, NetError::Remote(m) if m.contains("no such object")),
            "{kind:?}: {err}"
        );
        // The connection is still good afterwards.
        let ok = client
            .call::<_, Reply>(server.local_addr(), &Msg::Sleep(0), Body::Empty)
            .await;
        assert!(ok.is_ok(), "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_64_mib_both_directions() {
    init_tracing();
    const TOTAL: u64 = 64 * 1024 * 1024;
    let mut expected = 0u64;
    let mut off = 0u64;
    while off < TOTAL {
        let c = pattern_chunk(off, 256 * 1024);
        expected = checksum(expected, off, &c);
        off += c.len() as u64;
    }
    for kind in KINDS {
        let (server, client, _) =
            setup(kind, ServerOptions::default(), ClientOptions::default()).await;
        // The call timeout runs until the response head, which a sink sends after the whole
        // body: allow for a debug build on a busy machine.
        let long = CallOptions {
            timeout: Duration::from_secs(120),
            ..Default::default()
        };
        let (reply, _): (Reply, Body) = client
            .call_with(
                server.local_addr(),
                &Msg::Sink,
                stream_pattern(TOTAL, 256 * 1024).await,
                long,
            )
            .await
            .unwrap();
        assert_eq!(
            reply,
            Reply::Sunk {
                bytes: TOTAL,
                checksum: expected
            },
            "{kind:?} upload"
        );
        let (reply, body): (Reply, Body) = client
            .call(server.local_addr(), &Msg::Source(TOTAL), Body::Empty)
            .await
            .unwrap();
        assert_eq!(reply, Reply::Sourced);
        assert_eq!(
            sink(body).await.unwrap(),
            (TOTAL, expected),
            "{kind:?} download"
        );
    }
}

/// A handler that does not read its body stalls the sender: what the client managed to produce
/// stays far below the body size (channels plus flow-control windows), so memory is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_bounds_what_a_sender_gets_ahead() {
    const TOTAL: u64 = 256 * 1024 * 1024;
    for kind in KINDS {
        let (server, client, _) =
            setup(kind, ServerOptions::default(), ClientOptions::default()).await;
        let produced = Arc::new(AtomicU64::new(0));
        let (mut tx, body) = Body::channel();
        let p = produced.clone();
        tokio::spawn(async move {
            let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
            for _ in 0..(TOTAL / (64 * 1024)) {
                if tx.send(chunk.clone()).await.is_err() {
                    return;
                }
                p.fetch_add(64 * 1024, Ordering::SeqCst);
            }
            let _ = tx.finish().await;
        });
        let addr = server.local_addr();
        let call = tokio::spawn({
            let client = client.clone();
            async move {
                let opts = CallOptions {
                    timeout: Duration::from_secs(60),
                    ..Default::default()
                };
                client
                    .call_with::<_, Reply>(addr, &Msg::SlowSink(1500), body, opts)
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let ahead = produced.load(Ordering::SeqCst);
        // QUIC: 16 MiB stream window; TCP: socket buffers; plus 2 x 8 MiB of channels.
        assert!(
            ahead < 64 * 1024 * 1024,
            "{kind:?}: sender got {ahead} bytes ahead"
        );
        let (reply, _) = call.await.unwrap().unwrap();
        assert!(
            matches!(reply, Reply::Sunk { bytes: TOTAL, .. }),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn timeout_fires() {
    for kind in KINDS {
        let (server, client, _) =
            setup(kind, ServerOptions::default(), ClientOptions::default()).await;
        let started = Instant::now();
        let opts = CallOptions {
            timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let err = client
            .call_with::<_, Reply>(server.local_addr(), &Msg::Sleep(5_000), Body::Empty, opts)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                NetError::Timeout {
                    timeout_ms: 200,
                    ..
                }
            ),
            "{kind:?}: {err}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_refuses_beyond_its_concurrency_limit() {
    for kind in KINDS {
        let server_opts = ServerOptions {
            concurrent_requests_max: 2,
        };
        let (server, client, handler) = setup(kind, server_opts, ClientOptions::default()).await;
        let addr = server.local_addr();
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move {
                    c.call::<_, Reply>(addr, &Msg::Sleep(500), Body::Empty)
                        .await
                })
            })
            .collect();
        let mut ok = 0;
        let mut busy = 0;
        for c in calls {
            match c.await.unwrap() {
                Ok(_) => ok += 1,
                Err(NetError::TooBusy { .. }) => busy += 1,
                Err(e) => panic!("{kind:?}: unexpected {e}"),
            }
        }
        assert_eq!(ok, 2, "{kind:?}");
        assert_eq!(busy, 4, "{kind:?}");
        assert!(handler.active_max.load(Ordering::SeqCst) <= 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_waits_at_its_inflight_limit() {
    for kind in KINDS {
        let client_opts = ClientOptions {
            inflight_per_peer_max: 2,
            ..Default::default()
        };
        let (server, client, handler) = setup(kind, ServerOptions::default(), client_opts).await;
        let addr = server.local_addr();
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move {
                    c.call::<_, Reply>(addr, &Msg::Sleep(100), Body::Empty)
                        .await
                })
            })
            .collect();
        for c in calls {
            c.await.unwrap().unwrap();
        }
        assert_eq!(handler.active_max.load(Ordering::SeqCst), 2, "{kind:?}");
    }
}

#[tokio::test]
async fn unreachable_peer_is_reported() {
    let cluster = Cluster::new("test");
    // A port nobody listens on: bind then drop a TCP listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let tcp = RpcClient::new(
        cairn_net::client(
            TransportKind::Tcp,
            &cluster.identity("n"),
            ClientOptions::default(),
        )
        .unwrap(),
    );
    let err = tcp
        .call::<_, Reply>(port, &Msg::Sleep(0), Body::Empty)
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Unreachable { .. }), "{err}");
}

/// After a peer restarts, pooled TCP connections to it are dead; the next call must notice
/// before sending and use a fresh connection instead of failing.
#[tokio::test]
async fn tcp_pool_survives_peer_restart() {
    let cluster = Cluster::new("test");
    let server_id = cluster.identity("node-a");
    let server = cairn_net::serve_tcp(
        &server_id,
        bind_any(),
        TestHandler::default(),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let client = RpcClient::new(
        cairn_net::client(
            TransportKind::Tcp,
            &cluster.identity("b"),
            ClientOptions::default(),
        )
        .unwrap(),
    );
    client
        .call::<_, Reply>(addr, &Msg::Sleep(0), Body::Empty)
        .await
        .unwrap();
    drop(server);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _server = cairn_net::serve_tcp(
        &server_id,
        addr,
        TestHandler::default(),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client
        .call::<_, Reply>(addr, &Msg::Sleep(0), Body::Empty)
        .await
        .unwrap();
}
