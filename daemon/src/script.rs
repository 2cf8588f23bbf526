//! Scripts, walking-skeleton form: one sentence per line; blank lines and `#` comments skipped.

use std::path::Path;

/// Longest sentence we accept; longer lines are almost certainly a paste error.
const MAX_SENTENCE_CHARS: usize = 600;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScriptError {
    #[error("{file}: cannot read the script: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}: the script has no sentences")]
    Empty { file: String },
    #[error("{file}:{line}:1: sentence of {chars} characters is longer than {MAX_SENTENCE_CHARS}; split it")]
    TooLong { file: String, line: usize, chars: usize },
}

pub fn parse(text: &str, file: &str) -> Result<Vec<String>, ScriptError> {
    let mut sentences = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let chars = line.chars().count();
        if chars > MAX_SENTENCE_CHARS {
            return Err(ScriptError::TooLong { file: file.to_string(), line: i + 1, chars });
        }
        sentences.push(line.to_string());
    }
    if sentences.is_empty() {
        return Err(ScriptError::Empty { file: file.to_string() });
    }
    Ok(sentences)
}

pub fn load(path: &Path) -> Result<Vec<String>, ScriptError> {
    let file = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| ScriptError::Read { file: file.clone(), reason: e.to_string() })?;
    parse(&text, &file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_blanks_and_comments() {
        let s = parse("# intro\nHello there.\n\n  Welcome!  \n", "s.txt").unwrap();
        assert_eq!(s, vec!["Hello there.", "Welcome!"]);
    }

    #[test]
    fn empty_and_overlong_scripts_are_refused_with_the_line() {
        assert_eq!(parse("# nothing\n", "s.txt"), Err(ScriptError::Empty { file: "s.txt".into() }));
        let long = format!("ok\n{}\n", "a".repeat(700));
        assert_eq!(parse(&long, "s.txt"), Err(ScriptError::TooLong { file: "s.txt".into(), line: 2, chars: 700 }));
    }
}
