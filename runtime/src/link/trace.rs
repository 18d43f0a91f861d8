//! Mahimahi link traces: when the link may deliver a packet.
//!
//! One integer per line, a millisecond timestamp at which one 1500-byte packet may cross the
//! link (repeated k times: k packets in that millisecond). The trace loops: after the last
//! line it starts again with every time shifted by the last timestamp, exactly as mahimahi's
//! link shell replays it. Delivery opportunity number `j` (0-based, over the looped trace) is
//! at `stamps[j mod n] + (j div n) * last`.

use std::path::{Path, PathBuf};

/// Bytes one delivery opportunity carries.
pub const PACKET_BYTES: u64 = 1500;

/// A trace that cannot be used, naming the file and, where it applies, the line.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A parsed, validated link trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    path: PathBuf,
    stamps: Vec<u64>,
}

impl Trace {
    /// Reads and parses a trace file.
    pub fn load(path: &Path) -> Result<Self, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses trace text; `path` names the source in errors. Blank lines and surrounding
    /// whitespace are ignored; timestamps must not decrease and the last must be positive
    /// (it is the period of the loop).
    pub fn parse(text: &str, path: &Path) -> Result<Self, TraceError> {
        let mut stamps = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let s = raw.trim();
            if s.is_empty() {
                continue;
            }
            let err = |message: String| TraceError::Parse {
                path: path.to_path_buf(),
                line,
                message,
            };
            let t: u64 = s.parse().map_err(|_| {
                let shown: String = s.chars().take(40).collect();
                err(format!(
                    "expected a millisecond timestamp (a non-negative integer), got '{shown}'"
                ))
            })?;
            if let Some(&prev) = stamps.last() {
                if t < prev {
                    return Err(err(format!(
                        "timestamp {t} is before the previous line's {prev} (timestamps must not decrease)"
                    )));
                }
            }
            stamps.push(t);
        }
        let invalid = |message: &str| TraceError::Invalid {
            path: path.to_path_buf(),
            message: message.to_string(),
        };
        match stamps.last() {
            None => Err(invalid("no timestamps: an empty trace can deliver nothing")),
            Some(0) => Err(invalid(
                "the last timestamp is 0: the trace has no duration to repeat over",
            )),
            Some(_) => Ok(Trace {
                path: path.to_path_buf(),
                stamps,
            }),
        }
    }

    /// A trace from timestamps already in memory (validated like a file).
    pub fn from_stamps(stamps: Vec<u64>, name: &str) -> Result<Self, TraceError> {
        let text: String = stamps.iter().map(|s| format!("{s}\n")).collect();
        Self::parse(&text, Path::new(name))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The timestamps of one period.
    pub fn stamps(&self) -> &[u64] {
        &self.stamps
    }

    /// Length of one loop in milliseconds (the last timestamp).
    pub fn period_ms(&self) -> u64 {
        self.stamps.last().copied().unwrap_or(1)
    }

    /// Trace time (ms) of delivery opportunity `j` of the looped trace.
    pub fn opportunity_time(&self, j: u64) -> u64 {
        let n = self.stamps.len() as u64;
        self.stamps[(j % n) as usize] + (j / n) * self.period_ms()
    }

    /// Index of the first opportunity at or after trace time `t_ms` (negative times count
    /// as 0).
    pub fn first_opportunity_at_or_after(&self, t_ms: f64) -> u64 {
        let t = t_ms.max(0.0);
        let n = self.stamps.len() as u64;
        let p = self.period_ms();
        let k = (t / p as f64).floor() as u64;
        // The previous period's last opportunities can sit exactly at k * p.
        for kk in [k.saturating_sub(1), k, k + 1] {
            let offset = t - (kk * p) as f64;
            let i = self.stamps.partition_point(|&s| (s as f64) < offset) as u64;
            if i < n {
                return kk * n + i;
            }
        }
        (k + 2) * n
    }

    /// Trace time (ms) at which the last of `bytes` bytes offered at `start_ms` has crossed
    /// the link: walk forward from `start_ms` until `ceil(bytes / 1500)` opportunities have
    /// passed. Zero bytes cross at once.
    pub fn delivery_time_ms(&self, start_ms: f64, bytes: u64) -> f64 {
        let packets = bytes.div_ceil(PACKET_BYTES);
        if packets == 0 {
            return start_ms;
        }
        let j = self.first_opportunity_at_or_after(start_ms) + packets - 1;
        self.opportunity_time(j) as f64
    }

    /// Mean capacity in bit/s over `[from_ms, to_ms)` of the looped trace.
    pub fn capacity_bps(&self, from_ms: f64, to_ms: f64) -> f64 {
        if to_ms <= from_ms {
            return 0.0;
        }
        let a = self.first_opportunity_at_or_after(from_ms);
        let b = self.first_opportunity_at_or_after(to_ms);
        (b - a) as f64 * PACKET_BYTES as f64 * 8.0 / ((to_ms - from_ms) / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Result<Trace, TraceError> {
        Trace::parse(text, Path::new("t.up"))
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("1\n2\n\nx3\n").unwrap_err().to_string();
        assert!(e.starts_with("t.up:4: "), "{e}");
        let e = parse("5\n3\n").unwrap_err().to_string();
        assert!(e.starts_with("t.up:2: ") && e.contains("before"), "{e}");
        let e = parse("-1\n").unwrap_err().to_string();
        assert!(e.starts_with("t.up:1: "), "{e}");
        assert!(parse("\n\n")
            .unwrap_err()
            .to_string()
            .contains("no timestamps"));
        assert!(parse("0\n0\n")
            .unwrap_err()
            .to_string()
            .contains("last timestamp is 0"));
        let missing = Trace::load(Path::new("/nonexistent/x.up")).unwrap_err();
        assert_eq!(missing.to_string(), "cannot read trace /nonexistent/x.up");
    }

    #[test]
    fn loops_like_mahimahi() {
        // Opportunities: 0, 2, 2, 5 | 5, 7, 7, 10 | 10, ...
        let t = parse("0\n2\n2\n5\n").unwrap();
        let times: Vec<u64> = (0..9).map(|j| t.opportunity_time(j)).collect();
        assert_eq!(times, vec![0, 2, 2, 5, 5, 7, 7, 10, 10]);
        assert_eq!(t.first_opportunity_at_or_after(0.0), 0);
        assert_eq!(t.first_opportunity_at_or_after(0.5), 1);
        assert_eq!(t.first_opportunity_at_or_after(5.0), 3);
        assert_eq!(t.first_opportunity_at_or_after(5.5), 5);
        assert_eq!(t.first_opportunity_at_or_after(10.0), 7);
        // 4 packets from t = 1: opportunities at 2, 2, 5, 5.
        assert_eq!(t.delivery_time_ms(1.0, 4 * 1500), 5.0);
        assert_eq!(t.delivery_time_ms(1.0, 4 * 1500 + 1), 7.0);
        assert_eq!(t.delivery_time_ms(3.0, 0), 3.0);
        // 4 packets per 5 ms = 9.6 Mbit/s (over whole periods; [0, 500) misses one of
        // the two opportunities at 500 and has the one at 0).
        assert!((t.capacity_bps(0.5, 500.5) - 9.6e6).abs() < 1e-6);
        assert!((t.capacity_bps(0.0, 500.0) - 399.0 * 1500.0 * 8.0 / 0.5).abs() < 1e-6);
    }

    #[test]
    fn shared_traces_parse() {
        let dir = std::env::var_os("TRIAGE_SHARED")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
            .join("network-traces");
        let t = Trace::load(&dir.join("TMobile-LTE-short.up")).unwrap();
        // README: 140 s, mean 13.32 Mbit/s.
        assert!(
            (139_000..141_000).contains(&t.period_ms()),
            "{}",
            t.period_ms()
        );
        let mean = t.capacity_bps(0.0, t.period_ms() as f64) / 1e6;
        assert!((mean - 13.32).abs() < 0.2, "{mean}");
    }

    proptest! {
        #[test]
        fn valid_traces_round_trip(gaps in proptest::collection::vec(0u64..20, 1..60), pad in 0usize..3) {
            let mut t = 0;
            let mut stamps = Vec::new();
            for g in gaps { t += g; stamps.push(t); }
            prop_assume!(t > 0);
            let text: String = stamps.iter().map(|s| format!("{}{s}\n", " ".repeat(pad))).collect();
            let trace = parse(&text).unwrap();
            prop_assert_eq!(trace.stamps(), &stamps[..]);
            prop_assert_eq!(trace.period_ms(), t);
        }

        #[test]
        fn bad_line_is_reported_at_its_number(
            good in proptest::collection::vec(1u64..5, 0..30),
            junk in "[a-z#.-][a-z0-9 ]{0,5}",
        ) {
            let mut t = 0;
            let mut text = String::new();
            for g in &good { t += g; text.push_str(&format!("{t}\n")); }
            text.push_str(&junk);
            text.push_str("\n99999\n");
            match parse(&text) {
                Err(TraceError::Parse { line, path, .. }) => {
                    prop_assert_eq!(line, good.len() + 1);
                    prop_assert_eq!(path, PathBuf::from("t.up"));
                }
                other => prop_assert!(false, "expected a parse error, got {:?}", other),
            }
        }

        #[test]
        fn parser_never_panics(text in "[0-9\n -]{0,80}") {
            let _ = parse(&text);
        }

        #[test]
        fn delivery_matches_a_brute_force_walk(
            gaps in proptest::collection::vec(0u64..7, 1..30),
            start in 0f64..200.0,
            bytes in 0u64..60_000,
        ) {
            let mut t = 0;
            let mut stamps = Vec::new();
            for g in gaps { t += g; stamps.push(t); }
            prop_assume!(t > 0);
            let trace = Trace::from_stamps(stamps.clone(), "p").unwrap();
            // Brute force: list opportunities of enough periods, in order.
            let mut all = Vec::new();
            for k in 0..(300 / t + 60) { for s in &stamps { all.push(s + k * t); } }
            let need = bytes.div_ceil(1500) as usize;
            let expected = if need == 0 {
                start
            } else {
                let first = all.iter().position(|&o| o as f64 >= start).unwrap();
                all[first + need - 1] as f64
            };
            prop_assert_eq!(trace.delivery_time_ms(start, bytes), expected);
        }
    }
}
