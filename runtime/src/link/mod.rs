//! Trace-driven link emulation in user space, for testing offloading over a realistic
//! cellular link where kernel traffic shaping (tc/netem, mahimahi's shells) is unavailable.
//!
//! [`LinkEmulator`] is a loopback TCP proxy: every connection accepted on its listening
//! address is forwarded to an upstream address, and the bytes of each direction cross an
//! emulated link that delivers at most 1500 bytes at each delivery opportunity of a mahimahi
//! [`Trace`] (queued bytes wait for the next opportunity; opportunities with nothing queued
//! are lost), then a fixed one-way delay later (half the configured RTT). Trace time starts
//! when the proxy starts and runs on across connections, as a moving phone's link would;
//! all connections share each direction's opportunities first come, first served (one
//! queue per direction, as in mahimahi). A bounded queue per connection and direction makes
//! TCP back-pressure reach the sender. Losses and the trace's own packet drops are not
//! modelled: TCP would hide them behind retransmissions that the capacity already bounds.

mod proxy;
mod trace;

pub use proxy::{LinkConfig, LinkEmulator, LinkError};
pub use trace::{Trace, TraceError, PACKET_BYTES};
