//! Alert webhooks to notification texts, for `oint serve`.
//!
//! A payload from Prometheus Alertmanager (webhook version 4) or from a Grafana webhook
//! contact point (version 1) becomes notifications for one route: one per alert, or one per
//! group with `group = true`. [`render`] is a pure function of the source, the route and the
//! body; its error is the one-line reason of a 400 answer.
//!
//! Templates are Jinja (minijinja), with `trim_blocks` and `lstrip_blocks` on so that a
//! template written over several lines of a TOML string does not leave the block tags' blank
//! lines behind, and no HTML escaping (the output is BB-codes). Undefined values are
//! *chainable*: `{{ annotations.runbook_url }}` on an alert without it prints nothing, and so
//! does `{{ values.B }}` on a payload without `values`. A strict mode would turn every alert
//! that lacks an annotation the template names into a 400, and Alertmanager does not retry a
//! 400: the alert would be lost, which is worse than an empty spot in its text. Mistakes that
//! fail on every payload (syntax, an unknown filter) are caught at start by [`Route::new`].
//!
//! What a template sees, under the payload's own names:
//! - always: `route`, `source` (`Alertmanager` or `Grafana`), `receiver`, `groupKey`,
//!   `groupLabels`, `commonLabels`, `commonAnnotations`, `externalURL`, `truncatedAlerts`;
//!   from Grafana also `orgId`, `title`, `state`, `message`;
//! - per alert: the alert's `status`, `labels`, `annotations`, `startsAt`, `endsAt`,
//!   `generatorURL`, `fingerprint` (derived from the labels when the payload has none), from
//!   Grafana `silenceURL`, `dashboardURL`, `panelURL`, `imageURL`, `values`, `valueString`
//!   when sent; and `groupStatus`;
//! - per group: the group's `status` and `alerts`, a list of the per-alert fields.
//!
//! Tags make a resolve replace its firing notification (portal-behaviour §6.3): per alert
//! `<route>:<fingerprint>`, per group `<route>:<hash of the group key>`.

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Who sent the payload: the path prefix it came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `POST /alertmanager/{route}`: Prometheus Alertmanager's webhook, version 4.
    Alertmanager,
    /// `POST /grafana/{route}`: a Grafana webhook contact point, version 1.
    Grafana,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Alertmanager => "Alertmanager",
            Source::Grafana => "Grafana",
        }
    }

    fn version(self) -> &'static str {
        match self {
            Source::Alertmanager => "4",
            Source::Grafana => "1",
        }
    }
}

/// A `[serve.routes.NAME]` table of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Who gets each notification.
    pub users: Vec<u64>,
    /// Send as system notifications (`im.notify.system.add`) rather than personal ones.
    #[serde(default)]
    pub system: bool,
    /// A Jinja template; without it, the source's default.
    pub template: Option<String>,
    /// The template writes Markdown, converted to BB-codes after rendering.
    #[serde(default)]
    pub markdown: bool,
    /// One notification per group (per payload) instead of one per alert.
    #[serde(default)]
    pub group: bool,
    /// Tag each notification, so that a resolve replaces its firing notification.
    #[serde(default = "yes")]
    pub tags: bool,
}

fn yes() -> bool {
    true
}

/// A named route, checked: the name fits in a URL path and a tag, there are users, the
/// template compiles and renders a sample payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub config: RouteConfig,
}

/// Longest route name: keeps `<route>:<fingerprint>` within [`MAX_TAG`].
pub const MAX_ROUTE_NAME: usize = 32;

/// Longest tag sent. The reference gives no TAG limit; the portal stores it behind a
/// 9-character `MP|xxxxx|` prefix (portal-behaviour §6.1), and a route name plus a 16-digit
/// fingerprint needs 49, so 64 leaves room without coming near any column size.
pub const MAX_TAG: usize = 64;

/// Most notifications one payload gives. The last one is then a note of how many alerts were
/// left out, so that a storm of hundreds of alerts is one batch per user, not hundreds of
/// notifications, and nothing is dropped silently.
pub const MAX_NOTIFICATIONS: usize = 50;

impl Route {
    /// `name` and `config` as a route, or why not (one line naming the route).
    pub fn new(name: &str, config: RouteConfig) -> Result<Route, String> {
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if name.is_empty() || name.len() > MAX_ROUTE_NAME || !name.chars().all(valid) {
            return Err(format!(
                "serve.routes.{name}: a route name is 1 to {MAX_ROUTE_NAME} of A-Z a-z 0-9 _ -"
            ));
        }
        if config.users.is_empty() {
            return Err(format!(
                "serve.routes.{name}: users is empty; give the user ids to notify"
            ));
        }
        if config.users.contains(&0) {
            return Err(format!("serve.routes.{name}: users: 0 is not a user id"));
        }
        // A route may serve either source, and a template may name one source's fields
        // (Grafana's `values`): it must render for one of them.
        if let Some(template) = &config.template {
            check_template(Source::Alertmanager, template, config.group)
                .or_else(|e| check_template(Source::Grafana, template, config.group).map_err(|_| e))
                .map_err(|e| format!("serve.routes.{name}.template: {e}"))?;
        }
        Ok(Route {
            name: name.to_string(),
            config,
        })
    }
}

/// One notification to send to each of the route's users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// BB-code text, never empty.
    pub text: String,
    /// `TAG`, when the route tags.
    pub tag: Option<String>,
    /// The alert (per group: every alert of it) is resolved.
    pub resolved: bool,
}

/// Checks that `template` compiles and renders a sample payload of `source` (per alert, or
/// per group with `group`), so that a template that would fail on every alert is refused at
/// start rather than on the first alert.
pub fn check_template(source: Source, template: &str, group: bool) -> Result<(), String> {
    let route = RouteConfig {
        users: vec![1],
        system: false,
        template: Some(template.to_string()),
        markdown: false,
        group,
        tags: true,
    };
    let route = Route {
        name: "check".into(),
        config: route,
    };
    render(source, &route, sample(source).as_bytes()).map(drop)
}

/// `body` from `source` as the notifications of `route`, or the reason to refuse it (one
/// line).
pub fn render(source: Source, route: &Route, body: &[u8]) -> Result<Vec<Rendered>, String> {
    let payload = parse(source, body)?;
    let template = match &route.config.template {
        Some(t) => t.as_str(),
        None => default_template(source, route.config.group),
    };
    let env = environment();
    let template = env
        .template_from_str(template)
        .map_err(|e| format!("template: {}", one_line(&e)))?;
    let draw = |context: &Value| -> Result<String, String> {
        let text = template
            .render(context)
            .map_err(|e| format!("template: {}", one_line(&e)))?;
        let text = if route.config.markdown {
            crate::markdown::to_bbcode(&text)
        } else {
            text
        };
        Ok(text.trim().to_string())
    };
    let group = payload.group_context(source, &route.name);
    let mut out = Vec::new();
    if route.config.group {
        let text = draw(&group)?;
        let tag = route
            .config
            .tags
            .then(|| tag(&route.name, &short_hash(&payload.wire.group_key)));
        out.push(rendered(
            text,
            tag,
            payload.wire.status == Status::Resolved,
        )?);
        return Ok(out);
    }
    let count = payload.alerts.len();
    let shown = if payload.wire.truncated_alerts > 0 || count > MAX_NOTIFICATIONS {
        count.min(MAX_NOTIFICATIONS - 1)
    } else {
        count
    };
    for alert in &payload.alerts[..shown] {
        let mut context = group.clone();
        let object = context
            .as_object_mut()
            .expect("the group context is an object");
        object.remove("alerts");
        object.insert("groupStatus".into(), object["status"].clone());
        for (key, value) in alert.context() {
            object.insert(key, value);
        }
        let text = draw(&context)?;
        let tag = route
            .config
            .tags
            .then(|| tag(&route.name, &alert.fingerprint));
        out.push(rendered(text, tag, alert.status == Status::Resolved)?);
    }
    let truncated = payload.wire.truncated_alerts;
    let left_out = count - shown + truncated;
    if left_out > 0 {
        // Untagged: it must not replace, nor be replaced by, one alert's notification.
        let text = format!(
            "[b]{left_out} more alert{}[/b] in this {} notification {}not shown{}",
            if left_out == 1 { "" } else { "s" },
            source.name(),
            if truncated > 0 {
                format!("({truncated} left out by {}) ", source.name())
            } else {
                String::new()
            },
            if payload.wire.external_url.is_empty() {
                String::new()
            } else {
                format!(
                    ": [url={}]{}[/url]",
                    payload.wire.external_url,
                    source.name()
                )
            },
        );
        out.push(Rendered {
            text,
            tag: None,
            resolved: false,
        });
    }
    Ok(out)
}

fn rendered(text: String, tag: Option<String>, resolved: bool) -> Result<Rendered, String> {
    // The portal refuses an empty MESSAGE (MESSAGE_EMPTY); say so here, where the cause is.
    if text.is_empty() {
        return Err("template: the text rendered is empty".into());
    }
    Ok(Rendered {
        text,
        tag,
        resolved,
    })
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env
}

fn one_line(e: &minijinja::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    collapse(&text)
}

/// `text` on one line: each run of whitespace (line breaks too) as one space.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `<route>:<id>`, with `id` hashed when it would make the tag too long or carries characters
/// other than `A-Z a-z 0-9 _ -` (the stored tag's `|` separators must not be confused).
fn tag(route: &str, id: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let tag = format!("{route}:{id}");
    if !id.is_empty() && id.chars().all(plain) && tag.len() <= MAX_TAG {
        tag
    } else {
        format!("{route}:{}", short_hash(id))
    }
}

/// 16 hex digits of 64-bit FNV-1a: stable across builds and platforms, unlike std's hasher.
fn short_hash(text: &str) -> String {
    let mut h = Fnv::new();
    h.add(text.as_bytes());
    format!("{:016x}", h.0)
}

/// 64-bit FNV-1a, the hash Prometheus uses for label fingerprints.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The fingerprint Alertmanager gives an alert with `labels`: FNV-1a over the labels sorted
/// by name, each name and value followed by the byte 0xff (prometheus/common
/// `model.LabelSet.Fingerprint`). For payloads without one (Grafana before 9).
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Fnv::new();
    for (name, value) in labels {
        h.add(name.as_bytes());
        h.add(&[0xff]);
        h.add(value.as_bytes());
        h.add(&[0xff]);
    }
    format!("{:016x}", h.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Firing,
    Resolved,
}

/// The fields both sources share (Alertmanager's `webhook.Message`, which Grafana extends).
/// Unknown fields are ignored, so that a newer sender's additions do not break the relay.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    version: Option<String>,
    #[serde(default)]
    group_key: String,
    #[serde(default)]
    truncated_alerts: usize,
    status: Status,
    #[serde(default)]
    receiver: String,
    #[serde(default)]
    group_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    external_url: String,
    alerts: Vec<WireAlert>,
    // Grafana's additions.
    org_id: Option<i64>,
    title: Option<String>,
    state: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAlert {
    status: Status,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    ends_at: String,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    #[serde(default)]
    fingerprint: String,
    // Grafana's additions.
    #[serde(rename = "silenceURL")]
    silence_url: Option<String>,
    #[serde(rename = "dashboardURL")]
    dashboard_url: Option<String>,
    #[serde(rename = "panelURL")]
    panel_url: Option<String>,
    #[serde(rename = "imageURL")]
    image_url: Option<String>,
    /// Grafana 9.1 and later; a value may be null (NaN has no JSON form).
    values: Option<BTreeMap<String, Option<f64>>>,
    /// Grafana before 9.1.
    value_string: Option<String>,
}

struct Payload {
    /// The group's fields; its alerts are in `alerts`.
    wire: Wire,
    alerts: Vec<Alert>,
}

struct Alert {
    status: Status,
    fingerprint: String,
    wire: WireAlert,
}

fn parse(source: Source, body: &[u8]) -> Result<Payload, String> {
    // serde's message may quote the input, line breaks and all.
    let mut wire: Wire = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not a valid {} webhook payload: {}",
            source.name(),
            collapse(&e.to_string())
        )
    })?;
    match wire.version.as_deref() {
        Some(v) if v == source.version() => {}
        Some(v) => {
            let other = match source {
                Source::Alertmanager => Source::Grafana,
                Source::Grafana => Source::Alertmanager,
            };
            let hint = if v == other.version() {
                format!(
                    " ({} sends version {v}: post it to /{}/<route>)",
                    other.name(),
                    other.name().to_lowercase()
                )
            } else {
                String::new()
            };
            return Err(format!(
                "{} webhook payload version {v:?}: only version {} is read{hint}",
                source.name(),
                source.version()
            ));
        }
        None => {
            return Err(format!(
                "{} webhook payload without a version: only version {} is read{}",
                source.name(),
                source.version(),
                match source {
                    Source::Grafana => " (legacy alerting's payload is not)",
                    Source::Alertmanager => "",
                }
            ));
        }
    }
    if wire.alerts.is_empty() {
        return Err(format!("the {} payload has no alerts", source.name()));
    }
    let alerts = std::mem::take(&mut wire.alerts)
        .into_iter()
        .map(|a| Alert {
            status: a.status,
            fingerprint: if a.fingerprint.is_empty() {
                fingerprint(&a.labels)
            } else {
                a.fingerprint.clone()
            },
            wire: a,
        })
        .collect();
    Ok(Payload { wire, alerts })
}

impl Payload {
    /// The group's fields, and its `alerts`, as the template sees them.
    fn group_context(&self, source: Source, route: &str) -> Value {
        let w = &self.wire;
        let mut object = Map::new();
        let mut put = |key: &str, value: Value| {
            object.insert(key.to_string(), value);
        };
        put("route", route.into());
        put("source", source.name().into());
        put("status", json(&w.status));
        put("receiver", w.receiver.clone().into());
        put("groupKey", w.group_key.clone().into());
        put("groupLabels", json(&w.group_labels));
        put("commonLabels", json(&w.common_labels));
        put("commonAnnotations", json(&w.common_annotations));
        put("externalURL", w.external_url.clone().into());
        put("truncatedAlerts", w.truncated_alerts.into());
        if source == Source::Grafana {
            put("orgId", json(&w.org_id));
            put("title", json(&w.title));
            put("state", json(&w.state));
            put("message", json(&w.message));
        }
        let alerts = self
            .alerts
            .iter()
            .map(|a| Value::Object(a.context().collect()))
            .collect();
        put("alerts", Value::Array(alerts));
        Value::Object(object)
    }
}

impl Alert {
    fn context(&self) -> impl Iterator<Item = (String, Value)> {
        let w = &self.wire;
        let mut fields = vec![
            ("status", json(&self.status)),
            ("labels", json(&w.labels)),
            ("annotations", json(&w.annotations)),
            ("startsAt", w.starts_at.clone().into()),
            ("endsAt", w.ends_at.clone().into()),
            ("generatorURL", w.generator_url.clone().into()),
            ("fingerprint", self.fingerprint.clone().into()),
        ];
        let grafana = [
            ("silenceURL", &w.silence_url),
            ("dashboardURL", &w.dashboard_url),
            ("panelURL", &w.panel_url),
            ("imageURL", &w.image_url),
            ("valueString", &w.value_string),
        ];
        for (key, value) in grafana {
            if let Some(value) = value {
                fields.push((key, value.clone().into()));
            }
        }
        if let Some(values) = &w.values {
            fields.push(("values", json(values)));
        }
        fields.into_iter().map(|(k, v)| (k.to_string(), v))
    }
}

fn json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).expect("plain data serializes")
}

/// Per alert: status, name and severity, then summary, description, the other labels and the
/// links. A resolve says RESOLVED and strikes the name through.
const ALERT_TEMPLATE: &str = r#"
{% set name = labels.alertname or "alert" %}
{% if status == "resolved" %}[b]RESOLVED[/b] [s]{{ name }}[/s]{% else %}[b]FIRING[/b] [b]{{ name }}[/b]{% endif %}
{% if labels.severity %} ({{ labels.severity }}){% endif %}
{% if annotations.summary %} — {{ annotations.summary }}{% endif %}

{% if annotations.description %}
{{ annotations.description }}
{% endif %}
{% for key, value in labels|items if key not in ["alertname", "severity"] and key is not startingwith("__") %}
{{ key }}={{ value }}{{ ", " if not loop.last }}
{%- endfor %}

{% if generatorURL %}[url={{ generatorURL }}]Source[/url]{% endif %}
{% if silenceURL %} · [url={{ silenceURL }}]Silence[/url]{% endif %}
{% if dashboardURL %} · [url={{ dashboardURL }}]Dashboard[/url]{% endif %}
{% if panelURL %} · [url={{ panelURL }}]Panel[/url]{% endif %}
"#;

/// Per group: status with counts and the group labels, then one line per alert.
const GROUP_TEMPLATE: &str = r#"
{% set firing = alerts|selectattr("status", "eq", "firing")|list %}
{% if status == "resolved" %}[b]RESOLVED[/b]{% else %}[b]FIRING:{{ firing|length }}[/b]{% endif %}
{% for key, value in groupLabels|items %} {{ key }}={{ value }}{% endfor %}

{% for a in alerts %}
{% if a.status == "resolved" %}✓ [s]{{ a.labels.alertname or "alert" }}[/s]{% else %}• [b]{{ a.labels.alertname or "alert" }}[/b]{% endif %}
{% if a.annotations.summary %} — {{ a.annotations.summary }}{% endif %}
{% if a.generatorURL %} [url={{ a.generatorURL }}]Source[/url]{% endif %}

{% endfor %}
{% if truncatedAlerts %}
… and {{ truncatedAlerts }} more
{% endif %}
{% if externalURL %}[url={{ externalURL }}]{{ source }}[/url]{% endif %}
"#;

fn default_template(_source: Source, group: bool) -> &'static str {
    if group {
        GROUP_TEMPLATE
    } else {
        ALERT_TEMPLATE
    }
}

/// A payload of `source` with every field set, for [`check_template`].
fn sample(source: Source) -> String {
    let grafana = source == Source::Grafana;
    let mut alert = serde_json::json!({
        "status": "firing",
        "labels": {"alertname": "Sample", "severity": "warning", "instance": "host:9100"},
        "annotations": {"summary": "Sample summary", "description": "Sample description"},
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://localhost/graph",
        "fingerprint": "0123456789abcdef",
    });
    let mut body = serde_json::json!({
        "version": source.version(),
        "groupKey": "{}:{alertname=\"Sample\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "oint",
        "groupLabels": {"alertname": "Sample"},
        "commonLabels": {"alertname": "Sample"},
        "commonAnnotations": {},
        "externalURL": "http://localhost",
    });
    if grafana {
        let extra = serde_json::json!({
            "silenceURL": "http://localhost/silence", "dashboardURL": "", "panelURL": "",
            "values": {"B": 1.5}, "valueString": "[ var='B' value=1.5 ]",
        });
        alert
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let extra = serde_json::json!({
            "orgId": 1, "title": "[FIRING:1]", "state": "alerting", "message": "Sample",
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
    }
    let mut resolved = alert.clone();
    resolved["status"] = "resolved".into();
    body["alerts"] = serde_json::json!([alert, resolved]);
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AM: &str = include_str!("../tests/fixtures/alertmanager-v4.json");
    // Grafana's documented example:
    // https://grafana.com/docs/grafana/latest/alerting/configure-notifications/manage-contact-points/integrations/webhook-notifier/
    const GRAFANA: &str = include_str!("../tests/fixtures/grafana-v1.json");

    fn route(config: &str) -> Route {
        let config: RouteConfig = toml::from_str(&format!("users = [1]\n{config}")).unwrap();
        Route::new("ops", config).unwrap()
    }

    fn edit(body: &str, f: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut v: Value = serde_json::from_str(body).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    fn one(source: Source, config: &str, body: &[u8]) -> Vec<Rendered> {
        render(source, &route(config), body).unwrap()
    }

    #[test]
    fn alertmanager_per_alert_firing_and_resolved() {
        let out = one(Source::Alertmanager, "", AM.as_bytes());
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].text,
            "[b]FIRING[/b] [b]DiskFull[/b] (critical) — Disk almost full\n\
             /var is 97% full on db1\n\
             instance=db1:9100, team=infra\n\
             [url=http://prometheus.example:9090/graph?g0.expr=disk_free+%3C+0.05]Source[/url]"
        );
        assert_eq!(out[0].tag.as_deref(), Some("ops:1a2b3c4d5e6f7081"));
        assert!(!out[0].resolved);
        assert!(
            out[1]
                .text
                .starts_with("[b]RESOLVED[/b] [s]DiskFull[/s] (critical) — Disk almost full\n"),
            "{}",
            out[1].text
        );
        assert_eq!(out[1].tag.as_deref(), Some("ops:8070605040302010"));
        assert!(out[1].resolved);
    }

    #[test]
    fn per_group_one_notification_tagged_by_the_group_key() {
        let out = one(Source::Alertmanager, "group = true", AM.as_bytes());
        assert_eq!(out.len(), 1);
        let text = &out[0].text;
        assert!(
            text.starts_with("[b]FIRING:1[/b] alertname=DiskFull\n"),
            "{text}"
        );
        assert!(
            text.contains("• [b]DiskFull[/b] — Disk almost full"),
            "{text}"
        );
        assert!(text.contains("✓ [s]DiskFull[/s]"), "{text}");
        assert!(text.ends_with("[url=http://alertmanager.example:9093]Alertmanager[/url]"));
        // The hash is part of the portal's state (a resolve replaces by tag): it must not
        // change between versions of oint.
        assert_eq!(out[0].tag.as_deref(), Some("ops:38d917641e82e05a"));
        assert!(!out[0].resolved);

        let resolved = edit(AM, |v| {
            v["status"] = "resolved".into();
            v["alerts"][0]["status"] = "resolved".into();
        });
        let out2 = one(Source::Alertmanager, "group = true", &resolved);
        assert!(
            out2[0].text.starts_with("[b]RESOLVED[/b]"),
            "{}",
            out2[0].text
        );
        assert!(out2[0].resolved);
        assert_eq!(out2[0].tag, out[0].tag);
    }

    #[test]
    fn custom_templates_see_the_alert_and_its_group() {
        let config = r#"template = "{{ status|upper }} {{ labels.instance }} {{ annotations.nothing.deeper }}|{{ commonLabels.team }}|{{ receiver }}|{{ groupStatus }}|{{ route }}""#;
        let out = one(Source::Alertmanager, config, AM.as_bytes());
        assert_eq!(out[0].text, "FIRING db1:9100 |infra|oint|firing|ops");
        assert_eq!(out[1].text, "RESOLVED db2:9100 |infra|oint|firing|ops");

        let config = "group = true\ntemplate = \"\"\"\n{% for a in alerts %}\n{{ a.labels.instance }} {{ a.status }}\n{% endfor %}\n{{ alerts|length }} in {{ groupKey }}\n\"\"\"";
        let out = one(Source::Alertmanager, config, AM.as_bytes());
        assert_eq!(
            out[0].text,
            "db1:9100 firing\ndb2:9100 resolved\n2 in {}/{team=\"infra\"}:{alertname=\"DiskFull\"}"
        );
    }

    #[test]
    fn markdown_templates_become_bb_codes() {
        let config = "markdown = true\ntemplate = \"**{{ labels.alertname }}** on `{{ labels.instance }}`: {{ annotations.summary }}\"";
        let out = one(Source::Alertmanager, config, AM.as_bytes());
        assert_eq!(
            out[0].text,
            "[b]DiskFull[/b] on [code]db1:9100[/code]: Disk almost full"
        );
        // The default template's BB-codes pass through unchanged; Markdown in an annotation
        // is converted.
        let body = edit(AM, |v| {
            v["alerts"][0]["annotations"]["description"] = "see *runbook*".into()
        });
        let plain = one(Source::Alertmanager, "", &body);
        let converted = one(Source::Alertmanager, "markdown = true", &body);
        assert_eq!(
            converted[0].text,
            plain[0].text.replace("see *runbook*", "see [i]runbook[/i]")
        );
    }

    #[test]
    fn grafana_documented_payload() {
        let out = one(Source::Grafana, "", GRAFANA.as_bytes());
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].text,
            "[b]FIRING[/b] [b]High memory usage[/b] — This alert was triggered for zone us-1\n\
             The system has high memory usage\n\
             team=blue, zone=us-1\n\
             [url=https://play.grafana.org/alerting/1afz29v7z/edit]Source[/url] · \
             [url=https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT2%2Cteam%3Dblue%2Czone%3Dus-1]Silence[/url]"
        );
        assert_eq!(out[0].tag.as_deref(), Some("ops:c6eadffa33fcdf37"));
        assert_eq!(out[1].tag.as_deref(), Some("ops:bc97ff14869b13e3"));

        let config = r#"template = "{{ values.B|round(1) }} {{ orgId }} {{ state }} {{ title }}""#;
        let out = one(Source::Grafana, config, GRAFANA.as_bytes());
        assert_eq!(out[0].text, "44.2 1 alerting [FIRING:2]  (blue)");
    }

    #[test]
    fn grafana_before_9_without_fingerprint_or_values() {
        let body = edit(GRAFANA, |v| {
            for a in v["alerts"].as_array_mut().unwrap() {
                let a = a.as_object_mut().unwrap();
                a.remove("fingerprint");
                a.remove("values");
                a.insert(
                    "valueString".into(),
                    "[ metric='' labels={} value=14151.3 ]".into(),
                );
            }
        });
        let config = r#"template = "{{ fingerprint }} {{ values.B }}|{{ valueString }}""#;
        let out = one(Source::Grafana, config, &body);
        let labels = BTreeMap::from(
            [
                ("alertname", "High memory usage"),
                ("team", "blue"),
                ("zone", "us-1"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let derived = fingerprint(&labels);
        assert_eq!(
            out[0].text,
            format!("{derived} |[ metric='' labels={{}} value=14151.3 ]")
        );
        assert_eq!(out[0].tag, Some(format!("ops:{derived}")));
        assert_ne!(out[0].tag, out[1].tag);
    }

    #[test]
    fn fingerprints_are_prometheus_label_fingerprints() {
        // prometheus/common model: the empty set hashes to FNV-1a's offset basis, and
        // TestLabelsToSignature's case to 5799056148416392346.
        assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
        let labels = BTreeMap::from(
            [("name", "garland, briggs"), ("fear", "love is not enough")]
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        assert_eq!(
            fingerprint(&labels),
            format!("{:016x}", 5799056148416392346u64)
        );
    }

    #[test]
    fn refused_payloads_have_one_line_reasons() {
        let cases: [(Source, Vec<u8>, &str); 7] = [
            (Source::Alertmanager, b"{not json".to_vec(), "not a valid Alertmanager webhook payload: key must be a string at line 1 column 2"),
            (Source::Alertmanager, edit(AM, |v| v["version"] = "3".into()), "Alertmanager webhook payload version \"3\": only version 4 is read"),
            (Source::Alertmanager, edit(AM, |v| { v.as_object_mut().unwrap().remove("version"); }), "Alertmanager webhook payload without a version: only version 4 is read"),
            (Source::Alertmanager, GRAFANA.as_bytes().to_vec(), "Alertmanager webhook payload version \"1\": only version 4 is read (Grafana sends version 1: post it to /grafana/<route>)"),
            (Source::Grafana, AM.as_bytes().to_vec(), "Grafana webhook payload version \"4\": only version 1 is read (Alertmanager sends version 4: post it to /alertmanager/<route>)"),
            (Source::Grafana, br#"{"ruleName": "x", "state": "alerting", "evalMatches": [], "status": "firing", "alerts": [{"status": "firing"}]}"#.to_vec(), "Grafana webhook payload without a version: only version 1 is read (legacy alerting's payload is not)"),
            (Source::Alertmanager, edit(AM, |v| v["alerts"] = serde_json::json!([])), "the Alertmanager payload has no alerts"),
        ];
        for (source, body, reason) in cases {
            assert_eq!(render(source, &route(""), &body), Err(reason.to_string()));
        }
        // serde quotes the unknown value; its line break must not split the reason.
        let e = render(Source::Alertmanager, &route(""), br#"{"status": "f\n"}"#).unwrap_err();
        assert_eq!(
            e,
            "not a valid Alertmanager webhook payload: unknown variant `f `, expected `firing` or `resolved` at line 1 column 16"
        );
        let bad_status = edit(AM, |v| v["alerts"][0]["status"] = "pending".into());
        let e = render(Source::Alertmanager, &route(""), &bad_status).unwrap_err();
        assert!(
            e.starts_with("not a valid Alertmanager webhook payload: unknown variant `pending`"),
            "{e}"
        );
    }

    #[test]
    fn template_errors_at_render_are_reasons_not_panics() {
        // Passes the start-up check (the sample has no `boom` label), fails on this alert.
        let config = r#"template = "{% if labels.boom %}{{ 1 // 0 }}{% endif %}x""#;
        let route = route(config);
        let body = edit(AM, |v| v["alerts"][1]["labels"]["boom"] = "1".into());
        let e = render(Source::Alertmanager, &route, &body).unwrap_err();
        assert!(e.starts_with("template: "), "{e}");
        assert!(!e.contains('\n'), "{e}");

        let empty = Route {
            name: "ops".into(),
            config: toml::from_str("users = [1]\ntemplate = \"{{ annotations.none }}  \"").unwrap(),
        };
        assert_eq!(
            render(Source::Alertmanager, &empty, AM.as_bytes()),
            Err("template: the text rendered is empty".to_string())
        );
    }

    #[test]
    fn notifications_per_payload_are_capped_and_the_rest_counted() {
        let many = edit(AM, |v| {
            let alert = v["alerts"][0].clone();
            v["alerts"] = (0..120)
                .map(|i| {
                    let mut a = alert.clone();
                    a["fingerprint"] = format!("{i:016x}").into();
                    a
                })
                .collect();
        });
        let out = one(Source::Alertmanager, "", &many);
        assert_eq!(out.len(), MAX_NOTIFICATIONS);
        let last = out.last().unwrap();
        assert_eq!(
            last.text,
            "[b]71 more alerts[/b] in this Alertmanager notification not shown: \
             [url=http://alertmanager.example:9093]Alertmanager[/url]"
        );
        assert_eq!(last.tag, None);

        let truncated = edit(AM, |v| v["truncatedAlerts"] = 5.into());
        let out = one(Source::Alertmanager, "", &truncated);
        assert_eq!(out.len(), 3);
        assert!(
            out[2].text.starts_with("[b]5 more alerts[/b] in this Alertmanager notification (5 left out by Alertmanager) not shown"),
            "{}",
            out[2].text
        );
        let out = one(Source::Alertmanager, "group = true", &truncated);
        assert!(out[0].text.contains("… and 5 more\n"), "{}", out[0].text);
    }

    #[test]
    fn tags_are_optional_and_kept_short_and_plain() {
        let out = one(Source::Alertmanager, "tags = false", AM.as_bytes());
        assert!(out.iter().all(|r| r.tag.is_none()));

        for odd in ["x".repeat(80), "a|b".into(), String::new()] {
            let body = edit(AM, |v| v["alerts"][0]["fingerprint"] = odd.clone().into());
            let tag = one(Source::Alertmanager, "", &body)[0].tag.clone().unwrap();
            if odd.is_empty() {
                // No fingerprint: derived from the labels.
                assert_eq!(tag.len(), "ops:".len() + 16, "{tag}");
                continue;
            }
            assert_eq!(tag, format!("ops:{}", short_hash(&odd)));
        }
        let long = "r".repeat(MAX_ROUTE_NAME);
        assert!(tag(&long, "0123456789abcdef").len() <= MAX_TAG);
    }

    #[test]
    fn routes_are_checked_at_start() {
        let config = |text: &str| toml::from_str::<RouteConfig>(text);
        let ok = config("users = [1, 5]").unwrap();
        assert!(ok.tags && !ok.group && !ok.system && !ok.markdown);
        for (name, text, reason) in [
            (
                "a b",
                "users = [1]",
                "serve.routes.a b: a route name is 1 to 32 of A-Z a-z 0-9 _ -",
            ),
            (
                "x",
                "users = []",
                "serve.routes.x: users is empty; give the user ids to notify",
            ),
            (
                "x",
                "users = [0]",
                "serve.routes.x: users: 0 is not a user id",
            ),
            (
                "x",
                "users = [1]\ntemplate = \"{% if %}\"",
                "serve.routes.x.template: template: syntax error: unexpected end of block (in <string>:1)",
            ),
            (
                "x",
                "users = [1]\ntemplate = \"{{ labels|nosuch }}\"",
                "serve.routes.x.template: template: unknown filter: filter nosuch is unknown (in <string>:1)",
            ),
        ] {
            assert_eq!(
                Route::new(name, config(text).unwrap()),
                Err(reason.to_string())
            );
        }
        assert!(Route::new(&"r".repeat(33), ok.clone()).is_err());
        let e = config("users = [1]\ntag = false").unwrap_err().to_string();
        assert!(e.contains("unknown field `tag`"), "{e}");
    }

    #[test]
    fn default_templates_pass_their_own_check() {
        for source in [Source::Alertmanager, Source::Grafana] {
            for group in [false, true] {
                check_template(source, default_template(source, group), group).unwrap();
            }
        }
    }
}
