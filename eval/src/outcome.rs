//! What a policy did on one image, and the families policies belong to. Metrics, the
//! report and the plots read only these records, so any source of outcomes - replay of a
//! profile or the runtime classifying image files live ([`crate::live`]) - feeds the same code.

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Who produced the final answer for an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    /// A local variant (column in cost order).
    Local(usize),
    /// An ensemble of local variants (bit mask over columns).
    Ensemble(u32),
    /// A remote option (index in the profile's remote list).
    Remote(usize),
}

/// One policy on one image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Position of the image in the evaluated sequence.
    pub image: usize,
    pub correct: bool,
    pub top5: bool,
    /// End-to-end latency on the device, ms.
    pub latency_ms: f64,
    /// Device energy: compute plus radio, mJ.
    pub energy_mj: f64,
    /// Cloud cost, USD.
    pub usd: f64,
    pub upload_bytes: f64,
    pub answer: Answer,
    /// For policies that walk a ladder of operating points: the point used.
    pub level: Option<usize>,
}

/// The family a policy belongs to (the `family` field of the JSON output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Single,
    Remote,
    Oracle,
    Random,
    TaylorKnn,
    Cascade,
    CascadeCalibrated,
    Mcdnn,
    Deepdecision,
    Triage,
}

impl Family {
    pub const ALL: [Family; 10] = [
        Family::Single,
        Family::Remote,
        Family::Oracle,
        Family::Random,
        Family::TaylorKnn,
        Family::Cascade,
        Family::CascadeCalibrated,
        Family::Mcdnn,
        Family::Deepdecision,
        Family::Triage,
    ];

    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Family::Single => "single",
            Family::Remote => "remote",
            Family::Oracle => "oracle",
            Family::Random => "random",
            Family::TaylorKnn => "taylor-knn",
            Family::Cascade => "cascade",
            Family::CascadeCalibrated => "cascade-calibrated",
            Family::Mcdnn => "mcdnn",
            Family::Deepdecision => "deepdecision",
            Family::Triage => "triage",
        }
    }
}

/// Every outcome of one policy over the evaluated images, sorted by image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyRun {
    pub name: String,
    pub family: Family,
    /// What the policy is and what it was fitted to, in words.
    pub detail: String,
    pub outcomes: Vec<Outcome>,
}

impl PolicyRun {
    pub fn new(name: impl Into<String>, family: Family, detail: impl Into<String>) -> Self {
        PolicyRun {
            name: name.into(),
            family,
            detail: detail.into(),
            outcomes: Vec::new(),
        }
    }
}

/// A source of per-image outcomes for a set of policies: replay of a profile
/// ([`crate::harness`]) or a live run of the runtime ([`crate::live`]).
pub trait OutcomeSource {
    /// Human-readable description of where the outcomes come from.
    fn describe(&self) -> String;
    /// Every policy's outcomes, all over the same images in the same order.
    fn runs(&mut self) -> Result<Vec<PolicyRun>>;
}
