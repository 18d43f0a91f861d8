//! The container every Triage file is written in: an 8-byte magic, a schema version, then a
//! sequence of self-checking records.
//!
//! ```text
//! magic[8] | schema u32 LE | record* ,  record = kind u8 | len u32 LE | payload[len] | sha256[32]
//! ```
//!
//! The digest covers kind, length and payload, so a flipped bit anywhere is caught before the
//! payload is decoded. Records are appended and synced one at a time, which makes a file that
//! is being written crash-safe: after a crash, every complete record before the torn tail is
//! intact and [`scan`] reports where the valid prefix ends so a writer can resume from there.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Largest payload accepted; guards allocations against a corrupted length field.
pub const MAX_RECORD: u32 = 1 << 30;
const PREAMBLE: u64 = 12;
const DIGEST: usize = 32;

/// One record as read back.
#[derive(Debug)]
pub struct Record {
    pub kind: u8,
    /// Byte offset of the record's first byte in the file.
    pub offset: u64,
    pub payload: Vec<u8>,
}

/// How a scan ended when it did not end cleanly at end of file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// The file ends on a record boundary.
    Clean,
    /// The last record is incomplete or its digest is wrong and nothing follows it: what a
    /// crash in the middle of an append leaves. Everything before `valid_len` is intact.
    Torn { valid_len: u64, reason: String },
}

fn digest(kind: u8, payload: &[u8]) -> [u8; DIGEST] {
    let mut h = Sha256::new();
    h.update([kind]);
    h.update((payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize().into()
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_limit::<{ MAX_RECORD as usize }>()
}

/// Serializes a record payload.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, bincode_config())
        .map_err(|e| Error::InvalidArgument(format!("cannot serialize record: {e}")))
}

/// Deserializes a record payload; `what` names the record in the error.
pub fn decode<T: DeserializeOwned>(path: &Path, rec: &Record, what: &str) -> Result<T> {
    let (value, used) =
        bincode::serde::decode_from_slice(&rec.payload, bincode_config()).map_err(|e| {
            Error::format(
                path,
                format!("{what} record at byte {}: cannot decode: {e}", rec.offset),
            )
        })?;
    if used != rec.payload.len() {
        return Err(Error::format(
            path,
            format!(
                "{what} record at byte {}: {} trailing bytes",
                rec.offset,
                rec.payload.len() - used
            ),
        ));
    }
    Ok(value)
}

/// Appends records to a container file, syncing each one to disk.
pub struct Writer {
    file: File,
    path: PathBuf,
}

impl Writer {
    /// Creates (or truncates) `path` and writes the preamble.
    pub fn create(path: &Path, magic: &[u8; 8], schema: u32) -> Result<Self> {
        let mut file = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut pre = Vec::with_capacity(PREAMBLE as usize);
        pre.extend_from_slice(magic);
        pre.extend_from_slice(&schema.to_le_bytes());
        file.write_all(&pre).map_err(|e| Error::io(path, e))?;
        file.sync_data().map_err(|e| Error::io(path, e))?;
        Ok(Writer {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Reopens an existing container for appending after its first `valid_len` bytes,
    /// discarding a torn tail.
    pub fn resume(path: &Path, valid_len: u64) -> Result<Self> {
        let mut file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        file.set_len(valid_len).map_err(|e| Error::io(path, e))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| Error::io(path, e))?;
        Ok(Writer {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends one record and syncs it.
    pub fn write(&mut self, kind: u8, payload: &[u8]) -> Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l <= MAX_RECORD)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("record of {} bytes is too large", payload.len()))
            })?;
        let mut buf = Vec::with_capacity(payload.len() + 5 + DIGEST);
        buf.push(kind);
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(payload);
        buf.extend_from_slice(&digest(kind, payload));
        self.file
            .write_all(&buf)
            .map_err(|e| Error::io(&self.path, e))?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// Serializes `value` and appends it as a record.
    pub fn write_value<T: Serialize + ?Sized>(&mut self, kind: u8, value: &T) -> Result<()> {
        let payload = encode(value)?;
        self.write(kind, &payload)
    }
}

/// Reads `buf.len()` bytes unless the file ends first; returns how many were read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The schema version of a container, after checking its magic.
pub fn schema_of(path: &Path, magic: &[u8; 8]) -> Result<u32> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    read_preamble(&mut BufReader::new(file), path, magic)
}

/// Reads the preamble, checks the magic and returns the schema version.
fn read_preamble(r: &mut impl Read, path: &Path, magic: &[u8; 8]) -> Result<u32> {
    let mut pre = [0u8; PREAMBLE as usize];
    let got = read_up_to(r, &mut pre).map_err(|e| Error::io(path, e))?;
    if got < pre.len() || &pre[..8] != magic {
        return Err(Error::format(
            path,
            format!(
                "not a {} file (expected magic {:?})",
                String::from_utf8_lossy(magic),
                String::from_utf8_lossy(magic)
            ),
        ));
    }
    Ok(u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]))
}

/// Reads every complete, intact record of a container, calling `each` on it in file order.
///
/// A wrong magic or schema is an error. A damaged record followed by more data is corruption
/// and an error; a damaged or incomplete *last* record is reported as [`Tail::Torn`] so the
/// caller decides whether that is acceptable (resuming) or not (loading a finished file).
pub fn scan(
    path: &Path,
    magic: &[u8; 8],
    schema: u32,
    mut each: impl FnMut(Record) -> Result<()>,
) -> Result<Tail> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let version = read_preamble(&mut r, path, magic)?;
    if version != schema {
        return Err(Error::format(
            path,
            format!("schema version {version}, this build reads version {schema}"),
        ));
    }
    let mut offset = PREAMBLE;
    loop {
        let mut head = [0u8; 5];
        let got = read_up_to(&mut r, &mut head).map_err(|e| Error::io(path, e))?;
        if got == 0 {
            return Ok(Tail::Clean);
        }
        let torn = |reason: String| Tail::Torn {
            valid_len: offset,
            reason,
        };
        if got < head.len() {
            return Ok(torn(format!("incomplete record header at byte {offset}")));
        }
        let kind = head[0];
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        let end = offset + 5 + u64::from(len) + DIGEST as u64;
        if len > MAX_RECORD || end > file_len {
            // A length that runs past the end: either a torn append or a corrupted length.
            // Both leave nothing readable after this point.
            return Ok(torn(format!(
                "record at byte {offset} claims {len} bytes but the file ends at byte {file_len}"
            )));
        }
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload).map_err(|e| Error::io(path, e))?;
        let mut sum = [0u8; DIGEST];
        r.read_exact(&mut sum).map_err(|e| Error::io(path, e))?;
        if sum != digest(kind, &payload) {
            if end == file_len {
                return Ok(torn(format!(
                    "last record at byte {offset} fails its checksum"
                )));
            }
            return Err(Error::format(
                path,
                format!("record at byte {offset} fails its checksum: the file is corrupted"),
            ));
        }
        each(Record {
            kind,
            offset,
            payload,
        })?;
        offset = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAGIC: &[u8; 8] = b"TESTFILE";

    fn write_file(path: &Path, payloads: &[Vec<u8>]) {
        let mut w = Writer::create(path, MAGIC, 3).unwrap();
        for (i, p) in payloads.iter().enumerate() {
            w.write(i as u8, p).unwrap();
        }
    }

    fn read_all(path: &Path) -> Result<(Vec<Vec<u8>>, Tail)> {
        let mut out = Vec::new();
        let tail = scan(path, MAGIC, 3, |r| {
            out.push(r.payload);
            Ok(())
        })?;
        Ok((out, tail))
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let payloads = vec![b"hello".to_vec(), vec![], vec![7; 100_000]];
        write_file(&path, &payloads);
        let (got, tail) = read_all(&path).unwrap();
        assert_eq!(got, payloads);
        assert_eq!(tail, Tail::Clean);
    }

    #[test]
    fn wrong_magic_and_schema_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_file(&path, &[b"x".to_vec()]);
        let e = scan(&path, b"OTHERMAG", 3, |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("not a OTHERMAG file"), "{e}");
        let e = scan(&path, MAGIC, 4, |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("schema version 3"), "{e}");
        std::fs::write(&path, b"").unwrap();
        assert!(scan(&path, MAGIC, 3, |_| Ok(())).is_err());
    }

    #[test]
    fn resume_discards_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_file(&path, &[b"one".to_vec(), b"two".to_vec()]);
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 10]).unwrap();
        let (got, tail) = read_all(&path).unwrap();
        assert_eq!(got, vec![b"one".to_vec()]);
        let Tail::Torn { valid_len, .. } = tail else {
            panic!("expected a torn tail")
        };
        let mut w = Writer::resume(&path, valid_len).unwrap();
        w.write(9, b"three").unwrap();
        let (got, tail) = read_all(&path).unwrap();
        assert_eq!(got, vec![b"one".to_vec(), b"three".to_vec()]);
        assert_eq!(tail, Tail::Clean);
    }

    proptest! {
        /// Truncating anywhere never panics and never yields a record that was not written.
        #[test]
        fn truncation_yields_a_prefix(cut in 0usize..400) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 50]).collect();
            write_file(&path, &payloads);
            let full = std::fs::read(&path).unwrap();
            let cut = cut.min(full.len());
            std::fs::write(&path, &full[..cut]).unwrap();
            if let Ok((got, _)) = read_all(&path) {
                prop_assert!(got.len() <= payloads.len());
                prop_assert_eq!(&got[..], &payloads[..got.len()]);
            }
        }

        /// Flipping any byte is detected: an error, or a torn tail that drops the damaged
        /// record; never a record with different content.
        #[test]
        fn tampering_is_detected(pos in 0usize..455, bit in 0u8..8) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 50]).collect();
            write_file(&path, &payloads);
            let mut full = std::fs::read(&path).unwrap();
            let pos = pos % full.len();
            full[pos] ^= 1 << bit;
            std::fs::write(&path, &full).unwrap();
            match read_all(&path) {
                Err(_) => {}
                Ok((got, tail)) => {
                    prop_assert!(got.len() < payloads.len() || tail != Tail::Clean);
                    prop_assert_eq!(&got[..], &payloads[..got.len()]);
                }
            }
        }
    }
}
