//! Network outputs mapped onto the 1000 ImageNet classes, and the class names.

use std::path::Path;

use crate::error::{Error, Result};
use crate::NUM_CLASSES;

/// Raw logits over the 1000 ImageNet classes (class `i` = position of its WordNet id in the
/// sorted list of the 1000 ids), whatever the network's own output layout was.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits(pub Vec<f32>);

impl Logits {
    /// Maps a network output to ImageNet classes: output `label_offset + i` is class `i`
    /// (the MobileNets put a "background" output first).
    pub fn from_network_output(output: &[f32], label_offset: usize) -> Option<Self> {
        output
            .get(label_offset..label_offset + NUM_CLASSES)
            .map(|s| Logits(s.to_vec()))
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// Index of the largest logit (the top-1 class). NaNs never win.
    pub fn argmax(&self) -> usize {
        argmax(&self.0)
    }

    /// Softmax at temperature `t` (`t = 1` is the plain softmax), computed stably.
    pub fn softmax(&self, t: f32) -> Vec<f32> {
        softmax(&self.0, t)
    }

    /// The `k` largest classes, best first, ties broken by the lower class index.
    pub fn top_k(&self, k: usize) -> Vec<usize> {
        top_k(&self.0, k)
    }
}

/// Index of the largest finite-or-infinite value; NaNs are skipped. Empty input gives 0.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in values.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best
}

/// Numerically stable softmax of `values / t`. A non-positive or non-finite `t` is treated
/// as 1.
pub fn softmax(values: &[f32], t: f32) -> Vec<f32> {
    let t = if t.is_finite() && t > 0.0 { t } else { 1.0 };
    let max = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return vec![1.0 / values.len().max(1) as f32; values.len()];
    }
    // Branch-free loop (NaN is fixed up afterwards) with a multiplication instead of a
    // division per element: the per-stage cost of calibration in the runtime.
    let inv_t = 1.0 / t;
    let mut out: Vec<f32> = values.iter().map(|&v| ((v - max) * inv_t).exp()).collect();
    let mut sum = 0.0f32;
    for v in &mut out {
        if v.is_nan() {
            *v = 0.0;
        }
        sum += *v;
    }
    let inv_sum = 1.0 / sum;
    for v in &mut out {
        *v *= inv_sum;
    }
    out
}

/// Indices of the `k` largest values, best first, ties broken by the lower index.
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let key = |i: usize| {
        let v = values[i];
        if v.is_nan() {
            f32::NEG_INFINITY
        } else {
            v
        }
    };
    let cmp = |a: &usize, b: &usize| key(*b).total_cmp(&key(*a)).then(a.cmp(b));
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    idx.select_nth_unstable_by(k - 1, cmp);
    idx.truncate(k);
    idx.sort_by(cmp);
    idx
}

/// Human-readable names of the 1000 ImageNet classes.
#[derive(Debug, Clone)]
pub struct ClassNames(Vec<String>);

impl ClassNames {
    /// Reads a labels file with one name per line: either 1000 lines (class `i` on line `i`)
    /// or 1001 lines whose first is `background` (class `i` on line `i + 1`).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut lines: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        match lines.len() {
            n if n == NUM_CLASSES => {}
            n if n == NUM_CLASSES + 1 && lines[0].eq_ignore_ascii_case("background") => {
                lines.remove(0);
            }
            n => {
                return Err(Error::dataset(
                    path,
                    0,
                    format!(
                        "has {n} lines, expected {NUM_CLASSES} class names (or {} with 'background' first)",
                        NUM_CLASSES + 1
                    ),
                ))
            }
        }
        Ok(ClassNames(lines))
    }

    pub fn from_vec(names: Vec<String>) -> Self {
        ClassNames(names)
    }

    /// The name of class `i`, or `"?"` when out of range.
    pub fn name(&self, i: usize) -> &str {
        self.0.get(i).map(String::as_str).unwrap_or("?")
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offset_maps_background_away() {
        let out: Vec<f32> = (0..1001).map(|i| i as f32).collect();
        let l = Logits::from_network_output(&out, 1).unwrap();
        assert_eq!(l.0.len(), 1000);
        assert_eq!(l.0[0], 1.0);
        assert_eq!(l.argmax(), 999);
        assert!(Logits::from_network_output(&out[..1000], 1).is_none());
    }

    #[test]
    fn top_k_breaks_ties_by_index() {
        assert_eq!(top_k(&[1.0, 3.0, 3.0, f32::NAN, 2.0], 3), vec![1, 2, 4]);
        assert_eq!(top_k(&[1.0], 5), vec![0]);
        assert!(top_k(&[], 5).is_empty());
    }

    proptest! {
        #[test]
        fn softmax_is_a_distribution(v in proptest::collection::vec(-1e4f32..1e4, 1..64), t in 0.05f32..20.0) {
            let p = softmax(&v, t);
            let s: f32 = p.iter().sum();
            prop_assert!((s - 1.0).abs() < 1e-4);
            prop_assert!(p.iter().all(|x| (0.0..=1.0).contains(x)));
            prop_assert_eq!(argmax(&p), argmax(&v));
        }

        #[test]
        fn top_k_is_sorted_prefix(v in proptest::collection::vec(-10f32..10.0, 1..64), k in 1usize..10) {
            let t = top_k(&v, k);
            prop_assert_eq!(t.len(), k.min(v.len()));
            prop_assert_eq!(t[0], argmax(&v));
            for w in t.windows(2) {
                prop_assert!(v[w[0]] >= v[w[1]]);
            }
            let kth = v[*t.last().unwrap()];
            let above = v.iter().filter(|&&x| x > kth).count();
            prop_assert!(above < t.len());
        }
    }
}
