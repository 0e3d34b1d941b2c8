//! [`CodecId::RsErasureGf8`]: the `reed-solomon-erasure` crate over GF(2^8).

use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::codec::{CodecId, EcParams, ErasureCodec, check_data_shards, check_reconstruct};
use crate::error::{EcError, Result};

const ID: CodecId = CodecId::RsErasureGf8;

/// `reed-solomon-erasure` with fixed k+m. The crate's codec keeps its encoding matrix and an
/// LRU cache of decoding matrices, so one instance should serve many stripes.
#[derive(Debug)]
pub struct RsErasureGf8 {
    params: EcParams,
    inner: ReedSolomon,
}

impl RsErasureGf8 {
    /// Builds the codec; `params` must already be validated.
    pub(crate) fn new(params: EcParams) -> Result<Self> {
        let inner = ReedSolomon::new(params.k, params.m).map_err(backend)?;
        Ok(RsErasureGf8 { params, inner })
    }
}

fn backend(e: reed_solomon_erasure::Error) -> EcError {
    EcError::Backend {
        codec: ID,
        message: format!("{e:?}"),
    }
}

impl ErasureCodec for RsErasureGf8 {
    fn id(&self) -> CodecId {
        ID
    }

    fn params(&self) -> EcParams {
        self.params
    }

    fn encode(&self, data_shards: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
        let len = check_data_shards(ID, self.params, data_shards)?;
        let mut parity = vec![vec![0u8; len]; self.params.m];
        self.inner
            .encode_sep(data_shards, &mut parity)
            .map_err(backend)?;
        Ok(parity)
    }

    fn reconstruct(&self, shards: &mut [Option<Vec<u8>>]) -> Result<()> {
        check_reconstruct(ID, self.params, shards)?;
        self.inner.reconstruct(shards).map_err(backend)
    }

    fn reconstruct_data(&self, shards: &mut [Option<Vec<u8>>]) -> Result<()> {
        check_reconstruct(ID, self.params, shards)?;
        self.inner.reconstruct_data(shards).map_err(backend)
    }
}
