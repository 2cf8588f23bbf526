//! Scripts: the sentences the show says, each in the SSML subset ([`crate::ssml`]).
//!
//! Two forms:
//! - `.txt`: one sentence per line; blank lines and `#` comments are skipped;
//! - `.toml`: segments, each optionally about one product whose fields fill variables:
//!
//! ```toml
//! [[segment]]
//! product = "KET-100"
//! sentences = [
//!   "Meet the {product.name}!",
//!   "<mark name=\"card:show:KET-100\"/>Only <say-as interpret-as=\"currency\">{product.price}</say-as>.",
//! ]
//! ```
//!
//! Variables: `{product.name}`, `{product.price}`, `{product.currency}`, `{product.sku}`.
//! A segment with `promotion = "ID"` is said only while that promotion runs; `scene = "ID"` and
//! `voice = "ID"` name a scene and a voice of the materials (default: the `[avatar]` ones).
//! Every problem in a script is reported at once as `file:line:column: message`.

use std::ops::Range;

use toml_edit::{Item, Table};

use emcee_protocol::action::Action;
use emcee_protocol::{Scene, Voice};

use crate::config::{Checker, ConfigError};
use crate::materials::{Materials, Product};
use crate::ssml::{self, Sentence};

/// A checked sentence and when it may be said.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub sentence: Sentence,
    /// Unix ms [start, end) of its promotion; `None`: always.
    pub window: Option<(i64, i64)>,
    /// Its segment's voice and scene; `None`: the avatar's defaults.
    pub voice: Option<Voice>,
    pub scene: Option<Scene>,
}

/// Longest sentence we accept; longer lines are almost certainly a paste error.
const MAX_SENTENCE_CHARS: usize = 600;

/// Fills `{product.*}` variables; errors carry byte offsets into `text`.
fn fill_variables(text: &str, product: Option<&Product>) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("{product.") {
        let offset = text.len() - rest.len() + i;
        let Some(close) = rest[i..].find('}') else {
            return Err((offset, "`{product.` is not closed with `}`".into()));
        };
        let field = &rest[i + "{product.".len()..i + close];
        let Some(p) = product else {
            return Err((
                offset,
                format!(
                    "`{{product.{field}}}` needs a product: put the sentence in a [[segment]] with product = \"SKU\""
                ),
            ));
        };
        let value = match field {
            "name" => &p.name,
            "price" => &p.price,
            "currency" => &p.currency,
            "sku" => &p.sku,
            other => {
                return Err((
                    offset,
                    format!("unknown variable `{{product.{other}}}`: use name, price, currency or sku"),
                ))
            }
        };
        out.push_str(&rest[..i]);
        out.push_str(&ssml_escape(value));
        rest = &rest[i + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn ssml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;")
}

/// Checks one sentence; `at` maps a byte offset in `raw` to a source span for errors.
fn sentence(
    c: &mut Checker<'_>,
    raw: &str,
    product: Option<&Product>,
    materials: &Materials,
    at: impl Fn(usize) -> Option<Range<usize>>,
) -> Option<Sentence> {
    if raw.chars().count() > MAX_SENTENCE_CHARS {
        c.error(
            at(0),
            format!("sentence of {} characters is longer than {MAX_SENTENCE_CHARS}; split it", raw.chars().count()),
        );
        return None;
    }
    let filled = match fill_variables(raw, product) {
        Ok(f) => f,
        Err((offset, message)) => {
            c.error(at(offset), message);
            return None;
        }
    };
    // Offsets after a filled variable shift; they still point into the right sentence.
    let parsed = ssml::parse(&filled).map_err(|errors| {
        for e in errors {
            c.error(at(e.offset.min(raw.len())), e.message);
        }
    });
    let parsed = parsed.ok()?;
    // The limit holds for what is said: a variable may fill in a long product name.
    let said = parsed.plain.chars().count();
    if said > MAX_SENTENCE_CHARS {
        c.error(
            at(0),
            format!("with its variables filled in, the sentence says {said} characters, more than {MAX_SENTENCE_CHARS}; shorten it or the product's fields"),
        );
        return None;
    }
    for mark in &parsed.marks {
        if let Ok(Some(Action::ShowCard { sku })) = Action::from_mark(mark) {
            if materials.product(&sku).is_none() {
                c.error(
                    at(raw.find(mark.as_str()).unwrap_or(0)),
                    format!("mark `{mark}`: no product with sku \"{sku}\""),
                );
            }
        }
    }
    Some(parsed)
}

/// Parses a `.txt` script.
pub fn parse_lines(text: &str, materials: &Materials) -> Result<Vec<Line>, Vec<ConfigError>> {
    let mut c = Checker::new(text);
    let mut sentences = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let lead = content.len() - content.trim_start().len();
        let trimmed = content.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            let base = line_start + lead;
            if let Some(sentence) = sentence(&mut c, trimmed, None, materials, |o| Some(base + o..base + o + 1)) {
                sentences.push(Line { sentence, window: None, voice: None, scene: None });
            }
        }
        line_start += line.len();
    }
    finish(c, sentences)
}

/// Parses a `.toml` script.
pub fn parse_segments(text: &str, materials: &Materials) -> Result<Vec<Line>, Vec<ConfigError>> {
    let (mut c, doc) = Checker::parse(text)?;
    let root: &Table = &doc;
    c.unknown_keys(root, &["segment"], "the script");
    let mut sentences = Vec::new();
    match root.get("segment") {
        Some(Item::ArrayOfTables(segments)) => {
            for seg in segments.iter() {
                c.unknown_keys(seg, &["product", "promotion", "scene", "voice", "sentences"], "[[segment]]");
                let scene = material(&mut c, seg, "scene", &materials.scenes).copied();
                let voice = material(&mut c, seg, "voice", &materials.voices).cloned();
                let window = match c.string(Some(seg), "segment", "promotion") {
                    None => None,
                    Some((id, item)) => match materials.promotions.iter().find(|p| p.id == id) {
                        Some(p) => Some((p.starts_ms, p.ends_ms)),
                        None => {
                            c.error(item.span(), format!("[[segment]] promotion \"{id}\" is not in the products file"));
                            None
                        }
                    },
                };
                let product = match c.string(Some(seg), "segment", "product") {
                    None => None,
                    Some((sku, item)) => {
                        let found = materials.product(sku);
                        if found.is_none() {
                            c.error(item.span(), format!("[[segment]] product \"{sku}\" is not in the products file"));
                        }
                        found
                    }
                };
                let Some(list) = seg.get("sentences").and_then(Item::as_array) else {
                    c.error(seg.span(), "[[segment]] needs sentences = [\"…\", …]");
                    continue;
                };
                for value in list.iter() {
                    let Some(raw) = value.as_str() else {
                        c.error(value.span(), "every sentence is a string");
                        continue;
                    };
                    // Inside the quotes: exact when the string has no escapes before the problem.
                    let start = value.span().map_or(0, |s| s.start + 1);
                    if let Some(sentence) =
                        sentence(&mut c, raw, product, materials, |o| Some(start + o..start + o + 1))
                    {
                        sentences.push(Line { sentence, window, voice: voice.clone(), scene });
                    }
                }
            }
        }
        Some(item) => c.error(item.span(), "segments are written as [[segment]] tables"),
        None => {}
    }
    finish(c, sentences)
}

/// The material a segment names under `key`, reporting a name that is not there.
fn material<'m, T>(
    c: &mut Checker<'_>,
    segment: &Table,
    key: &str,
    known: &'m std::collections::BTreeMap<String, T>,
) -> Option<&'m T> {
    let (id, item) = c.string(Some(segment), "segment", key)?;
    let found = known.get(id);
    if found.is_none() {
        let ids: Vec<&str> = known.keys().map(String::as_str).collect();
        let choice = if ids.is_empty() { "there are none".to_string() } else { format!("use {}", ids.join(", ")) };
        c.error(item.span(), format!("[[segment]] {key} \"{id}\" is not in the products file ({choice})"));
    }
    found
}

fn finish(mut c: Checker<'_>, sentences: Vec<Line>) -> Result<Vec<Line>, Vec<ConfigError>> {
    if c.errors.is_empty() && sentences.is_empty() {
        c.error(None, "the script has no sentences");
    }
    c.finish(sentences)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::materials::parse_materials;

    fn materials() -> Materials {
        parse_materials(
            "[[product]]\nsku = \"KET-100\"\nname = \"Smart kettle\"\nprice = \"29.00\"\n\n[[promotion]]\nid = \"bf\"\nstarts = \"2026-11-27T00:00:00Z\"\nends = \"2026-11-28T00:00:00Z\"\n",
        )
        .unwrap()
    }

    #[test]
    fn lines_skip_blanks_and_comments() {
        let s = parse_lines("# intro\nHello there.\n\n  Welcome & enjoy!  \n", &Materials::default()).unwrap();
        let plain: Vec<&str> = s.iter().map(|l| l.sentence.plain.as_str()).collect();
        assert_eq!(plain, ["Hello there.", "Welcome & enjoy!"]);
        assert_eq!(s[1].sentence.ssml, "<speak>Welcome &amp; enjoy!</speak>");
    }

    #[test]
    fn segments_fill_product_variables_and_check_marks() {
        let text = r#"
[[segment]]
product = "KET-100"
sentences = [
  "Meet the {product.name}!",
  "<mark name=\"card:show:KET-100\"/>Only <say-as interpret-as=\"currency\">{product.price}</say-as>.",
]

[[segment]]
promotion = "bf"
sentences = ["Black Friday deals today!"]
"#;
        let s = parse_segments(text, &materials()).unwrap();
        assert_eq!(s[0].sentence.plain, "Meet the Smart kettle!");
        assert_eq!(s[1].sentence.plain, "Only 29 dollars.");
        assert_eq!(s[1].sentence.marks, vec!["card:show:KET-100"]);
        assert_eq!((s[1].window, s[2].window), (None, Some((1_795_737_600_000, 1_795_824_000_000))));
        let unknown =
            parse_segments("[[segment]]\npromotion = \"xmas\"\nsentences = [\"Hi.\"]\n", &materials()).unwrap_err();
        assert!(unknown[0].message.contains("\"xmas\""));
    }

    #[test]
    fn segments_name_their_scene_and_voice() {
        let m = parse_materials(
            "[[scene]]\nid = \"close\"\ncamera = \"close\"\n[[voice]]\nid = \"calm\"\nname = \"en-gb\"\n",
        )
        .unwrap();
        let text = "[[segment]]\nscene = \"close\"\nvoice = \"calm\"\nsentences = [\"Hi.\"]\n[[segment]]\nsentences = [\"Bye.\"]\n";
        let s = parse_segments(text, &m).unwrap();
        assert_eq!(s[0].scene.map(|s| s.camera), Some(emcee_protocol::CameraPreset::Close));
        assert_eq!(s[0].voice.as_ref().map(|v| v.name.as_str()), Some("en-gb"));
        assert_eq!((s[1].scene, s[1].voice.as_ref()), (None, None));
        let errors = parse_segments("[[segment]]\nscene = \"far\"\nsentences = [\"Hi.\"]\n", &m).unwrap_err();
        assert_eq!((errors[0].line, errors[0].column), (2, 9));
        assert!(errors[0].message.contains("scene \"far\"") && errors[0].message.contains("use close"), "{errors:?}");
    }

    #[test]
    fn every_problem_names_its_line_and_column() {
        let text = "[[segment]]\nproduct = \"NOPE\"\nsentences = [\n  \"Hi {product.colour}\",\n  \"<emphasis>x</emphasis>\",\n  \"<mark name=\\\"card:show:ZZZ\\\"/>Look.\",\n]\n";
        let errors = parse_segments(text, &materials()).unwrap_err();
        let m: Vec<String> = errors.iter().map(|e| format!("{}:{} {}", e.line, e.column, e.message)).collect();
        assert_eq!(errors.len(), 4, "{m:#?}");
        assert!(m[0].starts_with("2:11 ") && m[0].contains("\"NOPE\""), "{m:#?}");
        assert!(m[1].starts_with("4:7 ") && m[1].contains("needs a product"), "{m:#?}");
        assert!(m[2].starts_with("5:4 ") && m[2].contains("<emphasis>"), "{m:#?}");
        assert!(m[3].starts_with("6:") && m[3].contains("no product with sku \"ZZZ\""), "{m:#?}");
        let errors = parse_lines("ok\n  <s>open\n", &Materials::default()).unwrap_err();
        assert_eq!((errors[0].line, errors[0].column), (2, 3));
    }

    #[test]
    fn empty_and_overlong_scripts_are_refused() {
        assert!(parse_lines("# nothing\n", &Materials::default()).unwrap_err()[0].message.contains("no sentences"));
        let long = format!("ok\n{}\n", "a".repeat(700));
        let errors = parse_lines(&long, &Materials::default()).unwrap_err();
        assert_eq!(errors[0].line, 2);
        assert!(errors[0].message.contains("700 characters"));
    }

    #[test]
    fn the_length_limit_holds_after_variables_are_filled_in() {
        // A product name at its own limit, said five times: short as written, long as said.
        let mut m = materials();
        m.products[0].name = "n".repeat(120);
        let text = format!("[[segment]]\nproduct = \"KET-100\"\nsentences = [\"{}\"]\n", "{product.name} ".repeat(6));
        let errors = parse_segments(&text, &m).unwrap_err();
        assert!(errors[0].message.contains("with its variables filled in"), "{errors:?}");
        let shorter = text.replacen("{product.name} {product.name} {product.name} ", "", 1);
        assert!(parse_segments(&shorter, &m).is_ok(), "{:?}", parse_segments(&shorter, &m));
    }
}
