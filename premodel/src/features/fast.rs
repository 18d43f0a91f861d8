//! FAST-9 corner counting (Rosten & Drummond 2006), the same test as
//! `imageproc::corners::corners_fast9` but without its per-corner score: imageproc scores each
//! corner by binary search over thresholds (about eight more full tests per corner), which the
//! premodel never uses and which made it ~50 us of the per-image budget. A test checks that
//! both find exactly the same corners.

/// Bresenham circle of radius 3, clockwise from the top (imageproc's labelling).
const CIRCLE: [(isize, isize); 16] = [
    (0, -3),
    (1, -3),
    (2, -2),
    (3, -1),
    (3, 0),
    (3, 1),
    (2, 2),
    (1, 3),
    (0, 3),
    (-1, 3),
    (-2, 2),
    (-3, 1),
    (-3, 0),
    (-3, -1),
    (-2, -2),
    (-1, -3),
];

/// Whether 9 or more circularly contiguous entries satisfy `pred`.
fn has_span(ring: &[i16; 16], pred: impl Fn(i16) -> bool) -> bool {
    let mut run = 0;
    // Two laps catch spans that wrap around the start.
    for k in 0..32 {
        if pred(ring[k % 16]) {
            run += 1;
            if run >= 9 {
                return true;
            }
        } else {
            run = 0;
            if k >= 16 {
                return false;
            }
        }
    }
    false
}

/// Positions `(x, y)` of FAST-9 corners in a `width x height` luma buffer: pixels with at
/// least 9 contiguous circle pixels all brighter than `centre + threshold` or all darker than
/// `centre - threshold`. Pixels within 3 of the border are never corners.
pub(crate) fn fast9(luma: &[u8], width: usize, height: usize, threshold: u8) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    if width < 7 || height < 7 {
        return out;
    }
    let w = width as isize;
    let offsets: [isize; 16] = CIRCLE.map(|(dx, dy)| dy * w + dx);
    let t = i16::from(threshold);
    for y in 3..height - 3 {
        for x in 3..width - 3 {
            let i = (y * width + x) as isize;
            let at = |k: usize| i16::from(luma[(i + offsets[k]) as usize]);
            let c = i16::from(luma[i as usize]);
            let (lo, hi) = (c - t, c + t);
            let (p0, p4, p8, p12) = (at(0), at(4), at(8), at(12));
            // A 9-span must cover at least two of the four compass pixels, in adjacent pairs.
            let above = (p12 > hi || p4 > hi) && (p8 > hi || p0 > hi);
            let below = (p12 < lo || p4 < lo) && (p8 < lo || p0 < lo);
            if !above && !below {
                continue;
            }
            let ring: [i16; 16] = std::array::from_fn(at);
            if (above && has_span(&ring, |p| p > hi)) || (below && has_span(&ring, |p| p < lo)) {
                out.push((x as u32, y as u32));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use image::GrayImage;

    fn reference(img: &GrayImage, t: u8) -> Vec<(u32, u32)> {
        imageproc::corners::corners_fast9(img, t)
            .into_iter()
            .map(|c| (c.x, c.y))
            .collect()
    }

    #[test]
    fn same_corners_as_imageproc_on_random_blocky_images() {
        let mut r = SplitMix64::new(4);
        for _ in 0..20 {
            let (w, h) = (40 + r.below(40) as u32, 30 + r.below(40) as u32);
            let cell = 1 + r.below(6) as u32;
            let vals: Vec<u8> = (0..(w * h)).map(|_| r.below(256) as u8).collect();
            let img = GrayImage::from_fn(w, h, |x, y| {
                image::Luma([vals[((y / cell) * w + x / cell) as usize]])
            });
            for t in [5, 20, 60] {
                let ours = fast9(img.as_raw(), w as usize, h as usize, t);
                assert_eq!(ours, reference(&img, t), "{w}x{h} cell {cell} t {t}");
            }
        }
    }

    #[test]
    fn same_corners_as_imageproc_on_real_photos() {
        let dir = crate::features::tests::shared_dir().join("datasets/imagenet-sample/images");
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("sample images at {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        let mut total = 0;
        for p in paths.iter().take(15) {
            let img = image::open(p).unwrap().to_rgb8();
            let luma = image::imageops::grayscale(&crate::features::downsize(&img));
            let ours = fast9(
                luma.as_raw(),
                luma.width() as usize,
                luma.height() as usize,
                20,
            );
            assert_eq!(ours, reference(&luma, 20), "{}", p.display());
            total += ours.len();
        }
        assert!(total > 0);
    }

    #[test]
    fn tiny_images_have_no_corners() {
        assert!(fast9(&[0; 36], 6, 6, 10).is_empty());
    }
}
