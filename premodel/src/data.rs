//! The two tables every learner is trained on: a dense feature matrix (one row per image) and
//! the per-image, per-variant correctness table the profile measured.
//!
//! These are plain row-major buffers rather than `ndarray` types so that callers (which may use
//! a different `ndarray` major version) never see the linear-algebra crate the learners use.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Dense row-major `f32` matrix: rows are images, columns are features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    n_rows: usize,
    n_cols: usize,
    data: Vec<f32>,
}

impl Matrix {
    /// Wraps a row-major buffer; fails if its length is not `n_rows * n_cols`.
    pub fn new(n_rows: usize, n_cols: usize, data: Vec<f32>) -> Result<Self> {
        let expected = n_rows.checked_mul(n_cols).ok_or(Error::Shape {
            what: "matrix buffer",
            expected: usize::MAX,
            got: data.len(),
        })?;
        if data.len() != expected {
            return Err(Error::Shape {
                what: "matrix buffer",
                expected,
                got: data.len(),
            });
        }
        Ok(Self {
            n_rows,
            n_cols,
            data,
        })
    }

    /// An all-zero matrix, to be filled row by row with [`Matrix::row_mut`].
    pub fn zeros(n_rows: usize, n_cols: usize) -> Self {
        Self {
            n_rows,
            n_cols,
            data: vec![0.0; n_rows * n_cols],
        }
    }

    /// Builds a matrix from equally long rows.
    pub fn from_rows<R: AsRef<[f32]>>(rows: &[R]) -> Result<Self> {
        let n_cols = rows.first().map_or(0, |r| r.as_ref().len());
        let mut data = Vec::with_capacity(rows.len() * n_cols);
        for row in rows {
            let row = row.as_ref();
            if row.len() != n_cols {
                return Err(Error::Shape {
                    what: "matrix row",
                    expected: n_cols,
                    got: row.len(),
                });
            }
            data.extend_from_slice(row);
        }
        Ok(Self {
            n_rows: rows.len(),
            n_cols,
            data,
        })
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// The whole row-major buffer.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Row `i`. Panics if `i` is out of range, like slice indexing.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.n_cols..(i + 1) * self.n_cols]
    }

    /// Mutable row `i`. Panics if `i` is out of range, like slice indexing.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.n_cols..(i + 1) * self.n_cols]
    }

    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f32]> + '_ {
        // `max(1)` keeps `chunks_exact` valid for zero-column matrices (which have no data).
        self.data.chunks_exact(self.n_cols.max(1))
    }

    /// A new matrix holding the given rows, in the given order (used for folds).
    pub fn select_rows(&self, idx: &[usize]) -> Self {
        let mut data = Vec::with_capacity(idx.len() * self.n_cols);
        for &i in idx {
            data.extend_from_slice(self.row(i));
        }
        Self {
            n_rows: idx.len(),
            n_cols: self.n_cols,
            data,
        }
    }

    /// A new matrix holding the given columns, in the given order (used after feature reduction).
    pub fn select_cols(&self, cols: &[usize]) -> Self {
        let mut data = Vec::with_capacity(self.n_rows * cols.len());
        for row in self.rows() {
            data.extend(cols.iter().map(|&c| row[c]));
        }
        Self {
            n_rows: self.n_rows,
            n_cols: cols.len(),
            data,
        }
    }

    /// Fails on the first NaN or infinity, naming where it is.
    pub fn check_finite(&self, what: &'static str) -> Result<()> {
        match self.data.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(p) => Err(Error::NonFinite {
                what,
                row: p / self.n_cols.max(1),
                col: p % self.n_cols.max(1),
            }),
        }
    }
}

/// Which variants classified which image correctly (`n_images x n_variants`), variants ordered
/// by cost, cheapest first. This is the premodel's training target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correctness {
    n_images: usize,
    n_variants: usize,
    data: Vec<bool>,
}

impl Correctness {
    /// Wraps a row-major buffer; fails if its length is not `n_images * n_variants` or if there
    /// are no variants.
    pub fn new(n_images: usize, n_variants: usize, data: Vec<bool>) -> Result<Self> {
        if n_variants == 0 {
            return Err(Error::Shape {
                what: "correctness variants",
                expected: 1,
                got: 0,
            });
        }
        if data.len() != n_images * n_variants {
            return Err(Error::Shape {
                what: "correctness buffer",
                expected: n_images * n_variants,
                got: data.len(),
            });
        }
        Ok(Self {
            n_images,
            n_variants,
            data,
        })
    }

    /// Builds the table from one row per image.
    pub fn from_rows<R: AsRef<[bool]>>(rows: &[R]) -> Result<Self> {
        let n_variants = rows.first().map_or(0, |r| r.as_ref().len());
        let mut data = Vec::with_capacity(rows.len() * n_variants);
        for row in rows {
            let row = row.as_ref();
            if row.len() != n_variants {
                return Err(Error::Shape {
                    what: "correctness row",
                    expected: n_variants,
                    got: row.len(),
                });
            }
            data.extend_from_slice(row);
        }
        Self::new(rows.len(), n_variants, data)
    }

    pub fn n_images(&self) -> usize {
        self.n_images
    }

    pub fn n_variants(&self) -> usize {
        self.n_variants
    }

    /// Correctness of every variant on image `i`. Panics if `i` is out of range.
    pub fn row(&self, i: usize) -> &[bool] {
        &self.data[i * self.n_variants..(i + 1) * self.n_variants]
    }

    pub fn get(&self, image: usize, variant: usize) -> bool {
        self.data[image * self.n_variants + variant]
    }

    /// The cheapest variant that classifies image `i` correctly, if any does.
    pub fn cheapest_correct(&self, i: usize) -> Option<usize> {
        self.row(i).iter().position(|&c| c)
    }

    /// The class label of the "cheapest correct variant" target form: the variant index, or
    /// `n_variants` (an extra "no variant is right" class) for images nothing classifies.
    ///
    /// The extra class keeps such images from teaching the learner that the most expensive
    /// variant is adequate for them; its probability mass simply lowers every variant's
    /// adequacy.
    pub fn cheapest_label(&self, i: usize) -> usize {
        self.cheapest_correct(i).unwrap_or(self.n_variants)
    }

    /// What a perfect selector would run on image `i`: the cheapest correct variant, or the
    /// cheapest variant when none is right (top-1 is lost either way, so spend the least).
    pub fn oracle_choice(&self, i: usize) -> usize {
        self.cheapest_correct(i).unwrap_or(0)
    }

    /// A new table holding the given images, in the given order.
    pub fn select_rows(&self, idx: &[usize]) -> Self {
        let mut data = Vec::with_capacity(idx.len() * self.n_variants);
        for &i in idx {
            data.extend_from_slice(self.row(i));
        }
        Self {
            n_images: idx.len(),
            n_variants: self.n_variants,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_rejects_wrong_buffer_length() {
        assert!(matches!(
            Matrix::new(2, 3, vec![0.0; 5]),
            Err(Error::Shape { expected: 6, .. })
        ));
    }

    #[test]
    fn select_rows_and_cols() {
        let m = Matrix::from_rows(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).unwrap();
        let r = m.select_rows(&[1, 0]);
        assert_eq!(r.row(0), &[4.0, 5.0, 6.0]);
        let c = m.select_cols(&[2, 0]);
        assert_eq!(c.row(1), &[6.0, 4.0]);
    }

    #[test]
    fn check_finite_names_the_cell() {
        let m = Matrix::from_rows(&[[1.0, 2.0], [3.0, f32::NAN]]).unwrap();
        assert!(matches!(
            m.check_finite("x"),
            Err(Error::NonFinite { row: 1, col: 1, .. })
        ));
    }

    #[test]
    fn labels_and_oracle() {
        let c = Correctness::from_rows(&[[false, true, true], [false, false, false]]).unwrap();
        assert_eq!(c.cheapest_correct(0), Some(1));
        assert_eq!(c.cheapest_label(1), 3);
        assert_eq!(c.oracle_choice(1), 0);
    }
}
