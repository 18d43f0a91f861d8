//! Decoding an image file once, to RGB, at the smallest resolution every consumer still needs.
//!
//! JPEG goes through `jpeg-decoder`, whose scaled IDCT decodes straight to 1/2, 1/4 or 1/8 of
//! the full size: when every variant that will see the image resizes its shorter side to at
//! most `R`, decoding at the largest reduction that keeps the shorter side >= `R` skips most of
//! the decode and most of the resize, and the resize that follows still downsamples (so the
//! result stays an antialiased downscale of the full image). Other formats go through `image`.
//! EXIF orientation is applied, grey, CMYK and alpha images become RGB, and image dimensions
//! are checked against limits before any pixel buffer is allocated.

use std::io::Cursor;
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::error::{Error, Result};

/// Limits and choices for [`decode_file`] / [`decode_bytes`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    /// Rotate/flip as the EXIF orientation tag says (what a photo viewer shows).
    pub apply_orientation: bool,
    /// When set, JPEGs may be decoded at a reduced scale as long as the shorter side stays at
    /// least this long. `None` always decodes at full resolution.
    pub min_shorter_side: Option<u32>,
    /// Images with more pixels than this are refused before decoding (decompression bombs).
    pub max_pixels: u64,
    /// Images whose shorter side is below this are refused: there is nothing to classify.
    pub min_side: u32,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            apply_orientation: true,
            min_shorter_side: None,
            max_pixels: 100_000_000,
            min_side: 8,
        }
    }
}

/// An image decoded to 8-bit RGB, oriented, possibly at a reduced scale.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    /// The pixels, oriented as displayed.
    pub rgb: RgbImage,
    /// Full-resolution width and height of the image as displayed (after orientation).
    pub width: u32,
    pub height: u32,
    /// Size of the encoded file in bytes.
    pub byte_len: u64,
    pub format: ImageFormat,
}

impl DecodedImage {
    /// Wraps already-decoded pixels (e.g. from a camera) as if decoded from a file.
    pub fn from_rgb(rgb: RgbImage, byte_len: u64) -> Self {
        DecodedImage {
            width: rgb.width(),
            height: rgb.height(),
            byte_len,
            format: ImageFormat::Png,
            rgb,
        }
    }

    /// The reduction factor of the decoded pixels relative to the full image (1, 2, 4 or 8).
    pub fn scale_denominator(&self) -> u32 {
        (self.width.min(self.height) / self.rgb.width().min(self.rgb.height()).max(1)).max(1)
    }
}

/// Reads and decodes one image file.
pub fn decode_file(path: &Path, opts: &DecodeOptions) -> Result<DecodedImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_bytes(&bytes, path, opts)
}

/// Decodes an encoded image held in memory; `path` only names the source in errors.
pub fn decode_bytes(bytes: &[u8], path: &Path, opts: &DecodeOptions) -> Result<DecodedImage> {
    if bytes.is_empty() {
        return Err(Error::image(path, "empty file (0 bytes)"));
    }
    let format = image::guess_format(bytes).map_err(|_| {
        Error::image(
            path,
            "not a recognised image (no JPEG, PNG, WebP, GIF, BMP or TIFF signature)",
        )
    })?;
    // Third-party decoders assert on some internal invariants; a hostile file must still
    // become an error for this one image, never take down a run over thousands.
    let decoded = std::panic::catch_unwind(|| match format {
        ImageFormat::Jpeg => decode_jpeg(bytes, path, opts),
        _ => decode_other(bytes, format, path, opts),
    })
    .map_err(|_| Error::image(path, "the decoder failed on malformed data"))??;
    let (w, h) = (decoded.width, decoded.height);
    if w.min(h) < opts.min_side {
        return Err(Error::image(
            path,
            format!(
                "image is {w}x{h}, smaller than the {}-pixel minimum side",
                opts.min_side
            ),
        ));
    }
    Ok(decoded)
}

fn check_dimensions(path: &Path, w: u32, h: u32, opts: &DecodeOptions) -> Result<()> {
    if w == 0 || h == 0 {
        return Err(Error::image(path, format!("image has no pixels ({w}x{h})")));
    }
    if u64::from(w) * u64::from(h) > opts.max_pixels {
        return Err(Error::image(
            path,
            format!(
                "image is {w}x{h} = {} Mpixel, over the {} Mpixel limit (decompression bomb?)",
                u64::from(w) * u64::from(h) / 1_000_000,
                opts.max_pixels / 1_000_000
            ),
        ));
    }
    Ok(())
}

/// The largest DCT reduction (1, 2, 4 or 8) that keeps `shorter / d >= target`.
pub fn jpeg_scale_denominator(width: u32, height: u32, target_shorter: Option<u32>) -> u32 {
    let Some(target) = target_shorter else {
        return 1;
    };
    let shorter = width.min(height);
    [8u32, 4, 2]
        .into_iter()
        .find(|&d| shorter.div_ceil(d) >= target)
        .unwrap_or(1)
}

fn decode_jpeg(bytes: &[u8], path: &Path, opts: &DecodeOptions) -> Result<DecodedImage> {
    let jerr = |e: jpeg_decoder::Error| Error::image(path, format!("corrupt JPEG: {e}"));
    let mut dec = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    dec.read_info().map_err(jerr)?;
    let info = dec
        .info()
        .ok_or_else(|| Error::image(path, "JPEG header has no frame"))?;
    let (full_w, full_h) = (u32::from(info.width), u32::from(info.height));
    check_dimensions(path, full_w, full_h, opts)?;
    let d = jpeg_scale_denominator(full_w, full_h, opts.min_shorter_side);
    if d > 1 {
        let req_w = u16::try_from(full_w.div_ceil(d)).unwrap_or(u16::MAX);
        let req_h = u16::try_from(full_h.div_ceil(d)).unwrap_or(u16::MAX);
        dec.scale(req_w, req_h).map_err(jerr)?;
    }
    let pixels = dec.decode().map_err(jerr)?;
    let info = dec
        .info()
        .ok_or_else(|| Error::image(path, "JPEG frame vanished while decoding"))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let n = w as usize * h as usize;
    let want = n * info.pixel_format.pixel_bytes();
    if pixels.len() < want {
        return Err(Error::image(
            path,
            format!(
                "truncated JPEG: decoder returned {} of {want} bytes",
                pixels.len()
            ),
        ));
    }
    let rgb: Vec<u8> = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels[..n].iter().flat_map(|&v| [v, v, v]).collect(),
        jpeg_decoder::PixelFormat::L16 => pixels[..2 * n]
            .chunks_exact(2)
            .flat_map(|c| {
                // jpeg-decoder emits 16-bit samples big-endian.
                let v = (u16::from_be_bytes([c[0], c[1]]) >> 8) as u8;
                [v, v, v]
            })
            .collect(),
        jpeg_decoder::PixelFormat::CMYK32 => pixels[..4 * n]
            .chunks_exact(4)
            .flat_map(|p| {
                // jpeg-decoder hands back C, M, Y, K as ink amounts; RGB = (1-C)(1-K).
                let k = 255 - u32::from(p[3]);
                let ch = |c: u8| ((255 - u32::from(c)) * k / 255) as u8;
                [ch(p[0]), ch(p[1]), ch(p[2])]
            })
            .collect(),
    };
    let rgb = RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| Error::image(path, "decoded buffer does not match the image size"))?;
    let orientation = if opts.apply_orientation {
        dec.exif_data()
            .and_then(Orientation::from_exif_chunk)
            .unwrap_or(Orientation::NoTransforms)
    } else {
        Orientation::NoTransforms
    };
    let mut img = DynamicImage::ImageRgb8(rgb);
    img.apply_orientation(orientation);
    let (width, height) = oriented(full_w, full_h, orientation);
    Ok(DecodedImage {
        rgb: into_rgb8(img),
        width,
        height,
        byte_len: bytes.len() as u64,
        format: ImageFormat::Jpeg,
    })
}

fn decode_other(
    bytes: &[u8],
    format: ImageFormat,
    path: &Path,
    opts: &DecodeOptions,
) -> Result<DecodedImage> {
    let ierr = |e: image::ImageError| Error::image(path, format!("cannot decode {format:?}: {e}"));
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(opts.max_pixels.saturating_mul(8));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(ierr)?;
    let (w, h) = decoder.dimensions();
    check_dimensions(path, w, h, opts)?;
    let orientation = if opts.apply_orientation {
        decoder.orientation().unwrap_or(Orientation::NoTransforms)
    } else {
        Orientation::NoTransforms
    };
    let mut img = DynamicImage::from_decoder(decoder).map_err(ierr)?;
    img.apply_orientation(orientation);
    let (width, height) = oriented(w, h, orientation);
    Ok(DecodedImage {
        // Like Pillow's convert("RGB"): grey is replicated, alpha is dropped, 16-bit is scaled.
        rgb: into_rgb8(img),
        width,
        height,
        byte_len: bytes.len() as u64,
        format,
    })
}

fn into_rgb8(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}

fn oriented(w: u32, h: u32, o: Orientation) -> (u32, u32) {
    match o {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (h, w),
        _ => (w, h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 77])
        })
    }

    #[test]
    fn scale_denominator_keeps_target() {
        assert_eq!(jpeg_scale_denominator(500, 375, Some(146)), 2);
        assert_eq!(jpeg_scale_denominator(500, 375, Some(292)), 1);
        assert_eq!(jpeg_scale_denominator(2000, 1200, Some(146)), 8);
        assert_eq!(jpeg_scale_denominator(500, 375, None), 1);
        assert_eq!(jpeg_scale_denominator(100, 100, Some(146)), 1);
    }

    #[test]
    fn png_with_alpha_and_grey_become_rgb() {
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            20,
            10,
            image::Rgba([10, 20, 30, 0]),
        ));
        let d = decode_bytes(
            &encode(&rgba, ImageFormat::Png),
            Path::new("a.png"),
            &DecodeOptions::default(),
        )
        .unwrap();
        assert_eq!((d.width, d.height), (20, 10));
        assert_eq!(d.rgb.get_pixel(3, 3).0, [10, 20, 30]);

        let grey =
            DynamicImage::ImageLuma8(image::GrayImage::from_pixel(12, 9, image::Luma([200])));
        let d = decode_bytes(
            &encode(&grey, ImageFormat::Png),
            Path::new("g.png"),
            &DecodeOptions::default(),
        )
        .unwrap();
        assert_eq!(d.rgb.get_pixel(0, 0).0, [200, 200, 200]);
    }

    #[test]
    fn jpeg_scaled_decode_halves() {
        let img = DynamicImage::ImageRgb8(gradient(400, 300));
        let bytes = encode(&img, ImageFormat::Jpeg);
        let opts = DecodeOptions {
            min_shorter_side: Some(146),
            ..Default::default()
        };
        let d = decode_bytes(&bytes, Path::new("x.jpg"), &opts).unwrap();
        assert_eq!((d.width, d.height), (400, 300));
        assert_eq!(d.rgb.dimensions(), (200, 150));
        assert_eq!(d.scale_denominator(), 2);
        let full = decode_bytes(&bytes, Path::new("x.jpg"), &DecodeOptions::default()).unwrap();
        assert_eq!(full.rgb.dimensions(), (400, 300));
    }

    #[test]
    fn refusals_name_the_file() {
        let o = DecodeOptions::default();
        let e = decode_bytes(b"", Path::new("empty.jpg"), &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty.jpg") && e.contains("0 bytes"), "{e}");
        let e = decode_bytes(b"hello, world", Path::new("t.JPEG"), &o)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.JPEG") && e.contains("not a recognised image"),
            "{e}"
        );
        let tiny = encode(&DynamicImage::ImageRgb8(gradient(1, 1)), ImageFormat::Png);
        let e = decode_bytes(&tiny, Path::new("one.png"), &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("one.png") && e.contains("1x1"), "{e}");
    }
}
