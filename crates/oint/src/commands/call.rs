//! `oint call METHOD [KEY=VALUE…]`: any Bitrix24 method, with the same connection, pacing,
//! retries and error handling as the notification commands.
//!
//! Parameters come from `--params` (JSON or `@FILE`) with `key=value` pairs laid over them in
//! PHP's bracket syntax. An `ATTACH` is checked as a notification's is, whatever the method.

use bitrix24::{Attach, Request};
use serde_json::{Map, Value};

use super::render::{self, Outcome, preview};
use crate::blocks;
use crate::connect::connect;
use crate::flags::CallArgs;
use crate::output::{Failure, Success};
use crate::portal_errors;
use crate::settings::{self, Global};
use crate::severity;

/// Runs `oint call`.
pub async fn command(args: CallArgs, global: &Global) -> Result<Success, Failure> {
    let format = render::format(&args.connection);
    let outcome = call(args, global).await;
    render::render(outcome, format)
}

async fn call(args: CallArgs, global: &Global) -> Result<Outcome, Failure> {
    let params = call_params(args.params_json.as_deref(), &args.params).map_err(Failure::Usage)?;
    let request = params
        .into_iter()
        .fold(Request::new(args.method.trim()), |r, (k, v)| r.param(k, v));
    // Before anything connects, --dry-run included: a bad name could leave /rest/.
    bitrix24::check_method(request.method()).map_err(failure)?;
    let resolved = settings::real_world(|world| {
        settings::resolve_connection(&args.connection, &global.transport, world)
    })
    .map_err(Failure::Usage)?;
    let strict = global.strict || resolved.strict;
    if let Some(attach) = request.params().get("ATTACH") {
        let report = Attach::review_json(attach);
        severity::admit(&report, strict, &|f| f.field.clone()).map_err(Failure::Usage)?;
    }
    let (client, _sandbox) = connect(resolved.target, &resolved.transport).await?;
    if args.connection.dry_run {
        return Ok(preview(&client, &request));
    }
    let answer = client.execute(&request).await.map_err(failure)?;
    let plain = match &answer.result {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok(Outcome::Value {
        json: answer.raw,
        plain,
    })
}

/// `oint call` has no flag per field: a field is named as the parameter it is.
fn failure(error: bitrix24::Error) -> Failure {
    portal_errors::failure(error, &portal_errors::as_named)
}

/// `--params` JSON (or @file) overlaid with `key=value` pairs in PHP bracket syntax.
pub fn call_params(
    json_text: Option<&str>,
    pairs: &[String],
) -> Result<Map<String, Value>, String> {
    let mut params = match json_text {
        None => Map::new(),
        Some(text) => {
            let (source, text) = match text.strip_prefix('@') {
                Some(path) => (
                    format!("--params @{path}"),
                    blocks::read_file(std::path::Path::new(path))
                        .map_err(|e| format!("--params: {e}"))?,
                ),
                None => ("--params".to_string(), text.to_string()),
            };
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => map,
                Ok(_) => {
                    return Err(format!(
                        "{source}: must be a JSON object such as {{\"USER_ID\": 1}}"
                    ));
                }
                Err(e) => return Err(format!("{source}: not valid JSON ({e})")),
            }
        }
    };
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?}: expected KEY=VALUE"))?;
        let path = key_path(key)
            .ok_or_else(|| format!("{key:?}: expected a key such as NAME, NAME[sub] or NAME[]"))?;
        insert(&mut params, &path, Value::String(value.to_string()))
            .map_err(|e| format!("{key:?}: {e}"))?;
    }
    Ok(params
        .into_iter()
        .map(|(k, v)| (k, lists_from_maps(v)))
        .collect())
}

/// `a[b][]` → `["a", "b", ""]`.
fn key_path(key: &str) -> Option<Vec<String>> {
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if head.is_empty() {
        return None;
    }
    let mut path = vec![head.to_string()];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        path.push(inner[..end].to_string());
        rest = &inner[end + 1..];
    }
    Some(path)
}

fn insert(map: &mut Map<String, Value>, path: &[String], value: Value) -> Result<(), String> {
    let (first, rest) = path.split_first().expect("a path has a head");
    let key = if first.is_empty() {
        map.len().to_string()
    } else {
        first.clone()
    };
    if rest.is_empty() {
        map.insert(key, value);
        return Ok(());
    }
    let slot = map
        .entry(key.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    match slot {
        Value::Object(inner) => insert(inner, rest, value),
        _ => Err(format!("{key} is given both as a value and as a group")),
    }
}

/// Maps keyed exactly 0..n-1 become JSON lists, as PHP would encode them.
fn lists_from_maps(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let is_list = map.keys().enumerate().all(|(i, k)| *k == i.to_string());
            let values = map.into_iter().map(|(k, v)| (k, lists_from_maps(v)));
            if is_list {
                Value::Array(values.map(|(_, v)| v).collect())
            } else {
                Value::Object(values.collect())
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_params_nest_like_php() {
        let pairs: Vec<String> = [
            "USER_ID=10",
            "MESSAGE=a=b",
            "ATTACH[0][MESSAGE]=hi",
            "ATTACH[1][IMAGE][LINK]=/x.png",
            "IDS[]=1",
            "IDS[]=2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let got = call_params(Some(r#"{"MESSAGE": "overridden", "LIMIT": 5}"#), &pairs).unwrap();
        assert_eq!(
            Value::Object(got),
            json!({"MESSAGE": "a=b", "LIMIT": 5, "USER_ID": "10",
                   "ATTACH": [{"MESSAGE": "hi"}, {"IMAGE": {"LINK": "/x.png"}}], "IDS": ["1", "2"]})
        );
        let table = [
            (vec!["novalue"], "expected KEY=VALUE"),
            (vec!["[x]=1"], "expected a key such as"),
            (vec!["A[b=1"], "expected a key such as"),
            (vec!["A=1", "A[b]=2"], "both as a value and as a group"),
        ];
        for (pairs, want) in table {
            let pairs: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
            let e = call_params(None, &pairs).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        assert!(
            call_params(Some("[1]"), &[])
                .unwrap_err()
                .contains("must be a JSON object")
        );
        assert!(
            call_params(Some("{"), &[])
                .unwrap_err()
                .contains("not valid JSON")
        );
    }
}
