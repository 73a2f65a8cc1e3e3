//! The lenient JavaScript-literal reading of `CUtil::JsObjectToPhp`.
//!
//! When an ATTACH string is not valid JSON the portal falls back to a forgiving parser that
//! accepts what JavaScript code tends to produce: single-quoted strings, bare keys and trailing
//! commas (`[{'MESSAGE':'hi'}]`). Clients such as OPI send that form, so the emulator accepts it
//! too instead of answering ATTACH_ERROR where the portal would not.

use serde_json::{Map, Value};

/// Parse a JS object/array literal; `None` if it is not one.
pub fn parse(s: &str) -> Option<Value> {
    let mut p = Parser {
        chars: s.chars().collect(),
        pos: 0,
        depth: 0,
    };
    let value = p.value()?;
    p.skip_ws();
    (p.pos == p.chars.len()).then_some(value)
}

/// Bounds recursion so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 128;

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.skip_ws();
        match self.peek()? {
            '{' => self.nested(Self::object),
            '[' => self.nested(Self::array),
            '"' | '\'' => self.string().map(Value::String),
            _ => self.bare(),
        }
    }

    fn nested(&mut self, f: fn(&mut Self) -> Option<Value>) -> Option<Value> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn object(&mut self) -> Option<Value> {
        self.pos += 1; // '{'
        let mut map = Map::new();
        loop {
            if self.eat('}') {
                return Some(Value::Object(map));
            }
            self.skip_ws();
            let key = match self.peek()? {
                '"' | '\'' => self.string()?,
                _ => self.word(),
            };
            if key.is_empty() || !self.eat(':') {
                return None;
            }
            let v = self.value()?;
            map.insert(key, v);
            if !self.eat(',') {
                return self.eat('}').then_some(Value::Object(map));
            }
        }
    }

    fn array(&mut self) -> Option<Value> {
        self.pos += 1; // '['
        let mut list = Vec::new();
        loop {
            if self.eat(']') {
                return Some(Value::Array(list));
            }
            list.push(self.value()?);
            if !self.eat(',') {
                return self.eat(']').then_some(Value::Array(list));
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        let quote = self.peek()?;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            self.pos += 1;
            match c {
                c if c == quote => return Some(out),
                '\\' => {
                    let e = self.peek()?;
                    self.pos += 1;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'u' => {
                            let hex: String =
                                self.chars.get(self.pos..self.pos + 4)?.iter().collect();
                            let code = u32::from_str_radix(&hex, 16).ok()?;
                            self.pos += 4;
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '$' | '-' | '.' | '+'))
        {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn bare(&mut self) -> Option<Value> {
        let word = self.word();
        match word.as_str() {
            "" => None,
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            "null" => Some(Value::Null),
            w => {
                if let Ok(i) = w.parse::<i64>() {
                    Some(Value::from(i))
                } else {
                    w.parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lenient_table() {
        let cases: &[(&str, Option<Value>)] = &[
            ("[{'MESSAGE':'hi'}]", Some(json!([{"MESSAGE": "hi"}]))),
            (
                "[{IMAGE:{NAME:'a',LINK:'https://x/a.png',}},]",
                Some(json!([{"IMAGE": {"NAME": "a", "LINK": "https://x/a.png"}}])),
            ),
            (
                "{'a': [1, 2.5, true, null, 'it\\'s']}",
                Some(json!({"a": [1, 2.5, true, null, "it's"]})),
            ),
            ("hello", None),
            ("[1,", None),
            ("{'a' 1}", None),
            ("[1] x", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), *want, "{input}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep), None);
    }
}
