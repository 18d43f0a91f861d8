//! Running contenders on data they were not fitted on: k-fold cross-validation on one
//! profile, or fitting on one profile and scoring on another.
//!
//! In both modes a contender's `fit` sees only training images and its `run` only held-out
//! images; cross-validation then stitches the held-out outcomes of every fold into one
//! sequence per policy.

use tracing::info;
use triage_premodel::cv::{kfold, train_indices};

use crate::error::{Error, Result};
use crate::outcome::{OutcomeSource, PolicyRun};
use crate::policies::{Contender, Context};

/// Progress callbacks for the slow parts (fits and runs), so a CLI can draw a bar.
pub trait Progress {
    /// A new phase of `total` steps.
    fn start(&self, what: &str, total: u64);
    /// One step done; `msg` says what.
    fn step(&self, msg: &str);
    fn finish(&self);
}

/// Shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn step(&self, _: &str) {}
    fn finish(&self) {}
}

/// How held-out outcomes are obtained.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// k-fold cross-validation on one profile.
    CrossValidation { k: usize, seed: u64 },
    /// Fit on a training profile, score on another.
    Holdout,
}

/// Adds one fold's runs to the accumulated runs, by policy name.
fn merge(acc: &mut Vec<PolicyRun>, runs: Vec<PolicyRun>) {
    for run in runs {
        match acc.iter_mut().find(|r| r.name == run.name) {
            Some(a) => {
                a.outcomes.extend(run.outcomes);
                a.detail = run.detail;
            }
            None => acc.push(run),
        }
    }
}

/// Sorts outcomes by image and checks that every run covers `n` images exactly once.
fn finish(mut runs: Vec<PolicyRun>, n: usize) -> Result<Vec<PolicyRun>> {
    for r in &mut runs {
        r.outcomes.sort_by_key(|o| o.image);
        let complete =
            r.outcomes.len() == n && r.outcomes.iter().enumerate().all(|(k, o)| o.image == k);
        if !complete {
            return Err(Error::InvalidArgument(format!(
                "policy {} produced {} outcomes for {n} images",
                r.name,
                r.outcomes.len()
            )));
        }
    }
    Ok(runs)
}

/// The test folds of a `k`-fold split of `n` images, as the harness uses them.
pub fn folds(n: usize, k: usize, seed: u64) -> Result<Vec<Vec<usize>>> {
    if n < 2 * k.max(2) {
        return Err(Error::InvalidArgument(format!(
            "{n} images are too few for {k}-fold cross-validation"
        )));
    }
    Ok(kfold(n, k, seed)?)
}

/// Cross-validates `contenders` on `ctx.data`: for each fold, fit on the other folds, run on
/// it. Returns the stitched runs.
pub fn cross_validate(
    ctx: &Context,
    contenders: &mut [Box<dyn Contender + '_>],
    folds: &[Vec<usize>],
    progress: &dyn Progress,
) -> Result<Vec<PolicyRun>> {
    let n = ctx.data.len();
    let mut acc = Vec::new();
    progress.start("cross-validating", (folds.len() * contenders.len()) as u64);
    for (f, test) in folds.iter().enumerate() {
        let train = train_indices(folds, &[f]);
        for c in contenders.iter_mut() {
            c.fit(ctx, &train)?;
            merge(&mut acc, c.run(ctx, test)?);
            progress.step(&format!("fold {}/{}: {}", f + 1, folds.len(), c.label()));
        }
        info!("fold {}/{} done", f + 1, folds.len());
    }
    progress.finish();
    finish(acc, n)
}

/// Fits `contenders` on every image of `train` and runs them on every image of `test`.
pub fn holdout(
    train: &Context,
    test: &Context,
    contenders: &mut [Box<dyn Contender + '_>],
    progress: &dyn Progress,
) -> Result<Vec<PolicyRun>> {
    let train_idx: Vec<usize> = (0..train.data.len()).collect();
    let test_idx: Vec<usize> = (0..test.data.len()).collect();
    let mut acc = Vec::new();
    progress.start("fitting and replaying", contenders.len() as u64);
    for c in contenders.iter_mut() {
        c.fit(train, &train_idx)?;
        merge(&mut acc, c.run(test, &test_idx)?);
        progress.step(&c.label());
    }
    progress.finish();
    finish(acc, test.data.len())
}

/// Replay of a profile as an [`OutcomeSource`].
pub struct Replay<'a> {
    pub train: Context<'a>,
    pub test: Context<'a>,
    pub mode: Mode,
    pub contenders: Vec<Box<dyn Contender + 'a>>,
    pub progress: &'a dyn Progress,
}

impl OutcomeSource for Replay<'_> {
    fn describe(&self) -> String {
        match &self.mode {
            Mode::CrossValidation { k, seed } => format!(
                "replay of the profile of {} ({} images), {k}-fold cross-validation (seed {seed}): every policy fitted on the other folds",
                self.test.data.dataset_root,
                self.test.data.len()
            ),
            Mode::Holdout => format!(
                "replay of the profile of {} ({} images); policies fitted on the profile of {} ({} images)",
                self.test.data.dataset_root,
                self.test.data.len(),
                self.train.data.dataset_root,
                self.train.data.len()
            ),
        }
    }

    fn runs(&mut self) -> Result<Vec<PolicyRun>> {
        match self.mode.clone() {
            Mode::CrossValidation { k, seed } => {
                let f = folds(self.test.data.len(), k, seed)?;
                cross_validate(&self.test, &mut self.contenders, &f, self.progress)
            }
            Mode::Holdout => holdout(&self.train, &self.test, &mut self.contenders, self.progress),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::outcome::{Answer, Family};
    use crate::policies::testdata::Fixture;

    /// Remembers what it was trained on and flags any scored image among them.
    struct LeakageDetector {
        trained: Vec<usize>,
        leaks: Rc<RefCell<Vec<usize>>>,
    }

    impl Contender for LeakageDetector {
        fn label(&self) -> String {
            "leakage detector".into()
        }
        fn fit(&mut self, _: &Context, train: &[usize]) -> Result<()> {
            self.trained = train.to_vec();
            Ok(())
        }
        fn run(&self, ctx: &Context, test: &[usize]) -> Result<Vec<PolicyRun>> {
            let mut run = PolicyRun::new("spy", Family::Random, "");
            for &i in test {
                if self.trained.contains(&i) {
                    self.leaks.borrow_mut().push(i);
                }
                run.outcomes
                    .push(ctx.local(i, 1.0, true, true, Answer::Local(0)));
            }
            Ok(vec![run])
        }
    }

    #[test]
    fn cross_validation_never_scores_a_training_image() {
        let fx = Fixture::new(50);
        let leaks = Rc::new(RefCell::new(Vec::new()));
        let mut cs: Vec<Box<dyn Contender>> = vec![Box::new(LeakageDetector {
            trained: Vec::new(),
            leaks: leaks.clone(),
        })];
        let f = folds(50, 5, 3).unwrap();
        let runs = cross_validate(&fx.ctx(), &mut cs, &f, &NoProgress).unwrap();
        assert!(leaks.borrow().is_empty(), "{:?}", leaks.borrow());
        assert_eq!(runs[0].outcomes.len(), 50);
        assert!(folds(5, 5, 0).is_err());
    }
}
