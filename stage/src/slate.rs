//! The slate: the picture viewers see while the renderer is down, made on the CPU once at
//! start (the GPU may be what failed), as I420 ready for the encoder.

use std::path::Path;

use emcee_overlay::{Look, Overlay};

/// What the default slate says.
pub const SLATE_LINE: &str = "We'll be right back";

/// The slate as I420: `picture` scaled to fit (letterboxed on `background`), or `background`
/// with [`SLATE_LINE`] and `label`. A picture that cannot be read gives the default slate.
pub fn slate_i420(
    width: u32,
    height: u32,
    background: [u8; 3],
    picture: Option<&Path>,
    label: Option<&str>,
) -> Vec<u8> {
    let mut rgb: Vec<[u8; 3]> = vec![background; (width * height) as usize];
    let drawn = picture.is_some_and(|path| match image::open(path) {
        Ok(img) => {
            draw_fitted(&mut rgb, width, height, &img.to_rgb8());
            true
        }
        Err(e) => {
            tracing::warn!(slate = %path.display(), error = %e, "slate picture unreadable; using the plain slate");
            false
        }
    });
    if !drawn {
        if let Ok(mut overlay) = Overlay::new(width, height) {
            let look = Look { subtitle: Some(SLATE_LINE.into()), label: label.map(str::to_string), card: None };
            if let Some(pixels) = overlay.show(&look) {
                blend_premultiplied(&mut rgb, pixels);
            }
        }
    }
    rgb_to_i420(&rgb, width, height)
}

fn draw_fitted(rgb: &mut [[u8; 3]], width: u32, height: u32, img: &image::RgbImage) {
    let scale = (width as f32 / img.width() as f32).min(height as f32 / img.height() as f32);
    let (w, h) = (((img.width() as f32 * scale) as u32).max(1), ((img.height() as f32 * scale) as u32).max(1));
    let scaled = image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle);
    let (x0, y0) = ((width - w.min(width)) / 2, (height - h.min(height)) / 2);
    for (x, y, p) in scaled.enumerate_pixels() {
        if x0 + x < width && y0 + y < height {
            rgb[((y0 + y) * width + x0 + x) as usize] = p.0;
        }
    }
}

fn blend_premultiplied(rgb: &mut [[u8; 3]], rgba: &[u8]) {
    for (px, o) in rgb.iter_mut().zip(rgba.chunks_exact(4)) {
        let keep = 255 - u16::from(o[3]);
        for c in 0..3 {
            px[c] = (u16::from(o[c]) + (u16::from(px[c]) * keep + 127) / 255).min(255) as u8;
        }
    }
}

/// BT.709 limited range, chroma from each 2×2 block's mean colour: the convert pass's rule.
pub fn rgb_to_i420(rgb: &[[u8; 3]], width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let to_unit = |p: [u8; 3]| p.map(|c| f32::from(c) / 255.0);
    let luma = |c: [f32; 3]| 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    let byte = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    let mut out = Vec::with_capacity(w * h * 3 / 2);
    out.extend(rgb.iter().map(|&p| byte(16.0 + 219.0 * luma(to_unit(p)))));
    let mut u_plane = Vec::with_capacity(w * h / 4);
    let mut v_plane = Vec::with_capacity(w * h / 4);
    for by in 0..h / 2 {
        for bx in 0..w / 2 {
            let mut mean = [0.0f32; 3];
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let c = to_unit(rgb[(by * 2 + dy) * w + bx * 2 + dx]);
                (0..3).for_each(|k| mean[k] += c[k] / 4.0);
            }
            let l = luma(mean);
            u_plane.push(byte(128.0 + 224.0 * (mean[2] - l) / 1.8556));
            v_plane.push(byte(128.0 + 224.0 * (mean[0] - l) / 1.5748));
        }
    }
    out.extend(u_plane);
    out.extend(v_plane);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_colours_land_on_the_limited_range_codes() {
        let white = rgb_to_i420(&[[255; 3]; 4], 2, 2);
        assert_eq!(white, [235, 235, 235, 235, 128, 128]);
        let black = rgb_to_i420(&[[0; 3]; 4], 2, 2);
        assert_eq!(black, [16, 16, 16, 16, 128, 128]);
        // Pure red: Y 63, Cb 102, Cr 240 in BT.709 limited range.
        let red = rgb_to_i420(&[[255, 0, 0]; 4], 2, 2);
        assert_eq!(red, [63, 63, 63, 63, 102, 240]);
    }

    #[test]
    fn the_default_slate_is_the_background_with_a_line_of_text() {
        let (w, h) = (320, 180);
        let slate = slate_i420(w, h, [0x1f, 0x35, 0x50], None, Some("AI-generated"));
        assert_eq!(slate.len(), (w * h * 3 / 2) as usize);
        let background_y = slate[0];
        let luma = &slate[..(w * h) as usize];
        let differing = luma.iter().filter(|&&y| y.abs_diff(background_y) > 8).count();
        // Text and its box cover some of the picture, not most of it.
        assert!(differing > 500 && differing < luma.len() / 3, "{differing} pixels differ");
    }

    #[test]
    fn a_slate_picture_is_scaled_to_fit_and_an_unreadable_one_falls_back() {
        let dir = std::env::temp_dir().join(format!("emcee-slate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("slate.png");
        // A white 16x16 picture on a 64x32 frame: a 32x32 white square in the middle.
        image::RgbImage::from_pixel(16, 16, image::Rgb([255, 255, 255])).save(&png).unwrap();
        let slate = slate_i420(64, 32, [0, 0, 0], Some(&png), None);
        assert_eq!((slate[0], slate[32], slate[16 * 64 + 32]), (16, 235, 235));
        assert_eq!(slate[63], 16, "letterboxed with the background");
        let broken = dir.join("broken.png");
        std::fs::write(&broken, b"not a png").unwrap();
        let fallback = slate_i420(64, 32, [0, 0, 0], Some(&broken), None);
        assert_eq!(fallback.len(), 64 * 32 * 3 / 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
