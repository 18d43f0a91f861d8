//! Remote options: what the device can upload (shorter side, JPEG quality) and what the server
//! runs on it (one variant, or an ensemble whose softmax outputs are averaged). This is the
//! resolution / bit-rate knob of DeepDecision (INFOCOM 2018) and of confidence-based
//! offloading (INFOCOM 2022).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The default grid: the strongest variant at full, 224 and 160 px, JPEG quality 90 and 60.
pub const DEFAULT_GRID: &str = "efficientnet_lite2:full,224,160:90,60";

/// One remote option.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RemoteOption {
    /// Server variants; more than one means their softmax outputs are averaged.
    pub servers: Vec<String>,
    /// Shorter side of the uploaded image, `None` to keep the original resolution.
    pub shorter_side: Option<u32>,
    /// JPEG quality of the upload, 1..=100.
    pub quality: u8,
}

impl RemoteOption {
    /// Stable name, e.g. `efficientnet_lite2@224q60` or `a+b@fullq90`.
    pub fn name(&self) -> String {
        let side = self
            .shorter_side
            .map_or_else(|| "full".to_string(), |s| s.to_string());
        format!("{}@{side}q{}", self.servers.join("+"), self.quality)
    }
}

/// A list of remote options parsed from a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteGrid(pub Vec<RemoteOption>);

impl std::str::FromStr for RemoteGrid {
    type Err = Error;

    /// `SERVERS:SIDES:QUALITIES` groups separated by `;`, where SERVERS is `variant` or
    /// `a+b+c` (ensemble), SIDES is a comma list of pixel counts or `full`, and QUALITIES a
    /// comma list of JPEG qualities. `none` (or an empty spec) means no remote options.
    fn from_str(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        if spec.is_empty() || spec == "none" {
            return Ok(RemoteGrid(Vec::new()));
        }
        let bad = |m: String| Error::InvalidArgument(format!("remote grid '{spec}': {m}"));
        let mut out: Vec<RemoteOption> = Vec::new();
        for group in spec.split(';').map(str::trim).filter(|g| !g.is_empty()) {
            let parts: Vec<&str> = group.split(':').map(str::trim).collect();
            let [servers, sides, qualities] = parts[..] else {
                return Err(bad(format!("'{group}' is not SERVERS:SIDES:QUALITIES")));
            };
            let servers: Vec<String> = servers.split('+').map(|s| s.trim().to_string()).collect();
            if servers.iter().any(String::is_empty) {
                return Err(bad(format!("empty server variant name in '{group}'")));
            }
            let mut side_list = Vec::new();
            for s in sides.split(',').map(str::trim) {
                side_list.push(if s == "full" {
                    None
                } else {
                    let px: u32 = s
                        .parse()
                        .map_err(|_| bad(format!("side '{s}' is neither a number nor 'full'")))?;
                    if !(32..=4096).contains(&px) {
                        return Err(bad(format!("side {px} is outside 32..=4096")));
                    }
                    Some(px)
                });
            }
            for q in qualities.split(',').map(str::trim) {
                let quality: u8 = q
                    .parse()
                    .ok()
                    .filter(|q| (1..=100).contains(q))
                    .ok_or_else(|| bad(format!("quality '{q}' is not in 1..=100")))?;
                for &side in &side_list {
                    let opt = RemoteOption {
                        servers: servers.clone(),
                        shorter_side: side,
                        quality,
                    };
                    if out.contains(&opt) {
                        return Err(bad(format!("option {} appears twice", opt.name())));
                    }
                    out.push(opt);
                }
            }
        }
        Ok(RemoteGrid(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_grid_has_six_options() {
        let g: RemoteGrid = DEFAULT_GRID.parse().unwrap();
        assert_eq!(g.0.len(), 6);
        assert_eq!(g.0[0].name(), "efficientnet_lite2@fullq90");
        assert_eq!(g.0[5].name(), "efficientnet_lite2@160q60");
    }

    #[test]
    fn ensembles_and_several_groups() {
        let g: RemoteGrid = "a+b:224:75; c:full,96:50,90".parse().unwrap();
        let names: Vec<String> = g.0.iter().map(RemoteOption::name).collect();
        assert_eq!(
            names,
            ["a+b@224q75", "c@fullq50", "c@96q50", "c@fullq90", "c@96q90"]
        );
        assert!("none".parse::<RemoteGrid>().unwrap().0.is_empty());
    }

    #[test]
    fn bad_specs_are_errors() {
        for spec in [
            "a:224",
            "a:big:90",
            "a:224:0",
            "a:224:101",
            "+b:224:90",
            "a:224,224:90",
            "a:8:90",
        ] {
            assert!(
                spec.parse::<RemoteGrid>().is_err(),
                "{spec} should be rejected"
            );
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in ".{0,60}") {
            let _ = s.parse::<RemoteGrid>();
        }
    }
}
