//! k-nearest neighbours over standardised features (`linfa-nn` spatial index): an image is as
//! hard as the training images that look most like it. Cheap to train, needs the training rows
//! at run time, and is the learner Taylor et al. found best.

use linfa_nn::distance::L2Dist;
use linfa_nn::{CommonNearestNeighbour, NearestNeighbour, NearestNeighbourIndex};
use ndarray::{Array2, ArrayView1};
use self_cell::self_cell;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{adequacy_from_classes, check_row, check_training, Learner, TargetForm};
use crate::data::{Correctness, Matrix};
use crate::error::{Error, Result};

/// How neighbours' votes are weighted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Weighting {
    /// Every neighbour counts the same.
    Uniform,
    /// Each neighbour counts `1 / (distance + 1e-6)`: close look-alikes dominate.
    #[default]
    InverseDistance,
}

/// Spatial index used for neighbour search. All give the same neighbours (up to exact distance
/// ties); they differ only in speed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KnnIndex {
    #[default]
    KdTree,
    BallTree,
    /// Brute force; the reference the trees are tested against.
    Linear,
}

/// k-NN hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnnParams {
    /// Neighbours consulted (capped at the number of training rows).
    pub k: usize,
    pub weighting: Weighting,
    pub index: KnnIndex,
    pub target: TargetForm,
}

impl Default for KnnParams {
    fn default() -> Self {
        Self {
            k: 10,
            weighting: Weighting::default(),
            index: KnnIndex::default(),
            target: TargetForm::default(),
        }
    }
}

impl KnnParams {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }
    pub fn with_weighting(mut self, w: Weighting) -> Self {
        self.weighting = w;
        self
    }
    pub fn with_index(mut self, i: KnnIndex) -> Self {
        self.index = i;
        self
    }
    pub fn with_target(mut self, t: TargetForm) -> Self {
        self.target = t;
        self
    }

    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(Error::InvalidParam {
                learner: "knn",
                param: "k",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// What each training row votes for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Votes {
    /// Row-major `n x n_variants` correctness.
    MultiLabel(Vec<bool>),
    /// Cheapest-correct class per row (`n_variants` = none).
    Cheapest(Vec<u32>),
}

type DynIndex<'a> = Box<dyn NearestNeighbourIndex<f32> + Send + Sync + 'a>;

self_cell!(
    /// The training rows together with the spatial index that borrows them.
    struct IndexCell {
        owner: Array2<f32>,
        #[covariant]
        dependent: DynIndex,
    }
);

/// A fitted k-NN premodel.
pub struct Knn {
    params: KnnParams,
    n_variants: usize,
    votes: Votes,
    index: IndexCell,
}

/// The serialized form: the index is rebuilt on load rather than stored.
#[derive(Serialize, Deserialize)]
struct KnnState {
    params: KnnParams,
    n_variants: usize,
    n_features: usize,
    rows: Vec<f32>,
    votes: Votes,
}

#[derive(Serialize)]
struct KnnStateRef<'a> {
    params: &'a KnnParams,
    n_variants: usize,
    n_features: usize,
    rows: &'a [f32],
    votes: &'a Votes,
}

fn build_index(rows: Array2<f32>, kind: KnnIndex) -> Result<IndexCell> {
    let algo = match kind {
        KnnIndex::KdTree => CommonNearestNeighbour::KdTree,
        KnnIndex::BallTree => CommonNearestNeighbour::BallTree,
        KnnIndex::Linear => CommonNearestNeighbour::LinearSearch,
    };
    IndexCell::try_new(rows, |rows| algo.from_batch(rows, L2Dist)).map_err(|e| Error::Backend {
        learner: "knn",
        message: e.to_string(),
    })
}

impl Knn {
    fn from_state(s: KnnState) -> Result<Self> {
        let n = s.rows.len() / s.n_features.max(1);
        let votes_ok = match &s.votes {
            Votes::MultiLabel(v) => v.len() == n * s.n_variants,
            Votes::Cheapest(v) => v.len() == n && v.iter().all(|&c| c as usize <= s.n_variants),
        };
        s.params.validate()?;
        if s.n_features == 0 || s.n_variants == 0 || n == 0 || !votes_ok {
            return Err(Error::Corrupt("knn state is inconsistent".into()));
        }
        let rows = Array2::from_shape_vec((n, s.n_features), s.rows)
            .map_err(|e| Error::Corrupt(format!("knn rows: {e}")))?;
        if rows.iter().any(|v| !v.is_finite()) {
            return Err(Error::Corrupt("knn rows hold non-finite values".into()));
        }
        Ok(Self {
            index: build_index(rows, s.params.index)?,
            params: s.params,
            n_variants: s.n_variants,
            votes: s.votes,
        })
    }

    /// Training rows and their distances to `row`, nearest first (at most `k`).
    pub fn neighbours(&self, row: &[f32]) -> Result<Vec<(usize, f32)>> {
        let index = self.index.borrow_dependent();
        let found = index
            .k_nearest(ArrayView1::from(row), self.params.k.min(self.n_rows()))
            .map_err(|e| Error::Backend {
                learner: "knn",
                message: e.to_string(),
            })?;
        Ok(found
            .into_iter()
            .map(|(p, i)| {
                let d2: f32 = p.iter().zip(row).map(|(a, b)| (a - b) * (a - b)).sum();
                (i, d2.sqrt())
            })
            .collect())
    }

    pub fn params(&self) -> &KnnParams {
        &self.params
    }

    /// Number of stored training rows.
    pub fn n_rows(&self) -> usize {
        self.index.borrow_owner().nrows()
    }
}

impl Learner for Knn {
    type Params = KnnParams;

    fn fit(x: &Matrix, y: &Correctness, params: &KnnParams, _seed: u64) -> Result<Self> {
        params.validate()?;
        check_training(x, y, "knn")?;
        let votes = match params.target {
            TargetForm::MultiLabel => {
                Votes::MultiLabel((0..y.n_images()).flat_map(|i| y.row(i).to_vec()).collect())
            }
            TargetForm::CheapestCorrect => Votes::Cheapest(
                (0..y.n_images())
                    .map(|i| y.cheapest_label(i) as u32)
                    .collect(),
            ),
        };
        Self::from_state(KnnState {
            params: params.clone(),
            n_variants: y.n_variants(),
            n_features: x.n_cols(),
            rows: x.as_slice().to_vec(),
            votes,
        })
    }

    fn n_features(&self) -> usize {
        self.index.borrow_owner().ncols()
    }

    fn n_variants(&self) -> usize {
        self.n_variants
    }

    fn predict_proba_into(&self, row: &[f32], out: &mut [f32]) -> Result<()> {
        check_row(row, self.n_features(), out, self.n_variants)?;
        let nb = self.neighbours(row)?;
        let nv = self.n_variants;
        let mut acc = vec![0f32; nv + 1];
        let mut total = 0f32;
        for (i, d) in nb {
            let w = match self.params.weighting {
                Weighting::Uniform => 1.0,
                Weighting::InverseDistance => 1.0 / (d + 1e-6),
            };
            total += w;
            match &self.votes {
                Votes::MultiLabel(v) => {
                    for (a, &c) in acc.iter_mut().zip(&v[i * nv..(i + 1) * nv]) {
                        if c {
                            *a += w;
                        }
                    }
                }
                Votes::Cheapest(v) => acc[v[i] as usize] += w,
            }
        }
        if total > 0.0 {
            acc.iter_mut().for_each(|a| *a /= total);
        }
        match self.params.target {
            TargetForm::MultiLabel => out.copy_from_slice(&acc[..nv]),
            TargetForm::CheapestCorrect => adequacy_from_classes(&acc, out),
        }
        Ok(())
    }
}

impl std::fmt::Debug for Knn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Knn")
            .field("params", &self.params)
            .field("n_rows", &self.index.borrow_owner().nrows())
            .field("n_features", &self.n_features())
            .field("n_variants", &self.n_variants)
            .finish()
    }
}

impl Serialize for Knn {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let owner = self.index.borrow_owner();
        let owned;
        let rows = match owner.as_slice() {
            Some(r) => r,
            None => {
                owned = owner.iter().copied().collect::<Vec<_>>();
                &owned
            }
        };
        KnnStateRef {
            params: &self.params,
            n_variants: self.n_variants,
            n_features: owner.ncols(),
            rows,
            votes: &self.votes,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Knn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let state = KnnState::deserialize(d)?;
        Knn::from_state(state).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learners::testdata::{constant_brier, mean_brier, synthetic};
    use crate::rng::SplitMix64;

    fn brute_force(x: &Matrix, q: &[f32], k: usize) -> Vec<usize> {
        let mut d: Vec<(f32, usize)> = x
            .rows()
            .enumerate()
            .map(|(i, r)| (r.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum(), i))
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        d.into_iter().take(k).map(|(_, i)| i).collect()
    }

    #[test]
    fn neighbours_match_brute_force_for_every_index() {
        let (x, y) = synthetic(400, 5, 11);
        let mut r = SplitMix64::new(5);
        for index in [KnnIndex::KdTree, KnnIndex::BallTree, KnnIndex::Linear] {
            for k in [1, 7, 25] {
                let p = KnnParams::new().with_k(k).with_index(index);
                let knn = Knn::fit(&x, &y, &p, 0).unwrap();
                for _ in 0..30 {
                    let q: Vec<f32> = (0..5).map(|_| r.normal()).collect();
                    let got: Vec<usize> = knn.neighbours(&q).unwrap().iter().map(|n| n.0).collect();
                    assert_eq!(got, brute_force(&x, &q, k), "{index:?} k={k}");
                }
            }
        }
    }

    #[test]
    fn uniform_votes_are_neighbour_fractions() {
        let x = Matrix::from_rows(&[[0.0], [1.0], [10.0], [11.0]]).unwrap();
        let y =
            Correctness::from_rows(&[[true, true], [false, true], [false, false], [false, false]])
                .unwrap();
        let p = KnnParams::new()
            .with_k(2)
            .with_weighting(Weighting::Uniform);
        let knn = Knn::fit(&x, &y, &p, 0).unwrap();
        assert_eq!(knn.predict_proba(&[0.4]).unwrap(), vec![0.5, 1.0]);
        assert_eq!(knn.predict_proba(&[10.5]).unwrap(), vec![0.0, 0.0]);
        let p = p.with_target(TargetForm::CheapestCorrect);
        let knn = Knn::fit(&x, &y, &p, 0).unwrap();
        // Labels 0 and 1 among the two neighbours: P(label<=0)=0.5, P(label<=1)=1.
        assert_eq!(knn.predict_proba(&[0.4]).unwrap(), vec![0.5, 1.0]);
    }

    #[test]
    fn knn_beats_constant_on_synthetic_data() {
        let (x, y) = synthetic(2000, 4, 1);
        let (xt, yt) = synthetic(500, 4, 2);
        let knn = Knn::fit(&x, &y, &KnnParams::new().with_k(25), 0).unwrap();
        assert!(mean_brier(&knn, &xt, &yt) < 0.8 * constant_brier(&y, &yt));
    }

    #[test]
    fn rejects_bad_params_and_rows() {
        let (x, y) = synthetic(20, 3, 1);
        assert!(matches!(
            Knn::fit(&x, &y, &KnnParams::new().with_k(0), 0),
            Err(Error::InvalidParam { param: "k", .. })
        ));
        let knn = Knn::fit(&x, &y, &KnnParams::new(), 0).unwrap();
        assert!(matches!(
            knn.predict_proba(&[0.0; 2]),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            knn.predict_proba(&[0.0, f32::NAN, 0.0]),
            Err(Error::NonFinite { .. })
        ));
    }
}
