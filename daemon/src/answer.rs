//! The local answerer: a viewer's question → the best fact from the current products, with a
//! confidence, or the holding line when nothing fits well enough.
//!
//! Every FAQ entry, selling point and price is a document. A question scores each document by
//! the share of its content words (weighted by rarity, idf) that the document contains; words
//! the catalogue has never seen count against the match, so an off-topic question scores low.

use std::collections::HashMap;

use crate::materials::Product;

const STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "be", "do", "does", "did", "i", "you", "we", "it", "its", "this", "that",
    "of", "to", "in", "on", "for", "with", "and", "or", "can", "could", "would", "will", "what", "how", "me", "my",
    "your", "there", "any", "has", "have", "please", "tell", "about", "s", "put", "get", "use", "go", "want", "know",
    "need", "like", "make", "give", "let", "see", "if", "so", "just", "really",
];

fn is_stopword(word: &str) -> bool {
    // Stopwords are short: most words are ruled out by their length alone.
    word.len() <= 6 && STOPWORDS.contains(&word)
}

/// Calls `f` with each lower-case content word of `text`, with a light plural fold ("litres" →
/// "litre"). One buffer for all words: indexing a large catalog allocates only for new words.
fn each_word(text: &str, mut f: impl FnMut(&str)) {
    let mut word = String::new();
    for raw in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        word.clear();
        if raw.is_ascii() {
            word.push_str(raw);
            word.make_ascii_lowercase();
        } else {
            word.extend(raw.chars().flat_map(char::to_lowercase));
        }
        let folded = match word.strip_suffix('s') {
            Some(stem) if stem.len() > 3 && !stem.ends_with('s') => stem,
            _ => word.as_str(),
        };
        if !is_stopword(folded) {
            f(folded);
        }
    }
}

/// One answer the answerer can give: an FAQ answer, a selling point or a price.
struct Doc {
    answer: Box<str>,
    /// FAQ answers were written for questions: they win ties.
    is_faq: bool,
}

/// What the answerer found.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub text: String,
    /// 0…1: the weighted share of the question's words the answer's document covers.
    pub confidence: f64,
    /// False when the holding line is used.
    pub matched: bool,
}

/// An inverted index over the documents: a question only visits the documents that share a
/// word with it, so a catalog of 100,000 products answers in milliseconds.
pub struct Answerer {
    docs: Vec<Doc>,
    /// Word → its id (an index into `idf` and `postings`).
    vocabulary: HashMap<String, u32>,
    idf: Vec<f64>,
    /// By word id: the documents holding the word, ascending, each once.
    postings: Vec<Vec<u32>>,
    unseen_idf: f64,
    min_confidence: f64,
    holding_line: String,
}

impl Answerer {
    pub fn new(products: &[Product], min_confidence: f64, holding_line: &str) -> Self {
        let mut index = Answerer {
            docs: Vec::new(),
            vocabulary: HashMap::new(),
            idf: Vec::new(),
            postings: Vec::new(),
            unseen_idf: 0.0,
            min_confidence,
            holding_line: holding_line.to_string(),
        };
        for p in products {
            let name = &p.name;
            for f in &p.faq {
                index.add(&format!("{name} {} {}", f.question, f.answer), &f.answer, true);
            }
            for point in &p.selling_points {
                index.add(&format!("{name} {point}"), point, false);
            }
            let price = format!("The {name} costs {} {}.", p.price, p.currency);
            index.add(&format!("{name} price cost costs priced much expensive cheap {}", p.currency), &price, false);
        }
        let n = index.docs.len() as f64;
        index.idf = index.postings.iter().map(|docs| (1.0 + n / docs.len() as f64).ln()).collect();
        index.unseen_idf = (1.0 + n / 0.5).ln();
        index
    }

    /// Adds a document whose words are `text`'s.
    fn add(&mut self, text: &str, answer: &str, is_faq: bool) {
        let doc = self.docs.len() as u32;
        self.docs.push(Doc { answer: answer.into(), is_faq });
        let Self { vocabulary, postings, .. } = self;
        each_word(text, |word| {
            let id = match vocabulary.get(word) {
                Some(&id) => id,
                None => {
                    let id = postings.len() as u32;
                    vocabulary.insert(word.to_string(), id);
                    postings.push(Vec::new());
                    id
                }
            };
            let docs = &mut postings[id as usize];
            // Documents are added in order: a repeated word repeats the last entry.
            if docs.last() != Some(&doc) {
                docs.push(doc);
            }
        });
    }

    pub fn answer(&self, question: &str) -> Answer {
        let mut q: Vec<String> = Vec::new();
        each_word(question, |w| q.push(w.to_string()));
        q.sort();
        q.dedup();
        let known: Vec<u32> = q.iter().filter_map(|t| self.vocabulary.get(t).copied()).collect();
        let unseen = q.len() - known.len();
        let total: f64 = known.iter().map(|&t| self.idf[t as usize]).sum::<f64>() + unseen as f64 * self.unseen_idf;
        // The weight of the question's words each document covers; only documents sharing a
        // word are visited.
        let mut covered = vec![0.0f64; self.docs.len()];
        for &t in &known {
            for &doc in &self.postings[t as usize] {
                covered[doc as usize] += self.idf[t as usize];
            }
        }
        let best = covered
            .iter()
            .zip(&self.docs)
            .filter(|(weight, _)| **weight > 0.0)
            .map(|(weight, doc)| (if total > 0.0 { weight / total } else { 0.0 }, doc))
            .max_by(|a, b| a.0.total_cmp(&b.0).then(a.1.is_faq.cmp(&b.1.is_faq)));
        match best {
            Some((confidence, doc)) if confidence >= self.min_confidence => {
                Answer { text: doc.answer.to_string(), confidence, matched: true }
            }
            other => {
                Answer { text: self.holding_line.clone(), confidence: other.map_or(0.0, |(c, _)| c), matched: false }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::materials::{Faq, Product};

    fn catalogue() -> Answerer {
        let kettle = Product {
            sku: "KET-100".into(),
            name: "Smart kettle".into(),
            price: "29.00".into(),
            currency: "USD".into(),
            selling_points: vec!["It boils a litre of water in three minutes.".into(), "The handle stays cool.".into()],
            images: vec![],
            faq: vec![
                Faq {
                    question: "How long is the warranty?".into(),
                    answer: "The kettle has a two year warranty.".into(),
                },
                Faq { question: "Is it dishwasher safe?".into(), answer: "The lid is, the base is not.".into() },
            ],
        };
        let lamp = Product {
            sku: "LMP-7".into(),
            name: "Desk lamp".into(),
            price: "45.50".into(),
            currency: "USD".into(),
            selling_points: vec!["Three colour temperatures for reading at night.".into()],
            images: vec![],
            faq: vec![Faq { question: "Does the lamp have a warranty?".into(), answer: "One year.".into() }],
        };
        Answerer::new(&[kettle, lamp], 0.5, "Great question! Let me check and come back to you.")
    }

    #[test]
    fn finds_the_faq_the_fact_and_the_price() {
        let a = catalogue();
        let w = a.answer("How long is the kettle warranty?");
        assert!(w.matched && w.text.contains("two year"), "{w:?}");
        let w = a.answer("what warranty does the lamp have");
        assert_eq!(w.text, "One year.");
        let w = a.answer("How fast does it boil water?");
        assert!(w.text.contains("three minutes"), "{w:?}");
        let w = a.answer("How much is the desk lamp?");
        assert!(w.text.contains("45.50"), "{w:?}");
        let w = a.answer("can I put it in the dishwasher");
        assert!(w.text.contains("lid"), "{w:?}");
    }

    #[test]
    fn off_topic_questions_get_the_holding_line() {
        let a = catalogue();
        for q in ["What is the weather on Mars tomorrow?", "Who won the football match?", "", "???"] {
            let w = a.answer(q);
            assert!(!w.matched, "{q}: {w:?}");
            assert!(w.text.starts_with("Great question"));
            assert!(w.confidence < 0.5);
        }
    }
}
