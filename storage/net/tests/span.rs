//! The server enters an `rpc` span carrying the request id and the peer's node name.
// Test helpers outside #[test] fns may unwrap too: a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]
mod common;

use std::sync::{Arc, Mutex};

use cairn_net::{Body, CallOptions, ClientOptions, RequestId, RpcClient, ServerOptions};
use common::*;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::Registry;

#[derive(Default, Clone)]
struct Recorded(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorded {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: Context<'_, S>,
    ) {
        if attrs.metadata().name() == "rpc" {
            let mut f = Fields(String::new());
            attrs.record(&mut f);
            self.0.lock().unwrap().push(f.0);
        }
    }
}

// current_thread runtime: server tasks run on this thread, so the thread-local subscriber sees them.
#[tokio::test]
async fn server_span_has_request_id_and_peer() {
    let recorded = Recorded::default();
    let _guard = tracing::subscriber::set_default(Registry::default().with(recorded.clone()));
    for kind in KINDS {
        let cluster = Cluster::new("c");
        let server = cairn_net::serve(
            kind,
            &cluster.identity("a"),
            bind_any(),
            TestHandler::default(),
            ServerOptions::default(),
        )
        .await
        .unwrap();
        let client = RpcClient::new(
            cairn_net::client(
                kind,
                &cluster.identity("node-span"),
                ClientOptions::default(),
            )
            .unwrap(),
        );
        let opts = CallOptions {
            request_id: Some(RequestId(0x5eed)),
            ..Default::default()
        };
        client
            .call_with::<_, Reply>(server.local_addr(), &Msg::Sleep(0), Body::Empty, opts)
            .await
            .unwrap();
        let spans = recorded.0.lock().unwrap().clone();
        assert!(
            spans
                .iter()
                .any(|s| s.contains("request_id=0000000000005eed") && s.contains("peer=node-span")),
            "{kind:?}: {spans:?}"
        );
        recorded.0.lock().unwrap().clear();
    }
}
