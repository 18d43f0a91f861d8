//! The on-disk form of a [`Premodel`]: a small versioned envelope around a bincode payload.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "TRIAGEPM"
//!      8     4  envelope format version (u32 LE)
//!     12     4  feature-set version the model was trained on (u32 LE)
//!     16     8  payload length (u64 LE)
//!     24     8  FNV-1a 64 checksum of the payload (u64 LE)
//!     32     n  payload: bincode 2 (standard config) of the premodel, via serde
//! ```
//!
//! The feature-set version sits in the header so a model trained on differently computed
//! features is refused with a precise error before the payload is even decoded. The checksum
//! turns truncation and bit rot into a clean error instead of a silently different model (it
//! is an integrity check, not authentication). MLP weights inside the payload are burn's own
//! record bytes.

use crate::error::{Error, Result};
use crate::features::FEATURE_SET_VERSION;
use crate::premodel::Premodel;

/// First bytes of every serialized premodel.
pub const MAGIC: [u8; 8] = *b"TRIAGEPM";
/// Version of the envelope and payload layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 32;
/// Decoding refuses to allocate more than this, whatever lengths the payload claims.
const DECODE_LIMIT: usize = 1 << 30;

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

impl Premodel {
    /// Serializes the premodel into the versioned envelope.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let payload = bincode::serde::encode_to_vec(self, config())
            .map_err(|e| Error::Serialization(e.to_string()))?;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.feature_set_version().to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&fnv1a64(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Loads a premodel written by [`Premodel::to_bytes`], refusing other formats, other
    /// feature-set versions and damaged bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::Corrupt(format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            )));
        }
        let (header, payload) = bytes.split_at(HEADER_LEN);
        if header[0..8] != MAGIC {
            return Err(Error::Corrupt("not a premodel (bad magic)".into()));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([header[o], header[o + 1], header[o + 2], header[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let format = u32_at(8);
        if format != FORMAT_VERSION {
            return Err(Error::FormatVersion {
                found: format,
                supported: FORMAT_VERSION,
            });
        }
        let fs_version = u32_at(12);
        if fs_version != FEATURE_SET_VERSION {
            return Err(Error::FeatureSetVersion {
                found: fs_version,
                expected: FEATURE_SET_VERSION,
            });
        }
        let len = u64_at(16);
        if len != payload.len() as u64 {
            return Err(Error::Corrupt(format!(
                "payload is {} bytes, header says {len}",
                payload.len()
            )));
        }
        if fnv1a64(payload) != u64_at(24) {
            return Err(Error::Corrupt("payload checksum mismatch".into()));
        }
        let (model, used): (Premodel, usize) = bincode::serde::decode_from_slice(payload, config())
            .map_err(|e| Error::Serialization(e.to_string()))?;
        if used != payload.len() {
            return Err(Error::Corrupt("trailing bytes after payload".into()));
        }
        if model.feature_set_version() != fs_version {
            return Err(Error::Corrupt(
                "header and payload feature-set versions differ".into(),
            ));
        }
        model.check_consistent()?;
        Ok(model)
    }
}

#[cfg(test)]
mod tests;
