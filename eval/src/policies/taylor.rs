//! Taylor et al., "Adaptive Deep Learning Model Selection on Embedded Systems", LCTES 2018:
//! a k-nearest-neighbour premodel on cheap image features predicts, before any network runs,
//! which model to use; the label is the cheapest model that classifies the image correctly,
//! and the chosen model alone runs. Here the premodel is `triage-premodel`'s kNN with the
//! single-label "cheapest correct variant" target over the profile's image features, trained
//! on the training images only; the cheapest variant predicted right with probability at
//! least `min_prob` runs (cheapest first).

use triage_premodel::features::FeatureSet;
use triage_premodel::learners::{choose_variant, KnnParams, LearnerParams, TargetForm};
use triage_premodel::{Premodel, PremodelConfig};

use super::{Contender, Context};
use crate::error::{Error, Result};
use crate::outcome::{Answer, Family, PolicyRun};

/// The kNN premodel policy.
#[derive(Default)]
pub struct TaylorKnn {
    model: Option<Premodel>,
    n_train: usize,
}

impl TaylorKnn {
    pub fn new() -> Self {
        Self::default()
    }

    fn config() -> PremodelConfig {
        PremodelConfig::new(
            FeatureSet::Image,
            LearnerParams::Knn(KnnParams::new().with_target(TargetForm::CheapestCorrect)),
        )
    }
}

impl Contender for TaylorKnn {
    fn label(&self) -> String {
        "Taylor et al. kNN premodel".into()
    }

    fn fit(&mut self, ctx: &Context, train: &[usize]) -> Result<()> {
        ctx.data.require_features()?;
        let x = ctx.data.features.select_rows(train);
        let y = ctx.data.correctness()?.select_rows(train);
        self.model = Some(Premodel::fit(&Self::config(), &x, &y, ctx.settings.seed)?);
        self.n_train = train.len();
        Ok(())
    }

    fn run(&self, ctx: &Context, test: &[usize]) -> Result<Vec<PolicyRun>> {
        let model = self
            .model
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("Taylor kNN run before fit".into()))?;
        let d = ctx.data;
        let costs: Vec<f32> = d.variants.iter().map(|v| v.stage_ms as f32).collect();
        let mut run = PolicyRun::new(
            "taylor-knn",
            Family::TaylorKnn,
            format!(
                "kNN (k = 10) on image features, cheapest-correct label, trained on {} images; runs the cheapest variant with P(right) >= {}",
                self.n_train, ctx.settings.min_prob
            ),
        );
        for &i in test {
            let p = model.predict_proba(d.features.row(i))?;
            let col = choose_variant(&p, &costs, ctx.settings.min_prob)?;
            let v = &d.variants[col];
            run.outcomes.push(ctx.local(
                i,
                d.decode_ms[i] + d.features_ms[i] + v.stage_ms,
                v.correct[i],
                v.top5[i],
                Answer::Local(col),
            ));
        }
        Ok(vec![run])
    }
}
