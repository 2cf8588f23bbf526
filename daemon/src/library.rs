//! The show's content as two documents: the **materials** (the products file) and the
//! **script**. Each comes from its file named in the configuration or, once pushed through the
//! API, from the state database, which wins until it is deleted there (then the file is back).
//!
//! The two are always checked together: a materials change that breaks the script (a product
//! the script names is gone) is refused like a broken script, and a refused change replaces
//! nothing. Script sentences are built here with their scene (the `[avatar]` one by default),
//! so the show loop gets exactly what it plays.

use std::path::{Path, PathBuf};

use emcee_protocol::action::Action;
use emcee_protocol::{Card, Scene};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, ConfigErrors};
use crate::materials::{parse_materials_in, Materials};
use crate::scheduler::ScriptSentence;
use crate::script::{parse_lines, parse_segments};

/// Which document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocName {
    Materials,
    Script,
}

impl DocName {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "materials" => Some(Self::Materials),
            "script" => Some(Self::Script),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Materials => "materials",
            Self::Script => "script",
        }
    }
}

/// How a document is written. Materials are always TOML; a script is TOML segments or plain
/// lines (one sentence per line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Toml,
    Lines,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Toml => "toml",
            Self::Lines => "lines",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "toml" => Some(Self::Toml),
            "lines" => Some(Self::Lines),
            _ => None,
        }
    }

    /// A script file's format, by its extension.
    fn of_path(path: &Path) -> Self {
        if path.extension().is_some_and(|e| e == "toml") {
            Self::Toml
        } else {
            Self::Lines
        }
    }
}

/// Where a document's text came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// The file named in the configuration.
    File { path: PathBuf },
    /// Pushed through the API; kept in the state database. Unix ms of the push.
    Stored { updated_ms: i64 },
    /// A request body being checked (not yet stored).
    Request,
    /// No products file is configured: no materials.
    Absent,
}

/// One document: its text, how it is written and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Doc {
    pub name: DocName,
    pub format: Format,
    pub origin: Origin,
    pub body: String,
}

impl Doc {
    /// How errors in this document name it.
    fn label(&self) -> PathBuf {
        match &self.origin {
            Origin::File { path } => path.clone(),
            Origin::Stored { .. } => PathBuf::from(format!("{} (state database)", self.name.as_str())),
            Origin::Request => PathBuf::from(format!("{} (request body)", self.name.as_str())),
            Origin::Absent => PathBuf::from(self.name.as_str()),
        }
    }

    fn errors(&self, errors: Vec<ConfigError>) -> ConfigErrors {
        ConfigErrors { file: self.label(), errors }
    }

    /// The document as the configuration names it: its file, or no materials.
    pub fn from_file(name: DocName, path: Option<&Path>) -> Result<Self, ConfigErrors> {
        let Some(path) = path else {
            return Ok(Self { name, format: Format::Toml, origin: Origin::Absent, body: String::new() });
        };
        let format = if name == DocName::Script { Format::of_path(path) } else { Format::Toml };
        let origin = Origin::File { path: path.to_path_buf() };
        let body = crate::files::read_regular(path).map_err(|e| ConfigErrors {
            file: path.to_path_buf(),
            errors: vec![ConfigError {
                line: 1,
                column: 1,
                message: format!("cannot read the {}: {e}", name.as_str()),
            }],
        })?;
        Ok(Self { name, format, origin, body })
    }
}

/// The two documents the show plays from.
#[derive(Debug, Clone, PartialEq)]
pub struct Library {
    pub materials: Doc,
    pub script: Doc,
}

/// What a library yields once checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub materials: Materials,
    pub sentences: Vec<ScriptSentence>,
    /// Identifies the script's text (not the materials' values filled into it), so a price
    /// change keeps the show's place and a new script starts from its own.
    pub script_key: String,
}

/// The cards a sentence's `card:show:SKU` marks put up (the marks were checked against the
/// products when the script was read).
fn cards(marks: &[String], materials: &Materials, image_base: &Path) -> Vec<Card> {
    marks
        .iter()
        .filter_map(|m| match Action::from_mark(m) {
            Ok(Some(Action::ShowCard { sku })) => materials.product(&sku),
            _ => None,
        })
        .map(|p| Card {
            sku: p.sku.clone(),
            name: p.name.clone(),
            price: shown_price(&p.price, &p.currency),
            image: p.images.first().map(|i| image_base.join(i)),
        })
        .collect()
}

/// A price as a viewer reads it: `$29.00`, `€19.90`, `¥199`, or `29.00 CHF`.
pub fn shown_price(price: &str, currency: &str) -> String {
    let symbol = match currency.to_ascii_uppercase().as_str() {
        "USD" | "" => "$",
        "EUR" => "€",
        "GBP" => "£",
        "CNY" | "JPY" | "RMB" => "¥",
        _ => return format!("{price} {currency}"),
    };
    format!("{symbol}{price}")
}

/// Where product images named in the materials are found: beside the products file, or
/// beside the configuration when there is none.
pub fn image_base(config: &crate::config::Config) -> PathBuf {
    let anchor = config.products.as_deref().unwrap_or(config.script.as_path());
    anchor.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A stable key for a script's text: FNV-1a (stable across builds; std's hasher is not).
pub fn script_key(body: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Library {
    /// The library at boot: each document from the state database if it holds one, else
    /// from the file the configuration names.
    pub fn load(products: Option<&Path>, script: &Path, stored: Vec<Doc>) -> Result<Self, ConfigErrors> {
        let pick = |name: DocName, path: Option<&Path>| match stored.iter().find(|d| d.name == name) {
            Some(doc) => Ok(doc.clone()),
            None => Doc::from_file(name, path),
        };
        Ok(Self { materials: pick(DocName::Materials, products)?, script: pick(DocName::Script, Some(script))? })
    }

    /// The library the daemon starts with. Content stored through the API that no longer
    /// checks (a newer build is stricter) is set aside for the configured files, loudly:
    /// the show goes on.
    pub fn at_boot(
        products: Option<&Path>,
        script: &Path,
        (default_scene, image_base): (Scene, &Path),
        stored: Vec<Doc>,
    ) -> Result<(Self, Built), ConfigErrors> {
        if !stored.is_empty() {
            let library = Self::load(products, script, stored)?;
            match library.build(default_scene, image_base) {
                Ok(built) => return Ok((library, built)),
                Err(errors) => {
                    tracing::error!(%errors, "content in the state database does not check; playing the files")
                }
            }
        }
        let library = Self::load(products, script, Vec::new())?;
        let built = library.build(default_scene, image_base)?;
        Ok((library, built))
    }

    pub fn doc(&self, name: DocName) -> &Doc {
        match name {
            DocName::Materials => &self.materials,
            DocName::Script => &self.script,
        }
    }

    pub fn doc_mut(&mut self, name: DocName) -> &mut Doc {
        match name {
            DocName::Materials => &mut self.materials,
            DocName::Script => &mut self.script,
        }
    }

    /// This library with `doc` in place of its namesake.
    pub fn with(&self, doc: Doc) -> Self {
        match doc.name {
            DocName::Materials => Self { materials: doc, script: self.script.clone() },
            DocName::Script => Self { materials: self.materials.clone(), script: doc },
        }
    }

    /// Checks both documents; every problem of the first broken one, with line and column.
    /// Script sentences without a scene get `default_scene`, so every cue names its scene (a
    /// restarted stage shows the right one). Product images are found under `image_base`.
    pub fn build(&self, default_scene: Scene, image_base: &Path) -> Result<Built, ConfigErrors> {
        let materials =
            parse_materials_in(&self.materials.body, Some(image_base)).map_err(|e| self.materials.errors(e))?;
        let script = &self.script;
        let lines = match script.format {
            Format::Toml => parse_segments(&script.body, &materials),
            Format::Lines => parse_lines(&script.body, &materials),
        }
        .map_err(|e| script.errors(e))?;
        let sentences = lines
            .into_iter()
            .map(|l| ScriptSentence {
                cards: cards(&l.sentence.marks, &materials, image_base),
                ssml: l.sentence.ssml,
                window: l.window,
                voice: l.voice,
                scene: Some(l.scene.unwrap_or(default_scene)),
            })
            .collect();
        Ok(Built { materials, sentences, script_key: script_key(&script.body) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATERIALS: &str = "[[product]]\nsku = \"KET-100\"\nname = \"Smart kettle\"\nprice = \"29.00\"\n";
    const SCRIPT: &str = "[[segment]]\nproduct = \"KET-100\"\nsentences = [\"Only {product.price}.\", \"Bye.\"]\n";

    const SCENE: Scene = Scene { background_rgb: [0, 0, 0], camera: emcee_protocol::CameraPreset::Medium };

    fn doc(name: DocName, format: Format, body: &str) -> Doc {
        Doc { name, format, origin: Origin::Request, body: body.into() }
    }

    fn library() -> Library {
        Library {
            materials: doc(DocName::Materials, Format::Toml, MATERIALS),
            script: doc(DocName::Script, Format::Toml, SCRIPT),
        }
    }

    #[test]
    fn a_price_change_rewrites_the_words_but_keeps_the_script_key() {
        let before = library().build(SCENE, Path::new("/media")).unwrap();
        let cheaper = library().with(doc(DocName::Materials, Format::Toml, &MATERIALS.replace("29.00", "19.00")));
        let after = cheaper.build(SCENE, Path::new("/media")).unwrap();
        assert_eq!(before.sentences[0].ssml, "<speak>Only 29.00.</speak>");
        assert_eq!(after.sentences[0].ssml, "<speak>Only 19.00.</speak>");
        assert_eq!(before.script_key, after.script_key);
        let edited = library().with(doc(DocName::Script, Format::Lines, "Hello.\n"));
        assert_ne!(edited.build(SCENE, Path::new("/media")).unwrap().script_key, before.script_key);
    }

    #[test]
    fn card_marks_carry_the_products_card() {
        let materials = format!("{MATERIALS}currency = \"EUR\"\nimages = [\"kettle.png\"]\n");
        let script = "[[segment]]\nsentences = [\"<mark name=\\\"card:show:KET-100\\\"/>Look.\", \"Bye.\"]\n";
        let library = Library {
            materials: doc(DocName::Materials, Format::Toml, &materials),
            script: doc(DocName::Script, Format::Toml, script),
        };
        let built = library.build(SCENE, Path::new("/media")).unwrap();
        let card = Card {
            sku: "KET-100".into(),
            name: "Smart kettle".into(),
            price: "€29.00".into(),
            image: Some(PathBuf::from("/media/kettle.png")),
        };
        assert_eq!((built.sentences[0].cards.clone(), built.sentences[1].cards.len()), (vec![card], 0));
        assert_eq!(shown_price("19.90", "CHF"), "19.90 CHF");
    }

    #[test]
    fn materials_that_break_the_script_are_refused_naming_the_script() {
        let renamed = library().with(doc(DocName::Materials, Format::Toml, &MATERIALS.replace("KET-100", "KET-200")));
        let errors = renamed.build(SCENE, Path::new("/media")).unwrap_err();
        assert_eq!(errors.file, PathBuf::from("script (request body)"));
        assert_eq!((errors.errors[0].line, errors.errors[0].column), (2, 11));
        assert!(errors.errors[0].message.contains("\"KET-100\""), "{errors}");
    }

    #[test]
    fn every_sentence_gets_a_scene_and_lines_scripts_are_read_as_lines() {
        let scene = Scene { background_rgb: [1, 2, 3], camera: emcee_protocol::CameraPreset::Wide };
        let lines = library().with(doc(DocName::Script, Format::Lines, "One.\n# note\nTwo.\n"));
        let built = lines.build(scene, Path::new("/media")).unwrap();
        assert_eq!(built.sentences.len(), 2);
        assert!(built.sentences.iter().all(|s| s.scene == Some(scene)));
    }

    #[test]
    fn stored_documents_win_over_files_and_absent_materials_are_empty() {
        let dir = std::env::temp_dir().join(format!("emcee-library-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("script.txt");
        std::fs::write(&file, "From the file.\n").unwrap();
        let from_file = Library::load(None, &file, vec![]).unwrap();
        assert_eq!(from_file.script.origin, Origin::File { path: file.clone() });
        assert_eq!((from_file.script.format, from_file.materials.origin.clone()), (Format::Lines, Origin::Absent));
        let stored = Doc { origin: Origin::Stored { updated_ms: 5 }, ..doc(DocName::Script, Format::Toml, SCRIPT) };
        let loaded = Library::load(None, &dir.join("missing.txt"), vec![stored.clone()]).unwrap();
        assert_eq!(loaded.script, stored);
        // Stored content that no longer checks is set aside for the files.
        let stale = Doc { body: "[[segment]]\nproduct = \"GONE\"\nsentences = [\"Hi.\"]\n".into(), ..stored.clone() };
        let (booted, built) = Library::at_boot(None, &file, (SCENE, Path::new("/media")), vec![stale]).unwrap();
        assert_eq!((booted.script.origin, built.sentences.len()), (Origin::File { path: file.clone() }, 1));
        let missing = Library::load(None, &dir.join("missing.txt"), vec![]).unwrap_err();
        assert!(missing.to_string().contains("missing.txt:1:1: cannot read the script"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
