//! The local answerer: a viewer's question → the best fact from the current products, with a
//! confidence, or the holding line when nothing fits well enough.
//!
//! Every FAQ entry, selling point and price is a document. A question scores each document by
//! the share of its content words (weighted by rarity, idf) that the document contains; words
//! the catalogue has never seen count against the match, so an off-topic question scores low.

use std::collections::{HashMap, HashSet};

use crate::materials::Product;

const STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "be", "do", "does", "did", "i", "you", "we", "it", "its", "this", "that",
    "of", "to", "in", "on", "for", "with", "and", "or", "can", "could", "would", "will", "what", "how", "me", "my",
    "your", "there", "any", "has", "have", "please", "tell", "about", "s", "put", "get", "use", "go", "want", "know",
    "need", "like", "make", "give", "let", "see", "if", "so", "just", "really",
];

/// Lower-case content words with a light plural fold ("litres" → "litre").
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let w = w.to_lowercase();
            match w.strip_suffix('s') {
                Some(stem) if stem.len() > 3 && !stem.ends_with('s') => stem.to_string(),
                _ => w,
            }
        })
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

struct Doc {
    terms: HashSet<String>,
    answer: String,
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

pub struct Answerer {
    docs: Vec<Doc>,
    idf: HashMap<String, f64>,
    unseen_idf: f64,
    min_confidence: f64,
    holding_line: String,
}

impl Answerer {
    pub fn new(products: &[Product], min_confidence: f64, holding_line: &str) -> Self {
        let mut docs = Vec::new();
        for p in products {
            let name = &p.name;
            for f in &p.faq {
                let terms = words(&format!("{name} {} {}", f.question, f.answer)).into_iter().collect();
                docs.push(Doc { terms, answer: f.answer.clone(), is_faq: true });
            }
            for point in &p.selling_points {
                let terms = words(&format!("{name} {point}")).into_iter().collect();
                docs.push(Doc { terms, answer: point.clone(), is_faq: false });
            }
            let price = format!("The {name} costs {} {}.", p.price, p.currency);
            let terms = words(&format!("{name} price cost costs priced much expensive cheap {}", p.currency))
                .into_iter()
                .collect();
            docs.push(Doc { terms, answer: price, is_faq: false });
        }
        let n = docs.len() as f64;
        let mut df: HashMap<String, f64> = HashMap::new();
        for d in &docs {
            for t in &d.terms {
                *df.entry(t.clone()).or_default() += 1.0;
            }
        }
        let idf = df.into_iter().map(|(t, f)| (t, (1.0 + n / f).ln())).collect();
        let unseen_idf = (1.0 + n / 0.5).ln();
        Self { docs, idf, unseen_idf, min_confidence, holding_line: holding_line.to_string() }
    }

    pub fn answer(&self, question: &str) -> Answer {
        let q: HashSet<String> = words(question).into_iter().collect();
        let weight = |t: &String| self.idf.get(t).copied().unwrap_or(self.unseen_idf);
        let total: f64 = q.iter().map(weight).sum();
        let best = self
            .docs
            .iter()
            .map(|d| {
                let covered: f64 = q.iter().filter(|t| d.terms.contains(*t)).map(weight).sum();
                (if total > 0.0 { covered / total } else { 0.0 }, d)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0).then(a.1.is_faq.cmp(&b.1.is_faq)));
        match best {
            Some((confidence, doc)) if confidence >= self.min_confidence => {
                Answer { text: doc.answer.clone(), confidence, matched: true }
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
