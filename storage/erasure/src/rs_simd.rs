//! [`CodecId::RsSimd`]: the `reed-solomon-simd` crate (GF(2^16), FFT-based).

use std::sync::{Mutex, MutexGuard, PoisonError};

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::codec::{CodecId, EcParams, ErasureCodec, check_data_shards, check_reconstruct};
use crate::error::{EcError, Result};

const ID: CodecId = CodecId::RsSimd;

/// `reed-solomon-simd` with fixed k+m.
///
/// The crate's encoder and decoder own working buffers of a few times the shard size; making
/// them per call would allocate (and page-fault in) megabytes per 1 MiB segment. So one of each
/// is kept here and reused: a call takes it out of its slot (or makes a new one when another
/// thread holds it) and puts it back afterwards.
pub struct RsSimd {
    params: EcParams,
    encoder: Mutex<Option<ReedSolomonEncoder>>,
    decoder: Mutex<Option<ReedSolomonDecoder>>,
}

impl std::fmt::Debug for RsSimd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsSimd")
            .field("params", &self.params)
            .finish()
    }
}

fn backend(e: reed_solomon_simd::Error) -> EcError {
    EcError::Backend {
        codec: ID,
        message: e.to_string(),
    }
}

/// A poisoned slot only means another thread panicked while holding it; the `Option` inside
/// is still sound (at worst it is `None`).
fn lock<T>(slot: &Mutex<T>) -> MutexGuard<'_, T> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RsSimd {
    /// Builds the codec; `params` must already be validated.
    pub(crate) fn new(params: EcParams) -> Self {
        RsSimd {
            params,
            encoder: Mutex::new(None),
            decoder: Mutex::new(None),
        }
    }

    fn take_encoder(&self, shard_len: usize) -> Result<ReedSolomonEncoder> {
        let cached = lock(&self.encoder).take();
        match cached {
            Some(mut enc) => {
                enc.reset(self.params.k, self.params.m, shard_len)
                    .map_err(backend)?;
                Ok(enc)
            }
            None => {
                ReedSolomonEncoder::new(self.params.k, self.params.m, shard_len).map_err(backend)
            }
        }
    }

    fn take_decoder(&self, shard_len: usize) -> Result<ReedSolomonDecoder> {
        let cached = lock(&self.decoder).take();
        match cached {
            Some(mut dec) => {
                dec.reset(self.params.k, self.params.m, shard_len)
                    .map_err(backend)?;
                Ok(dec)
            }
            None => {
                ReedSolomonDecoder::new(self.params.k, self.params.m, shard_len).map_err(backend)
            }
        }
    }

    fn encode_with(
        &self,
        enc: &mut ReedSolomonEncoder,
        data_shards: &[&[u8]],
    ) -> Result<Vec<Vec<u8>>> {
        for shard in data_shards {
            enc.add_original_shard(shard).map_err(backend)?;
        }
        let result = enc.encode().map_err(backend)?;
        Ok(result.recovery_iter().map(<[u8]>::to_vec).collect())
    }

    /// Restores missing data shards in place.
    fn restore_data(&self, shards: &mut [Option<Vec<u8>>], shard_len: usize) -> Result<()> {
        let k = self.params.k;
        if shards[..k].iter().all(Option::is_some) {
            return Ok(());
        }
        let mut dec = self.take_decoder(shard_len)?;
        let restored = (|| {
            // Exactly k shards: the present data shards, then parity until there are enough.
            let mut given = 0;
            for (i, shard) in shards[..k].iter().enumerate() {
                if let Some(s) = shard {
                    dec.add_original_shard(i, s).map_err(backend)?;
                    given += 1;
                }
            }
            for (j, shard) in shards[k..].iter().enumerate() {
                if given == k {
                    break;
                }
                if let Some(s) = shard {
                    dec.add_recovery_shard(j, s).map_err(backend)?;
                    given += 1;
                }
            }
            let result = dec.decode().map_err(backend)?;
            let mut restored = Vec::new();
            for (i, data) in result.restored_original_iter() {
                restored.push((i, data.to_vec()));
            }
            Ok::<_, EcError>(restored)
        })();
        *lock(&self.decoder) = Some(dec);
        for (i, data) in restored? {
            if let Some(slot) = shards.get_mut(i) {
                *slot = Some(data);
            }
        }
        if shards[..k].iter().any(Option::is_none) {
            return Err(EcError::Backend {
                codec: ID,
                message: "decoder did not restore every missing data shard".into(),
            });
        }
        Ok(())
    }
}

impl ErasureCodec for RsSimd {
    fn id(&self) -> CodecId {
        ID
    }

    fn params(&self) -> EcParams {
        self.params
    }

    fn encode(&self, data_shards: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
        let len = check_data_shards(ID, self.params, data_shards)?;
        let mut enc = self.take_encoder(len)?;
        let parity = self.encode_with(&mut enc, data_shards);
        *lock(&self.encoder) = Some(enc);
        parity
    }

    fn reconstruct(&self, shards: &mut [Option<Vec<u8>>]) -> Result<()> {
        let len = check_reconstruct(ID, self.params, shards)?;
        self.restore_data(shards, len)?;
        let k = self.params.k;
        if shards[k..].iter().all(Option::is_some) {
            return Ok(());
        }
        // The crate restores data only; missing parity is encoded again from the full data.
        let parity = {
            let data: Vec<&[u8]> = shards[..k].iter().flatten().map(Vec::as_slice).collect();
            self.encode(&data)?
        };
        for (slot, p) in shards[k..].iter_mut().zip(parity) {
            if slot.is_none() {
                *slot = Some(p);
            }
        }
        Ok(())
    }

    fn reconstruct_data(&self, shards: &mut [Option<Vec<u8>>]) -> Result<()> {
        let len = check_reconstruct(ID, self.params, shards)?;
        self.restore_data(shards, len)
    }
}
