//! Profiles of schema 1, written before the backend was part of a profile's identity. Every
//! one of them was measured with tract (the only backend then), so loading one records
//! `backend = "tract"` and the tract version it names; nothing else changed between the
//! schemas, and such a file can still be resumed and merged with tract runs.

use serde::{Deserialize, Serialize};

use super::{DatasetInfo, Header, Host, RemoteOption, VariantInfo};

/// [`Host`] as schema 1 stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostV1 {
    pub cpu: String,
    pub logical_cores: u32,
    pub threads: u32,
    pub intra_op_threads: u32,
    pub backend: String,
    pub tract_version: String,
    pub os: String,
}

/// [`Header`] as schema 1 stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeaderV1 {
    pub tool_version: String,
    pub created: String,
    pub zoo_fingerprint: String,
    pub variants: Vec<VariantInfo>,
    pub remote: Vec<RemoteOption>,
    pub dataset: DatasetInfo,
    pub shard: Option<(u32, u32)>,
    pub range: (u32, u32),
    pub apply_orientation: bool,
    pub decode_min_shorter_side: Option<u32>,
    pub feature_set_version: u32,
    pub feature_names: Vec<String>,
    pub host: HostV1,
}

impl HeaderV1 {
    /// The same header in the current schema: measured with tract.
    pub fn into_current(self) -> Header {
        let h = self.host;
        Header {
            tool_version: self.tool_version,
            created: self.created,
            zoo_fingerprint: self.zoo_fingerprint,
            variants: self.variants,
            remote: self.remote,
            dataset: self.dataset,
            shard: self.shard,
            range: self.range,
            apply_orientation: self.apply_orientation,
            decode_min_shorter_side: self.decode_min_shorter_side,
            feature_set_version: self.feature_set_version,
            feature_names: self.feature_names,
            host: Host {
                cpu: h.cpu,
                logical_cores: h.logical_cores,
                threads: h.threads,
                intra_op_threads: h.intra_op_threads,
                backend: "tract".to_string(),
                backend_version: h.tract_version.clone(),
                tract_version: h.tract_version,
                os: h.os,
            },
        }
    }
}
