//! Fuzz-style property tests of what a node parses from outside: RPC headers from any peer
//! with a certificate, and its config file. Neither may panic, whatever the input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn_net::decode_request;
use cairn_node::config::NodeConfig;
use cairn_node::rpc::{NodeRequest, NodeResponse};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_request::<NodeRequest>(&bytes);
        let _ = postcard::from_bytes::<NodeResponse>(&bytes);
    }

    #[test]
    fn a_valid_header_with_bytes_flipped_never_panics(pos in 0usize..200, flip in 1u8..=255) {
        let req = NodeRequest::HeadBlob {
            device: "d0".into(),
            key: cairn_engine::BlobKey::new(7, "/a/c/some object name"),
        };
        let mut bytes = postcard::to_stdvec(&req).unwrap();
        if !bytes.is_empty() {
            let i = pos % bytes.len();
            bytes[i] ^= flip;
        }
        let _ = decode_request::<NodeRequest>(&bytes);
    }

    #[test]
    fn any_text_as_config_parses_or_fails_with_a_message(text in "\\PC{0,300}") {
        if let Err(e) = NodeConfig::parse(&text) {
            prop_assert!(!e.is_empty());
        }
    }
}
