//! What is drawn over the rendered picture, composited on the CPU into one premultiplied RGBA
//! frame that the renderer blends in before colour conversion: burned-in subtitles (shaped and
//! wrapped by cosmic-text, CJK through the Noto CJK fonts), the product card (image, name,
//! price) and an optional "AI-generated" label.
//!
//! # Layout
//! - [`Look`]: what should be showing.
//! - [`Overlay`]: fonts, a glyph cache, loaded product images and the composited frame; it
//!   composites again only when the look changes, so a steady frame costs nothing.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cosmic_text::{fontdb, Attrs, Buffer, Color, Family, FontSystem, Metrics, Shaping, SwashCache, Weight};
use emcee_protocol::Card;

/// Fonts we draw with, in preference order; those installed are used (Debian `fonts-dejavu-core`
/// for Latin, `fonts-noto-cjk` for Chinese, Japanese and Korean).
pub const FONT_FILES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
];

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("no font for subtitles: install fonts-dejavu-core and fonts-noto-cjk (looked for {0})")]
    NoFonts(String),
    #[error("overlay size {0}x{1} is too small")]
    Size(u32, u32),
}

/// What should be showing over the picture.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Look {
    pub subtitle: Option<String>,
    pub card: Option<Card>,
    pub label: Option<String>,
}

pub struct Overlay {
    fonts: FontSystem,
    glyphs: SwashCache,
    width: u32,
    height: u32,
    /// Premultiplied RGBA, row-major.
    pixels: Vec<u8>,
    shown: Look,
    /// Product images, decoded once (`None`: could not be read; the card goes without).
    images: HashMap<PathBuf, Option<image::RgbaImage>>,
}

/// A colour with alpha, straight (not premultiplied), 0…255.
type Rgba = [u8; 4];

const SUBTITLE_BOX: Rgba = [0, 0, 0, 150];
const CARD_BOX: Rgba = [250, 248, 244, 235];
const CARD_NAME: Rgba = [30, 30, 36, 255];
const CARD_PRICE: Rgba = [200, 40, 50, 255];
const WHITE: Rgba = [255, 255, 255, 255];

impl Overlay {
    pub fn new(width: u32, height: u32) -> Result<Self, OverlayError> {
        Self::with_fonts(width, height, FONT_FILES)
    }

    /// An overlay drawing with the fonts in `files` (those that exist).
    pub fn with_fonts(width: u32, height: u32, files: &[&str]) -> Result<Self, OverlayError> {
        if width < 64 || height < 36 {
            return Err(OverlayError::Size(width, height));
        }
        let mut db = fontdb::Database::new();
        for file in files {
            if Path::new(file).exists() {
                let _ = db.load_font_file(file);
            }
        }
        if db.is_empty() {
            return Err(OverlayError::NoFonts(files.join(", ")));
        }
        let fonts = FontSystem::new_with_locale_and_db("en-US".into(), db);
        Ok(Self {
            fonts,
            glyphs: SwashCache::new(),
            width,
            height,
            pixels: vec![0; (width * height * 4) as usize],
            shown: Look::default(),
            images: HashMap::new(),
        })
    }

    /// Shows `look`: the new frame when it changed, `None` when it is what is showing.
    pub fn show(&mut self, look: &Look) -> Option<&[u8]> {
        if *look == self.shown {
            return None;
        }
        self.shown = look.clone();
        self.pixels.fill(0);
        let (w, h) = (self.width as f32, self.height as f32);
        if let Some(text) = look.subtitle.as_deref().filter(|t| !t.trim().is_empty()) {
            let size = (h / 20.0).max(10.0);
            let max_width = w * 0.8;
            let (lines_w, lines_h, mut layout) = self.layout(text, size, max_width, Weight::NORMAL);
            let pad = size * 0.35;
            let x = (w - lines_w) / 2.0;
            let y = h - h / 14.0 - lines_h;
            self.fill_rect(x - pad, y - pad * 0.6, lines_w + 2.0 * pad, lines_h + pad * 1.2, SUBTITLE_BOX);
            self.draw(&mut layout, x, y, WHITE);
        }
        if let Some(card) = look.card.clone() {
            self.draw_card(&card);
        }
        if let Some(label) = look.label.as_deref().filter(|t| !t.trim().is_empty()) {
            let size = (h / 40.0).max(8.0);
            let (lw, lh, mut layout) = self.layout(label, size, w * 0.4, Weight::NORMAL);
            let (x, y, pad) = (w * 0.02, h * 0.03, size * 0.3);
            self.fill_rect(x - pad, y - pad * 0.5, lw + 2.0 * pad, lh + pad, SUBTITLE_BOX);
            self.draw(&mut layout, x, y, WHITE);
        }
        Some(&self.pixels)
    }

    /// The frame last composited (premultiplied RGBA).
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// True when nothing is showing (the renderer may skip blending).
    pub fn is_clear(&self) -> bool {
        self.shown == Look::default()
    }

    fn draw_card(&mut self, card: &Card) {
        let (w, h) = (self.width as f32, self.height as f32);
        let card_w = w * 0.26;
        let pad = card_w * 0.07;
        let x = w - card_w - w * 0.04;
        let y = h * 0.12;
        let inner = card_w - 2.0 * pad;
        let picture = card.image.as_deref().and_then(|p| self.image(p));
        let picture_h = picture.as_ref().map_or(0.0, |i| inner * i.height() as f32 / i.width().max(1) as f32);
        let name_size = (h / 26.0).max(9.0);
        let (_, name_h, mut name) = self.layout(&card.name, name_size, inner, Weight::BOLD);
        let (_, price_h, mut price) = self.layout(&card.price, name_size * 1.35, inner, Weight::BOLD);
        let gap = pad * 0.6;
        let card_h = pad + picture_h + if picture.is_some() { gap } else { 0.0 } + name_h + gap + price_h + pad;
        self.fill_rect(x, y, card_w, card_h, CARD_BOX);
        let mut at = y + pad;
        if let Some(img) = picture {
            self.blit(&img, x + pad, at, inner, picture_h);
            at += picture_h + gap;
        }
        self.draw(&mut name, x + pad, at, CARD_NAME);
        at += name_h + gap;
        self.draw(&mut price, x + pad, at, CARD_PRICE);
    }

    fn image(&mut self, path: &Path) -> Option<image::RgbaImage> {
        self.images
            .entry(path.to_path_buf())
            .or_insert_with(|| match image::open(path) {
                Ok(i) => Some(i.to_rgba8()),
                Err(e) => {
                    tracing::warn!(image = %path.display(), error = %e, "product image unreadable; card without it");
                    None
                }
            })
            .clone()
    }

    /// Shapes and wraps `text`: its width, height and the buffer to draw.
    fn layout(&mut self, text: &str, size: f32, max_width: f32, weight: Weight) -> (f32, f32, Buffer) {
        let mut buffer = Buffer::new(&mut self.fonts, Metrics::new(size, size * 1.3));
        buffer.set_size(Some(max_width), None);
        let attrs = Attrs::new().family(Family::SansSerif).weight(weight);
        buffer.set_text(text, &attrs, Shaping::Advanced, None);
        buffer.shape_until_scroll(&mut self.fonts, false);
        let (mut width, mut height) = (0.0f32, 0.0f32);
        for run in buffer.layout_runs() {
            width = width.max(run.line_w);
            height = height.max(run.line_top + run.line_height);
        }
        (width, height, buffer)
    }

    fn draw(&mut self, buffer: &mut Buffer, x: f32, y: f32, color: Rgba) {
        let (ox, oy) = (x.round() as i32, y.round() as i32);
        let text_color = Color::rgba(color[0], color[1], color[2], color[3]);
        let mut spans = Vec::new();
        buffer.draw(&mut self.fonts, &mut self.glyphs, text_color, |gx, gy, gw, gh, c| {
            spans.push((gx + ox, gy + oy, gw, gh, [c.r(), c.g(), c.b(), c.a()]));
        });
        for (gx, gy, gw, gh, c) in spans {
            self.fill_px(gx, gy, gw as i32, gh as i32, c);
        }
    }

    fn fill_rect(&mut self, x: f32, y: f32, w: f32, h: f32, c: Rgba) {
        self.fill_px(x.round() as i32, y.round() as i32, w.round() as i32, h.round() as i32, c);
    }

    fn fill_px(&mut self, x: i32, y: i32, w: i32, h: i32, c: Rgba) {
        let (fw, fh) = (self.width as i32, self.height as i32);
        for py in y.max(0)..(y + h).min(fh) {
            for px in x.max(0)..(x + w).min(fw) {
                self.over(px as usize, py as usize, c);
            }
        }
    }

    /// Source-over of a straight-alpha colour onto the premultiplied frame.
    fn over(&mut self, x: usize, y: usize, c: Rgba) {
        let i = (y * self.width as usize + x) * 4;
        let a = u32::from(c[3]);
        if a == 0 {
            return;
        }
        for (k, &channel) in c[..3].iter().enumerate() {
            let src = u32::from(channel) * a / 255;
            let dst = u32::from(self.pixels[i + k]);
            self.pixels[i + k] = (src + dst * (255 - a) / 255) as u8;
        }
        let dst_a = u32::from(self.pixels[i + 3]);
        self.pixels[i + 3] = (a + dst_a * (255 - a) / 255) as u8;
    }

    /// Draws `img` scaled into the box (nearest of a 2×2 box filter: cards are small).
    fn blit(&mut self, img: &image::RgbaImage, x: f32, y: f32, w: f32, h: f32) {
        let (bw, bh) = (w.round().max(1.0) as u32, h.round().max(1.0) as u32);
        let scaled = image::imageops::resize(img, bw, bh, image::imageops::FilterType::Triangle);
        let (ox, oy) = (x.round() as i32, y.round() as i32);
        for (px, py, p) in scaled.enumerate_pixels() {
            let (fx, fy) = (ox + px as i32, oy + py as i32);
            if fx >= 0 && fy >= 0 && (fx as u32) < self.width && (fy as u32) < self.height {
                self.over(fx as usize, fy as usize, p.0);
            }
        }
    }
}

/// The words of an SSML sentence as written, for subtitles: tags dropped, entities decoded.
pub fn subtitle_of(ssml: &str) -> String {
    let mut out = String::with_capacity(ssml.len());
    let mut in_tag = false;
    for ch in ssml.chars() {
        match ch {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u32 = 640;
    const H: u32 = 360;

    /// Pixels with some coverage inside the rows `y0..y1`.
    fn covered(p: &[u8], y0: u32, y1: u32) -> usize {
        (y0..y1).flat_map(|y| (0..W).map(move |x| ((y * W + x) * 4 + 3) as usize)).filter(|&i| p[i] > 0).count()
    }

    /// Bright (text) pixels in the rows `y0..y1`.
    fn bright(p: &[u8], y0: u32, y1: u32) -> usize {
        (y0..y1).flat_map(|y| (0..W).map(move |x| ((y * W + x) * 4) as usize)).filter(|&i| p[i] > 200).count()
    }

    #[test]
    fn subtitles_sit_at_the_bottom_and_cjk_has_glyphs() {
        let mut o = Overlay::new(W, H).unwrap();
        let latin =
            o.show(&Look { subtitle: Some("Hello there, welcome!".into()), ..Look::default() }).unwrap().to_vec();
        assert_eq!(covered(&latin, 0, H / 2), 0, "nothing in the top half");
        let text = bright(&latin, H / 2, H);
        assert!(text > 300, "white text in the bottom band: {text}");
        let cjk = o.show(&Look { subtitle: Some("欢迎来到直播间".into()), ..Look::default() }).unwrap().to_vec();
        assert!(bright(&cjk, H / 2, H) > 300, "CJK glyphs drawn (fonts-noto-cjk)");
        // Without the CJK font the same line comes out as missing-glyph boxes: not the same picture.
        let mut latin_only = Overlay::with_fonts(W, H, &FONT_FILES[..2]).unwrap();
        let boxes = latin_only.show(&Look { subtitle: Some("欢迎来到直播间".into()), ..Look::default() }).unwrap();
        assert_ne!(boxes, &cjk[..], "the CJK font is what draws it");
        assert!(o.show(&Look { subtitle: Some("欢迎来到直播间".into()), ..Look::default() }).is_none(), "unchanged");
        let clear = o.show(&Look::default()).unwrap();
        assert!(clear.iter().all(|&b| b == 0));
    }

    #[test]
    fn long_subtitles_wrap_inside_the_frame() {
        let mut o = Overlay::new(W, H).unwrap();
        let long = "This sentence is long enough that it cannot possibly fit on a single line of the frame.";
        let p = o.show(&Look { subtitle: Some(long.into()), ..Look::default() }).unwrap().to_vec();
        let rows: Vec<u32> = (0..H).filter(|&y| bright(&p, y, y + 1) > 0).collect();
        let (top, bottom) = (rows[0], rows[rows.len() - 1]);
        assert!(bottom - top > H / 10, "two lines at least: rows {top}..{bottom}");
        let left = (0..W).find(|&x| (0..H).any(|y| p[((y * W + x) * 4) as usize] > 200)).unwrap();
        assert!(left >= W / 12, "inside the margins: {left}");
    }

    #[test]
    fn the_card_shows_image_name_and_price_on_the_right() {
        let dir = std::env::temp_dir().join(format!("emcee-overlay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("red.png");
        image::RgbaImage::from_pixel(40, 30, image::Rgba([220, 20, 20, 255])).save(&image).unwrap();
        let card = Card { sku: "K".into(), name: "Smart kettle".into(), price: "$29.00".into(), image: Some(image) };
        let mut o = Overlay::new(W, H).unwrap();
        let p = o.show(&Look { card: Some(card.clone()), ..Look::default() }).unwrap().to_vec();
        let column = |x0: u32, x1: u32| (0..H).flat_map(move |y| (x0..x1).map(move |x| ((y * W + x) * 4 + 3) as usize));
        assert_eq!(column(0, W / 2).filter(|&i| p[i] > 0).count(), 0, "nothing on the left");
        let red = column(W / 2, W).filter(|&i| p[i - 3] > 150 && p[i - 2] < 60).count();
        assert!(red > 1500, "the product image: {red} red pixels");
        // An unreadable image: the card still shows, without it.
        let broken = Card { image: Some(dir.join("missing.png")), ..card };
        let p = o.show(&Look { card: Some(broken), ..Look::default() }).unwrap().to_vec();
        assert!(column(W / 2, W).filter(|&i| p[i] > 0).count() > 1000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ssml_becomes_written_words() {
        assert_eq!(
            subtitle_of(
                "<speak><mark name=\"x\"/>Only <say-as interpret-as=\"currency\">29.00</say-as> &amp; more.</speak>"
            ),
            "Only 29.00 & more."
        );
    }

    #[test]
    fn no_fonts_is_a_clear_error() {
        let e = Overlay::with_fonts(W, H, &["/nonexistent/font.ttf"]).err().unwrap().to_string();
        assert!(e.contains("fonts-noto-cjk"), "{e}");
    }
}
