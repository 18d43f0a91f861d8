//! Offloading by network condition: for every operating point, a decision table indexed by
//! uplink bandwidth and round-trip time that says whether to send images the local chain is
//! unsure about to a server, with which upload option (server variant x resolution x JPEG
//! quality), and below which calibrated confidence.
//!
//! This combines two published rules. Confidence-based offloading (CBO, INFOCOM 2022) runs
//! the local model first and offloads only when its calibrated confidence is low, choosing
//! the upload resolution by network conditions; DeepDecision (INFOCOM 2018) chooses local vs
//! remote and the upload resolution/bit rate by measured bandwidth to maximize accuracy under
//! a latency limit. Here the local part is the operating point's (possibly cascaded) policy;
//! after it answers with calibrated confidence `c`, an image is offloaded when
//! `c < below`, and each cell of the table picks `(option, below)` to maximize expected top-1
//! subject to the point's latency limit and the compile's energy and cost targets. A cell
//! where nothing beats staying local says so (`None`).
//!
//! Because the local answer is already computed when the offload decision is taken, a failed
//! or late remote call costs accuracy, never an answer.

use serde::{Deserialize, Serialize};

/// Upper edges of the uplink buckets, Mbit/s (bucket `b` is `[edges[b-1], edges[b])`).
pub const UP_MBPS_EDGES: [f64; 6] = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0];
/// Upper edges of the round-trip-time buckets, ms.
pub const RTT_MS_EDGES: [f64; 4] = [30.0, 60.0, 120.0, 250.0];
/// Offload thresholds the search tries.
pub const BELOW: [f32; 8] = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];
/// Bytes of a logits reply (1000 FP32 values as JSON numbers).
pub const REPLY_BYTES: f64 = 12_000.0;
/// An offloading cell must beat staying local by at least this much top-1 on the images it
/// is chosen on, so that noise alone does not buy radio energy and cloud cost.
pub const MIN_GAIN: f64 = 0.002;

/// What a cell is expected to achieve, out of fold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CellExpected {
    pub top1: f64,
    /// Mean device latency per image (local + remote), ms.
    pub mean_ms: f64,
    pub energy_mj: f64,
    pub usd_per_1000: f64,
    pub upload_kb: f64,
    /// Fraction of images sent to the server.
    pub offload_rate: f64,
}

/// One cell's decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Index into the plan's remote options.
    pub option: usize,
    /// Offload when the local answer's calibrated confidence is below this.
    pub below: f32,
    pub expected: CellExpected,
}

/// The decision table of one operating point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffloadTable {
    /// The device radio (`[radio.<link>]`) whose power model the energies use.
    pub link: String,
    pub up_mbps_edges: Vec<f64>,
    pub rtt_ms_edges: Vec<f64>,
    /// Latency limit the cells were chosen under (mean device ms per image).
    pub latency_limit_ms: f64,
    /// Row-major `[up bucket][rtt bucket]`; `None`: stay local.
    pub cells: Vec<Option<Cell>>,
}

/// Index of the bucket of `x` among ascending upper `edges`.
pub fn bucket(edges: &[f64], x: f64) -> usize {
    edges.iter().take_while(|&&e| x >= e).count()
}

/// A value representative of bucket `b`: the geometric middle of its edges (the outer
/// buckets extend their neighbour's width).
pub fn representative(edges: &[f64], b: usize) -> f64 {
    let n = edges.len();
    match (b, n) {
        (_, 0) => 1.0,
        (0, _) => edges[0] / 1.5,
        (b, n) if b >= n => edges[n - 1] * 1.5,
        (b, _) => (edges[b - 1] * edges[b]).sqrt(),
    }
}

impl OffloadTable {
    pub fn n_up(&self) -> usize {
        self.up_mbps_edges.len() + 1
    }

    pub fn n_rtt(&self) -> usize {
        self.rtt_ms_edges.len() + 1
    }

    /// The decision for measured uplink throughput and RTT.
    pub fn lookup(&self, up_mbps: f64, rtt_ms: f64) -> Option<&Cell> {
        let u = bucket(&self.up_mbps_edges, up_mbps);
        let r = bucket(&self.rtt_ms_edges, rtt_ms);
        self.cells.get(u * self.n_rtt() + r)?.as_ref()
    }

    /// Whether any cell offloads.
    pub fn ever_offloads(&self) -> bool {
        self.cells.iter().any(Option::is_some)
    }

    /// Consistency checks for plan validation.
    pub fn validate(&self, n_remote: usize) -> std::result::Result<(), String> {
        let ascending = |e: &[f64]| {
            e.iter().all(|x| x.is_finite() && *x > 0.0) && e.windows(2).all(|w| w[0] < w[1])
        };
        if !ascending(&self.up_mbps_edges) || !ascending(&self.rtt_ms_edges) {
            return Err("bucket edges must be positive and ascending".into());
        }
        if self.cells.len() != self.n_up() * self.n_rtt() {
            return Err(format!(
                "{} cells for a {}x{} table",
                self.cells.len(),
                self.n_up(),
                self.n_rtt()
            ));
        }
        for c in self.cells.iter().flatten() {
            if c.option >= n_remote {
                return Err(format!("cell names remote option {}", c.option));
            }
            if !(c.below > 0.0 && c.below <= 1.0) {
                return Err(format!("offload threshold {}", c.below));
            }
        }
        Ok(())
    }
}

/// Per-image facts about one remote option, for the search.
#[derive(Debug, Clone)]
pub struct RemoteColumn {
    /// Whether the server's answer is right, per image.
    pub ok: Vec<bool>,
    pub upload_bytes: Vec<f64>,
    /// Device time to resize and encode the upload, ms (already device-scaled).
    pub encode_ms: Vec<f64>,
    /// Server time per request (device-independent), ms.
    pub server_ms: f64,
    /// Cloud cost of one request, USD.
    pub usd: f64,
}

/// The local outcome of one image under a point's policy, device-scaled.
#[derive(Debug, Clone, Copy)]
pub struct LocalOutcome {
    pub correct: bool,
    pub conf: f32,
    pub ms: f64,
    pub energy_mj: f64,
}

/// Constraints a cell must meet (means per image).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub latency_ms: f64,
    pub energy_mj: Option<f64>,
    pub usd_per_1000: Option<f64>,
}

/// Network conditions of one cell and the radio cost model.
pub struct Network<'a> {
    pub device: &'a crate::device::Device,
    pub link: &'a str,
    pub up_mbps: f64,
    pub rtt_ms: f64,
}

impl Network<'_> {
    /// Device time, radio energy and cost of offloading image `i` to `col`.
    fn remote_cost(&self, col: &RemoteColumn, i: usize) -> (f64, f64) {
        let (radio_mj, transfer_ms) = self
            .device
            .radio_cost(
                self.link,
                col.upload_bytes[i],
                REPLY_BYTES,
                self.up_mbps,
                self.up_mbps,
            )
            .unwrap_or((0.0, f64::INFINITY));
        let ms = col.encode_ms[i] + self.rtt_ms + transfer_ms + col.server_ms;
        let encode_mj = col.encode_ms[i] * self.device.compute.active_w;
        (ms, radio_mj + encode_mj)
    }
}

/// Scores `(col, below)` on `images`.
pub fn evaluate(
    local: &[LocalOutcome],
    col: &RemoteColumn,
    below: f32,
    net: &Network<'_>,
    images: &[usize],
) -> CellExpected {
    let mut e = CellExpected {
        top1: 0.0,
        mean_ms: 0.0,
        energy_mj: 0.0,
        usd_per_1000: 0.0,
        upload_kb: 0.0,
        offload_rate: 0.0,
    };
    for &i in images {
        let l = local[i];
        e.mean_ms += l.ms;
        e.energy_mj += l.energy_mj;
        if l.conf < below {
            let (ms, mj) = net.remote_cost(col, i);
            e.top1 += f64::from(u8::from(col.ok[i]));
            e.mean_ms += ms;
            e.energy_mj += mj;
            e.usd_per_1000 += 1000.0 * col.usd;
            e.upload_kb += col.upload_bytes[i] / 1e3;
            e.offload_rate += 1.0;
        } else {
            e.top1 += f64::from(u8::from(l.correct));
        }
    }
    let n = images.len().max(1) as f64;
    e.top1 /= n;
    e.mean_ms /= n;
    e.energy_mj /= n;
    e.usd_per_1000 /= n;
    e.upload_kb /= n;
    e.offload_rate /= n;
    e
}

/// The best `(option, below)` on `images` under `limits`, or `None` when staying local is as
/// good.
pub fn choose(
    local: &[LocalOutcome],
    cols: &[RemoteColumn],
    net: &Network<'_>,
    limits: &Limits,
    images: &[usize],
) -> Option<(usize, f32)> {
    let local_top1 =
        images.iter().filter(|&&i| local[i].correct).count() as f64 / images.len().max(1) as f64;
    let mut best: Option<(usize, f32, f64, f64)> = None;
    for (r, col) in cols.iter().enumerate() {
        for &below in &BELOW {
            let e = evaluate(local, col, below, net, images);
            let fits = e.mean_ms <= limits.latency_ms
                && limits.energy_mj.is_none_or(|x| e.energy_mj <= x)
                && limits.usd_per_1000.is_none_or(|x| e.usd_per_1000 <= x);
            if !fits || e.top1 < local_top1 + MIN_GAIN {
                continue;
            }
            let better = best.is_none_or(|(_, _, top1, ms)| {
                e.top1 > top1 + 1e-12 || (e.top1 > top1 - 1e-12 && e.mean_ms < ms)
            });
            if better {
                best = Some((r, below, e.top1, e.mean_ms));
            }
        }
    }
    best.map(|(r, below, _, _)| (r, below))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_representatives() {
        let e = [1.0, 10.0];
        assert_eq!(bucket(&e, 0.2), 0);
        assert_eq!(bucket(&e, 1.0), 1);
        assert_eq!(bucket(&e, 9.9), 1);
        assert_eq!(bucket(&e, 50.0), 2);
        for b in 0..3 {
            assert_eq!(bucket(&e, representative(&e, b)), b);
        }
        for b in 0..=UP_MBPS_EDGES.len() {
            assert_eq!(bucket(&UP_MBPS_EDGES, representative(&UP_MBPS_EDGES, b)), b);
        }
    }

    fn device() -> crate::device::Device {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../devices/phone.toml");
        crate::device::Device::load(&path).unwrap()
    }

    /// Local answers are right on confident images only; the server is always right.
    fn case() -> (Vec<LocalOutcome>, Vec<RemoteColumn>) {
        let local = (0..10)
            .map(|i| LocalOutcome {
                correct: i < 7,
                conf: if i < 7 { 0.95 } else { 0.4 },
                ms: 10.0,
                energy_mj: 25.0,
            })
            .collect();
        let col = RemoteColumn {
            ok: vec![true; 10],
            upload_bytes: vec![20_000.0; 10],
            encode_ms: vec![1.0; 10],
            server_ms: 20.0,
            usd: 1e-6,
        };
        (local, vec![col])
    }

    #[test]
    fn offloads_the_unsure_images_when_the_network_allows() {
        let d = device();
        let (local, cols) = case();
        let images: Vec<usize> = (0..10).collect();
        let fast = Network {
            device: &d,
            link: "wifi",
            up_mbps: 20.0,
            rtt_ms: 20.0,
        };
        let limits = Limits {
            latency_ms: 40.0,
            energy_mj: None,
            usd_per_1000: None,
        };
        let (r, below) = choose(&local, &cols, &fast, &limits, &images).unwrap();
        assert_eq!(r, 0);
        assert!(below > 0.4 && below <= 0.95, "{below}");
        let e = evaluate(&local, &cols[0], below, &fast, &images);
        assert_eq!(e.top1, 1.0);
        assert!((e.offload_rate - 0.3).abs() < 1e-12);
        assert!(e.mean_ms <= 40.0 && e.usd_per_1000 > 0.0 && e.upload_kb > 0.0);
        // A slow uplink makes every option too slow for the limit.
        let slow = Network {
            up_mbps: 0.1,
            rtt_ms: 300.0,
            ..fast
        };
        assert!(choose(&local, &cols, &slow, &limits, &images).is_none());
        // A tight cost target forbids offloading too.
        let cheap = Limits {
            usd_per_1000: Some(1e-4),
            ..limits
        };
        assert!(choose(&local, &cols, &fast, &cheap, &images).is_none());
    }

    #[test]
    fn validation_catches_bad_tables() {
        let ok = OffloadTable {
            link: "lte".into(),
            up_mbps_edges: vec![1.0, 5.0],
            rtt_ms_edges: vec![50.0],
            latency_limit_ms: 50.0,
            cells: vec![None; 6],
        };
        assert!(ok.validate(1).is_ok());
        let mut bad = ok.clone();
        bad.cells.pop();
        assert!(bad.validate(1).is_err());
        let mut bad = ok.clone();
        bad.up_mbps_edges = vec![5.0, 1.0];
        assert!(bad.validate(1).is_err());
        let mut bad = ok;
        bad.cells[0] = Some(Cell {
            option: 3,
            below: 0.5,
            expected: CellExpected {
                top1: 0.0,
                mean_ms: 0.0,
                energy_mj: 0.0,
                usd_per_1000: 0.0,
                upload_kb: 0.0,
                offload_rate: 0.0,
            },
        });
        assert!(bad.validate(1).is_err());
    }
}
