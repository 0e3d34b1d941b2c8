//! Mutual TLS: only holders of a certificate from the cluster CA get anything, on both transports.
// Test helpers outside #[test] fns may unwrap too: a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]
mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_net::{Body, ClientOptions, NetError, RpcClient, ServerOptions, TlsIdentity};
use common::raw;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn client_with_cert_from_another_ca_is_refused() {
    init_tracing();
    let ours = Cluster::new("ours");
    let theirs = Cluster::new("theirs");
    // Trusts our CA (so it would accept our server) but its own certificate is from theirs.
    let intruder_cert = theirs.ca.issue_node("intruder", &[LOCALHOST]).unwrap();
    let intruder = TlsIdentity::from_pem(&ours.ca.cert_pem, &intruder_cert).unwrap();
    for kind in KINDS {
        let handler = TestHandler::default();
        let server = cairn_net::serve(
            kind,
            &ours.identity("node-a"),
            bind_any(),
            handler.clone(),
            ServerOptions::default(),
        )
        .await
        .unwrap();
        let client =
            RpcClient::new(cairn_net::client(kind, &intruder, ClientOptions::default()).unwrap());
        let err = client
            .call::<_, Reply>(server.local_addr(), &Msg::Sleep(0), Body::Empty)
            .await
            .unwrap_err();
        assert!(
            matches!(err, NetError::TlsRefused { .. }),
            "{kind:?}: {err}"
        );
        assert_eq!(handler.calls.load(Ordering::SeqCst), 0, "{kind:?}");
    }
}

#[tokio::test]
async fn server_with_cert_from_another_ca_is_refused() {
    let ours = Cluster::new("ours");
    let theirs = Cluster::new("theirs");
    let impostor_cert = theirs.ca.issue_node("impostor", &[LOCALHOST]).unwrap();
    let impostor = TlsIdentity::from_pem(&ours.ca.cert_pem, &impostor_cert).unwrap();
    for kind in KINDS {
        let handler = TestHandler::default();
        let server = cairn_net::serve(
            kind,
            &impostor,
            bind_any(),
            handler.clone(),
            ServerOptions::default(),
        )
        .await
        .unwrap();
        let client = RpcClient::new(
            cairn_net::client(kind, &ours.identity("node-b"), ClientOptions::default()).unwrap(),
        );
        let err = client
            .call::<_, Reply>(server.local_addr(), &Msg::Sleep(0), Body::Empty)
            .await
            .unwrap_err();
        assert!(
            matches!(err, NetError::TlsRefused { .. }),
            "{kind:?}: {err}"
        );
        assert_eq!(handler.calls.load(Ordering::SeqCst), 0, "{kind:?}");
    }
}

#[tokio::test]
async fn server_cert_must_name_the_dialled_ip() {
    let cluster = Cluster::new("c");
    let cert = cluster
        .ca
        .issue_node("elsewhere", &["10.9.9.9".parse().unwrap()])
        .unwrap();
    let elsewhere = TlsIdentity::from_pem(&cluster.ca.cert_pem, &cert).unwrap();
    let server = cairn_net::serve_tcp(
        &elsewhere,
        bind_any(),
        TestHandler::default(),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    let client = RpcClient::new(Arc::new(
        cairn_net::TcpTransport::new(&cluster.identity("b"), ClientOptions::default()).unwrap(),
    ));
    let err = client
        .call::<_, Reply>(server.local_addr(), &Msg::Sleep(0), Body::Empty)
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::TlsRefused { .. }), "{err}");
}

#[tokio::test]
async fn tcp_client_without_cert_gets_nothing() {
    let cluster = Cluster::new("c");
    let handler = TestHandler::default();
    let server = cairn_net::serve_tcp(
        &cluster.identity("a"),
        bind_any(),
        handler.clone(),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    let header = postcard::to_stdvec(&Msg::Sleep(0)).unwrap();
    // TLS 1.3: the client finishes its side of the handshake before the server judges it, so the
    // refusal shows on the first read.
    if let Ok(mut tls) = raw::tls_connect(
        raw::no_cert_config(&cluster.ca.cert_pem),
        server.local_addr(),
    )
    .await
    {
        let _ = tls.write_all(&raw::request_bytes(&header)).await;
        let _ = tls.flush().await;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
            .await
            .unwrap();
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "got a response without a certificate: {read:?}"
        );
    }
    assert_eq!(handler.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn quic_client_without_cert_gets_nothing() {
    let cluster = Cluster::new("c");
    let handler = TestHandler::default();
    let server = cairn_net::serve_quic(
        &cluster.identity("a"),
        bind_any(),
        handler.clone(),
        ServerOptions::default(),
    )
    .await
    .unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(raw::no_cert_config(
        &cluster.ca.cert_pem,
    ))
    .unwrap();
    let mut endpoint = quinn::Endpoint::client(bind_any()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let header = postcard::to_stdvec(&Msg::Sleep(0)).unwrap();
    let attempt = async {
        let conn = endpoint.connect(server.local_addr(), "127.0.0.1")?.await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&raw::request_bytes(&header)).await?;
        send.finish()?;
        let got = recv.read_to_end(1024).await?;
        anyhow::Ok(got)
    };
    let result = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap();
    assert!(
        result.is_err(),
        "got a response without a certificate: {result:?}"
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 0);
}
