//! A large TOML document read in parts: split before each top-level `[[NAME]]` header, so the
//! parts are parsed one after another and each parsed tree is dropped before the next. A
//! catalog of 100,000 products then needs memory for its text and what is read from it, not
//! for a syntax tree of the whole file (toml_edit's is about twenty times the text).
//!
//! Splitting never changes what the document means: an array of tables split between parts is
//! the parts' arrays one after another, and a sub-table (`[[product.faq]]`) stays in the part
//! of the table above it. Headers are found with the TOML lexer, so `[[product]]` inside a
//! multi-line string or a multi-line array is not a split. A header the splitter does not
//! recognise (`[["product"]]`) only makes a part larger.

use std::ops::Range;

use toml_parser::lexer::TokenKind;

/// The parts of `text`, in order, together covering all of it: the first runs up to the first
/// top-level `[[name]]` header, each later one from such a header to the next.
pub(crate) fn parts(text: &str, name: &str) -> Vec<Range<usize>> {
    let mut starts = vec![0];
    let mut header = HeaderMatch::default();
    // Inside a value (after `=`): brackets open there may span lines.
    let (mut in_value, mut depth, mut line_start) = (false, 0usize, true);
    for token in toml_parser::Source::new(text).lex() {
        let kind = token.kind();
        let span = token.span();
        match kind {
            TokenKind::Whitespace | TokenKind::Comment => continue,
            TokenKind::Newline => {
                if depth == 0 {
                    (in_value, line_start) = (false, true);
                }
                header = HeaderMatch::default();
                continue;
            }
            _ => {}
        }
        let at_line_start = std::mem::replace(&mut line_start, false);
        let word = text.get(span.start()..span.end()).unwrap_or("");
        if let Some(start) = header.next(kind, word == name, at_line_start && !in_value, span.start()) {
            if start > 0 {
                starts.push(start);
            }
        }
        match kind {
            TokenKind::Equals if depth == 0 => in_value = true,
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket if in_value => depth += 1,
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket if in_value => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let ends = starts.iter().skip(1).copied().chain([text.len()]);
    starts.iter().zip(ends).map(|(&s, e)| s..e).collect()
}

/// How much of `[[name]]` the tokens so far on this line have matched.
#[derive(Default)]
struct HeaderMatch {
    matched: usize,
    start: usize,
}

impl HeaderMatch {
    /// Feeds one token (not whitespace); the header's start once all five tokens matched.
    fn next(&mut self, kind: TokenKind, is_name: bool, may_start: bool, at: usize) -> Option<usize> {
        let fits = match self.matched {
            0 => kind == TokenKind::LeftSquareBracket && may_start,
            1 => kind == TokenKind::LeftSquareBracket,
            2 => kind == TokenKind::Atom && is_name,
            _ => kind == TokenKind::RightSquareBracket,
        };
        if !fits {
            self.matched = 0;
            return None;
        }
        if self.matched == 0 {
            self.start = at;
        }
        self.matched += 1;
        (self.matched == 5).then(|| std::mem::take(&mut self.matched)).map(|_| self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<&str> {
        parts(text, "product").into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn splits_before_each_top_level_header_and_covers_the_text() {
        let text = "[[scene]]\nid = \"a\"\n[[product]]\nsku = \"A\"\n[[product.faq]]\nq = \"?\"\n  [[ product ]] # two\nsku = \"B\"\n";
        assert_eq!(
            pieces(text),
            [
                "[[scene]]\nid = \"a\"\n",
                "[[product]]\nsku = \"A\"\n[[product.faq]]\nq = \"?\"\n  ",
                "[[ product ]] # two\nsku = \"B\"\n"
            ]
        );
        assert_eq!(pieces(text).concat(), text);
        assert_eq!(pieces(""), [""]);
    }

    #[test]
    fn headers_inside_strings_and_values_are_not_splits() {
        let text = "[[product]]\nname = \"\"\"\n[[product]]\n\"\"\"\npoints = [\n[[product]]\n]\nx = '[[product]]'\n";
        assert_eq!(pieces(text), [text]);
        // Not the name, or not alone on its line.
        let other = "[[products]]\n[[product.faq]]\na = 1 [[product]]\n";
        assert_eq!(pieces(other), [other]);
    }
}
