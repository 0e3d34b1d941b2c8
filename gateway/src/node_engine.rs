//! Opening a node's devices with the RocksDB engine.

use cairn_engine_rocksdb::{EngineOptions, IoChoice, RocksEngine};
use cairn_node::config::{DeviceSection, EngineSection, IoChoiceConfig};
use tracing::info;

/// Opens (creating if needed) one device's engine.
pub async fn open_device(d: DeviceSection, e: EngineSection) -> Result<RocksEngine, String> {
    let io = match e.io {
        IoChoiceConfig::Auto => IoChoice::Auto,
        IoChoiceConfig::Uring => IoChoice::Uring,
        IoChoiceConfig::Plain => IoChoice::Plain,
    };
    tokio::fs::create_dir_all(&d.path)
        .await
        .map_err(|err| format!("creating {}: {err}", d.path.display()))?;
    let engine = RocksEngine::open(EngineOptions {
        dir: d.path.clone(),
        io,
    })
    .await
    .map_err(|err| err.to_string())?;
    info!(device = %d.name, path = %d.path.display(), io_uring = engine.uses_io_uring(), "device open");
    Ok(engine)
}
