//! Materials: the products the host talks about (name, price, selling points, images, FAQ),
//! promotions (time windows that script segments can belong to), scenes (background and
//! camera framing) and voices that segments are said in. Read from a TOML file;
//! every problem is reported at once as `file:line:column: message`, and a file with problems
//! replaces nothing.
//!
//! ```toml
//! [[product]]
//! sku = "KET-100"
//! name = "Smart kettle"
//! price = "29.00"
//! currency = "USD"
//! selling_points = ["Boils a litre in three minutes."]
//! images = ["kettle.png"]
//! [[product.faq]]
//! q = "How long is the warranty?"
//! a = "Two years, parts and labour."
//!
//! [[promotion]]
//! id = "black-friday"
//! starts = "2026-11-27T00:00:00+08:00"
//! ends = "2026-11-30T00:00:00+08:00"
//!
//! [[scene]]
//! id = "close-up"
//! background = "#402020"
//! camera = "close"            # close | medium | wide
//!
//! [[voice]]
//! id = "calm"
//! name = "en-gb"              # espeak-ng voice
//! words_per_minute = 150
//! pitch = 40                  # 0 … 99
//! ```

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use emcee_protocol::{Scene, Voice};
use toml_edit::Table;

use crate::config::{parts, scene_fields, voice_fields, Checker, ConfigError};

#[derive(Debug, Clone, PartialEq)]
pub struct Faq {
    pub question: String,
    pub answer: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub sku: String,
    pub name: String,
    /// Decimal price as written (money is never a float).
    pub price: String,
    pub currency: String,
    pub selling_points: Vec<String>,
    pub images: Vec<String>,
    pub faq: Vec<Faq>,
}

/// A time window; script segments that name it are said only inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    pub id: String,
    /// Unix milliseconds, start inclusive, end exclusive.
    pub starts_ms: i64,
    pub ends_ms: i64,
}

/// Everything the products file holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Materials {
    pub products: Vec<Product>,
    pub promotions: Vec<Promotion>,
    /// By id.
    pub scenes: BTreeMap<String, Scene>,
    /// By id.
    pub voices: BTreeMap<String, Voice>,
    /// Index into `products` by SKU.
    by_sku: HashMap<String, usize>,
}

impl Materials {
    /// The product with this SKU.
    pub fn product(&self, sku: &str) -> Option<&Product> {
        self.by_sku.get(sku).map(|&i| &self.products[i])
    }
}

/// Reads `[[name]]` tables with an `id` each into `out`; `read` checks the rest of a table.
fn by_id<T>(
    c: &mut Checker<'_>,
    root: &Table,
    (name, keys): (&str, &[&str]),
    out: &mut BTreeMap<String, T>,
    mut read: impl FnMut(&mut Checker<'_>, &Table) -> T,
) {
    let context = format!("[[{name}]]");
    for t in c.tables(root.get(name), format!("{name}s are written as {context} tables")) {
        c.unknown_keys(t, keys, &context);
        let id = required(c, t, "id", &context, MAX_SKU);
        let value = read(c, t);
        if out.insert(id.clone(), value).is_some() {
            c.error(t.get("id").and_then(|i| i.span()), format!("{context} id \"{id}\" is used twice"));
        }
    }
}

fn instant(c: &mut Checker<'_>, table: &Table, key: &str) -> Option<i64> {
    let (text, item) = c.string(Some(table), "promotion", key)?;
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => Some(t.as_millisecond()),
        Err(_) => {
            c.error(
                item.span(),
                format!("[[promotion]] {key} = \"{text}\" is not a time like \"2026-11-27T00:00:00+08:00\""),
            );
            None
        }
    }
}

fn promotion(c: &mut Checker<'_>, t: &Table) -> Option<Promotion> {
    c.unknown_keys(t, &["id", "starts", "ends"], "[[promotion]]");
    let id = required(c, t, "id", "[[promotion]]", MAX_SKU);
    let (starts, ends) = (instant(c, t, "starts"), instant(c, t, "ends"));
    for key in ["starts", "ends"] {
        if t.get(key).is_none() {
            c.error(t.span(), format!("[[promotion]] needs {key}"));
        }
    }
    let (starts_ms, ends_ms) = (starts?, ends?);
    if ends_ms <= starts_ms {
        c.error(t.get("ends").and_then(|i| i.span()), "[[promotion]] ends before it starts");
        return None;
    }
    Some(Promotion { id, starts_ms, ends_ms })
}

/// The longest each field may be, in characters: what a viewer can read on a card or hear in
/// one sentence, and far below what could hurt the stage.
/// Also the longest id of a scene, voice or promotion.
const MAX_SKU: usize = 64;
const MAX_NAME: usize = 120;
const MAX_PRICE: usize = 16;
const MAX_CURRENCY: usize = 8;
const MAX_POINT: usize = 300;
const MAX_IMAGE_PATH: usize = 255;
const MAX_QUESTION: usize = 300;
/// An answer is said as one sentence.
const MAX_ANSWER: usize = 600;

/// Reports `value` (`what`, at `span`) when it is longer than `max` characters; true when it fits.
/// `what` is formatted only for an error: a large catalog checks its fields without allocating.
fn bounded(
    c: &mut Checker<'_>,
    span: Option<std::ops::Range<usize>>,
    what: std::fmt::Arguments<'_>,
    value: &str,
    max: usize,
) -> bool {
    let n = value.chars().count();
    if n > max {
        c.error(span, format!("{what} is {n} characters long; at most {max}"));
    }
    n <= max
}

/// An image path must stay inside the content directory: relative, no `..`, a PNG or JPEG.
fn check_image_path(path: &str) -> Result<(), String> {
    let p = std::path::Path::new(path);
    if p.is_absolute() || p.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(format!("image \"{path}\" must be a path inside the content directory (relative, no `..`)"));
    }
    let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
        return Err(format!("image \"{path}\" must be a .png, .jpg or .jpeg file"));
    }
    Ok(())
}

fn strings(c: &mut Checker<'_>, table: &Table, key: &str, context: &str, max: usize) -> Vec<String> {
    let Some(item) = table.get(key) else { return Vec::new() };
    let Some(list) = item.as_array() else {
        c.error(item.span(), format!("{context} {key} must be a list of strings"));
        return Vec::new();
    };
    list.iter()
        .filter_map(|v| match v.as_str() {
            Some(s) if !s.trim().is_empty() => {
                bounded(c, v.span(), format_args!("{context} {key}: an entry"), s.trim(), max)
                    .then(|| s.trim().to_string())
            }
            _ => {
                c.error(v.span(), format!("{context} {key}: every entry must be a non-empty string"));
                None
            }
        })
        .collect()
}

fn required(c: &mut Checker<'_>, table: &Table, key: &str, context: &str, max: usize) -> String {
    match c.string(Some(table), context, key) {
        Some((s, item)) if s.trim().is_empty() => {
            c.error(item.span(), format!("{context} {key} is empty"));
            String::new()
        }
        Some((s, item)) => {
            bounded(c, item.span(), format_args!("{context} {key}"), s.trim(), max);
            s.trim().to_string()
        }
        None => {
            if table.get(key).is_none() {
                c.error(table.span(), format!("{context} needs {key}"));
            }
            String::new()
        }
    }
}

fn is_decimal(price: &str) -> bool {
    let (whole, frac) = price.split_once('.').unwrap_or((price, ""));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 2
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// Parses the products file; `Err` holds every problem. Read in parts (one per product), so
/// time and memory grow with the file, not faster.
pub fn parse_materials(text: &str) -> Result<Materials, Vec<ConfigError>> {
    parse_materials_in(text, None)
}

/// [`parse_materials`], and each product image found in `images` (the content directory)
/// must be a regular file: a FIFO or a device there would hang or flood the stage's reader.
/// A missing image is not an error here (the card shows without it, and the stage says so).
pub fn parse_materials_in(text: &str, images: Option<&Path>) -> Result<Materials, Vec<ConfigError>> {
    let mut reader = Reader { c: Checker::new(text), materials: Materials::default(), images };
    for part in parts(text, "product") {
        if let Some(doc) = reader.c.parse_part(part) {
            reader.part(&doc);
        }
    }
    reader.c.finish(reader.materials)
}

/// The materials read so far and every problem found so far.
struct Reader<'a> {
    c: Checker<'a>,
    materials: Materials,
    images: Option<&'a Path>,
}

impl Reader<'_> {
    /// Reads one part of the file.
    fn part(&mut self, root: &Table) {
        let c = &mut self.c;
        c.unknown_keys(root, &["product", "promotion", "scene", "voice"], "the file");
        let m = &mut self.materials;
        by_id(c, root, ("scene", &["id", "background", "camera"]), &mut m.scenes, |c, t| {
            scene_fields(c, Some(t), "[[scene]]")
        });
        by_id(c, root, ("voice", &["id", "name", "words_per_minute", "pitch"]), &mut m.voices, |c, t| {
            if t.get("name").is_none() {
                c.error(t.span(), "[[voice]] needs name, the espeak-ng voice (e.g. \"en-us\")");
            }
            voice_fields(c, Some(t), "[[voice]]", "name")
        });
        for t in c.tables(root.get("promotion"), "promotions are written as [[promotion]] tables") {
            if let Some(p) = promotion(c, t) {
                if m.promotions.iter().any(|q| q.id == p.id) {
                    c.error(t.get("id").and_then(|i| i.span()), format!("[[promotion]] id \"{}\" is used twice", p.id));
                }
                m.promotions.push(p);
            }
        }
        for t in c.tables(root.get("product"), "products are written as [[product]] tables") {
            let product = product(c, t, self.images);
            if !product.sku.is_empty() {
                match m.by_sku.entry(product.sku.clone()) {
                    Entry::Vacant(v) => _ = v.insert(m.products.len()),
                    Entry::Occupied(_) => {
                        let span = t.get("sku").and_then(|i| i.span());
                        c.error(span, format!("[[product]] sku \"{}\" is used twice", product.sku));
                    }
                }
            }
            m.products.push(product);
        }
    }
}

fn product(c: &mut Checker<'_>, t: &Table, images_dir: Option<&Path>) -> Product {
    let ctx = "[[product]]";
    c.unknown_keys(t, &["sku", "name", "price", "currency", "selling_points", "images", "faq"], ctx);
    let sku = required(c, t, "sku", ctx, MAX_SKU);
    let name = required(c, t, "name", ctx, MAX_NAME);
    let price = required(c, t, "price", ctx, MAX_PRICE);
    if !price.is_empty() && !is_decimal(&price) {
        let span = t.get("price").and_then(|i| i.span());
        c.error(span, format!("{ctx} price \"{price}\" must be a decimal like \"29.90\""));
    }
    let currency = match c.string(Some(t), ctx, "currency") {
        Some((s, item)) => {
            bounded(c, item.span(), format_args!("[[product]] currency"), s, MAX_CURRENCY);
            s.to_string()
        }
        None => "USD".to_string(),
    };
    let selling_points = strings(c, t, "selling_points", ctx, MAX_POINT);
    let images = strings(c, t, "images", ctx, MAX_IMAGE_PATH);
    for image in &images {
        let found = images_dir.map(|dir| std::fs::metadata(dir.join(image)));
        let problem = match (check_image_path(image), found) {
            (Err(why), _) => Some(why),
            (Ok(()), Some(Ok(meta))) if !meta.is_file() => Some(format!("image \"{image}\" is not a regular file")),
            _ => None,
        };
        if let Some(why) = problem {
            c.error(t.get("images").and_then(|i| i.span()), format!("{ctx} {why}"));
        }
    }
    let mut faq = Vec::new();
    for e in c.tables(t.get("faq"), "FAQ entries are written as [[product.faq]] tables with q and a") {
        c.unknown_keys(e, &["q", "a"], "[[product.faq]]");
        let question = required(c, e, "q", "[[product.faq]]", MAX_QUESTION);
        let answer = required(c, e, "a", "[[product.faq]]", MAX_ANSWER);
        faq.push(Faq { question, answer });
    }
    Product { sku, name, price, currency, selling_points, images, faq }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KETTLE: &str = r#"
[[product]]
sku = "KET-100"
name = "Smart kettle"
price = "29.00"
selling_points = ["Boils a litre of water in three minutes.", "Keeps water warm for an hour."]

[[product.faq]]
q = "How long is the warranty?"
a = "The kettle has a two year warranty."
"#;

    #[test]
    fn scenes_and_voices_are_read_by_id_and_checked() {
        let text = r##"
[[scene]]
id = "close-up"
background = "#402020"
camera = "close"

[[voice]]
id = "calm"
name = "en-gb"
pitch = 40
"##;
        let m = parse_materials(text).unwrap();
        let scene = m.scenes["close-up"];
        assert_eq!((scene.background_rgb, scene.camera), ([0x40, 0x20, 0x20], emcee_protocol::CameraPreset::Close));
        let voice = &m.voices["calm"];
        assert_eq!((voice.name.as_str(), voice.pitch, voice.words_per_minute), ("en-gb", 40, 165));

        let bad = r##"
[[scene]]
id = "a"
camera = "drone"
[[scene]]
id = "a"
[[voice]]
id = "v"
pitch = 120
"##;
        let errors = parse_materials(bad).unwrap_err();
        let lines: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.message.as_str())).collect();
        assert!(lines.iter().any(|(l, m)| *l == 4 && m.contains("camera = \"drone\"")), "{lines:?}");
        assert!(lines.iter().any(|(l, m)| *l == 6 && m.contains("used twice")), "{lines:?}");
        assert!(lines.iter().any(|(l, m)| *l == 9 && m.contains("pitch = 120")), "{lines:?}");
        assert!(lines.iter().any(|(_, m)| m.contains("[[voice]] needs name")), "{lines:?}");
    }

    #[test]
    fn reads_products_with_their_faq() {
        let products = parse_materials(KETTLE).unwrap().products;
        assert_eq!(products.len(), 1);
        let p = &products[0];
        assert_eq!((p.sku.as_str(), p.price.as_str(), p.currency.as_str()), ("KET-100", "29.00", "USD"));
        assert_eq!(p.selling_points.len(), 2);
        assert_eq!(p.faq[0].answer, "The kettle has a two year warranty.");
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let bad = KETTLE
            .replace("price = \"29.00\"", "price = 29.0\ncolour = \"red\"")
            .replace("a = \"The kettle", "answer = \"The kettle");
        let errors = parse_materials(&bad).unwrap_err();
        let m: Vec<String> = errors.iter().map(|e| format!("{}:{} {}", e.line, e.column, e.message)).collect();
        assert_eq!(errors.len(), 4, "{m:#?}");
        assert!(m.iter().any(|e| e.starts_with("5:9 ") && e.contains("price must be a string")), "{m:#?}");
        assert!(m.iter().any(|e| e.starts_with("6:1 ") && e.contains("unknown key `colour`")), "{m:#?}");
        assert!(m.iter().any(|e| e.contains("unknown key `answer`")), "{m:#?}");
        assert!(m.iter().any(|e| e.contains("needs a")), "{m:#?}");
        assert!(parse_materials("[[product]]\nsku = \"A\"\nname = \"x\"\nprice = \"1,5\"\n").is_err());
    }

    #[test]
    fn promotions_have_checked_time_windows() {
        let text = "[[promotion]]\nid = \"bf\"\nstarts = \"2026-11-27T00:00:00+08:00\"\nends = \"2026-11-30T00:00:00+08:00\"\n";
        let m = parse_materials(text).unwrap();
        assert_eq!(m.promotions[0].starts_ms, 1_795_708_800_000); // 2026-11-26T16:00:00Z
        assert_eq!(m.promotions[0].ends_ms - m.promotions[0].starts_ms, 3 * 86_400_000);
        let bad = "[[promotion]]\nid = \"bf\"\nstarts = \"tomorrow\"\nends = \"2026-11-30T00:00:00Z\"\n";
        let errors = parse_materials(bad).unwrap_err();
        assert_eq!((errors[0].line, errors[0].column), (3, 10));
        let backwards =
            "[[promotion]]\nid = \"bf\"\nstarts = \"2026-11-30T00:00:00Z\"\nends = \"2026-11-29T00:00:00Z\"\n";
        assert!(parse_materials(backwards).unwrap_err()[0].message.contains("ends before it starts"));
    }

    #[test]
    fn fields_are_bounded_and_images_stay_inside_the_content_directory() {
        let product = |extra: &str| format!("[[product]]\nsku = \"A-1\"\nname = \"Kettle\"\nprice = \"1.00\"\n{extra}");
        let long_name = product("").replace("Kettle", &"k".repeat(1_000_000));
        let errors = parse_materials(&long_name).unwrap_err();
        assert!(
            errors.len() == 1 && errors[0].message.contains("name is 1000000 characters long; at most 120"),
            "{errors:?}"
        );
        for (images, why) in [
            ("[\"../../etc/shadow.png\"]", "inside the content directory"),
            ("[\"/etc/passwd.png\"]", "inside the content directory"),
            ("[\"img/../../x.png\"]", "inside the content directory"),
            ("[\"notes.txt\"]", ".png, .jpg or .jpeg"),
        ] {
            let errors = parse_materials(&product(&format!("images = {images}\n"))).unwrap_err();
            assert!(errors[0].message.contains(why), "{images}: {errors:?}");
        }
        assert!(parse_materials(&product("images = [\"img/kettle.PNG\", \"b.jpg\"]\n")).is_ok());
        // In the content directory: a directory or a FIFO named like a picture is refused.
        let dir = std::env::temp_dir().join(format!("emcee-images-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("dir.png")).unwrap();
        std::fs::write(dir.join("ok.png"), b"png").unwrap();
        assert!(std::process::Command::new("mkfifo").arg(dir.join("fifo.jpg")).status().unwrap().success());
        let three = product("images = [\"ok.png\", \"dir.png\", \"fifo.jpg\", \"missing.png\"]\n");
        let errors = parse_materials_in(&three, Some(&dir)).unwrap_err();
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].contains("\"dir.png\" is not a regular file"), "{messages:?}");
        assert!(messages[1].contains("\"fifo.jpg\" is not a regular file"), "{messages:?}");
        let _ = std::fs::remove_dir_all(&dir);
        let long_answer = product(&format!("[[product.faq]]\nq = \"Why?\"\na = \"{}\"\n", "a".repeat(601)));
        assert!(parse_materials(&long_answer).unwrap_err()[0].message.contains("at most 600"));
    }

    #[test]
    fn a_catalog_read_in_parts_is_checked_as_one_file() {
        let catalog: String = (0..2_000)
            .map(|i| format!("[[product]]\nsku = \"S-{i}\"\nname = \"Product {i}\"\nprice = \"9.99\"\n"))
            .collect();
        let m = parse_materials(&catalog).unwrap();
        assert_eq!((m.products.len(), m.product("S-1999").map(|p| p.name.as_str())), (2_000, Some("Product 1999")));
        // Problems in different parts, each at its place in the whole file: a SKU used again
        // far below, a syntax error in one part, a bad price in another, scenes across parts.
        let lines = catalog.lines().count();
        let text = format!(
            "[[scene]]\nid = \"a\"\n{catalog}[[product]]\nsku = \"S-7\"\nname = \"x\"\nprice = \"1\"\n\
             [[scene]]\nid = \"a\"\n[[product]]\nsku = = 1\n[[product]]\nsku = \"T\"\nname = \"t\"\nprice = \"cheap\"\n"
        );
        let errors = parse_materials(&text).unwrap_err();
        let at: Vec<(usize, usize, &str)> = errors.iter().map(|e| (e.line, e.column, e.message.as_str())).collect();
        assert_eq!(at.len(), 4, "{at:?}");
        assert!(at[0].0 == lines + 4 && at[0].2.contains("\"S-7\" is used twice"), "{at:?}");
        assert!(at[1].0 == lines + 8 && at[1].2.contains("id \"a\" is used twice"), "{at:?}");
        assert!(at[2].0 == lines + 10 && at[2].2.starts_with("not valid TOML"), "{at:?}");
        assert_eq!((at[3].0, at[3].1), (lines + 14, 9), "{at:?}");
    }
}
