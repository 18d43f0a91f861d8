//! # triage-runtime: executing a schedule plan, image by image
//!
//! Data flows zoo -> compiler -> **runtime**. This crate is what ships inside an application:
//! it loads a plan written by the compiler, verifies it against the zoo, and for every input
//! decides what to run locally, when to escalate on low calibrated confidence and when to
//! offload to a remote server, while pacing an energy budget and a cloud-cost budget and
//! adapting to the network conditions it measures. It also holds the server side of
//! offloading (the Open Inference Protocol v2 endpoint behind `triage serve`).
//!
//! - [`Runtime`] ([`executor`]): opens a plan against a zoo and classifies images, choosing
//!   the operating point per request ([`decide`]) under energy and cloud budgets that are
//!   paced and never exceeded ([`budget`]), escalating on calibrated confidence and
//!   offloading by the plan's network table;
//! - [`remote`]: [`RemoteClient`], a blocking Open Inference Protocol v2 client for any
//!   conforming server (Triton, KServe, `triage serve`) with deadlines, bounded retries, a
//!   circuit breaker, validated replies, typed errors and per-call timings;
//! - [`network`]: [`NetworkEstimator`], uplink throughput and RTT from recent transfers
//!   (windowed median), with staleness so the caller knows when to probe;
//! - [`link`]: [`LinkEmulator`], a loopback TCP proxy replaying mahimahi cellular traces, to
//!   test all of the above over a realistic link without kernel traffic shaping;
//! - [`server`] (feature `server`, on by default): the v2 REST server on axum/tokio, with a
//!   bounded worker pool, back-pressure, Prometheus metrics and graceful shutdown;
//! - [`v2`]: the wire format both sides share.
//!
//! Applications that only offload can drop the server and its async stack with
//! `default-features = false`.

pub mod budget;
pub mod decide;
pub mod execute;
pub mod executor;
pub mod link;
pub mod network;
pub mod remote;
#[cfg(feature = "server")]
pub mod server;
pub mod v2;

pub use budget::{Budget, BudgetConfig, BudgetError, Cost};
pub use decide::{Decision, Ladder, NetworkView, Preference, Request};
pub use executor::{Outcome, RemoteUse, Runtime, RuntimeConfig, RuntimeError, Status, Stream};
pub use link::{LinkConfig, LinkEmulator, Trace};
pub use network::{NetworkEstimate, NetworkEstimator};
pub use remote::{Payload, RemoteClient, RemoteConfig, RemoteError, RemoteReply, RemoteTiming};
#[cfg(feature = "server")]
pub use server::{ServeConfig, ServeError, ServerHandle};
