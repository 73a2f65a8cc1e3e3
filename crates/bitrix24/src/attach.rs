//! Attachments (`ATTACH`): rich blocks shown under a notification's text.
//!
//! The portal takes either a list of blocks (the short form) or an object with `BLOCKS` and
//! optional `ID`, `COLOR`, `DESCRIPTION` (the full form). A bare single block such as
//! `{"IMAGE": …}` is *not* accepted by the portal, so [`Attach::from_json`] refuses it rather
//! than letting the portal answer `ATTACH_ERROR`.

use serde_json::{Value, json};

use crate::client::json_kind;
use crate::error::Error;

/// One attachment block, e.g. `{"IMAGE": {"NAME": "…", "LINK": "…"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Block(Value);

impl Block {
    /// A picture: `{"IMAGE": {"NAME": name, "LINK": link}}` (OPI's `GetPictureBlock`).
    pub fn image(name: impl Into<String>, link: impl Into<String>) -> Block {
        Block(json!({"IMAGE": {"NAME": name.into(), "LINK": link.into()}}))
    }

    /// A file: `{"FILE": {"NAME": name, "LINK": link}}` (OPI's `GetFileBlock`).
    pub fn file(name: impl Into<String>, link: impl Into<String>) -> Block {
        Block(json!({"FILE": {"NAME": name.into(), "LINK": link.into()}}))
    }

    /// A line of text, BB-codes allowed: `{"MESSAGE": text}`.
    pub fn message(text: impl Into<String>) -> Block {
        Block(json!({"MESSAGE": text.into()}))
    }

    /// A horizontal line: `{"DELIMITER": {}}`.
    pub fn delimiter() -> Block {
        Block(json!({"DELIMITER": {}}))
    }

    /// The block as JSON.
    pub fn as_json(&self) -> &Value {
        &self.0
    }

    /// The block as JSON, owned.
    pub fn into_json(self) -> Value {
        self.0
    }
}

/// A whole `ATTACH` value.
#[derive(Debug, Clone, PartialEq)]
pub struct Attach(Value);

impl Attach {
    /// The short form: a list of blocks.
    pub fn new(blocks: impl IntoIterator<Item = Block>) -> Attach {
        Attach(Value::Array(
            blocks.into_iter().map(Block::into_json).collect(),
        ))
    }

    /// Takes user-supplied JSON: a list of block objects, or a full-form object with `BLOCKS`.
    pub fn from_json(value: Value) -> Result<Attach, Error> {
        let invalid = |m: String| Error::invalid("ATTACH", m);
        match &value {
            Value::Array(items) => {
                if let Some((i, item)) = items.iter().enumerate().find(|(_, v)| !v.is_object()) {
                    return Err(invalid(format!(
                        "item {i} is {}, but every block must be an object such as {{\"MESSAGE\": \"text\"}}",
                        json_kind(item)
                    )));
                }
                Ok(Attach(value))
            }
            Value::Object(map) if map.keys().any(|k| k.eq_ignore_ascii_case("BLOCKS")) => Ok(Attach(value)),
            Value::Object(_) => Err(invalid(
                "is a single object; the portal wants a list of blocks, so wrap it in [ ] (or use the full form with \"BLOCKS\")".into(),
            )),
            other => Err(invalid(format!("must be a list of blocks, not {}", json_kind(other)))),
        }
    }

    /// The attachment as JSON.
    pub fn as_json(&self) -> &Value {
        &self.0
    }

    /// True when there is nothing to attach (an empty list); such an attach is left out.
    pub fn is_empty(&self) -> bool {
        self.0.as_array().is_some_and(Vec::is_empty)
    }
}

impl FromIterator<Block> for Attach {
    fn from_iter<I: IntoIterator<Item = Block>>(iter: I) -> Self {
        Attach::new(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_serialise_like_opi() {
        assert_eq!(
            serde_json::to_string(Block::image("Image1", "https://x/p.jpg").as_json()).unwrap(),
            r#"{"IMAGE":{"NAME":"Image1","LINK":"https://x/p.jpg"}}"#
        );
        assert_eq!(
            serde_json::to_string(Block::file("File1.docx", "https://x/d.docx").as_json()).unwrap(),
            r#"{"FILE":{"NAME":"File1.docx","LINK":"https://x/d.docx"}}"#
        );
    }

    #[test]
    fn from_json_accepts_the_portal_forms_only() {
        assert!(Attach::from_json(json!([{"MESSAGE": "x"}])).is_ok());
        assert!(Attach::from_json(json!({"ID": 1, "BLOCKS": [{"MESSAGE": "x"}]})).is_ok());
        assert!(Attach::from_json(json!([])).unwrap().is_empty());
        for (bad, needle) in [
            (json!({"MESSAGE": "x"}), "wrap it in [ ]"),
            (json!("text"), "not a string"),
            (json!([1]), "item 0 is a number"),
        ] {
            let e = Attach::from_json(bad).unwrap_err().to_string();
            assert!(e.starts_with("ATTACH: ") && e.contains(needle), "{e}");
        }
    }
}
