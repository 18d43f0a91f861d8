//! Merging shard profiles into one profile of the whole dataset.

use super::{Header, Profile};
use crate::error::{Error, Result};

/// Merges finished profiles of disjoint parts of one dataset. They must agree on everything
/// that defines a measurement (zoo, variants, remote options, dataset, decoding, features) and
/// together cover the whole image list exactly once. Costs come from the first input: each
/// shard measured them on its own host, and the first is as good as any.
pub fn merge(parts: Vec<Profile>) -> Result<Profile> {
    let mut parts = parts;
    parts.sort_by_key(|p| p.header.range.0);
    let first = parts
        .first()
        .ok_or_else(|| Error::InvalidArgument("nothing to merge".into()))?;
    let base: Header = first.header.clone();
    let costs = first.costs.clone();
    for p in &parts[1..] {
        if let Some(field) = base.incompatibility(&p.header, false) {
            return Err(Error::Mismatch(format!(
                "cannot merge profiles with different {field} (ranges {:?} and {:?})",
                base.range, p.header.range
            )));
        }
    }
    let n_total = base.dataset.n_total;
    let mut expected = 0u32;
    for p in &parts {
        let (lo, hi) = p.header.range;
        if lo != expected {
            return Err(Error::Mismatch(if lo < expected {
                format!("profiles overlap: images {lo}..{expected} appear twice")
            } else {
                format!("images {expected}..{lo} are in none of the profiles")
            }));
        }
        expected = hi;
    }
    if expected != n_total {
        return Err(Error::Mismatch(format!(
            "images {expected}..{n_total} are in none of the profiles"
        )));
    }
    let images = parts.into_iter().flat_map(|p| p.images).collect();
    let header = Header {
        shard: None,
        range: (0, n_total),
        ..base
    };
    Ok(Profile {
        header,
        costs,
        images,
    })
}
