//! Image-only features (Taylor et al. 2018, table 2, plus colour and file statistics): cheap
//! global descriptors of how "hard" a picture looks - clutter, texture, contrast, colour - and
//! of the original file.
//!
//! All pixel statistics are computed on the working-resolution image (see
//! [`super::resize`]); lengths are expressed as fractions of its shorter side and counts per
//! kilopixel so that a caller passing a slightly different size still gets comparable values.

use image::RgbImage;
use imageproc::geometry::{arc_length, contour_area, convex_hull};
use imageproc::point::Point;

use super::edges::{canny, chains, Edges};
use super::fast::fast9;
use super::ImageMeta;
use crate::error::{Error, Result};

/// Names of the image features, in output order.
pub const IMAGE_FEATURE_NAMES: [&str; 20] = [
    "fast_keypoints_per_kpx",
    "luma_mean",
    "luma_std",
    "edge_density",
    "edge_length_mean",
    "edge_angle_mean",
    "edge_angle_coherence",
    "main_edge_area_perimeter",
    "colourfulness",
    "hue_hist_0",
    "hue_hist_1",
    "hue_hist_2",
    "hue_hist_3",
    "hue_hist_4",
    "hue_hist_5",
    "hue_hist_6",
    "hue_hist_7",
    "aspect_ratio",
    "megapixels",
    "jpeg_bytes_per_pixel",
];

/// FAST-9 intensity threshold (0..255 luma). 20 is the usual default; at 48 px it finds tens
/// of corners on cluttered scenes and a handful on plain ones.
const FAST_THRESHOLD: u8 = 20;
/// Canny hysteresis thresholds on Sobel magnitude of the blurred luma (max ~1140).
const CANNY_LOW: f32 = 50.0;
const CANNY_HIGH: f32 = 100.0;
/// Hue histogram bins.
const HUE_BINS: usize = 8;

/// Writes the image features for `img` (already at working resolution) and the original
/// file's `meta` into `out`, in [`IMAGE_FEATURE_NAMES`] order.
pub(crate) fn image_features(img: &RgbImage, meta: &ImageMeta, out: &mut [f32]) -> Result<()> {
    if out.len() != IMAGE_FEATURE_NAMES.len() {
        return Err(Error::Shape {
            what: "image feature buffer",
            expected: IMAGE_FEATURE_NAMES.len(),
            got: out.len(),
        });
    }
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::EmptyImage {
            width: w,
            height: h,
        });
    }
    if meta.width == 0 || meta.height == 0 {
        return Err(Error::EmptyImage {
            width: meta.width,
            height: meta.height,
        });
    }
    let n_px = f64::from(w) * f64::from(h);
    let short = f64::from(w.min(h));

    let colour = colour_stats(img);
    let luma = &colour.luma;

    let keypoints = fast9(luma, w as usize, h as usize, FAST_THRESHOLD).len() as f64;
    let edges = canny(luma, w as usize, h as usize, CANNY_LOW, CANNY_HIGH);
    let orient = edge_orientation(&edges);
    let comps = edge_components(&edges);

    let orig_px = f64::from(meta.width) * f64::from(meta.height);
    let values = [
        keypoints * 1000.0 / n_px,
        colour.luma_mean,
        colour.luma_std,
        orient.edge_pixels / n_px,
        comps.mean_length / short,
        orient.mean_angle,
        orient.coherence,
        comps.main_area_perimeter / short,
        colour.colourfulness,
        colour.hue_hist[0],
        colour.hue_hist[1],
        colour.hue_hist[2],
        colour.hue_hist[3],
        colour.hue_hist[4],
        colour.hue_hist[5],
        colour.hue_hist[6],
        colour.hue_hist[7],
        f64::from(meta.width) / f64::from(meta.height),
        orig_px / 1e6,
        meta.byte_len as f64 / orig_px,
    ];
    for (o, v) in out.iter_mut().zip(values) {
        *o = v as f32;
    }
    Ok(())
}

/// Per-pixel colour statistics gathered in one pass over the RGB buffer.
struct ColourStats {
    luma: Vec<u8>,
    luma_mean: f64,
    luma_std: f64,
    colourfulness: f64,
    hue_hist: [f64; HUE_BINS],
}

/// Luma (BT.601), its mean and spread, Hasler & Süsstrunk colourfulness and a
/// saturation-weighted hue histogram. Everything is on a 0..1 scale; the histogram is divided by
/// the pixel count, so a grey image has an all-zero histogram and a vivid one sums towards 1.
/// Sums are accumulated in integers (exact, and cheaper than floats per pixel).
fn colour_stats(img: &RgbImage) -> ColourStats {
    let (w, h) = img.dimensions();
    let n = f64::from(w) * f64::from(h);
    let mut luma = Vec::with_capacity((w * h) as usize);
    let (mut sl, mut sll) = (0u64, 0u64);
    // `yb2` is twice the opponent yellow-blue channel, to stay in integers.
    let (mut srg, mut srg2, mut syb2, mut syb22) = (0i64, 0i64, 0i64, 0i64);
    let mut hist = [0f32; HUE_BINS];
    // Reciprocals of 1..=255 replace two divisions per coloured pixel with multiplications.
    let mut recip = [0f32; 256];
    for (v, r) in recip.iter_mut().enumerate().skip(1) {
        *r = 1.0 / v as f32;
    }
    let bins_per_sextant = HUE_BINS as f32 / 6.0;
    for p in img.as_raw().chunks_exact(3) {
        let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
        // Integer BT.601 luma, the same weights `image` uses for grayscale conversion.
        let y = ((r * 299 + g * 587 + b * 114 + 500) / 1000) as u8;
        luma.push(y);
        sl += u64::from(y);
        sll += u64::from(y) * u64::from(y);

        let rg = i64::from(r - g);
        let yb2 = i64::from(r + g - 2 * b);
        srg += rg;
        srg2 += rg * rg;
        syb2 += yb2;
        syb22 += yb2 * yb2;

        let max = r.max(g).max(b);
        let chroma = max - r.min(g).min(b);
        if chroma > 0 {
            // Hue times chroma, in [0, 6 * chroma): sextant offset plus position within it.
            let hc = if max == r {
                let d = g - b;
                if d < 0 {
                    d + 6 * chroma
                } else {
                    d
                }
            } else if max == g {
                b - r + 2 * chroma
            } else {
                r - g + 4 * chroma
            };
            let inv_c = recip[chroma as usize];
            let bin = ((hc as f32 * inv_c * bins_per_sextant) as usize).min(HUE_BINS - 1);
            hist[bin] += chroma as f32 * recip[max as usize];
        }
    }
    // Variances from exact integer moments (n * sum(x^2) - sum(x)^2), so flat images give
    // exactly zero spread rather than rounding noise.
    let ni = i128::from(w) * i128::from(h);
    let var_of =
        |s: i128, s2: i128, scale: f64| (ni * s2 - s * s).max(0) as f64 / (n * n * scale * scale);
    let mean = sl as f64 / n / 255.0;
    let var = var_of(i128::from(sl), i128::from(sll), 255.0);
    let (mrg, myb) = (srg as f64 / n / 255.0, syb2 as f64 / n / 510.0);
    let vrg = var_of(i128::from(srg), i128::from(srg2), 255.0);
    let vyb = var_of(i128::from(syb2), i128::from(syb22), 510.0);
    let colourfulness = (vrg + vyb).sqrt() + 0.3 * (mrg * mrg + myb * myb).sqrt();
    ColourStats {
        luma,
        luma_mean: mean,
        luma_std: var.sqrt(),
        colourfulness,
        hue_hist: hist.map(|v| f64::from(v) / n),
    }
}

struct Orientation {
    edge_pixels: f64,
    /// Circular mean of edge orientation (mod pi), in radians in [0, pi).
    mean_angle: f64,
    /// Length of the mean resultant of doubled angles: 1 = all edges parallel, 0 = isotropic.
    coherence: f64,
}

/// Orientation statistics of the Sobel gradient (of the blurred luma) at edge pixels.
/// Orientation is an axis (theta and theta + pi are the same edge), so angles are averaged as
/// doubled angles; the double-angle cosine and sine come straight from the gradient components
/// without any trig.
fn edge_orientation(edges: &Edges) -> Orientation {
    let (mut c, mut s, mut count) = (0f64, 0f64, 0f64);
    for ((e, x), y) in edges.is_edge.iter().zip(&edges.gx).zip(&edges.gy) {
        if *e == 0 {
            continue;
        }
        count += 1.0;
        let (x, y) = (f64::from(*x), f64::from(*y));
        let m2 = x * x + y * y;
        if m2 > 0.0 {
            c += (x * x - y * y) / m2;
            s += 2.0 * x * y / m2;
        }
    }
    if count == 0.0 {
        return Orientation {
            edge_pixels: 0.0,
            mean_angle: 0.0,
            coherence: 0.0,
        };
    }
    let mean_angle = (0.5 * s.atan2(c)).rem_euclid(std::f64::consts::PI);
    Orientation {
        edge_pixels: count,
        mean_angle,
        coherence: (c * c + s * s).sqrt() / count,
    }
}

struct Components {
    /// Mean size (pixels) of 8-connected edge chains: the "average edge length".
    mean_length: f64,
    /// Convex-hull area over hull perimeter of the largest chain, a proxy for the size and
    /// compactness of the main object outline.
    main_area_perimeter: f64,
}

fn edge_components(edges: &Edges) -> Components {
    let (sizes, main) = chains(edges);
    if sizes.is_empty() {
        return Components {
            mean_length: 0.0,
            main_area_perimeter: 0.0,
        };
    }
    let total: u64 = sizes.iter().map(|&s| u64::from(s)).sum();
    let mean_length = total as f64 / sizes.len() as f64;
    let points: Vec<Point<i32>> = main.into_iter().map(|(x, y)| Point::new(x, y)).collect();
    let hull = convex_hull(points);
    let main_area_perimeter = if hull.len() >= 3 {
        let perimeter = arc_length(&hull, true);
        if perimeter > 0.0 {
            contour_area(&hull) / perimeter
        } else {
            0.0
        }
    } else {
        0.0
    };
    Components {
        mean_length,
        main_area_perimeter,
    }
}
