//! Malformed, truncated and oversized frames close the offending connection (TCP) or stream
//! (QUIC) and nothing else.
// Test helpers outside #[test] fns may unwrap too: a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]
mod common;

use std::time::Duration;

use cairn_net::{Body, ClientOptions, RpcClient, ServerOptions, TransportKind};
use common::raw;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn assert_closed<S: AsyncReadExt + Unpin>(s: &mut S, what: &str) {
    // A TLS alert may come first (plaintext case); what matters is that the server hangs up.
    let mut buf = [0u8; 256];
    for _ in 0..16 {
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("{what}: connection not closed within 5 s"),
        }
    }
    panic!("{what}: server kept talking");
}

#[tokio::test]
async fn tcp_bad_frames_close_only_their_connection() {
    init_tracing();
    let cluster = Cluster::new("c");
    let server = cairn_net::serve(
        TransportKind::Tcp,
        &cluster.identity("a"),
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
    // A pooled connection made before the garbage must survive it.
    client
        .call::<_, Reply>(addr, &Msg::Sleep(0), Body::Empty)
        .await
        .unwrap();

    let cfg = cluster.identity("mallory").client_config().unwrap();
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("unknown kind", vec![99, 0, 0, 0, 0], false),
        ("oversized length", vec![1, 0xff, 0xff, 0xff, 0xff], false),
        (
            "truncated payload",
            vec![1, 100, 0, 0, 0, 1, 2, 3, 4, 5],
            true,
        ),
        ("truncated prefix", vec![1, 100], true),
        ("body frame first", vec![3, 1, 0, 0, 0, 7], false),
        (
            "bad version",
            {
                let mut v = raw::request_bytes(b"x");
                v[5] = 9;
                v
            },
            false,
        ),
    ];
    for (what, bytes, shutdown) in cases {
        let mut tls = raw::tls_connect(cfg.clone(), addr).await.unwrap();
        tls.write_all(&bytes).await.unwrap();
        tls.flush().await.unwrap();
        if shutdown {
            tls.shutdown().await.unwrap();
        }
        assert_closed(&mut tls, what).await;
        client
            .call::<_, Reply>(addr, &Msg::Sleep(0), Body::Empty)
            .await
            .unwrap();
    }

    // Not even TLS: plain garbage on the TCP port.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert_closed(&mut plain, "plaintext").await;

    let (reply, _) = client
        .call::<_, Reply>(addr, &Msg::Echo("still here".into()), Body::Empty)
        .await
        .unwrap();
    assert!(matches!(reply, Reply::Echo { text, .. } if text == "still here"));
}

#[tokio::test]
async fn quic_bad_frames_close_only_their_stream() {
    let cluster = Cluster::new("c");
    let server = cairn_net::serve(
        TransportKind::Quic,
        &cluster.identity("a"),
        bind_any(),
        TestHandler::default(),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let client = RpcClient::new(
        cairn_net::client(
            TransportKind::Quic,
            &cluster.identity("b"),
            ClientOptions::default(),
        )
        .unwrap(),
    );
    client
        .call::<_, Reply>(addr, &Msg::Sleep(0), Body::Empty)
        .await
        .unwrap();

    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(
        cluster.identity("mallory").client_config().unwrap(),
    )
    .unwrap();
    let mut endpoint = quinn::Endpoint::client(bind_any()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(crypto)));
    let conn = endpoint.connect(addr, "127.0.0.1").unwrap().await.unwrap();
    for bytes in [
        vec![99u8, 0, 0, 0, 0],
        vec![1, 0xff, 0xff, 0xff, 0xff],
        vec![1, 100, 0, 0, 0, 1],
    ] {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&bytes).await.unwrap();
        send.finish().unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024))
            .await
            .unwrap();
        assert!(
            matches!(&got, Ok(v) if v.is_empty()) || got.is_err(),
            "{got:?}"
        );
    }
    // Garbage datagrams on the UDP port are ignored.
    let udp = tokio::net::UdpSocket::bind(bind_any()).await.unwrap();
    for _ in 0..10 {
        udp.send_to(b"\x00garbage datagram", addr).await.unwrap();
    }
    let (reply, _) = client
        .call::<_, Reply>(addr, &Msg::Echo("still here".into()), Body::Empty)
        .await
        .unwrap();
    assert!(matches!(reply, Reply::Echo { text, .. } if text == "still here"));
}
