//! The SSML subset sentences are written in, checked strictly and normalised for the engine.
//!
//! Elements: `speak`, `p`, `s`, `break` (`time`, `strength`), `prosody` (`rate`, `pitch`,
//! `volume`), `say-as` (`interpret-as` = `cardinal`, `ordinal`, `characters`, `digits`,
//! `currency`, `date` with `format` = `ymd`/`mdy`/`dmy`), `sub` (`alias`), `mark` (`name`).
//! Plain text is valid SSML. `currency`, `date` and `sub` are expanded here into words, so the
//! engine only sees markup it handles the same everywhere; marks stay marks (actions ride on
//! them: `gesture:wave`, `expression:smile`, `card:show:SKU`, `card:hide`).
//!
//! Errors carry the byte offset of the problem in the input; callers turn it into line:column.

#[derive(Debug, Clone, PartialEq)]
pub struct SsmlError {
    pub offset: usize,
    pub message: String,
}

/// A checked sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Sentence {
    /// Normalised SSML for the engine, wrapped in `<speak>`.
    pub ssml: String,
    /// The words as heard (for subtitles and the audit log).
    pub plain: String,
    /// Mark names in order.
    pub marks: Vec<String>,
}

fn err(offset: usize, message: impl Into<String>) -> SsmlError {
    SsmlError { offset, message: message.into() }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn unescape(text: &str, offset: usize) -> Result<String, SsmlError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        // A bare `&` (as in "salt & pepper") is text; `&name;` must be a known entity.
        let name_len = tail[1..].find(|c: char| !c.is_ascii_alphanumeric() && c != '#').map_or(tail.len() - 1, |n| n);
        if name_len == 0 || !tail[1 + name_len..].starts_with(';') {
            out.push('&');
            rest = &tail[1..];
            continue;
        }
        let end = 1 + name_len;
        out.push(match &tail[..=end] {
            "&amp;" => '&',
            "&lt;" => '<',
            "&gt;" => '>',
            "&quot;" => '"',
            "&apos;" => '\'',
            other => return Err(err(offset + text.len() - rest.len() + i, format!("unknown entity `{other}`"))),
        });
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

struct Tag<'a> {
    name: &'a str,
    attrs: Vec<(&'a str, String, usize)>,
    closing: bool,
    self_closing: bool,
    offset: usize,
}

/// Parses one tag starting at `start` (at `<`); returns it and the offset after `>`.
fn parse_tag(input: &str, start: usize) -> Result<(Tag<'_>, usize), SsmlError> {
    let end = input[start..].find('>').map(|e| start + e).ok_or_else(|| err(start, "`<` without a closing `>`"))?;
    let mut body = &input[start + 1..end];
    let closing = body.starts_with('/');
    if closing {
        body = &body[1..];
    }
    let self_closing = body.ends_with('/');
    if self_closing {
        body = &body[..body.len() - 1];
    }
    let name_end = body.find(|c: char| c.is_whitespace()).unwrap_or(body.len());
    let name = &body[..name_end];
    if name.is_empty() {
        return Err(err(start, "a tag needs a name"));
    }
    let mut attrs = Vec::new();
    let mut rest = body[name_end..].trim_start();
    while !rest.is_empty() {
        let at = start + 1 + usize::from(closing) + (body.len() - rest.len());
        let eq = rest.find('=').ok_or_else(|| err(at, format!("attribute in <{name}> needs =\"value\"")))?;
        let key = rest[..eq].trim();
        let value_part = rest[eq + 1..].trim_start();
        let quote = value_part.chars().next().filter(|c| *c == '"' || *c == '\'');
        let Some(quote) = quote else { return Err(err(at, format!("value of `{key}` must be quoted"))) };
        let close = value_part[1..].find(quote).ok_or_else(|| err(at, format!("value of `{key}` is not closed")))?;
        let value = unescape(&value_part[1..1 + close], at)?;
        attrs.push((key, value, at));
        rest = value_part[close + 2..].trim_start();
    }
    Ok((Tag { name, attrs, closing, self_closing, offset: start }, end + 1))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn ordinal_suffix(n: u32) -> &'static str {
    match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

/// `29.90` (optionally with a currency code or symbol) → "29 dollars and 90 cents".
fn say_currency(text: &str, offset: usize) -> Result<String, SsmlError> {
    let t = text.trim();
    let (unit, cents_unit, amount) = if let Some(a) = t.strip_prefix('$').or_else(|| t.strip_prefix("USD")) {
        ("dollars", "cents", a.trim())
    } else if let Some(a) = t.strip_prefix('€').or_else(|| t.strip_prefix("EUR")) {
        ("euros", "cents", a.trim())
    } else if let Some(a) = t.strip_prefix('¥').or_else(|| t.strip_prefix("CNY")) {
        ("yuan", "fen", a.trim())
    } else {
        ("dollars", "cents", t)
    };
    let bad = || err(offset, format!("`{text}` is not an amount like \"29.90\""));
    let (whole, frac) = amount.split_once('.').unwrap_or((amount, ""));
    let whole: u64 = whole.replace(',', "").parse().map_err(|_| bad())?;
    let cents: u64 = match frac.len() {
        0 => 0,
        1 | 2 => format!("{frac:0<2}").parse().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    let unit = if whole == 1 { unit.trim_end_matches('s') } else { unit };
    Ok(if cents == 0 { format!("{whole} {unit}") } else { format!("{whole} {unit} and {cents} {cents_unit}") })
}

/// `2026-11-22` with `format` → "November 22nd, 2026".
fn say_date(text: &str, format: &str, offset: usize) -> Result<String, SsmlError> {
    let bad = || err(offset, format!("`{text}` is not a date in format `{format}`"));
    let parts: Vec<u32> =
        text.trim().split(['-', '/', '.']).map(|p| p.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let [a, b, c] = parts[..] else { return Err(bad()) };
    let (y, m, d) = match format {
        "ymd" => (a, b, c),
        "mdy" => (c, a, b),
        "dmy" => (c, b, a),
        _ => return Err(err(offset, format!("date format `{format}`: use ymd, mdy or dmy"))),
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    Ok(format!("{} {d}{}, {y}", MONTHS[m as usize - 1], ordinal_suffix(d)))
}

fn check_mark_name(name: &str, offset: usize) -> Result<(), SsmlError> {
    let valid_chars = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "_:.-".contains(c));
    if !valid_chars {
        return Err(err(offset, format!("mark name `{name}` may use letters, digits and _ : . - only")));
    }
    // Action marks are checked against what the stage performs; any other name is a plain
    // mark, reported as it is spoken.
    emcee_protocol::action::Action::from_mark(name).map(|_| ()).map_err(|message| err(offset, message))
}

/// A number followed by `unit` (`+10%`, `-6dB`, `1.5s`), finite; with whether it had a sign.
fn number_with(value: &str, unit: &str) -> Option<(f64, bool)> {
    let n = value.strip_suffix(unit)?;
    let signed = n.starts_with(['+', '-']);
    let x: f64 = n.parse().ok()?;
    x.is_finite().then_some((x, signed))
}

/// How long `<break time=…>` pauses, in ms: `300ms` or `1.5s`, finite, 0 to [`MAX_BREAK_MS`].
fn break_ms(value: &str) -> Option<u32> {
    let ms = number_with(value, "ms").or_else(|| number_with(value, "s").map(|(x, signed)| (x * 1000.0, signed)));
    match ms {
        Some((ms, false)) if (0.0..=f64::from(MAX_BREAK_MS)).contains(&ms) => Some(ms.round() as u32),
        _ => None,
    }
}

/// The longest single pause, and all of a sentence's pauses together: a line of breaks is dead air.
pub const MAX_BREAK_MS: u32 = 10_000;
/// What a `<break strength=…>` (or a bare `<break/>`) counts towards that budget.
const STRENGTH_BREAK_MS: u32 = 1_000;

/// Whether `value` is in range: rates from half to double speed, pitch ±50 %, volume from
/// −40 dB to +6 dB (louder clips), pauses 0–10 s. A relative value has a sign (`+10%`);
/// without one a percentage is of the normal (`150%`).
fn check_value(tag: &str, key: &str, value: &str, at: usize) -> Result<(), SsmlError> {
    let pct = |v: &str, relative: std::ops::RangeInclusive<f64>, absolute: std::ops::RangeInclusive<f64>| {
        number_with(v, "%")
            .is_some_and(|(x, signed)| if signed { relative.contains(&x) } else { absolute.contains(&x) })
    };
    let (ok, range) = match (tag, key) {
        ("prosody", "rate") => (
            ["x-slow", "slow", "medium", "fast", "x-fast"].contains(&value) || pct(value, -50.0..=100.0, 50.0..=200.0),
            "a word (x-slow … x-fast), -50% to +100%, or 50% to 200%",
        ),
        ("prosody", "pitch") => (
            ["x-low", "low", "medium", "high", "x-high"].contains(&value) || pct(value, -50.0..=50.0, 50.0..=150.0),
            "a word (x-low … x-high), -50% to +50%, or 50% to 150%",
        ),
        ("prosody", "volume") => (
            ["silent", "x-soft", "soft", "medium", "loud", "x-loud"].contains(&value)
                || number_with(value, "dB").is_some_and(|(x, _)| (-40.0..=6.0).contains(&x)),
            "a word (silent … x-loud) or -40dB to +6dB",
        ),
        ("break", "strength") => {
            (["none", "x-weak", "weak", "medium", "strong", "x-strong"].contains(&value), "none … x-strong")
        }
        ("break", "time") => (break_ms(value).is_some(), "0ms to 10s"),
        _ => (true, ""),
    };
    if ok {
        Ok(())
    } else {
        Err(err(at, format!("<{tag} {key}=\"{value}\"> is not a valid value: {range}")))
    }
}

const ALLOWED: &[(&str, &[&str])] = &[
    ("speak", &["xml:lang", "version", "xmlns"]),
    ("p", &[]),
    ("s", &[]),
    ("break", &["time", "strength"]),
    ("prosody", &["rate", "pitch", "volume"]),
    ("say-as", &["interpret-as", "format"]),
    ("sub", &["alias"]),
    ("mark", &["name"]),
];

/// Plain text as a sentence (everything escaped).
pub fn from_plain(text: &str) -> String {
    format!("<speak>{}</speak>", escape(text))
}

/// The words of normalised SSML (as produced by [`parse`]), for logs and subtitles.
pub fn plain_of(ssml: &str) -> String {
    parse(ssml).map(|s| s.plain).unwrap_or_else(|_| ssml.to_string())
}

/// Checks and normalises one sentence. Every problem found is returned.
pub fn parse(input: &str) -> Result<Sentence, Vec<SsmlError>> {
    if let Some((at, c)) = input.char_indices().find(|(_, c)| c.is_control() && !c.is_whitespace()) {
        return Err(vec![err(at, format!("control character U+{:04X} in the text", c as u32))]);
    }
    let mut n = Normaliser {
        input,
        errors: Vec::new(),
        out: String::from("<speak>"),
        plain: String::new(),
        marks: Vec::new(),
        paused_ms: 0,
        open: Vec::new(),
        capture: None,
    };
    let mut i = 0;
    while i < input.len() {
        let Some(lt) = tag_start(input, i) else {
            n.text(i..input.len());
            break;
        };
        if lt > i {
            n.text(i..lt);
        }
        let (tag, next) = match parse_tag(input, lt) {
            Ok(t) => t,
            Err(e) => {
                n.errors.push(e);
                break; // the rest cannot be tokenised reliably
            }
        };
        i = next;
        if n.check_attributes(&tag) {
            if tag.closing {
                n.closing(&tag);
            } else {
                n.opening(tag);
            }
        }
    }
    n.finish()
}

/// `<` opens a tag only before a letter or `/`; otherwise it is text ("3 < 4").
fn tag_start(input: &str, from: usize) -> Option<usize> {
    input[from..]
        .match_indices('<')
        .map(|(p, _)| from + p)
        .find(|&p| input[p + 1..].chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '/'))
}

/// The value of attribute `key` of `tag`.
fn attr(tag: &Tag<'_>, key: &str) -> Option<String> {
    tag.attrs.iter().find(|a| a.0 == key).map(|a| a.1.clone())
}

/// `<name k="v" …` with the tag's attributes, escaped (the caller closes it).
fn open_tag_text(tag: &Tag<'_>) -> String {
    let mut s = format!("<{}", tag.name);
    for (k, v, _) in &tag.attrs {
        s.push_str(&format!(" {k}=\"{}\"", escape(v)));
    }
    s
}

/// One sentence being checked and rewritten, tag by tag.
struct Normaliser<'a> {
    input: &'a str,
    errors: Vec<SsmlError>,
    /// The normalised SSML so far.
    out: String,
    /// The words as heard so far.
    plain: String,
    marks: Vec<String>,
    /// The pauses (`<break>`) so far, in ms.
    paused_ms: u32,
    /// Tags opened and not yet closed, with their offsets.
    open: Vec<(&'a str, usize)>,
    /// Inside `say-as` or `sub`, text is collected and rewritten at the closing tag.
    capture: Option<(Tag<'a>, String)>,
}

impl<'a> Normaliser<'a> {
    /// Text between tags: collected for a `say-as`/`sub` being read, else said as it is.
    fn text(&mut self, range: std::ops::Range<usize>) {
        match unescape(&self.input[range.clone()], range.start) {
            Ok(t) => match self.capture.as_mut() {
                Some((_, buf)) => buf.push_str(&t),
                None => self.say(&t),
            },
            Err(e) => self.errors.push(e),
        }
    }

    /// Words said as they are.
    fn say(&mut self, words: &str) {
        self.out.push_str(&escape(words));
        self.plain.push_str(words);
    }

    /// Reports attributes the tag does not have or values it does not take; false for a tag
    /// outside the subset (reported once, at its opening), which is then skipped.
    fn check_attributes(&mut self, tag: &Tag<'_>) -> bool {
        let Some((_, allowed)) = ALLOWED.iter().find(|(n, _)| *n == tag.name) else {
            if !tag.closing {
                self.errors.push(err(tag.offset, format!("<{}> is not in the supported SSML subset", tag.name)));
            }
            return false;
        };
        for (key, value, at) in &tag.attrs {
            if !allowed.contains(key) {
                self.errors.push(err(*at, format!("<{}> has no attribute `{key}`", tag.name)));
            } else if let Err(e) = check_value(tag.name, key, value, *at) {
                self.errors.push(e);
            }
        }
        true
    }

    fn closing(&mut self, tag: &Tag<'_>) {
        match self.open.pop() {
            Some((name, _)) if name == tag.name => {}
            Some((name, at)) => {
                self.errors.push(err(tag.offset, format!("</{}> closes <{name}> opened at offset {at}", tag.name)));
                return;
            }
            None => {
                self.errors.push(err(tag.offset, format!("</{}> was never opened", tag.name)));
                return;
            }
        }
        if let Some((open_tag, text)) = self.capture.take_if(|(t, _)| t.name == tag.name) {
            self.captured(&open_tag, &text);
        } else if ["p", "s", "prosody"].contains(&tag.name) {
            self.out.push_str(&format!("</{}>", tag.name));
        }
    }

    /// The text of a `sub` or `say-as`, said as it reads.
    fn captured(&mut self, open_tag: &Tag<'_>, text: &str) {
        let spoken = match open_tag.name {
            "sub" => attr(open_tag, "alias").unwrap_or_default(),
            _ => match attr(open_tag, "interpret-as").as_deref() {
                Some("currency") => say_currency(text, open_tag.offset).unwrap_or_else(|e| {
                    self.errors.push(e);
                    text.to_string()
                }),
                Some("date") => {
                    let format = attr(open_tag, "format").unwrap_or_else(|| "ymd".into());
                    say_date(text, &format, open_tag.offset).unwrap_or_else(|e| {
                        self.errors.push(e);
                        text.to_string()
                    })
                }
                Some("ordinal") => match text.trim().parse::<u32>() {
                    Ok(n) => format!("{n}{}", ordinal_suffix(n)),
                    Err(_) => {
                        self.errors.push(err(open_tag.offset, format!("`{text}` is not a whole number")));
                        text.to_string()
                    }
                },
                Some("characters") | Some("digits") => {
                    // Spelled out by the engine.
                    self.out.push_str(&format!("<say-as interpret-as=\"characters\">{}</say-as>", escape(text)));
                    self.plain.push_str(text);
                    return;
                }
                _ => text.to_string(), // cardinal: the engine reads numbers as numbers
            },
        };
        self.say(&spoken);
    }

    fn opening(&mut self, tag: Tag<'a>) {
        if self.capture.is_some() {
            self.errors.push(err(tag.offset, format!("<{}> inside <say-as> or <sub>: only text goes there", tag.name)));
            return;
        }
        match tag.name {
            "break" | "mark" if !tag.self_closing => {
                self.errors.push(err(tag.offset, format!("<{}> must be self-closing: <{} …/>", tag.name, tag.name)));
            }
            "break" => {
                let pause = attr(&tag, "time").and_then(|t| break_ms(&t)).unwrap_or(STRENGTH_BREAK_MS);
                self.paused_ms = self.paused_ms.saturating_add(pause);
                if self.paused_ms > MAX_BREAK_MS && self.paused_ms - pause <= MAX_BREAK_MS {
                    let message = format!(
                        "the sentence's pauses add up to more than {} s; say something between them",
                        MAX_BREAK_MS / 1000
                    );
                    self.errors.push(err(tag.offset, message));
                }
                self.out.push_str(&open_tag_text(&tag));
                self.out.push_str("/>");
            }
            "mark" => match attr(&tag, "name") {
                Some(name) => match check_mark_name(&name, tag.offset) {
                    Ok(()) => {
                        self.out.push_str(&format!("<mark name=\"{}\"/>", escape(&name)));
                        self.marks.push(name);
                    }
                    Err(e) => self.errors.push(e),
                },
                None => self.errors.push(err(tag.offset, "<mark> needs a name")),
            },
            _ if tag.self_closing => self.errors.push(err(tag.offset, format!("<{}/> cannot be empty", tag.name))),
            "speak" => self.open.push((tag.name, tag.offset)),
            "say-as" | "sub" => {
                let needs = if tag.name == "sub" { "alias" } else { "interpret-as" };
                if attr(&tag, needs).is_none() {
                    self.errors.push(err(tag.offset, format!("<{}> needs {needs}", tag.name)));
                }
                self.open.push((tag.name, tag.offset));
                self.capture = Some((tag, String::new()));
            }
            _ => {
                self.out.push_str(&open_tag_text(&tag));
                self.out.push('>');
                self.open.push((tag.name, tag.offset));
            }
        }
    }

    fn finish(mut self) -> Result<Sentence, Vec<SsmlError>> {
        for (name, at) in std::mem::take(&mut self.open) {
            self.errors.push(err(at, format!("<{name}> is never closed")));
        }
        self.out.push_str("</speak>");
        let plain = self.plain.split_whitespace().collect::<Vec<_>>().join(" ");
        if self.errors.is_empty() && plain.is_empty() {
            self.errors.push(err(0, "the sentence has nothing to say"));
        }
        if self.errors.is_empty() {
            Ok(Sentence { ssml: self.out, plain, marks: self.marks })
        } else {
            self.errors.sort_by_key(|e| e.offset);
            Err(self.errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_valid_and_escaped() {
        let s = parse("Salt & pepper, 3 < 4.").unwrap();
        assert_eq!(s.ssml, "<speak>Salt &amp; pepper, 3 &lt; 4.</speak>");
        assert_eq!(s.plain, "Salt & pepper, 3 < 4.");
        assert!(s.marks.is_empty());
    }

    #[test]
    fn the_subset_is_normalised_and_expanded() {
        let s = parse(
            "<speak><s>Only <say-as interpret-as=\"currency\">$29.90</say-as> until \
             <say-as interpret-as=\"date\" format=\"ymd\">2026-12-01</say-as>!</s>\
             <break time=\"300ms\"/><mark name=\"card:show:KET-100\"/>\
             <prosody rate=\"slow\" pitch=\"+10%\">Made by <sub alias=\"Emcee\">MC</sub>, \
             the <say-as interpret-as=\"ordinal\">1</say-as> of its kind.</prosody></speak>",
        )
        .unwrap();
        assert_eq!(
            s.plain,
            "Only 29 dollars and 90 cents until December 1st, 2026!Made by Emcee, the 1st of its kind."
        );
        assert_eq!(s.marks, vec!["card:show:KET-100"]);
        assert!(s.ssml.contains("<break time=\"300ms\"/><mark name=\"card:show:KET-100\"/>"), "{}", s.ssml);
        assert!(s.ssml.contains("<prosody rate=\"slow\" pitch=\"+10%\">"), "{}", s.ssml);
        assert!(s.ssml.starts_with("<speak><speak><s>") || s.ssml.starts_with("<speak><s>"), "{}", s.ssml);
    }

    #[test]
    fn every_problem_is_reported_with_its_offset() {
        let input = "Hi <emphasis>there</emphasis> <break time=\"99s\"/> <prosody speed=\"fast\">x</prosody> <mark name=\"card:shw\"/> <s>open";
        let errors = parse(input).unwrap_err();
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert!(messages.iter().any(|m| m.contains("<emphasis> is not in the supported SSML subset")), "{messages:#?}");
        assert!(messages.iter().any(|m| m.contains("time=\"99s\"")), "{messages:#?}");
        assert!(messages.iter().any(|m| m.contains("no attribute `speed`")), "{messages:#?}");
        assert!(messages.iter().any(|m| m.contains("card:shw")), "{messages:#?}");
        assert!(messages.iter().any(|m| m.contains("<s> is never closed")), "{messages:#?}");
        assert_eq!(errors[0].offset, 3, "the first problem is at <emphasis>");
    }

    #[test]
    fn values_out_of_range_are_refused_with_the_range() {
        for bad in [
            "<prosody volume=\"+200dB\">loud</prosody>",
            "<prosody volume=\"NaNdB\">x</prosody>",
            "<prosody rate=\"+900%\">x</prosody>",
            "<prosody rate=\"5%\">x</prosody>",
            "<prosody pitch=\"-80%\">x</prosody>",
            "<prosody pitch=\"inf%\">x</prosody>",
            "Wait <break time=\"-5s\"/> now.",
            "Wait <break time=\"NaNs\"/> now.",
            "Wait <break time=\"infs\"/> now.",
            "Wait <break time=\"11s\"/> now.",
        ] {
            let errors = parse(bad).expect_err(bad);
            assert!(errors[0].message.contains("is not a valid value:"), "{bad}: {errors:?}");
        }
        for good in [
            "<prosody volume=\"+6dB\" rate=\"150%\" pitch=\"-10%\">ok</prosody>",
            "<prosody volume=\"-40dB\" rate=\"+100%\">ok</prosody>",
            "Wait <break time=\"1.5s\"/> and <break time=\"300ms\"/> ok.",
        ] {
            assert!(parse(good).is_ok(), "{good}: {:?}", parse(good));
        }
    }

    #[test]
    fn a_sentence_of_pauses_is_refused() {
        let breaks = "Hi <break time=\"10s\"/>".repeat(31) + "there.";
        let errors = parse(&breaks).unwrap_err();
        assert_eq!(errors.len(), 1, "reported once: {errors:?}");
        assert!(errors[0].message.contains("pauses add up to more than 10 s"), "{errors:?}");
        assert!(parse(&("Hi <break/>".repeat(10) + "there.")).is_ok(), "ten plain breaks are ten seconds");
        assert!(parse(&("Hi <break/>".repeat(11) + "there.")).is_err());
    }

    #[test]
    fn malformed_markup_never_panics() {
        for input in [
            "</s>",
            "<s",
            "a &bogus; b",
            "<say-as interpret-as=\"date\">99-99-99</say-as>",
            "<sub>x</sub>",
            "<mark/>",
            "<break>",
            "<s><p></s></p>",
            "<say-as interpret-as=\"currency\">free</say-as>",
            "<prosody rate=fast>x</prosody>",
            "<speak/>",
            "",
            "   ",
            "<s></s>",
            "\u{0}<\u{ffff}>",
        ] {
            assert!(parse(input).is_err(), "{input:?} should be refused");
        }
        // Text that only looks like markup is text.
        assert_eq!(parse("a < b & c <> d").unwrap().plain, "a < b & c <> d");
    }

    #[test]
    fn random_fragments_never_panic() {
        const PIECES: [&str; 24] = [
            "<",
            ">",
            "/",
            "</",
            "/>",
            "<s>",
            "</s>",
            "<speak>",
            "<break time=\"",
            "ms\"/>",
            "<mark name=\"",
            "\"",
            "'",
            "=",
            "&",
            "&amp;",
            "&#",
            ";",
            "say-as",
            " interpret-as=\"currency\">",
            "é",
            "中文",
            "12.5",
            " ",
        ];
        let mut x: u64 = 0x1234_5678_9abc_def0;
        for _ in 0..20_000 {
            let mut input = String::new();
            for _ in 0..(x % 12) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                input.push_str(PIECES[(x % PIECES.len() as u64) as usize]);
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let _ = parse(&input);
        }
    }

    #[test]
    fn currency_and_dates_read_naturally() {
        assert_eq!(say_currency("1.00", 0).unwrap(), "1 dollar");
        assert_eq!(say_currency("EUR 5.5", 0).unwrap(), "5 euros and 50 cents");
        assert_eq!(say_currency("¥1,299", 0).unwrap(), "1299 yuan");
        assert_eq!(say_date("11/22/2026", "mdy", 0).unwrap(), "November 22nd, 2026");
        assert_eq!(say_date("13.11.2026", "dmy", 0).unwrap(), "November 13th, 2026");
    }
}
