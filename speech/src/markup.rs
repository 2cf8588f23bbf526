//! Reads the normalised SSML the control plane sends (see the daemon's `ssml` module) into
//! what an engine without SSML support — a neural voice — can act on: runs of plain text with
//! their speaking rate and gain, pauses, and marks.
//!
//! The control plane has already checked the markup and expanded `say-as` currency/date/
//! ordinal and `sub`; what is left is `speak`, `p`, `s`, `prosody`, `break`, `mark` and
//! `say-as interpret-as="characters"`. Anything else is read as its text.

/// One piece of a sentence, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Plain text to say, at `rate` × the voice's pace and `gain` × its loudness.
    Text { text: String, rate: f32, gain: f32 },
    /// Silence.
    Break { ms: u32 },
    /// A named position (`<mark name="…"/>`).
    Mark(String),
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// The value of `key="…"` inside a tag's text.
fn attr<'a>(tag: &'a str, key: &str) -> Option<&'a str> {
    let start = tag.find(&format!("{key}=\""))? + key.len() + 2;
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// `rate="…"` as a factor on speed.
fn rate(value: &str) -> f32 {
    match value {
        "x-slow" => 0.6,
        "slow" => 0.8,
        "fast" => 1.25,
        "x-fast" => 1.6,
        v => percent(v).unwrap_or(1.0),
    }
}

/// `volume="…"` as a factor on amplitude.
fn gain(value: &str) -> f32 {
    let db = match value {
        "silent" => return 0.0,
        "x-soft" => -12.0,
        "soft" => -6.0,
        "loud" => 4.0,
        "x-loud" => 8.0,
        // The control plane refuses other values; clamped here too, so nothing clips.
        v => v
            .strip_suffix("dB")
            .and_then(|n| n.parse::<f32>().ok())
            .filter(|x| x.is_finite())
            .unwrap_or(0.0)
            .clamp(-40.0, 6.0),
    };
    10f32.powf(db / 20.0)
}

/// "+10%" → 1.1, "-20%" → 0.8, "80%" → 0.8 (SSML: signed is relative, unsigned absolute).
fn percent(value: &str) -> Option<f32> {
    let n = value.strip_suffix('%')?;
    let signed = n.starts_with(['+', '-']);
    let v: f32 = n.parse().ok()?;
    let factor = if signed { 1.0 + v / 100.0 } else { v / 100.0 };
    Some(factor.clamp(0.25, 4.0))
}

fn break_ms(tag: &str) -> u32 {
    if let Some(t) = attr(tag, "time") {
        if let Some(ms) = t.strip_suffix("ms").and_then(|n| n.parse::<u32>().ok()) {
            return ms.min(10_000);
        }
        if let Some(s) = t.strip_suffix('s').and_then(|n| n.parse::<f32>().ok()) {
            return (s * 1000.0).clamp(0.0, 10_000.0) as u32;
        }
    }
    match attr(tag, "strength") {
        Some("none") => 0,
        Some("x-weak") => 100,
        Some("weak") => 200,
        Some("strong") => 700,
        Some("x-strong") => 1000,
        _ => 400,
    }
}

/// The pieces of `ssml`, adjacent text merged.
pub fn pieces(ssml: &str) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    // (rate, gain) of each open prosody, innermost last.
    let mut prosody: Vec<(f32, f32)> = vec![(1.0, 1.0)];
    let mut spelling = false;
    let mut rest = ssml;
    let push_text = |out: &mut Vec<Piece>, text: String, (rate, gain): (f32, f32)| {
        if let Some(Piece::Text { text: last, rate: r, gain: g }) = out.last_mut() {
            if *r == rate && *g == gain {
                last.push_str(&text);
                return;
            }
        }
        out.push(Piece::Text { text, rate, gain });
    };
    while !rest.is_empty() {
        let (text, after) = match rest.find('<') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !text.is_empty() {
            let mut text = unescape(text);
            if spelling {
                // Letter by letter: "TV" → "T V", "42" → "4 2".
                text = text.chars().filter(|c| !c.is_whitespace()).map(String::from).collect::<Vec<_>>().join(" ");
            }
            let current = *prosody.last().unwrap_or(&(1.0, 1.0));
            push_text(&mut out, text, current);
        }
        if after.is_empty() {
            break;
        }
        let Some(end) = after.find('>') else { break };
        let tag = &after[1..end];
        rest = &after[end + 1..];
        let name = tag.trim_start_matches('/').split([' ', '/']).next().unwrap_or("");
        let closing = tag.starts_with('/');
        let current = *prosody.last().unwrap_or(&(1.0, 1.0));
        match (name, closing) {
            ("break", false) => out.push(Piece::Break { ms: break_ms(tag) }),
            ("mark", false) => out.push(Piece::Mark(unescape(attr(tag, "name").unwrap_or_default()))),
            ("prosody", false) => {
                let r = attr(tag, "rate").map_or(1.0, rate);
                let g = attr(tag, "volume").map_or(1.0, gain);
                prosody.push((current.0 * r, current.1 * g));
            }
            ("prosody", true) if prosody.len() > 1 => {
                prosody.pop();
            }
            ("say-as", false) => spelling = attr(tag, "interpret-as") == Some("characters"),
            ("say-as", true) => spelling = false,
            // A sentence or paragraph end is a clause end for the voice.
            ("s" | "p", true) => push_text(&mut out, " ".into(), current),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str, rate: f32, gain: f32) -> Piece {
        Piece::Text { text: t.into(), rate, gain }
    }

    #[test]
    fn the_normalised_subset_becomes_pieces() {
        let ssml = "<speak><s>Only 29 dollars &amp; 90 cents!</s><break time=\"300ms\"/>\
                    <mark name=\"card:show:KET-100\"/><prosody rate=\"slow\" volume=\"-6dB\">Made by \
                    <say-as interpret-as=\"characters\">MC</say-as>.</prosody> Bye<break strength=\"strong\"/></speak>";
        let g = 10f32.powf(-6.0 / 20.0);
        assert_eq!(
            pieces(ssml),
            vec![
                text("Only 29 dollars & 90 cents! ", 1.0, 1.0),
                Piece::Break { ms: 300 },
                Piece::Mark("card:show:KET-100".into()),
                text("Made by M C.", 0.8, g),
                text(" Bye", 1.0, 1.0),
                Piece::Break { ms: 700 },
            ]
        );
    }

    #[test]
    fn rates_nest_and_odd_input_never_panics() {
        let p = pieces("<prosody rate=\"+50%\">a<prosody rate=\"80%\">b</prosody>c</prosody></prosody>d<");
        assert_eq!(p, vec![text("a", 1.5, 1.0), text("b", 1.2, 1.0), text("c", 1.5, 1.0), text("d", 1.0, 1.0)]);
        for s in ["<", "<mark", "<break time=\"9999999s\"/>", "&amp", "<prosody rate=\"x\">", "</prosody>"] {
            let _ = pieces(s);
        }
        assert_eq!(pieces("<break time=\"99s\"/>"), vec![Piece::Break { ms: 10_000 }]);
    }
}
