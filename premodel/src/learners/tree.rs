//! Decision tree (`linfa-trees`, CART with Gini impurity), compiled into a flat node array with
//! probability vectors at the leaves.
//!
//! `linfa-trees` only exposes a leaf's majority class, not its class frequencies, so after
//! fitting we route the training rows through the tree ourselves and smooth each leaf's class
//! counts towards the training base rate (an m-estimate with weight `leaf_prior`). Two more
//! consequences of that library are handled here:
//! * it prunes sibling leaves that share a majority class, which on imbalanced targets (a big
//!   variant that is right 85% of the time) collapses the tree to its root. Fitting with
//!   class-balanced sample weights makes majorities mean "enriched relative to the base rate",
//!   so informative splits survive; leaf probabilities still come from unweighted counts.
//! * it predicts one label, so the multi-label form trains one binary tree per variant, and the
//!   cheapest-correct form one binary tree per variant for "the cheapest correct variant is
//!   this one or a cheaper one" (Frank and Hall's ordinal decomposition, ECML 2001), which is
//!   exactly the adequacy the compiler asks for.
//! * it keeps class weights in a `HashMap` with a random hasher, and both its majority class
//!   (on an exact tie) and a multi-class impurity (a float sum in hash order) depend on that
//!   order, so two fits could differ. Every tree here is binary (a sum of two terms does not
//!   depend on order) and class 1's weights are nudged by a factor of `1 + TIE_NUDGE`, so the
//!   two weighted class totals of a node are never exactly equal: at a node whose class
//!   proportion matches the root's, balanced weights would otherwise tie exactly.
//!
//! The compiled form (not linfa's node structure) is what gets serialized and evaluated:
//! a few comparisons per prediction, no allocation.

use linfa::dataset::Dataset;
use linfa::traits::Fit;
use linfa_trees::{DecisionTree, TreeNode};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::{check_row, check_training, class_labels, LabelTarget, Learner, TargetForm};
use crate::data::{Correctness, Matrix};
use crate::error::{Error, Result};

/// Decision-tree hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeParams {
    /// Maximum depth (`None` = grow until leaves are pure or too small).
    pub max_depth: Option<usize>,
    /// Minimum (class-balanced) sample weight per leaf; with `balanced` off this is the
    /// minimum number of training rows per leaf.
    pub min_samples_leaf: usize,
    /// Fit with class-balanced sample weights (see the module docs for why this is the default).
    pub balanced: bool,
    /// Strength of the pull of each leaf's probabilities towards the training base rate, in
    /// pseudo-rows.
    pub leaf_prior: f32,
    pub target: TargetForm,
}

impl Default for TreeParams {
    fn default() -> Self {
        Self {
            max_depth: Some(8),
            min_samples_leaf: 10,
            balanced: true,
            leaf_prior: 2.0,
            target: TargetForm::default(),
        }
    }
}

impl TreeParams {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_max_depth(mut self, d: Option<usize>) -> Self {
        self.max_depth = d;
        self
    }
    pub fn with_min_samples_leaf(mut self, n: usize) -> Self {
        self.min_samples_leaf = n;
        self
    }
    pub fn with_balanced(mut self, b: bool) -> Self {
        self.balanced = b;
        self
    }
    pub fn with_leaf_prior(mut self, m: f32) -> Self {
        self.leaf_prior = m;
        self
    }
    pub fn with_target(mut self, t: TargetForm) -> Self {
        self.target = t;
        self
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |param, reason: &str| {
            Err(Error::InvalidParam {
                learner: "tree",
                param,
                reason: reason.into(),
            })
        };
        if self.max_depth == Some(0) {
            return bad("max_depth", "must be at least 1");
        }
        if self.min_samples_leaf == 0 {
            return bad("min_samples_leaf", "must be at least 1");
        }
        if !(self.leaf_prior.is_finite() && self.leaf_prior >= 0.0) {
            return bad("leaf_prior", "must be finite and non-negative");
        }
        Ok(())
    }
}

/// One node of a compiled tree. Children always have larger indices than their parent, which
/// lets evaluation reject a corrupted tree instead of looping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Node {
    /// `row[feature] <= threshold` goes left, otherwise right (the rule linfa fits with).
    Split {
        feature: u32,
        threshold: f32,
        left: u32,
        right: u32,
    },
    /// The `leaf`-th leaf; its outputs are `values[leaf * n_out..(leaf + 1) * n_out]`.
    Leaf { leaf: u32 },
}

/// A tree producing `n_out` values per row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CompiledTree {
    nodes: Vec<Node>,
    values: Vec<f32>,
    n_out: usize,
}

impl CompiledTree {
    /// Index of the leaf node `row` falls into.
    fn leaf_of(&self, row: &[f32]) -> Result<usize> {
        let mut i = 0usize;
        loop {
            match self.nodes.get(i) {
                Some(Node::Leaf { .. }) => return Ok(i),
                Some(Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                }) => {
                    let v = row
                        .get(*feature as usize)
                        .ok_or_else(|| Error::Corrupt("tree split on missing feature".into()))?;
                    let next = if *v <= *threshold { *left } else { *right } as usize;
                    if next <= i {
                        return Err(Error::Corrupt("tree child precedes its parent".into()));
                    }
                    i = next;
                }
                None => return Err(Error::Corrupt("tree node index out of range".into())),
            }
        }
    }

    fn predict(&self, row: &[f32]) -> Result<&[f32]> {
        let leaf = self.leaf_of(row)?;
        if let Some(Node::Leaf { leaf }) = self.nodes.get(leaf) {
            let o = *leaf as usize * self.n_out;
            if let Some(v) = self.values.get(o..o + self.n_out) {
                return Ok(v);
            }
        }
        Err(Error::Corrupt("tree leaf values out of range".into()))
    }
}

/// Flattens a linfa tree (pre-order, so children follow parents), leaving leaf values empty.
fn compile(tree: &DecisionTree<f32, usize>) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut leaves = 0u32;
    // Pending nodes with the parent whose child pointer to patch (index, is_left).
    type Pending<'a> = (&'a TreeNode<f32, usize>, Option<(usize, bool)>);
    let mut stack: Vec<Pending<'_>> = vec![(tree.root_node(), None)];
    while let Some((node, parent)) = stack.pop() {
        let me = nodes.len() as u32;
        if let Some((p, is_left)) = parent {
            if let Some(Node::Split { left, right, .. }) = nodes.get_mut(p) {
                if is_left {
                    *left = me;
                } else {
                    *right = me;
                }
            }
        }
        let children = node.children();
        let (l, r) = (children[0].as_deref(), children[1].as_deref());
        match (node.is_leaf(), l, r) {
            (false, Some(l), Some(r)) => {
                let (feature, threshold, _) = node.split();
                nodes.push(Node::Split {
                    feature: feature as u32,
                    threshold,
                    left: 0,
                    right: 0,
                });
                // Right pushed first so the left subtree is laid out first.
                stack.push((r, Some((me as usize, false))));
                stack.push((l, Some((me as usize, true))));
            }
            _ => {
                nodes.push(Node::Leaf { leaf: leaves });
                leaves += 1;
            }
        }
    }
    nodes
}

/// Relative nudge of class 1's sample weights that breaks exact majority ties (see the
/// module docs); small enough not to change any split that is not a near-tie.
const TIE_NUDGE: f32 = 1.414_213_5e-3;

/// Fits one tree on `labels` (`n_classes` classes) and fills its leaves with smoothed class
/// probabilities, converted by `to_output` into the tree's output values.
fn fit_one(
    x: &Array2<f32>,
    rows: &Matrix,
    labels: &[usize],
    n_classes: usize,
    params: &TreeParams,
    n_out: usize,
    to_output: impl Fn(&[f32], &mut [f32]),
) -> Result<CompiledTree> {
    let n = labels.len();
    let mut counts = vec![0usize; n_classes];
    labels.iter().for_each(|&l| counts[l] += 1);
    let present = counts.iter().filter(|&&c| c > 0).count();
    let weights: Array1<f32> = labels
        .iter()
        .map(|&l| {
            let w = if params.balanced {
                n as f32 / (present as f32 * counts[l] as f32)
            } else {
                1.0
            };
            if l == 1 {
                w * (1.0 + TIE_NUDGE)
            } else {
                w
            }
        })
        .collect();
    let dataset = Dataset::new(x.clone(), Array1::from(labels.to_vec())).with_weights(weights);
    let leaf = params.min_samples_leaf as f32;
    let fitted = DecisionTree::params()
        .max_depth(params.max_depth)
        .min_weight_leaf(leaf)
        .min_weight_split(2.0 * leaf)
        .fit(&dataset)
        .map_err(|e| Error::Backend {
            learner: "tree",
            message: e.to_string(),
        })?;
    let nodes = compile(&fitted);
    let n_leaves = nodes
        .iter()
        .filter(|n| matches!(n, Node::Leaf { .. }))
        .count();
    let mut tree = CompiledTree {
        nodes,
        values: vec![0.0; n_leaves * n_out],
        n_out,
    };

    // Route training rows to leaves and count classes there.
    let mut leaf_counts = vec![0f32; n_leaves * n_classes];
    for (i, &l) in labels.iter().enumerate() {
        let node = tree.leaf_of(rows.row(i))?;
        if let Some(Node::Leaf { leaf }) = tree.nodes.get(node) {
            leaf_counts[*leaf as usize * n_classes + l] += 1.0;
        }
    }
    let base: Vec<f32> = counts.iter().map(|&c| c as f32 / n as f32).collect();
    let m = params.leaf_prior;
    let mut probs = vec![0f32; n_classes];
    for leaf in 0..n_leaves {
        let c = &leaf_counts[leaf * n_classes..(leaf + 1) * n_classes];
        let total: f32 = c.iter().sum();
        for ((p, &ci), &b) in probs.iter_mut().zip(c).zip(&base) {
            *p = if total + m > 0.0 {
                (ci + m * b) / (total + m)
            } else {
                b
            };
        }
        to_output(&probs, &mut tree.values[leaf * n_out..(leaf + 1) * n_out]);
    }
    Ok(tree)
}

/// A fitted decision-tree premodel: one tree per variant (multi-label) or one multi-class tree
/// (cheapest-correct).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    params: TreeParams,
    n_features: usize,
    n_variants: usize,
    trees: Vec<CompiledTree>,
}

impl Tree {
    pub fn params(&self) -> &TreeParams {
        &self.params
    }

    /// Total number of leaves over all trees (a size/complexity indicator for reports).
    pub fn n_leaves(&self) -> usize {
        self.trees
            .iter()
            .map(|t| {
                t.nodes
                    .iter()
                    .filter(|n| matches!(n, Node::Leaf { .. }))
                    .count()
            })
            .sum()
    }
}

impl Learner for Tree {
    type Params = TreeParams;

    fn fit(x: &Matrix, y: &Correctness, params: &TreeParams, _seed: u64) -> Result<Self> {
        params.validate()?;
        check_training(x, y, "tree")?;
        let xa = Array2::from_shape_vec((x.n_rows(), x.n_cols()), x.as_slice().to_vec()).map_err(
            |e| Error::Backend {
                learner: "tree",
                message: e.to_string(),
            },
        )?;
        let nv = y.n_variants();
        let trees = match params.target {
            TargetForm::MultiLabel => (0..nv)
                .map(|j| {
                    let (labels, k) = class_labels(y, LabelTarget::Variant(j));
                    fit_one(&xa, x, &labels, k, params, 1, |p, out| out[0] = p[1])
                })
                .collect::<Result<Vec<_>>>()?,
            TargetForm::CheapestCorrect => {
                let (cheapest, _) = class_labels(y, LabelTarget::Cheapest);
                (0..nv)
                    .map(|j| {
                        let labels: Vec<usize> =
                            cheapest.iter().map(|&c| usize::from(c <= j)).collect();
                        fit_one(&xa, x, &labels, 2, params, 1, |p, out| out[0] = p[1])
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        };
        Ok(Self {
            params: params.clone(),
            n_features: x.n_cols(),
            n_variants: nv,
            trees,
        })
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn n_variants(&self) -> usize {
        self.n_variants
    }

    fn predict_proba_into(&self, row: &[f32], out: &mut [f32]) -> Result<()> {
        check_row(row, self.n_features, out, self.n_variants)?;
        let mut o = 0;
        for t in &self.trees {
            let v = t.predict(row)?;
            let dst = out
                .get_mut(o..o + v.len())
                .ok_or_else(|| Error::Corrupt("tree outputs exceed variants".into()))?;
            dst.copy_from_slice(v);
            o += v.len();
        }
        if o != self.n_variants {
            return Err(Error::Corrupt(
                "tree outputs do not cover all variants".into(),
            ));
        }
        if self.params.target == TargetForm::CheapestCorrect {
            // P(cheapest correct <= j) cannot fall as j grows; independent trees may disagree.
            let mut floor = 0f32;
            for p in out.iter_mut() {
                floor = floor.max(*p);
                *p = floor;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learners::testdata::{constant_brier, mean_brier, synthetic};

    #[test]
    fn fits_are_identical_when_node_proportions_tie() {
        // One class twice as common as the other and heavily quantized features: with
        // balanced weights, many nodes hold exactly the root's proportion, where linfa-trees'
        // majority class (and so its pruning) would follow its hash order.
        for seed in 0..6u64 {
            let (mut x, y0) = synthetic(240, 3, seed);
            for i in 0..x.n_rows() {
                for v in x.row_mut(i) {
                    *v = (*v * 2.0).round();
                }
            }
            let rows: Vec<[bool; 2]> = (0..240).map(|i| [i % 3 != 0, y0.get(i, 0)]).collect();
            let y = Correctness::from_rows(&rows).unwrap();
            for target in [TargetForm::MultiLabel, TargetForm::CheapestCorrect] {
                let p = TreeParams::new()
                    .with_min_samples_leaf(1)
                    .with_max_depth(Some(12))
                    .with_target(target);
                let a = Tree::fit(&x, &y, &p, 0).unwrap();
                for _ in 0..8 {
                    assert_eq!(
                        a,
                        Tree::fit(&x, &y, &p, 0).unwrap(),
                        "seed {seed} {target:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn cheapest_correct_adequacy_never_falls() {
        let (x, y) = synthetic(400, 4, 5);
        let p = TreeParams::new().with_target(TargetForm::CheapestCorrect);
        let t = Tree::fit(&x, &y, &p, 0).unwrap();
        for i in 0..x.n_rows() {
            let a = t.predict_proba(x.row(i)).unwrap();
            assert!(a.windows(2).all(|w| w[0] <= w[1]), "{a:?}");
        }
    }

    #[test]
    fn fitting_twice_gives_the_same_tree() {
        // Quantized features make many candidate splits tie exactly.
        let (mut x, y) = synthetic(300, 6, 3);
        for i in 0..x.n_rows() {
            for v in x.row_mut(i) {
                *v = (*v * 4.0).round() / 4.0;
            }
        }
        let p = TreeParams::default();
        let a = Tree::fit(&x, &y, &p, 0).unwrap();
        for _ in 0..5 {
            let b = Tree::fit(&x, &y, &p, 0).unwrap();
            for i in 0..x.n_rows() {
                let (mut pa, mut pb) = (vec![0f32; y.n_variants()], vec![0f32; y.n_variants()]);
                a.predict_proba_into(x.row(i), &mut pa).unwrap();
                b.predict_proba_into(x.row(i), &mut pb).unwrap();
                assert_eq!(pa, pb, "row {i}");
            }
        }
    }

    #[test]
    fn tree_beats_constant_on_synthetic_data() {
        let (x, y) = synthetic(3000, 4, 1);
        let (xt, yt) = synthetic(1000, 4, 2);
        for target in [TargetForm::MultiLabel, TargetForm::CheapestCorrect] {
            let t = Tree::fit(&x, &y, &TreeParams::new().with_target(target), 0).unwrap();
            let b = mean_brier(&t, &xt, &yt);
            let c = constant_brier(&y, &yt);
            assert!(b < 0.8 * c, "{target:?}: tree {b} vs constant {c}");
        }
    }

    #[test]
    fn one_split_tree_has_exact_leaf_frequencies() {
        // Feature 0 separates correct from wrong perfectly; no smoothing.
        let x = Matrix::from_rows(&[[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]]).unwrap();
        let y =
            Correctness::from_rows(&[[true], [true], [true], [false], [false], [false]]).unwrap();
        let p = TreeParams::new()
            .with_min_samples_leaf(1)
            .with_leaf_prior(0.0);
        let t = Tree::fit(&x, &y, &p, 0).unwrap();
        assert_eq!(t.predict_proba(&[0.5]).unwrap(), vec![1.0]);
        assert_eq!(t.predict_proba(&[11.5]).unwrap(), vec![0.0]);
        assert_eq!(t.n_leaves(), 2);
    }

    #[test]
    fn constant_target_gives_base_rate() {
        let (x, _) = synthetic(50, 2, 3);
        let y = Correctness::new(50, 2, vec![true; 100]).unwrap();
        let t = Tree::fit(&x, &y, &TreeParams::new(), 0).unwrap();
        assert_eq!(t.predict_proba(x.row(0)).unwrap(), vec![1.0, 1.0]);
    }

    #[test]
    fn corrupted_tree_is_an_error_not_a_hang() {
        let t = CompiledTree {
            nodes: vec![Node::Split {
                feature: 0,
                threshold: 0.0,
                left: 0,
                right: 0,
            }],
            values: vec![],
            n_out: 1,
        };
        assert!(matches!(t.predict(&[1.0]), Err(Error::Corrupt(_))));
    }

    #[test]
    fn rejects_bad_params() {
        let (x, y) = synthetic(20, 2, 1);
        for p in [
            TreeParams::new().with_max_depth(Some(0)),
            TreeParams::new().with_min_samples_leaf(0),
            TreeParams::new().with_leaf_prior(-1.0),
        ] {
            assert!(matches!(
                Tree::fit(&x, &y, &p, 0),
                Err(Error::InvalidParam { .. })
            ));
        }
    }
}
