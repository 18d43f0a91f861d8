//! # triage-compiler: the ahead-of-time half of Triage
//!
//! Data flows zoo -> **compiler** -> runtime. This crate will own every step between a model
//! zoo plus labelled images and the schedule plan the runtime executes: profiling, calibration,
//! premodel training and policy search.
