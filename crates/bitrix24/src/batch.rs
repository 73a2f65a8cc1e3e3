//! `batch`: up to 50 commands in one HTTP request.
//!
//! The portal decodes each command as a `method?query` string with PHP `parse_str`, even when
//! the outer body is JSON. So a command's parameters are encoded here the way PHP's
//! `http_build_query` does it (`encode_query`): nested objects and lists become
//! `KEY[sub][0]=…`, booleans `1`/`0`, `null` disappears. That is what lets a nested `ATTACH`
//! survive a batch unchanged; a test sends every ATTACH of the corpus both ways and compares
//! what the portal stored.
//!
//! A batch is one request to the method `batch`: it goes through [`Client::execute`] like any
//! other call, so it is paced by the rate limiter as one request, billed to `batch` for
//! operating time, and retried only when every command in it may run twice.
//!
//! The answer is read tolerantly: empty sections arrive as `[]`, sections are lists when the
//! command keys are exactly `0..n-1` (PHP's rule) and maps otherwise. Each command ends as
//! [`CommandResult::Ok`], [`CommandResult::Err`] (its own `result_error`; the batch itself
//! answered 200), or [`CommandResult::NotRun`] when `halt` stopped the batch before it.

use serde_json::{Map, Value, json};

use crate::answer::Time;
use crate::client::{Client, Request};
use crate::error::{ApiError, Error};

/// The most commands the portal runs in one batch (`CRestUtil::BATCH_MAX_LENGTH`).
pub const MAX_BATCH: usize = 50;

/// Builder for one `batch` call, from [`Client::batch`].
///
/// ```no_run
/// # async fn run(client: bitrix24::Client) -> Result<(), bitrix24::Error> {
/// use bitrix24::{CommandResult, result_ref};
/// let first = client.notify().personal(10, "Build started").to_request()?;
/// let second = client
///     .notify()
///     .personal(10, format!("Follow-up to {}", result_ref("first", &[])))
///     .to_request()?;
/// let answer = client.batch().add("first", first).add("second", second).send().await?;
/// if let Some(CommandResult::Ok(id)) = answer.get("second") {
///     println!("second notification: {id}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "nothing is sent until .send()"]
pub struct Batch<'c> {
    client: &'c Client,
    commands: Vec<(String, Request)>,
    halt: bool,
}

impl Client {
    /// Starts a `batch` call: several commands in one HTTP request.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            client: self,
            commands: Vec::new(),
            halt: false,
        }
    }
}

impl<'c> Batch<'c> {
    /// Adds a command under `key`, the name later commands use in `$result[key]`.
    pub fn add(mut self, key: impl Into<String>, request: Request) -> Self {
        self.commands.push((key.into(), request));
        self
    }

    /// Adds a command keyed by its position: `"0"`, `"1"`, …
    pub fn push(mut self, request: Request) -> Self {
        let key = self.commands.len().to_string();
        self.commands.push((key, request));
        self
    }

    /// Stops at the first command that fails; the ones after it are [`CommandResult::NotRun`].
    pub fn halt(mut self, halt: bool) -> Self {
        self.halt = halt;
        self
    }

    /// Commands added so far.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// True when no command has been added.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The `batch` request: `{"halt": 0|1, "cmd": {key: "method?query"}}`.
    ///
    /// Refused before anything is sent: no commands, more than [`MAX_BATCH`] (the portal
    /// would run the first 50 and refuse the rest one by one), or a key used twice (the
    /// later command would silently replace the earlier one).
    pub fn to_request(&self) -> Result<Request, Error> {
        if self.commands.is_empty() {
            return Err(Error::invalid("cmd", "a batch needs at least one command"));
        }
        if self.commands.len() > MAX_BATCH {
            return Err(Error::invalid(
                "cmd",
                format!(
                    "{} commands; the portal runs at most {MAX_BATCH} in one batch",
                    self.commands.len()
                ),
            ));
        }
        let mut cmd = Map::new();
        for (key, request) in &self.commands {
            if cmd.contains_key(key) {
                return Err(Error::invalid(
                    "cmd",
                    format!("the key {key:?} is used by two commands"),
                ));
            }
            cmd.insert(key.clone(), Value::String(command_line(request)));
        }
        Ok(Request::new("batch")
            .param("halt", u8::from(self.halt))
            .param("cmd", Value::Object(cmd)))
    }

    /// Sends the batch as one request and returns each command's result, in the order added.
    pub async fn send(self) -> Result<BatchAnswer, Error> {
        self.send_observed(&|| Ok(()), &|| ()).await
    }

    /// [`Batch::send`], calling `before_write` when each attempt is about to be written and
    /// `not_run` after one that certainly did not run (see [`Client::execute_observed`]).
    pub(crate) async fn send_observed(
        self,
        before_write: &(dyn Fn() -> Result<(), Error> + Send + Sync),
        not_run: &(dyn Fn() + Send + Sync),
    ) -> Result<BatchAnswer, Error> {
        let request = self.to_request()?;
        let answer = self
            .client
            .execute_observed(&request, before_write, not_run)
            .await?;
        let keys = self.commands.into_iter().map(|(key, _)| key);
        decode_answer(keys, &answer.result, answer.time).map_err(|reason| Error::Decode {
            status: 200,
            reason,
            body: answer.raw.to_string(),
        })
    }
}

/// What one command of a batch came to.
#[derive(Debug, Clone)]
pub enum CommandResult {
    /// It ran; its `result`, raw.
    Ok(Value),
    /// The portal refused it: its entry of `result_error`. `status` is the batch's HTTP
    /// status (200): the portal gives sub-commands none of their own.
    Err(ApiError),
    /// `halt` stopped the batch before this command.
    NotRun,
}

/// The answer to a batch.
#[derive(Debug, Clone)]
pub struct BatchAnswer {
    /// Each command's key and result, in the order the commands were added.
    pub results: Vec<(String, CommandResult)>,
    /// The `time` of the batch as a whole.
    pub time: Option<Time>,
}

impl BatchAnswer {
    /// The result of the command added under `key`.
    pub fn get(&self, key: &str) -> Option<&CommandResult> {
        self.results.iter().find(|(k, _)| k == key).map(|(_, r)| r)
    }
}

/// A `$result[key][path…]` reference to an earlier command's result, for a later command's
/// parameter. As a whole parameter value it is replaced by the raw value (a list stays a
/// list); inside longer text it is replaced as text. It ends at the first whitespace.
///
/// ```
/// assert_eq!(bitrix24::result_ref("a", &["ID"]), "$result[a][ID]");
/// assert_eq!(bitrix24::result_ref("a", &[]), "$result[a]");
/// ```
pub fn result_ref(key: &str, path: &[&str]) -> String {
    let mut text = format!("$result[{key}]");
    for segment in path {
        text.push('[');
        text.push_str(segment);
        text.push(']');
    }
    text
}

/// `method?query`, or just `method` when there are no parameters.
fn command_line(request: &Request) -> String {
    let query = encode_query(request.params());
    if query.is_empty() {
        request.method().to_string()
    } else {
        format!("{}?{query}", request.method())
    }
}

/// PHP's `http_build_query($params)` (RFC 1738 flavour, as PHP's default): nested objects and
/// lists become `KEY[sub][0]=…`, `true`/`false` become `1`/`0`, numbers their text, `null`
/// produces nothing. Names and values are percent-encoded as PHP's `urlencode` does (space as
/// `+`), which `parse_str` decodes back exactly. One difference: an empty object or list is
/// sent as an empty value (`KEY=`) where PHP would drop the key, so that the portal still
/// sees it set, as it does for a direct call's `[]` (an empty `DELIMITER` block is a block).
pub(crate) fn encode_query(params: &Map<String, Value>) -> String {
    let mut out = String::new();
    for (key, value) in params {
        encode_pair(&mut out, &urlencode(key), value);
    }
    out
}

fn encode_pair(out: &mut String, name: &str, value: &Value) {
    let text = match value {
        Value::Null => return,
        Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => urlencode(s),
        // PHP's http_build_query drops an empty array, which would lose an empty block such
        // as `{"DELIMITER": {}}`; an empty value keeps the key set (`isset`) as `[]` does.
        Value::Array(list) if list.is_empty() => String::new(),
        Value::Object(map) if map.is_empty() => String::new(),
        Value::Array(list) => {
            for (i, item) in list.iter().enumerate() {
                encode_pair(out, &format!("{name}%5B{i}%5D"), item);
            }
            return;
        }
        Value::Object(map) => {
            for (k, item) in map {
                encode_pair(out, &format!("{name}%5B{}%5D", urlencode(k)), item);
            }
            return;
        }
    };
    if !out.is_empty() {
        out.push('&');
    }
    out.push_str(name);
    out.push('=');
    out.push_str(&text);
}

/// PHP `urlencode`: letters, digits and `-_.` stay, space is `+`, every other byte `%XX`.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
    out
}

/// Reads the batch's `result` into one [`CommandResult`] per key.
fn decode_answer(
    keys: impl Iterator<Item = String>,
    result: &Value,
    time: Option<Time>,
) -> Result<BatchAnswer, String> {
    let section = |name: &str| -> Result<Option<&Value>, String> {
        match result.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ (Value::Object(_) | Value::Array(_))) => Ok(Some(v)),
            Some(other) => Err(format!("a batch answer whose {name} is {other}")),
        }
    };
    if !result.is_object() && result.as_array().is_none_or(|a| !a.is_empty()) {
        return Err(format!("a batch answer that is not an object: {result}"));
    }
    let results = section("result")?;
    let errors = section("result_error")?;
    let mut out = Vec::new();
    for key in keys {
        let outcome = if let Some(error) = errors.and_then(|s| entry(s, &key)) {
            CommandResult::Err(command_error(error))
        } else if let Some(value) = results.and_then(|s| entry(s, &key)) {
            CommandResult::Ok(value.clone())
        } else {
            CommandResult::NotRun
        };
        out.push((key, outcome));
    }
    Ok(BatchAnswer { results: out, time })
}

/// `section[key]`: a map by key, or a list (PHP's `0..n-1` keys) by index.
fn entry<'v>(section: &'v Value, key: &str) -> Option<&'v Value> {
    match section {
        Value::Object(map) => map.get(key),
        Value::Array(list) => canonical_index(key).and_then(|i| list.get(i)),
        _ => None,
    }
}

/// The index a PHP array key `"3"` stands for; `"03"` or `"+3"` stay strings in PHP.
fn canonical_index(key: &str) -> Option<usize> {
    let i: usize = key.parse().ok()?;
    (i.to_string() == key).then_some(i)
}

fn command_error(error: &Value) -> ApiError {
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let (code, description) = match error {
        Value::Object(map) => (text(map.get("error")), text(map.get("error_description"))),
        // Not the documented shape; keep whatever it says as the description.
        other => (String::new(), text(Some(other))),
    };
    ApiError {
        code: code.as_str().into(),
        description,
        status: 200,
        body: match error {
            Value::Object(_) => error.clone(),
            other => json!({"error": "", "error_description": other}),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn encode_query_matches_php_http_build_query() {
        // Expected strings are what PHP 8 `http_build_query` gives for the same array.
        let table = [
            (
                json!({"USER_ID": "2", "MESSAGE": "hi"}),
                "USER_ID=2&MESSAGE=hi",
            ),
            (json!({"MESSAGE": "a b+c&d=e"}), "MESSAGE=a+b%2Bc%26d%3De"),
            (
                json!({"M": "Привет"}),
                "M=%D0%9F%D1%80%D0%B8%D0%B2%D0%B5%D1%82",
            ),
            (json!({"M": "-_.~*'()!"}), "M=-_.%7E%2A%27%28%29%21"),
            (
                json!({"ID": 5, "F": 1.5, "Y": true, "N": false}),
                "ID=5&F=1.5&Y=1&N=0",
            ),
            (json!({"A": null, "B": "x"}), "B=x"),
            (json!({"A": [], "B": {}, "C": ""}), "A=&B=&C="),
            (
                json!({"ATTACH": [{"DELIMITER": {}}]}),
                "ATTACH%5B0%5D%5BDELIMITER%5D=",
            ),
            (json!({"IDS": [1, 2]}), "IDS%5B0%5D=1&IDS%5B1%5D=2"),
            (
                json!({"ATTACH": [{"MESSAGE": "Hi"}, {"IMAGE": [{"LINK": "https://x/a.png", "NAME": "a"}]}]}),
                "ATTACH%5B0%5D%5BMESSAGE%5D=Hi&ATTACH%5B1%5D%5BIMAGE%5D%5B0%5D%5BLINK%5D=https%3A%2F%2Fx%2Fa.png&ATTACH%5B1%5D%5BIMAGE%5D%5B0%5D%5BNAME%5D=a",
            ),
            (
                json!({"ATTACH": {"ID": 1, "COLOR": "#ff0000", "BLOCKS": [{"DELIMITER": {"SIZE": 200}}]}}),
                "ATTACH%5BID%5D=1&ATTACH%5BCOLOR%5D=%23ff0000&ATTACH%5BBLOCKS%5D%5B0%5D%5BDELIMITER%5D%5BSIZE%5D=200",
            ),
            (
                json!({"MESSAGE": "$result[a][ID]"}),
                "MESSAGE=%24result%5Ba%5D%5BID%5D",
            ),
            (json!({}), ""),
        ];
        for (params, want) in table {
            assert_eq!(encode_query(&map(params.clone())), want, "{params}");
        }
    }

    #[test]
    fn result_ref_walks_the_path() {
        assert_eq!(result_ref("a", &["ID"]), "$result[a][ID]");
        assert_eq!(
            result_ref("u", &["UF_DEPARTMENT", "0"]),
            "$result[u][UF_DEPARTMENT][0]"
        );
        assert_eq!(result_ref("a", &[]), "$result[a]");
    }

    #[test]
    fn answers_are_read_as_maps_lists_or_empty_arrays() {
        let keys = || ["0", "1", "2"].map(String::from).into_iter();
        // A list cmd with every command run: sections are lists.
        let a = decode_answer(
            keys(),
            &json!({"result": [1, "2", false], "result_error": [], "result_time": []}),
            None,
        )
        .unwrap();
        assert!(matches!(a.get("1"), Some(CommandResult::Ok(v)) if v == "2"));
        assert!(matches!(
            a.get("2"),
            Some(CommandResult::Ok(Value::Bool(false)))
        ));
        // The middle one failed: result keys 0 and 2 are no longer 0..n-1, so a map.
        let a = decode_answer(
            keys(),
            &json!({"result": {"0": 1, "2": 3},
                    "result_error": {"1": {"error": "USER_ID_EMPTY", "error_description": "x"}}}),
            None,
        )
        .unwrap();
        match a.get("1") {
            Some(CommandResult::Err(e)) => {
                assert_eq!(e.code, ErrorCode::UserIdEmpty);
                assert_eq!(e.description, "x");
            }
            other => panic!("{other:?}"),
        }
        // Halted after the first: the others are in no section.
        let a = decode_answer(
            keys(),
            &json!({"result": [], "result_error": [{"error": "E"}]}),
            None,
        )
        .unwrap();
        assert!(matches!(a.get("0"), Some(CommandResult::Err(_))));
        assert!(matches!(a.get("1"), Some(CommandResult::NotRun)));
        assert_eq!(
            a.results
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>(),
            ["0", "1", "2"]
        );
        assert!(decode_answer(keys(), &json!("nope"), None).is_err());
        assert!(decode_answer(keys(), &json!({"result": 5}), None).is_err());
        assert_eq!(canonical_index("03"), None);
    }
}
