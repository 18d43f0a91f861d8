//! # triage-runtime: executing a schedule plan, image by image
//!
//! Data flows zoo -> compiler -> **runtime**. This crate is what ships inside an application:
//! it loads a plan written by the compiler, verifies it against the zoo, and for every input
//! decides what to run locally, when to escalate on low calibrated confidence and when to
//! offload to a remote server, while pacing an energy budget and a cloud-cost budget and
//! adapting to the network conditions it measures. It also holds the server side of
//! offloading (the Open Inference Protocol v2 endpoint behind `triage serve`).
