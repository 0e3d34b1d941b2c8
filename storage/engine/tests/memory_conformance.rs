//! The conformance suite against the in-memory reference engine.

async fn memory() -> (cairn_engine::MemoryEngine, ()) {
    (cairn_engine::MemoryEngine::new(), ())
}

cairn_engine::conformance_tests!(memory);
