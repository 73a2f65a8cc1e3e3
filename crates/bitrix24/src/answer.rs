//! The portal's successful answers, read tolerantly.
//!
//! Bitrix24 is written in PHP and it shows: ids arrive as numbers or strings, `false` means
//! "nothing was created", an empty object is encoded as `[]`, and `time` fields may be ints,
//! floats or strings depending on the server. Everything here accepts all of those forms.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A successful answer: the method's `result` plus the server's timing.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    /// The `result` field, typed.
    pub result: T,
    /// The `time` object, when the portal sent one.
    pub time: Option<Time>,
    /// `next`, for paged lists.
    pub next: Option<u64>,
    /// `total`, for paged lists.
    pub total: Option<u64>,
    /// The whole answer as the portal sent it.
    pub raw: Value,
}

impl<T: serde::de::DeserializeOwned> Answer<T> {
    /// Types the `result` of a raw answer.
    pub(crate) fn from_raw(raw: Value) -> Result<Answer<T>, serde_json::Error> {
        let get = |key: &str| raw.get(key).cloned().unwrap_or(Value::Null);
        let result = T::deserialize(get("result"))?;
        let time = match raw.get("time") {
            Some(t) if t.is_object() => Some(Time::deserialize(t.clone())?),
            _ => None,
        };
        let next = lenient_u64(&get("next"));
        let total = lenient_u64(&get("total"));
        Ok(Answer {
            result,
            time,
            next,
            total,
            raw,
        })
    }
}

/// The `time` object of an answer. Every field is optional: self-hosted portals omit
/// `operating`, and older ones omit the dates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Time {
    /// Unix time the server started the call.
    #[serde(default, deserialize_with = "de_f64")]
    pub start: Option<f64>,
    /// Unix time the server finished the call.
    #[serde(default, deserialize_with = "de_f64")]
    pub finish: Option<f64>,
    /// `finish - start`, seconds.
    #[serde(default, deserialize_with = "de_f64")]
    pub duration: Option<f64>,
    /// Seconds spent in the method itself.
    #[serde(default, deserialize_with = "de_f64")]
    pub processing: Option<f64>,
    /// `start` as ISO 8601.
    #[serde(default, deserialize_with = "de_string")]
    pub date_start: Option<String>,
    /// `finish` as ISO 8601.
    #[serde(default, deserialize_with = "de_string")]
    pub date_finish: Option<String>,
    /// Seconds of the method's operating-time budget used in the current window.
    #[serde(default, deserialize_with = "de_f64")]
    pub operating: Option<f64>,
    /// Unix time when the oldest part of that budget is released.
    #[serde(default, deserialize_with = "de_f64")]
    pub operating_reset_at: Option<f64>,
}

fn lenient_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(crate) fn lenient_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A number that may arrive as a JSON number or a numeric string.
pub(crate) fn de_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(lenient_u64(&Value::deserialize(d)?))
}

/// Like [`de_opt_u64`], with 0 for anything missing or unreadable.
pub(crate) fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(lenient_u64(&Value::deserialize(d)?).unwrap_or(0))
}

/// A string that may arrive as a string, a number, `null` or `false`.
pub(crate) fn de_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    de_string(d)
}

fn de_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(lenient_f64(&Value::deserialize(d)?))
}

fn de_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// The id of a created notification, or `None` when the portal answered `false` (the
/// recipient does not exist or is inactive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Created(pub Option<u64>);

impl<'de> Deserialize<'de> for Created {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(false) | Value::Null => Ok(Created(None)),
            v => lenient_u64(&v)
                .map(|id| Created(Some(id)))
                .ok_or_else(|| de::Error::custom(format!("expected an id or false, got {v}"))),
        }
    }
}

/// A yes/no result, accepting `true`/`false`, `1`/`0` and `"Y"`/`"N"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(b) => Ok(Flag(b)),
            Value::Number(n) => Ok(Flag(n.as_f64().is_some_and(|x| x != 0.0))),
            Value::String(s) if matches!(s.as_str(), "Y" | "1" | "true") => Ok(Flag(true)),
            Value::String(s) if matches!(s.as_str(), "N" | "0" | "false" | "") => Ok(Flag(false)),
            v => Err(de::Error::custom(format!("expected a boolean, got {v}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn time_tolerates_ints_floats_strings_and_absence() {
        let raw = json!({"result": 1, "time": {
            "start": 1735689600, "finish": "1735689600.25", "duration": 0.25,
            "processing": 6.198883056640625E-5, "date_start": "2026-01-01T00:00:00+00:00",
            "operating_reset_at": "1735690200", "operating": 0, "extra": "kept in raw"
        }});
        let a: Answer<Created> = Answer::from_raw(raw).unwrap();
        let t = a.time.unwrap();
        assert_eq!(t.start, Some(1735689600.0));
        assert_eq!(t.finish, Some(1735689600.25));
        assert_eq!(t.processing, Some(6.198883056640625E-5));
        assert_eq!(t.operating_reset_at, Some(1735690200.0));
        assert_eq!(t.operating, Some(0.0));
        assert_eq!(t.date_finish, None);
        assert_eq!(a.result, Created(Some(1)));

        let a: Answer<Created> = Answer::from_raw(json!({"result": "77518"})).unwrap();
        assert!(a.time.is_none());
        assert_eq!(a.result, Created(Some(77518)));
        // `time` as PHP's empty array.
        let a: Answer<Flag> = Answer::from_raw(json!({"result": true, "time": []})).unwrap();
        assert!(a.time.is_none() && a.result.0);
    }

    #[test]
    fn created_and_flag_accept_php_shapes() {
        for (v, want) in [
            (json!(5), Some(5)),
            (json!("5"), Some(5)),
            (json!(false), None),
            (json!(null), None),
        ] {
            assert_eq!(serde_json::from_value::<Created>(v).unwrap(), Created(want));
        }
        assert!(serde_json::from_value::<Created>(json!("x")).is_err());
        for (v, want) in [
            (json!(true), true),
            (json!(0), false),
            (json!("Y"), true),
            (json!("N"), false),
        ] {
            assert_eq!(serde_json::from_value::<Flag>(v).unwrap(), Flag(want));
        }
    }
}
