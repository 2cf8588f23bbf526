//! Materials: the products the host talks about (name, price, selling points, images, FAQ).
//! Read from a TOML file; every problem is reported at once as `file:line:column: message`,
//! and a file with problems replaces nothing.
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
//! ```

use std::path::Path;

use toml_edit::{Item, Table};

use crate::config::{Checker, ConfigError, ConfigErrors};

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

fn strings(c: &mut Checker<'_>, table: &Table, key: &str, context: &str) -> Vec<String> {
    let Some(item) = table.get(key) else { return Vec::new() };
    let Some(list) = item.as_array() else {
        c.error(item.span(), format!("{context} {key} must be a list of strings"));
        return Vec::new();
    };
    list.iter()
        .filter_map(|v| match v.as_str() {
            Some(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            _ => {
                c.error(v.span(), format!("{context} {key}: every entry must be a non-empty string"));
                None
            }
        })
        .collect()
}

fn required(c: &mut Checker<'_>, table: &Table, key: &str, context: &str) -> String {
    match c.string(Some(table), context, key) {
        Some((s, item)) if s.trim().is_empty() => {
            c.error(item.span(), format!("{context} {key} is empty"));
            String::new()
        }
        Some((s, _)) => s.trim().to_string(),
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

/// Parses product text; `Err` holds every problem.
pub fn parse_products(text: &str) -> Result<Vec<Product>, Vec<ConfigError>> {
    let (mut c, doc) = Checker::parse(text)?;
    let root: &Table = &doc;
    c.unknown_keys(root, &["product"], "the file");
    let mut products = Vec::new();
    match root.get("product") {
        None => {}
        Some(Item::ArrayOfTables(array)) => {
            for t in array.iter() {
                let ctx = "[[product]]";
                c.unknown_keys(t, &["sku", "name", "price", "currency", "selling_points", "images", "faq"], ctx);
                let sku = required(&mut c, t, "sku", ctx);
                let name = required(&mut c, t, "name", ctx);
                let price = required(&mut c, t, "price", ctx);
                if !price.is_empty() && !is_decimal(&price) {
                    let span = t.get("price").and_then(|i| i.span());
                    c.error(span, format!("{ctx} price \"{price}\" must be a decimal like \"29.90\""));
                }
                let currency = match c.string(Some(t), ctx, "currency") {
                    Some((s, _)) => s.to_string(),
                    None => "USD".to_string(),
                };
                let selling_points = strings(&mut c, t, "selling_points", ctx);
                let images = strings(&mut c, t, "images", ctx);
                let mut faq = Vec::new();
                match t.get("faq") {
                    None => {}
                    Some(Item::ArrayOfTables(entries)) => {
                        for e in entries.iter() {
                            c.unknown_keys(e, &["q", "a"], "[[product.faq]]");
                            let question = required(&mut c, e, "q", "[[product.faq]]");
                            let answer = required(&mut c, e, "a", "[[product.faq]]");
                            faq.push(Faq { question, answer });
                        }
                    }
                    Some(item) => {
                        c.error(item.span(), "FAQ entries are written as [[product.faq]] tables with q and a")
                    }
                }
                if products.iter().any(|p: &Product| p.sku == sku && !sku.is_empty()) {
                    c.error(t.get("sku").and_then(|i| i.span()), format!("{ctx} sku \"{sku}\" is used twice"));
                }
                products.push(Product { sku, name, price, currency, selling_points, images, faq });
            }
        }
        Some(item) => c.error(item.span(), "products are written as [[product]] tables"),
    }
    c.finish(products)
}

pub fn load_products(path: &Path) -> Result<Vec<Product>, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        file: path.to_path_buf(),
        errors: vec![ConfigError { line: 1, column: 1, message: format!("cannot read the file: {e}") }],
    })?;
    parse_products(&text).map_err(|errors| ConfigErrors { file: path.to_path_buf(), errors })
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
    fn reads_products_with_their_faq() {
        let products = parse_products(KETTLE).unwrap();
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
        let errors = parse_products(&bad).unwrap_err();
        let m: Vec<String> = errors.iter().map(|e| format!("{}:{} {}", e.line, e.column, e.message)).collect();
        assert_eq!(errors.len(), 4, "{m:#?}");
        assert!(m.iter().any(|e| e.starts_with("5:9 ") && e.contains("price must be a string")), "{m:#?}");
        assert!(m.iter().any(|e| e.starts_with("6:1 ") && e.contains("unknown key `colour`")), "{m:#?}");
        assert!(m.iter().any(|e| e.contains("unknown key `answer`")), "{m:#?}");
        assert!(m.iter().any(|e| e.contains("needs a")), "{m:#?}");
        assert!(parse_products("[[product]]\nsku = \"A\"\nname = \"x\"\nprice = \"1,5\"\n").is_err());
    }
}
