//! Canny edge detection and 8-connected edge chains, written for the premodel's tiny working
//! images.
//!
//! `imageproc::edges::canny` (plus `imageproc` Sobel for edge angles) costs ~0.45 ms at 85x64,
//! nearly twice the premodel's whole per-image budget, because its generic per-pixel filters
//! do bounds-checked, clamped reads. This is the same algorithm on flat buffers: separable
//! 7-tap binomial blur (sigma ~1.22, close to imageproc's 1.4), Sobel, non-maximum
//! suppression in four directions, and hysteresis. `imageproc::edges::canny` remains the
//! reference: a test checks the two agree on real photos.

/// Sobel gradients of the blurred luma and the final edge map.
pub(crate) struct Edges {
    pub width: usize,
    pub height: usize,
    /// 1 for edge pixels, 0 elsewhere.
    pub is_edge: Vec<u8>,
    /// Sobel x/y gradients on the 0..255 luma scale (the border is 0).
    pub gx: Vec<f32>,
    pub gy: Vec<f32>,
}

const BINOMIAL7: [u32; 7] = [1, 6, 15, 20, 15, 6, 1];
/// Sum of `BINOMIAL7` squared: the fixed-point scale after both blur passes.
const BLUR_SCALE: f32 = 64.0 * 64.0;

/// Canny edges of a `width x height` luma buffer with hysteresis thresholds on Sobel magnitude
/// (0..~1140 scale, as in `imageproc::edges::canny`).
pub(crate) fn canny(luma: &[u8], width: usize, height: usize, low: f32, high: f32) -> Edges {
    let n = width * height;
    let blurred = blur(luma, width, height);
    let mut gx = vec![0f32; n];
    let mut gy = vec![0f32; n];
    let mut mag = vec![0f32; n];
    let s = 1.0 / BLUR_SCALE;
    for y in 1..height.saturating_sub(1) {
        let (up, mid, down) = (
            &blurred[(y - 1) * width..y * width],
            &blurred[y * width..(y + 1) * width],
            &blurred[(y + 1) * width..(y + 2) * width],
        );
        for x in 1..width - 1 {
            let (l, r) = (x - 1, x + 1);
            let dx = (up[r] + 2 * mid[r] + down[r]) as i64 - (up[l] + 2 * mid[l] + down[l]) as i64;
            let dy = (down[l] + 2 * down[x] + down[r]) as i64 - (up[l] + 2 * up[x] + up[r]) as i64;
            let (fx, fy) = (dx as f32 * s, dy as f32 * s);
            let i = y * width + x;
            gx[i] = fx;
            gy[i] = fy;
            mag[i] = (fx * fx + fy * fy).sqrt();
        }
    }

    // Non-maximum suppression: keep ridge pixels of the magnitude across the gradient.
    // tan(22.5 deg) and tan(67.5 deg) split directions into 4 bins.
    const T1: f32 = 0.414_213_57;
    const T2: f32 = 2.414_213_6;
    let mut candidate = vec![0u8; n];
    let mut stack = Vec::new();
    let mut is_edge = vec![0u8; n];
    for y in 1..height.saturating_sub(1) {
        for x in 1..width - 1 {
            let i = y * width + x;
            let m = mag[i];
            if m < low {
                continue;
            }
            let (ax, ay) = (gx[i].abs(), gy[i].abs());
            let (a, b) = if ay <= T1 * ax {
                (i - 1, i + 1)
            } else if ay >= T2 * ax {
                (i - width, i + width)
            } else if (gx[i] > 0.0) == (gy[i] > 0.0) {
                (i - width - 1, i + width + 1)
            } else {
                (i - width + 1, i + width - 1)
            };
            // Strict on one side so plateaus keep exactly one pixel.
            if m > mag[a] && m >= mag[b] {
                candidate[i] = 1;
                if m >= high {
                    is_edge[i] = 1;
                    stack.push(i);
                }
            }
        }
    }

    // Hysteresis: grow strong edges through connected weak candidates.
    while let Some(i) = stack.pop() {
        let (nb, k) = neighbours(i, width, height);
        for &j in &nb[..k] {
            if candidate[j] == 1 && is_edge[j] == 0 {
                is_edge[j] = 1;
                stack.push(j);
            }
        }
    }
    Edges {
        width,
        height,
        is_edge,
        gx,
        gy,
    }
}

/// The 8-neighbours of pixel `i` that lie inside the image (array plus count, no allocation).
fn neighbours(i: usize, width: usize, height: usize) -> ([usize; 8], usize) {
    let (x, y) = (i % width, i / width);
    let mut out = [0usize; 8];
    let mut k = 0;
    for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
        for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
            if nx != x || ny != y {
                out[k] = ny * width + nx;
                k += 1;
            }
        }
    }
    (out, k)
}

/// Separable 7-tap binomial blur with clamped borders, in fixed point (scale 64 * 64).
fn blur(luma: &[u8], width: usize, height: usize) -> Vec<u32> {
    let mut horiz = vec![0u32; width * height];
    // One row padded by 3 replicated pixels each side, so the taps need no bounds logic.
    let mut padded = vec![0u32; width + 6];
    for y in 0..height {
        let row = &luma[y * width..(y + 1) * width];
        let (first, last) = (u32::from(row[0]), u32::from(row[width - 1]));
        padded[..3].fill(first);
        padded[width + 3..].fill(last);
        for (p, &v) in padded[3..width + 3].iter_mut().zip(row) {
            *p = u32::from(v);
        }
        for (d, win) in horiz[y * width..(y + 1) * width]
            .iter_mut()
            .zip(padded.windows(7))
        {
            *d = win[0] + win[6] + 6 * (win[1] + win[5]) + 15 * (win[2] + win[4]) + 20 * win[3];
        }
    }
    let mut out = vec![0u32; width * height];
    for y in 0..height {
        let dst = &mut out[y * width..(y + 1) * width];
        for (k, w) in BINOMIAL7.iter().enumerate() {
            let src_y = (y + k).saturating_sub(3).min(height - 1);
            let src = &horiz[src_y * width..(src_y + 1) * width];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += w * s;
            }
        }
    }
    out
}

/// Sizes of the 8-connected edge chains and the pixels (x, y) of the largest one (ties go to
/// the chain met first in raster order).
pub(crate) fn chains(edges: &Edges) -> (Vec<u32>, Vec<(i32, i32)>) {
    let (w, h) = (edges.width, edges.height);
    let mut seen = vec![false; w * h];
    let mut sizes = Vec::new();
    let mut largest: Vec<usize> = Vec::new();
    let mut current = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if edges.is_edge[start] == 0 || seen[start] {
            continue;
        }
        current.clear();
        seen[start] = true;
        stack.push(start);
        while let Some(i) = stack.pop() {
            current.push(i);
            let (nb, k) = neighbours(i, w, h);
            for &j in &nb[..k] {
                if edges.is_edge[j] == 1 && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        sizes.push(current.len() as u32);
        if current.len() > largest.len() {
            std::mem::swap(&mut largest, &mut current);
        }
    }
    let points = largest
        .iter()
        .map(|&i| ((i % w) as i32, (i / w) as i32))
        .collect();
    (sizes, points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::GrayImage;

    fn density(e: &[u8]) -> f64 {
        e.iter().filter(|&&v| v != 0).count() as f64 / e.len() as f64
    }

    /// Fraction of `a`'s edge pixels with an edge of `b` within one pixel.
    fn recall(a: &[u8], b: &[u8], w: usize, h: usize) -> f64 {
        let (mut hit, mut total) = (0, 0);
        for i in 0..w * h {
            if a[i] == 0 {
                continue;
            }
            total += 1;
            let (nb, k) = neighbours(i, w, h);
            if b[i] != 0 || nb[..k].iter().any(|&j| b[j] != 0) {
                hit += 1;
            }
        }
        if total == 0 {
            1.0
        } else {
            hit as f64 / total as f64
        }
    }

    #[test]
    fn step_edge_is_one_pixel_wide_line() {
        let (w, h) = (20, 12);
        let luma: Vec<u8> = (0..w * h)
            .map(|i| if i % w < 10 { 0 } else { 200 })
            .collect();
        let e = canny(&luma, w, h, 50.0, 100.0);
        for y in 1..h - 1 {
            let row: Vec<usize> = (0..w).filter(|&x| e.is_edge[y * w + x] == 1).collect();
            assert_eq!(row.len(), 1, "row {y}: {row:?}");
            assert!((9..=10).contains(&row[0]));
        }
        let (sizes, main) = chains(&e);
        assert_eq!(sizes, vec![(h - 2) as u32]);
        assert_eq!(main.len(), h - 2);
    }

    #[test]
    fn flat_image_has_no_edges() {
        let e = canny(&[128; 64 * 48], 64, 48, 50.0, 100.0);
        assert!(e.is_edge.iter().all(|&v| v == 0));
        assert!(chains(&e).0.is_empty());
    }

    #[test]
    fn agrees_with_imageproc_canny_on_real_photos() {
        let dir = crate::features::tests::shared_dir().join("datasets/imagenet-sample/images");
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("sample images at {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        let (mut ours_total, mut theirs_total, mut recall_sum) = (0.0, 0.0, 0.0);
        let n = 25;
        for p in paths.iter().take(n) {
            let img = image::open(p).unwrap().to_rgb8();
            let small = crate::features::downsize(&img);
            let luma: GrayImage = image::imageops::grayscale(&small);
            let (w, h) = (luma.width() as usize, luma.height() as usize);
            let ours = canny(luma.as_raw(), w, h, 50.0, 100.0).is_edge;
            let theirs = imageproc::edges::canny(&luma, 50.0, 100.0).into_raw();
            ours_total += density(&ours);
            theirs_total += density(&theirs);
            recall_sum += recall(&theirs, &ours, w, h);
        }
        let ratio = ours_total / theirs_total;
        let recall = recall_sum / n as f64;
        // Different blur widths move a few edges; the two must still broadly agree.
        assert!((0.7..1.5).contains(&ratio), "density ratio {ratio}");
        assert!(recall > 0.75, "recall of imageproc edges {recall}");
    }
}
