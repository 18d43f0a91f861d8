//! The uplink offloading goes over during replay: a constant link, or a mahimahi trace of
//! real cellular capacity (the same traces `triage netem` replays). Image `k` of the sequence
//! is offered at `k x device.request_interval_ms`, so every policy sees the same network
//! conditions for the same image.

use std::path::{Path, PathBuf};

use triage_runtime::link::Trace;

use crate::error::Result;

/// Bytes of a reply: 1000 float32 logits.
pub const REPLY_BYTES: f64 = 4000.0;

#[derive(Debug, Clone)]
enum Capacity {
    Constant { up_mbps: f64, down_mbps: f64 },
    Trace { up: Trace, down: Option<Trace> },
}

/// A link: capacity over time, a fixed round-trip time and the radio (a `[radio.<name>]`
/// table of the device profile) whose power model prices the transfer.
#[derive(Debug, Clone)]
pub struct Link {
    pub radio: String,
    pub rtt_ms: f64,
    capacity: Capacity,
}

/// One request's transfer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transfer {
    /// Upload + reply + one round trip, ms.
    pub ms: f64,
    /// Effective throughputs of the two directions, Mbit/s.
    pub up_mbps: f64,
    pub down_mbps: f64,
}

impl Link {
    /// A link of constant capacity.
    pub fn constant(radio: &str, up_mbps: f64, down_mbps: f64, rtt_ms: f64) -> Self {
        Link {
            radio: radio.to_string(),
            rtt_ms,
            capacity: Capacity::Constant {
                up_mbps: up_mbps.max(1e-3),
                down_mbps: down_mbps.max(1e-3),
            },
        }
    }

    /// A link replaying an uplink trace; the matching downlink trace (`X.down` beside
    /// `X.up`) is used for replies when it exists, else replies cross at the uplink's pace.
    pub fn from_trace(path: &Path, radio: &str, rtt_ms: f64) -> Result<Self> {
        let up = Trace::load(path)?;
        let down_path: Option<PathBuf> = path
            .to_str()
            .and_then(|s| s.strip_suffix(".up"))
            .map(|s| PathBuf::from(format!("{s}.down")))
            .filter(|p| p.is_file());
        let down = match down_path {
            Some(p) => Some(Trace::load(&p)?),
            None => None,
        };
        Ok(Link {
            radio: radio.to_string(),
            rtt_ms,
            capacity: Capacity::Trace { up, down },
        })
    }

    /// Uploading `up_bytes` offered at `start_ms` and receiving the reply.
    pub fn transfer(&self, start_ms: f64, up_bytes: f64) -> Transfer {
        match &self.capacity {
            Capacity::Constant { up_mbps, down_mbps } => {
                let up_ms = up_bytes * 8.0 / (up_mbps * 1e3);
                let down_ms = REPLY_BYTES * 8.0 / (down_mbps * 1e3);
                Transfer {
                    ms: up_ms + down_ms + self.rtt_ms,
                    up_mbps: *up_mbps,
                    down_mbps: *down_mbps,
                }
            }
            Capacity::Trace { up, down } => {
                let up_done = up.delivery_time_ms(start_ms, up_bytes.max(0.0).ceil() as u64);
                let up_ms = (up_done - start_ms).max(0.0);
                let reply_at = up_done + self.rtt_ms;
                let down_ms = match down {
                    Some(d) => {
                        (d.delivery_time_ms(reply_at, REPLY_BYTES as u64) - reply_at).max(0.0)
                    }
                    None => (up.delivery_time_ms(reply_at, REPLY_BYTES as u64) - reply_at).max(0.0),
                };
                let mbps = |bytes: f64, ms: f64| {
                    if ms > 0.0 {
                        bytes * 8.0 / (ms * 1e3)
                    } else {
                        // Crossed within the millisecond: the trace's peak is ~12 Mbit/s per
                        // opportunity per ms; report the rate of one packet per ms.
                        12.0
                    }
                };
                Transfer {
                    ms: up_ms + down_ms + self.rtt_ms,
                    up_mbps: mbps(up_bytes, up_ms),
                    down_mbps: mbps(REPLY_BYTES, down_ms),
                }
            }
        }
    }

    /// The uplink throughput a device would have measured just before `at_ms` (capacity
    /// over the preceding second), Mbit/s.
    pub fn measured_up_mbps(&self, at_ms: f64) -> f64 {
        match &self.capacity {
            Capacity::Constant { up_mbps, .. } => *up_mbps,
            Capacity::Trace { up, .. } => {
                let from = (at_ms - 1000.0).max(0.0);
                let to = from + 1000.0;
                up.capacity_bps(from, to) / 1e6
            }
        }
    }

    /// A one-line description for reports.
    pub fn describe(&self) -> String {
        match &self.capacity {
            Capacity::Constant { up_mbps, down_mbps } => format!(
                "constant {up_mbps:.1} Mbit/s up, {down_mbps:.1} Mbit/s down, RTT {:.0} ms, {} radio",
                self.rtt_ms, self.radio
            ),
            Capacity::Trace { up, down } => {
                let mean = up.capacity_bps(0.0, up.period_ms() as f64) / 1e6;
                format!(
                    "mahimahi trace {} ({:.0} s loop, mean {mean:.2} Mbit/s up{}), RTT {:.0} ms, {} radio",
                    up.path().display(),
                    up.period_ms() as f64 / 1e3,
                    if down.is_some() { ", downlink trace beside it" } else { "" },
                    self.rtt_ms,
                    self.radio
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_link_times() {
        let l = Link::constant("lte", 8.0, 8.0, 50.0);
        let t = l.transfer(0.0, 10_000.0);
        // 80 kbit at 8 Mbit/s = 10 ms; 32 kbit reply = 4 ms; + 50 ms RTT.
        assert!((t.ms - 64.0).abs() < 1e-9, "{t:?}");
        assert_eq!(l.measured_up_mbps(123.0), 8.0);
    }

    #[test]
    fn trace_link_follows_capacity() {
        // One packet every ms: 12 Mbit/s.
        let stamps: Vec<u64> = (1..=1000).collect();
        let up = Trace::from_stamps(stamps, "x.up").unwrap();
        let l = Link {
            radio: "lte".into(),
            rtt_ms: 20.0,
            capacity: Capacity::Trace { up, down: None },
        };
        let t = l.transfer(0.0, 15_000.0);
        // 10 packets from t=0: opportunities at 1..=10 ms; reply 3 packets after +20 ms.
        assert!((t.ms - (10.0 + 20.0 + 3.0)).abs() < 1.0 + 1e-9, "{t:?}");
        assert!((l.measured_up_mbps(1500.0) - 12.0).abs() < 0.1);
    }
}
