//! Device profiles: how a profile's measured latencies translate to a target device's time,
//! energy and cloud cost. Read from TOML files (see `devices/` in the repository), validated
//! on load; unknown keys are errors so a typo cannot silently fall back to a default.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// On-device compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compute {
    /// Device time = profiled host time x this.
    pub latency_scale: f64,
    /// Power while running a network, W.
    pub active_w: f64,
    /// Power while idle, W (reported; energy per image counts active time only).
    pub idle_w: f64,
}

/// One radio technology (Huang et al., MobiSys 2012 power model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Radio {
    pub base_w: f64,
    pub up_w_per_mbps: f64,
    pub down_w_per_mbps: f64,
    pub tail_ms: f64,
    pub tail_w: f64,
    /// Typical round-trip time, ms (used when no measurement is available).
    pub rtt_ms: f64,
}

/// The offloading server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Server time = profiled host time x this.
    pub latency_scale: f64,
    pub usd_per_request: f64,
    pub usd_per_server_ms: f64,
}

/// A device profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub name: String,
    pub description: String,
    /// Assumed time between images, ms: bounds how much radio tail one image pays for.
    pub request_interval_ms: f64,
    pub compute: Compute,
    pub radio: BTreeMap<String, Radio>,
    pub server: Server,
}

impl Device {
    /// Reads and validates a device profile.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses and validates a device profile; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let d: Device = toml::from_str(text).map_err(|e| Error::format(path, e.to_string()))?;
        d.validate().map_err(|m| Error::format(path, m))?;
        Ok(d)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let pos = |what: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{what} must be a positive number, got {v}"))
            }
        };
        let nonneg = |what: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{what} must be a non-negative number, got {v}"))
            }
        };
        if self.name.trim().is_empty() {
            return Err("name is empty".into());
        }
        pos("request_interval_ms", self.request_interval_ms)?;
        pos("compute.latency_scale", self.compute.latency_scale)?;
        pos("compute.active_w", self.compute.active_w)?;
        nonneg("compute.idle_w", self.compute.idle_w)?;
        if self.radio.is_empty() {
            return Err("no [radio.<link>] tables".into());
        }
        for (name, r) in &self.radio {
            nonneg(&format!("radio.{name}.base_w"), r.base_w)?;
            nonneg(&format!("radio.{name}.up_w_per_mbps"), r.up_w_per_mbps)?;
            nonneg(&format!("radio.{name}.down_w_per_mbps"), r.down_w_per_mbps)?;
            nonneg(&format!("radio.{name}.tail_ms"), r.tail_ms)?;
            nonneg(&format!("radio.{name}.tail_w"), r.tail_w)?;
            nonneg(&format!("radio.{name}.rtt_ms"), r.rtt_ms)?;
        }
        pos("server.latency_scale", self.server.latency_scale)?;
        nonneg("server.usd_per_request", self.server.usd_per_request)?;
        nonneg("server.usd_per_server_ms", self.server.usd_per_server_ms)?;
        Ok(())
    }

    /// Energy of `ms` of on-device compute (profiled-host time), mJ.
    pub fn compute_mj(&self, host_ms: f64) -> f64 {
        host_ms * self.compute.latency_scale * self.compute.active_w
    }

    /// Radio energy (mJ) and time (ms) to send `up_bytes` and receive `down_bytes` over
    /// `link` at the given throughputs (Mbit/s), tail included.
    pub fn radio_cost(
        &self,
        link: &str,
        up_bytes: f64,
        down_bytes: f64,
        up_mbps: f64,
        down_mbps: f64,
    ) -> Option<(f64, f64)> {
        let r = self.radio.get(link)?;
        let up_ms = up_bytes * 8.0 / (up_mbps.max(1e-6) * 1e3);
        let down_ms = down_bytes * 8.0 / (down_mbps.max(1e-6) * 1e3);
        let active = up_ms * (r.base_w + r.up_w_per_mbps * up_mbps)
            + down_ms * (r.base_w + r.down_w_per_mbps * down_mbps);
        Some((active + self.tail_mj(r), up_ms + down_ms))
    }

    /// Radio energy (mJ) of holding `link` active for `active_ms` while sending at
    /// `up_mbps`, tail included: what an exchange of measured (or bounded) duration costs.
    pub fn radio_held_mj(&self, link: &str, active_ms: f64, up_mbps: f64) -> Option<f64> {
        let r = self.radio.get(link)?;
        Some(active_ms * (r.base_w + r.up_w_per_mbps * up_mbps) + self.tail_mj(r))
    }

    /// Tail energy after a transfer, bounded by the time to the next request, mJ.
    fn tail_mj(&self, r: &Radio) -> f64 {
        r.tail_ms.min(self.request_interval_ms) * r.tail_w
    }

    /// Cloud cost of one request that keeps the server busy `server_host_ms` (host time), USD.
    pub fn server_usd(&self, server_host_ms: f64) -> f64 {
        self.server.usd_per_request
            + self.server.usd_per_server_ms * server_host_ms * self.server.latency_scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../devices")
    }

    #[test]
    fn shipped_profiles_load() {
        for name in ["this-host", "phone", "jetson-tx2"] {
            let d = Device::load(&devices_dir().join(format!("{name}.toml"))).unwrap();
            assert_eq!(d.name, name);
            assert!(
                d.radio.contains_key("lte")
                    && d.radio.contains_key("wifi")
                    && d.radio.contains_key("3g")
            );
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let text = std::fs::read_to_string(devices_dir().join("this-host.toml")).unwrap();
        let p = Path::new("x.toml");
        let typo = text.replace("active_w", "activ_w");
        let e = Device::parse(&typo, p).unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("activ_w"), "{e}");
        let neg = text.replace(
            "latency_scale = 1.0\nactive_w",
            "latency_scale = -1.0\nactive_w",
        );
        let e = Device::parse(&neg, p).unwrap_err().to_string();
        assert!(e.contains("compute.latency_scale"), "{e}");
    }

    #[test]
    fn energy_model() {
        let d = Device::load(&devices_dir().join("this-host.toml")).unwrap();
        assert!((d.compute_mj(10.0) - 150.0).abs() < 1e-9);
        // 125 kB at 1 Mbit/s on LTE: 1 s of transfer at 1.288 + 0.438 W, plus 1 s of tail.
        let (mj, ms) = d.radio_cost("lte", 125_000.0, 0.0, 1.0, 10.0).unwrap();
        assert!((ms - 1000.0).abs() < 1e-6);
        assert!((mj - (1726.43 + 1060.0)).abs() < 1.0, "{mj}");
        assert!(d.radio_cost("5g", 1.0, 1.0, 1.0, 1.0).is_none());
    }
}
