//! # triage-compiler: the ahead-of-time half of Triage
//!
//! Data flows zoo -> **compiler** -> runtime. This crate owns every step between a model zoo
//! plus labelled images and the schedule plan the runtime executes:
//!
//! - [`profile`]: measure every variant (and every remote upload option) on every image:
//!   logits, correctness, preprocessing and inference time, memory; crash-safe, resumable,
//!   shardable, mergeable;
//! - [`calibrate`]: temperature scaling per variant and remote option, out of fold;
//! - [`training`]: a profile as premodel training data;
//! - [`policy`]: the policy space (cascades, ensembles, premodel routers) and exact replay of a
//!   policy on profiled images;
//! - [`compile`]: nested cross-validated policy search that yields a ladder of operating
//!   points with out-of-fold expected accuracy, latency and energy under a [`device`] profile;
//! - [`offload`]: per operating point, a table by uplink bandwidth and RTT of when and how to
//!   offload to a server (confidence-based offloading x DeepDecision);
//! - [`plan`]: the versioned plan file the runtime executes.
//!
//! Files are written in the self-checking container of [`records`]. Nothing here runs at
//! request time; the runtime crate does.

pub mod calibrate;
pub mod compile;
pub mod device;
pub mod error;
pub mod offload;
pub mod plan;
pub mod policy;
pub mod profile;
pub mod records;
pub mod training;

pub use error::{Error, Result};
pub use profile::Profile;
