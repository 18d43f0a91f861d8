//! The MLP's two representations: a `burn` module for training and record serialization, and a
//! plain weight struct for evaluation. A forward pass for one row is ~3k multiply-adds; doing
//! it by hand avoids tensor allocation and backend dispatch, which would cost far more than the
//! arithmetic at run time.

use burn::module::{Module, Param, ParamId};
use burn::nn::Linear;
use burn::store::ModuleRecord;
use burn::tensor::{activation, Bytes, Device, Tensor, TensorData};

use crate::error::{Error, Result};

/// One hidden ReLU layer, linear outputs (logits).
#[derive(Module, Debug)]
pub(super) struct Net {
    pub hidden: Linear,
    pub output: Linear,
}

impl Net {
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.output
            .forward(activation::relu(self.hidden.forward(x)))
    }
}

/// Plain copy of the network's parameters. Matrices are row-major `[inputs, outputs]`, the
/// layout burn's `Linear` uses.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Weights {
    pub d_in: usize,
    pub hidden: usize,
    pub d_out: usize,
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
    pub w2: Vec<f32>,
    pub b2: Vec<f32>,
}

fn linear(w: Vec<f32>, b: Vec<f32>, d_in: usize, d_out: usize, device: &Device) -> Linear {
    Linear {
        weight: Param::from_data(TensorData::new(w, [d_in, d_out]), device),
        bias: Some(Param::from_data(TensorData::new(b, [d_out]), device)),
    }
}

fn tensor2(v: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

fn tensor1(v: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
}

fn record_err(e: impl std::fmt::Debug) -> Error {
    Error::Serialization(format!("mlp record: {e:?}"))
}

fn values(t: Tensor<2>) -> Result<Vec<f32>> {
    t.into_data().try_into_vec::<f32>().map_err(record_err)
}

fn values1(t: Tensor<1>) -> Result<Vec<f32>> {
    t.into_data().try_into_vec::<f32>().map_err(record_err)
}

impl Weights {
    pub fn zeros(d_in: usize, hidden: usize, d_out: usize) -> Self {
        Self {
            d_in,
            hidden,
            d_out,
            w1: vec![0.0; d_in * hidden],
            b1: vec![0.0; hidden],
            w2: vec![0.0; hidden * d_out],
            b2: vec![0.0; d_out],
        }
    }

    pub fn to_net(&self, device: &Device) -> Net {
        Net {
            hidden: linear(
                self.w1.clone(),
                self.b1.clone(),
                self.d_in,
                self.hidden,
                device,
            ),
            output: linear(
                self.w2.clone(),
                self.b2.clone(),
                self.hidden,
                self.d_out,
                device,
            ),
        }
    }

    pub fn from_net(net: &Net) -> Result<Self> {
        let [d_in, hidden] = net.hidden.weight.val().dims();
        let [_, d_out] = net.output.weight.val().dims();
        let bias = |l: &Linear, n: usize| match &l.bias {
            Some(b) => values1(b.val()),
            None => Ok(vec![0.0; n]),
        };
        let w = Self {
            d_in,
            hidden,
            d_out,
            w1: values(net.hidden.weight.val())?,
            b1: bias(&net.hidden, hidden)?,
            w2: values(net.output.weight.val())?,
            b2: bias(&net.output, d_out)?,
        };
        w.check()?;
        Ok(w)
    }

    /// Shapes agree with the declared dimensions.
    pub fn check(&self) -> Result<()> {
        let ok = self.w1.len() == self.d_in * self.hidden
            && self.b1.len() == self.hidden
            && self.w2.len() == self.hidden * self.d_out
            && self.b2.len() == self.d_out;
        if ok {
            Ok(())
        } else {
            Err(Error::Corrupt(
                "mlp weights have inconsistent shapes".into(),
            ))
        }
    }

    /// Output logits for one row. `scratch` must hold `hidden` values, `out` `d_out`.
    pub fn logits(&self, row: &[f32], scratch: &mut [f32], out: &mut [f32]) {
        scratch.copy_from_slice(&self.b1);
        for (x, wrow) in row.iter().zip(self.w1.chunks_exact(self.hidden)) {
            for (h, w) in scratch.iter_mut().zip(wrow) {
                *h += x * w;
            }
        }
        out.copy_from_slice(&self.b2);
        for (h, wrow) in scratch.iter().zip(self.w2.chunks_exact(self.d_out)) {
            let h = h.max(0.0);
            if h == 0.0 {
                continue;
            }
            for (o, w) in out.iter_mut().zip(wrow) {
                *o += h * w;
            }
        }
    }

    /// The network in burn's record format (burnpack bytes). Parameter ids are fixed (burn
    /// would otherwise draw random ones) so equal weights always give equal bytes.
    pub fn to_record_bytes(&self) -> Result<Vec<u8>> {
        let device = Device::flex();
        let net = Net {
            hidden: Linear {
                weight: Param::initialized(
                    ParamId::from(1),
                    tensor2(&self.w1, [self.d_in, self.hidden], &device),
                ),
                bias: Some(Param::initialized(
                    ParamId::from(2),
                    tensor1(&self.b1, &device),
                )),
            },
            output: Linear {
                weight: Param::initialized(
                    ParamId::from(3),
                    tensor2(&self.w2, [self.hidden, self.d_out], &device),
                ),
                bias: Some(Param::initialized(
                    ParamId::from(4),
                    tensor1(&self.b2, &device),
                )),
            },
        };
        let bytes = net.into_record().into_bytes().map_err(record_err)?;
        Ok(bytes.to_vec())
    }

    /// Loads weights of the given shape from [`Weights::to_record_bytes`] output.
    pub fn from_record_bytes(
        bytes: &[u8],
        d_in: usize,
        hidden: usize,
        d_out: usize,
    ) -> Result<Self> {
        let record =
            ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).map_err(record_err)?;
        let net = Self::zeros(d_in, hidden, d_out)
            .to_net(&Device::flex())
            .try_load_record(record)
            .map_err(record_err)?;
        let w = Self::from_net(&net)?;
        if (w.d_in, w.hidden, w.d_out) != (d_in, hidden, d_out) {
            return Err(Error::Corrupt("mlp record has unexpected shape".into()));
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn random_weights(seed: u64) -> Weights {
        let mut r = SplitMix64::new(seed);
        let mut w = Weights::zeros(5, 7, 3);
        for v in
            w.w1.iter_mut()
                .chain(&mut w.b1)
                .chain(&mut w.w2)
                .chain(&mut w.b2)
        {
            *v = r.normal();
        }
        w
    }

    #[test]
    fn hand_forward_matches_burn_forward() {
        let w = random_weights(1);
        let device = Device::flex();
        let net = w.to_net(&device);
        let mut r = SplitMix64::new(2);
        let rows: Vec<f32> = (0..4 * 5).map(|_| r.normal()).collect();
        let x = Tensor::<2>::from_data(TensorData::new(rows.clone(), [4, 5]), &device);
        let burn_out = values(net.forward(x)).unwrap();
        let mut scratch = vec![0.0; 7];
        for i in 0..4 {
            let mut out = vec![0.0; 3];
            w.logits(&rows[i * 5..(i + 1) * 5], &mut scratch, &mut out);
            for (a, b) in out.iter().zip(&burn_out[i * 3..(i + 1) * 3]) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn record_round_trip_is_exact() {
        let w = random_weights(3);
        let bytes = w.to_record_bytes().unwrap();
        assert_eq!(Weights::from_record_bytes(&bytes, 5, 7, 3).unwrap(), w);
        assert!(Weights::from_record_bytes(&bytes, 5, 8, 3).is_err());
        assert!(Weights::from_record_bytes(&bytes[..bytes.len() / 2], 5, 7, 3).is_err());
    }
}
