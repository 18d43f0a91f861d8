//! # triage-eval: how much Triage saves, measured honestly
//!
//! Users judge Triage by one question: against what they would otherwise do, how much
//! accuracy, time, energy and money does it save? This crate answers it. It replays Triage's
//! operating points and the published alternatives on the per-image measurements of a
//! profile the plan was not compiled on (or out of fold, refitting everything that learns on
//! training folds only), and reports accuracy, latency, energy, cloud cost and budget
//! adherence with bootstrap confidence intervals:
//!
//! - [`data`]: a profile as replay data (what every variant and upload option answered);
//! - [`network`]: the link uploads cross (constant, or a mahimahi capacity trace);
//! - [`policies`]: single variants, always-remote, oracle, random, Taylor et al.'s kNN
//!   premodel, IDK cascades and confidence-based offloading (raw and calibrated), MCDNN,
//!   DeepDecision and every Triage operating point, behind one [`policies::Contender`] trait;
//! - [`harness`]: cross-validation and held-out replay;
//! - [`live`]: the runtime itself classifying the image files at every operating point, and
//!   the check of live against replay;
//! - [`outcome`]: the per-image outcome records every source (replay or live) produces and
//!   every metric reads;
//! - [`metrics`], [`stream`], [`report`]: numbers, the budgeted stream, `report.md`,
//!   `report.json` and figures.
//!
//! Data flows profile (+ plan) -> eval -> report; only [`live`] runs networks, through the
//! runtime.

pub mod data;
pub mod error;
pub mod evaluate;
pub mod harness;
pub mod images;
pub mod live;
pub mod metrics;
pub mod network;
pub mod outcome;
pub mod policies;
pub mod report;
pub mod stream;

pub use error::{Error, Result};
pub use evaluate::{evaluate, EvalInputs, Evaluation, ProfileInput};
pub use outcome::{Family, Outcome, OutcomeSource, PolicyRun};
pub use report::{Report, SCHEMA};
