//! Swift wire protocol (filled in by the swift-proto work).
