//! The TOML checker shared by the configuration and the content files: typed reads of
//! values that record every problem with its line and column instead of stopping at the first.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use toml_edit::{ImDocument, Item, Table};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.file.display(), e.line, e.column, e.message)?;
        }
        Ok(())
    }
}

/// Collects every problem of one TOML file, with positions (shared with the content files).
pub(crate) struct Checker<'a> {
    pub(crate) source: &'a str,
    pub(crate) errors: Vec<ConfigError>,
    /// Where the part being read starts in `source` (a large file is read in parts; spans are
    /// relative to the part).
    base: usize,
    /// Where each line of `source` starts, built at the first error: positions stay linear in
    /// the file however many errors it has.
    line_starts: Vec<usize>,
}

impl<'a> Checker<'a> {
    /// A checker for `source`, with no problems yet.
    pub(crate) fn new(source: &'a str) -> Self {
        Checker { source, errors: Vec::new(), base: 0, line_starts: Vec::new() }
    }

    /// Starts checking `text`: the parsed document, or its one syntax error.
    pub(crate) fn parse(text: &'a str) -> Result<(Self, ImDocument<&'a str>), Vec<ConfigError>> {
        let mut c = Checker::new(text);
        match c.parse_part(0..text.len()) {
            Some(doc) => Ok((c, doc)),
            None => Err(c.errors),
        }
    }

    /// Parses `range` of the source as a document of its own; later errors are placed
    /// relative to it. A syntax error is recorded and gives `None`.
    pub(crate) fn parse_part(&mut self, range: Range<usize>) -> Option<ImDocument<&'a str>> {
        self.base = range.start;
        match ImDocument::parse(&self.source[range]) {
            Ok(doc) => Some(doc),
            Err(e) => {
                self.error(e.span(), format!("not valid TOML: {}", e.message().trim()));
                None
            }
        }
    }

    /// Every error, sorted by position, or `value` when there were none.
    pub(crate) fn finish<T>(mut self, value: T) -> Result<T, Vec<ConfigError>> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            self.errors.sort_by_key(|e| (e.line, e.column));
            Err(self.errors)
        }
    }

    pub(crate) fn error(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let offset = (self.base + span.map_or(0, |s| s.start)).min(self.source.len());
        if self.line_starts.is_empty() {
            let breaks = self.source.match_indices('\n').map(|(i, _)| i + 1);
            self.line_starts = std::iter::once(0).chain(breaks).collect();
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        // Back to a character boundary: a span may start inside a multi-byte character.
        let column_end = (start..=offset).rev().find(|&i| self.source.is_char_boundary(i)).unwrap_or(start);
        let column = self.source[start..column_end].chars().count() + 1;
        self.errors.push(ConfigError { line, column, message: message.into() });
    }

    /// The tables of an array of tables (`[[name]]`) under `item`; anything else there is
    /// reported as `misuse` and gives none.
    pub(crate) fn tables<'t>(&mut self, item: Option<&'t Item>, misuse: impl Into<String>) -> Vec<&'t Table> {
        match item {
            None => Vec::new(),
            Some(Item::ArrayOfTables(array)) => array.iter().collect(),
            Some(item) => {
                self.error(item.span(), misuse);
                Vec::new()
            }
        }
    }

    pub(crate) fn unknown_keys(&mut self, table: &Table, allowed: &[&str], context: &str) {
        for (key, _) in table.iter() {
            if !allowed.contains(&key) {
                let hint = closest(key, allowed).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default();
                self.error(table.key(key).and_then(|k| k.span()), format!("unknown key `{key}` in {context}{hint}"));
            }
        }
    }

    pub(crate) fn integer(
        &mut self,
        table: Option<&Table>,
        section: &str,
        key: &str,
        default: i64,
        range: Range<i64>,
    ) -> i64 {
        let Some(item) = table.and_then(|t| t.get(key)) else { return default };
        match item.as_integer() {
            Some(v) if range.contains(&v) => v,
            Some(v) => {
                self.error(
                    item.span(),
                    format!("[{section}] {key} = {v} is out of range {}..{}", range.start, range.end - 1),
                );
                default
            }
            None => {
                self.error(item.span(), format!("[{section}] {key} must be an integer"));
                default
            }
        }
    }

    /// `true`/`false` under `key`, or `default`.
    pub(crate) fn boolean(&mut self, table: Option<&Table>, section: &str, key: &str, default: bool) -> bool {
        match table.and_then(|t| t.get(key)) {
            None => default,
            Some(item) => item.as_bool().unwrap_or_else(|| {
                self.error(item.span(), format!("[{section}] {key} must be true or false"));
                default
            }),
        }
    }

    pub(crate) fn string<'t>(
        &mut self,
        table: Option<&'t Table>,
        section: &str,
        key: &str,
    ) -> Option<(&'t str, &'t Item)> {
        let item = table.and_then(|t| t.get(key))?;
        match item.as_str() {
            Some(s) => Some((s, item)),
            None => {
                self.error(item.span(), format!("[{section}] {key} must be a string"));
                None
            }
        }
    }
}

/// Levenshtein distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates.iter().map(|c| (distance(word, c), *c)).filter(|(d, _)| *d <= 2).min().map(|(_, c)| c)
}
