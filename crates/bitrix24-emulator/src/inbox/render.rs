//! Server-side HTML of the inbox: the page, the list of cards and every ATTACH block.
//!
//! HTML is built with `format!` and one escaping function rather than a template crate: the
//! markup is small, and a single [`escape`] that every value passes through is easy to review.
//! Stored attach text is already `htmlspecialchars`-escaped by the portal's normalisation
//! ([`crate::attach`]); it is decoded first ([`unescape_stored`]) and escaped again on output,
//! so what people see is what the client sent and nothing in it can become markup.
//! Sizes and colours go into `data-*` attributes: the page's Content-Security-Policy allows no
//! inline styles, and the page's script applies them.

use serde_json::Value;

use super::bbcode;
use crate::store::Record;

/// HTML-escape text for element content and double- or single-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Undo PHP's `htmlspecialchars` (ENT_QUOTES): the stored attach holds escaped text.
pub fn unescape_stored(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#039;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The address when it is an absolute http(s) URL without spaces or control characters;
/// `javascript:`, `data:`, relative and every other form never become links.
pub fn safe_href(url: &str) -> Option<String> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    let scheme_ok = lower.starts_with("http://") || lower.starts_with("https://");
    let clean = !url.chars().any(|c| c.is_control() || c.is_whitespace());
    (scheme_ok && clean && url.len() > "http://".len()).then(|| url.to_owned())
}

/// An http(s) address on this machine (127.0.0.1, localhost, [::1]): the only images the
/// inbox loads, so opening it never contacts another host.
pub fn is_loopback(url: &str) -> bool {
    let Some(href) = safe_href(url) else {
        return false;
    };
    let lower = href.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .unwrap_or_default();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let host = if authority.starts_with("[::1]") {
        "[::1]"
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    let after = &authority[host.len()..];
    let port_ok = after.is_empty()
        || after
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    matches!(host, "127.0.0.1" | "localhost" | "[::1]") && port_ok
}

fn link(href: &str, text_html: &str, class: &str) -> String {
    match safe_href(href) {
        Some(h) => format!(
            "<a class=\"{class}\" href=\"{}\" target=\"_blank\" rel=\"noopener noreferrer nofollow\">{text_html}</a>",
            escape(&h)
        ),
        None => format!("<span class=\"{class} nolink\">{text_html}</span>"),
    }
}

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|v| !v.is_null())
}

/// A stored (escaped) text field, decoded.
fn text(v: &Value, key: &str) -> Option<String> {
    field(v, key).map(|f| match f {
        Value::String(s) => unescape_stored(s),
        other => other.to_string(),
    })
}

fn number(v: &Value, key: &str) -> Option<u64> {
    field(v, key).and_then(|f| f.as_u64().or_else(|| f.as_str()?.parse().ok()))
}

/// `data-width`/`data-height` for the page's script.
fn dims(v: &Value) -> String {
    let mut out = String::new();
    for (key, attr) in [("WIDTH", "data-width"), ("HEIGHT", "data-height")] {
        if let Some(n) = number(v, key) {
            out.push_str(&format!(" {attr}=\"{}\"", n.min(4000)));
        }
    }
    out
}

/// An image, or for a remote address a placeholder with its link.
fn image(src: &str, alt: &str, extra: &str, class: &str) -> String {
    if is_loopback(src) {
        format!(
            "<img class=\"{class}\" src=\"{}\" alt=\"{}\" loading=\"lazy\" referrerpolicy=\"no-referrer\"{extra}>",
            escape(src),
            escape(alt)
        )
    } else {
        let label = if alt.is_empty() { src } else { alt };
        format!(
            "<div class=\"img-placeholder {class}\" data-remote-image{extra}><span class=\"ph-icon\" aria-hidden=\"true\"></span><span class=\"ph-text\">Remote image not loaded</span>{}</div>",
            link(src, &escape(label), "ph-link")
        )
    }
}

fn mention(v: &Value) -> String {
    for (key, kind) in [
        ("USER_ID", "user"),
        ("CHAT_ID", "chat"),
        ("BOT_ID", "bot"),
        ("NETWORK_ID", "network"),
    ] {
        if let Some(id) = field(v, key) {
            let id = match id {
                Value::String(s) => unescape_stored(s),
                other => other.to_string(),
            };
            return format!(" data-{kind}=\"{}\"", escape(&id));
        }
    }
    String::new()
}

fn initials(name: &str) -> String {
    name.split_whitespace()
        .filter_map(|w| w.chars().next())
        .take(2)
        .collect::<String>()
        .to_uppercase()
}

fn block_user(items: &Value) -> String {
    let mut out = String::new();
    for u in items.as_array().into_iter().flatten() {
        let name = text(u, "NAME").unwrap_or_default();
        let avatar = match text(u, "AVATAR") {
            Some(src) if is_loopback(&src) => image(&src, &name, "", "avatar-img"),
            _ => format!(
                "<span class=\"avatar small\" aria-hidden=\"true\">{}</span>",
                escape(&initials(&name))
            ),
        };
        let kind = text(u, "AVATAR_TYPE").unwrap_or_else(|| "USER".into());
        let name_html = match text(u, "LINK") {
            Some(href) => link(&href, &escape(&name), "user-name"),
            None => format!("<span class=\"user-name\">{}</span>", escape(&name)),
        };
        out.push_str(&format!(
            "<div class=\"block block-user\" data-block=\"user\" data-avatar-type=\"{}\"{}>{avatar}{name_html}</div>",
            escape(&kind.to_lowercase()),
            mention(u)
        ));
    }
    out
}

/// DESC keeps the portal's `<br/>`; the rest of it is escaped text.
fn desc_html(desc: &str) -> String {
    desc.split("<br/>")
        .map(|part| escape(&unescape_stored(part)))
        .collect::<Vec<_>>()
        .join("<br>")
}

fn block_link(items: &Value, kind: &str) -> String {
    let mut out = String::new();
    for l in items.as_array().into_iter().flatten() {
        let href = text(l, "LINK").unwrap_or_default();
        let name = text(l, "NAME")
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| href.clone());
        let mut body = format!(
            "<div class=\"link-title\">{}</div>",
            link(&href, &escape(&name), "link-name")
        );
        if let Some(Value::String(desc)) = field(l, "DESC") {
            body.push_str(&format!(
                "<div class=\"link-desc\">{}</div>",
                desc_html(desc)
            ));
        }
        if let Some(html) = text(l, "HTML") {
            // The portal sanitises HTML with CBXSanitizer; shown as text here.
            body.push_str(&format!("<pre class=\"link-html\">{}</pre>", escape(&html)));
        }
        let mut media = String::new();
        if let Some(preview) = text(l, "PREVIEW") {
            media.push_str(&image(&preview, &name, &dims(l), "link-preview"));
        }
        if let Some(extra) = text(l, "EXTRA_IMAGE") {
            media.push_str(&image(&extra, &name, "", "link-extra"));
        }
        out.push_str(&format!(
            "<div class=\"block block-link\" data-block=\"{}\"{}>{media}<div class=\"link-body\">{body}</div></div>",
            kind.to_lowercase().replace('_', "-"),
            mention(l)
        ));
    }
    out
}

fn grid_item(g: &Value, display: &str) -> String {
    let name = text(g, "NAME").unwrap_or_default();
    let value = text(g, "VALUE").unwrap_or_default();
    let mut value_html = bbcode::to_html(&value);
    if let Some(href) = text(g, "LINK") {
        value_html = link(&href, &value_html, "grid-link");
    }
    let color = text(g, "COLOR")
        .filter(|c| bbcode::safe_color(c).is_some())
        .map(|c| format!(" data-color=\"{}\"", escape(&c)))
        .unwrap_or_default();
    let width = number(g, "WIDTH")
        .map(|w| format!(" data-width=\"{}\"", w.min(4000)))
        .unwrap_or_default();
    if display == "TABLE" {
        return format!(
            "<tr class=\"grid-item\"><th class=\"grid-name\"{width}>{}</th><td class=\"grid-value\"{color}>{value_html}</td></tr>",
            escape(&name)
        );
    }
    let (outer_width, name_width) = match display {
        // LINE: WIDTH is the item's; ROW: the name column's.
        "LINE" => (width, String::new()),
        "ROW" => (String::new(), width),
        _ => (width, String::new()),
    };
    format!(
        "<div class=\"grid-item\"{outer_width}{}><div class=\"grid-name\"{name_width}>{}</div><div class=\"grid-value\"{color}>{value_html}</div></div>",
        mention(g),
        escape(&name)
    )
}

/// Items of one GRID, consecutive items of one DISPLAY grouped (TABLE rows into one table).
fn block_grid(items: &Value) -> String {
    let items: Vec<&Value> = items.as_array().into_iter().flatten().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < items.len() {
        let display = text(items[i], "DISPLAY").unwrap_or_else(|| "BLOCK".into());
        let display = match display.as_str() {
            "LINE" | "ROW" | "TABLE" => display,
            _ => "BLOCK".to_owned(),
        };
        let mut inner = String::new();
        while i < items.len() && text(items[i], "DISPLAY").as_deref().unwrap_or("BLOCK") == display
        {
            inner.push_str(&grid_item(items[i], &display));
            i += 1;
        }
        if inner.is_empty() {
            // An unknown DISPLAY renders as BLOCK.
            inner.push_str(&grid_item(items[i], "BLOCK"));
            i += 1;
        }
        let lower = display.to_lowercase();
        if display == "TABLE" {
            out.push_str(&format!(
                "<table class=\"block block-grid grid-table\" data-block=\"grid\" data-display=\"table\"><tbody>{inner}</tbody></table>"
            ));
        } else {
            out.push_str(&format!(
                "<div class=\"block block-grid grid-{lower}\" data-block=\"grid\" data-display=\"{lower}\">{inner}</div>"
            ));
        }
    }
    out
}

fn block_image(items: &Value) -> String {
    let mut inner = String::new();
    for img in items.as_array().into_iter().flatten() {
        let href = text(img, "LINK").unwrap_or_default();
        let name = text(img, "NAME").unwrap_or_default();
        let src = text(img, "PREVIEW").unwrap_or_else(|| href.clone());
        let shown = image(&src, &name, &dims(img), "attach-image");
        let caption = if name.is_empty() {
            String::new()
        } else {
            format!(
                "<figcaption>{}</figcaption>",
                link(&href, &escape(&name), "image-name")
            )
        };
        inner.push_str(&format!(
            "<figure class=\"image-item\">{shown}{caption}</figure>"
        ));
    }
    format!("<div class=\"block block-image\" data-block=\"image\">{inner}</div>")
}

/// Bytes as the portal shows them (KB, MB, GB, one decimal).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

fn block_file(items: &Value) -> String {
    let mut out = String::new();
    for f in items.as_array().into_iter().flatten() {
        let href = text(f, "LINK").unwrap_or_default();
        let name = text(f, "NAME")
            .unwrap_or_else(|| href.rsplit('/').next().unwrap_or_default().to_owned());
        let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("file");
        let size = number(f, "SIZE")
            .map(|s| format!("<span class=\"file-size\">{}</span>", human_size(s)))
            .unwrap_or_default();
        out.push_str(&format!(
            "<div class=\"block block-file\" data-block=\"file\"><span class=\"file-icon\">{}</span><span class=\"file-info\">{}{size}</span></div>",
            escape(&ext.chars().take(4).collect::<String>().to_uppercase()),
            link(&href, &escape(&name), "file-name")
        ));
    }
    out
}

fn block_delimiter(d: &Value) -> String {
    let size = number(d, "SIZE").unwrap_or(200).min(4000);
    let color = text(d, "COLOR")
        .filter(|c| bbcode::safe_color(c).is_some())
        .map(|c| format!(" data-color=\"{}\"", escape(&c)))
        .unwrap_or_default();
    format!(
        "<hr class=\"block block-delimiter\" data-block=\"delimiter\" data-width=\"{size}\"{color}>"
    )
}

/// The stripe colour of an attach: COLOR (hex or `transparent`) or COLOR_TOKEN.
fn stripe(attach: &Value) -> String {
    if let Some(token) = text(attach, "COLOR_TOKEN") {
        let token = match token.as_str() {
            "primary" | "secondary" | "alert" | "base" => token,
            _ => "base".into(),
        };
        return format!(" data-color-token=\"{token}\"");
    }
    match text(attach, "COLOR") {
        Some(c) if c == "transparent" => " data-stripe=\"transparent\"".into(),
        Some(c) if bbcode::safe_color(&c).is_some() => format!(" data-stripe=\"{}\"", escape(&c)),
        _ => String::new(),
    }
}

/// One stored attach: its DESCRIPTION and every block, in order.
pub fn attach(attach: &Value) -> String {
    let mut blocks = String::new();
    if let Some(desc) = text(attach, "DESCRIPTION") {
        blocks.push_str(&format!(
            "<div class=\"attach-desc\">{}</div>",
            bbcode::to_html(&desc)
        ));
    }
    for b in field(attach, "BLOCKS")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some((kind, v)) = b.as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        blocks.push_str(&match kind.as_str() {
            "USER" => block_user(v),
            "LINK" => block_link(v, "LINK"),
            "RICH_LINK" => block_link(v, "RICH_LINK"),
            "MESSAGE" => format!(
                "<div class=\"block block-message\" data-block=\"message\">{}</div>",
                bbcode::to_html(&unescape_stored(v.as_str().unwrap_or_default()))
            ),
            "GRID" => block_grid(v),
            "IMAGE" => block_image(v),
            "FILE" => block_file(v),
            "DELIMITER" => block_delimiter(v),
            _ => String::new(),
        });
    }
    format!(
        "<div class=\"attach\" data-attach{}>{blocks}</div>",
        stripe(attach)
    )
}

/// `YYYY-MM-DD HH:MM` in UTC, and the ISO form for `<time datetime>`.
fn when(unix: u64) -> (String, String) {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(unix.min(253_402_300_799) as i64) else {
        return (unix.to_string(), String::new());
    };
    let (y, mo, d, h, mi, s) = (
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    );
    (
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02} UTC"),
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
    )
}

fn card(r: &Record) -> String {
    let n = &r.notification;
    let (kind, label) = match n.r#type.as_str() {
        "USER" => ("personal", "Personal"),
        "CONFIRM" => ("confirm", "Confirm"),
        _ => ("system", "System"),
    };
    let author = if n.author_id > 0 {
        format!("User {}", n.author_id)
    } else {
        "System".to_owned()
    };
    let avatar = if n.author_id > 0 {
        format!("U{}", n.author_id)
    } else {
        "B24".to_owned()
    };
    let (shown, iso) = when(r.created_at);
    let mut tags = String::new();
    if let Some(tag) = &n.tag {
        tags.push_str(&format!(
            "<span class=\"tag\" data-tag title=\"TAG\">{}</span>",
            escape(tag)
        ));
    }
    if let Some(sub) = &n.sub_tag {
        tags.push_str(&format!(
            "<span class=\"tag sub\" data-sub-tag title=\"SUB_TAG\">{}</span>",
            escape(sub)
        ));
    }
    let attach_html = n.attach.as_ref().map(attach).unwrap_or_default();
    let mut buttons = String::new();
    for b in n
        .buttons
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let title = b.get("TITLE").and_then(Value::as_str).unwrap_or_default();
        let value = b.get("VALUE").and_then(Value::as_str).unwrap_or_default();
        let ty = b.get("TYPE").and_then(Value::as_str).unwrap_or("accept");
        let ty = if ty.eq_ignore_ascii_case("cancel") {
            "cancel"
        } else {
            "accept"
        };
        buttons.push_str(&format!(
            "<button type=\"button\" class=\"btn btn-{ty}\" data-action=\"confirm\" data-id=\"{}\" data-value=\"{}\">{}</button>",
            n.id,
            escape(value),
            escape(title)
        ));
    }
    if !buttons.is_empty() {
        buttons = format!("<div class=\"confirm-buttons\" data-confirm>{buttons}</div>");
    }
    let read_button = if n.read || n.r#type == "CONFIRM" {
        String::new()
    } else {
        format!(
            "<button type=\"button\" class=\"link-btn\" data-action=\"read\" data-id=\"{}\">Mark read</button>",
            n.id
        )
    };
    let state = if n.read { "read" } else { "unread" };
    format!(
        "<article class=\"card {state} kind-{kind}\" id=\"n{id}\" data-notification=\"{id}\" data-kind=\"{kind}\" data-read=\"{read}\">\
<div class=\"avatar kind-{kind}\" aria-hidden=\"true\">{avatar}</div>\
<div class=\"card-body\">\
<div class=\"meta\"><span class=\"author\" data-author=\"{author_id}\">{author}</span><span class=\"badge kind-{kind}\">{label}</span>\
<time datetime=\"{iso}\">{shown}</time><span class=\"state\" data-state=\"{state}\" title=\"{state}\"></span></div>\
<div class=\"text\" data-text>{text}</div>{attach_html}{buttons}\
<div class=\"footer\"><span class=\"tags\">{tags}</span><span class=\"actions\">{read_button}\
<details class=\"answer\"><summary>Reply</summary><form class=\"answer-form\" data-answer=\"{id}\">\
<input type=\"text\" name=\"answer\" maxlength=\"2000\" placeholder=\"Your answer\" aria-label=\"Answer\" required>\
<button type=\"submit\" class=\"btn btn-accept\">Send</button></form></details></span></div>\
</div></article>",
        id = n.id,
        read = n.read,
        author_id = n.author_id,
        text = bbcode::to_html(&n.message),
    )
}

/// The cards of one user's inbox, newest first.
pub fn list(records: &[Record]) -> String {
    if records.is_empty() {
        return "<p class=\"empty\" data-empty>No notifications yet. Send one with \
<code>oint bitrix24 CreatePersonalNotification --url sandbox --user 1 --text Hello</code> \
or a REST call to <code>im.notify.personal.add</code>.</p>"
            .to_owned();
    }
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.notification.id)));
    sorted.into_iter().map(card).collect()
}

/// The whole page for `user`, with a switcher over users `1..=users` and their unread counts.
pub fn page(user: u64, users: u64, unread: &dyn Fn(u64) -> usize, records: &[Record]) -> String {
    let mut tabs = String::new();
    for u in 1..=users.min(20) {
        let count = unread(u);
        let badge = if count > 0 {
            format!("<span class=\"count\">{count}</span>")
        } else {
            String::new()
        };
        let active = if u == user { " active" } else { "" };
        tabs.push_str(&format!(
            "<a class=\"user-tab{active}\" href=\"/?user={u}\" data-user-tab=\"{u}\">User {u}{badge}</a>"
        ));
    }
    let unread_here = records.iter().filter(|r| !r.notification.read).count();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Notifications · User {user}</title>\
<link rel=\"stylesheet\" href=\"/inbox/style.css\"><script src=\"/inbox/app.js\" defer></script></head>\
<body data-user=\"{user}\">\
<header class=\"top\"><div class=\"brand\"><span class=\"logo\">Bitrix<b>24</b></span><span class=\"sub\">emulator inbox</span></div>\
<form class=\"user-form\" method=\"get\" action=\"/\"><label>User <input type=\"number\" name=\"user\" min=\"1\" max=\"{users}\" value=\"{user}\"></label><button type=\"submit\" class=\"btn\">Open</button></form></header>\
<nav class=\"users\" aria-label=\"Users\">{tabs}</nav>\
<main><div class=\"panel\"><div class=\"panel-head\"><h1>Notifications</h1>\
<span class=\"unread-total\" data-unread=\"{unread_here}\">{unread_here} unread</span>\
<span class=\"live\" id=\"live\" data-live=\"off\">offline</span></div>\
<div id=\"toast\" class=\"toast\" role=\"status\" hidden></div>\
<section id=\"list\" class=\"list\" data-inbox-list>{list}</section></div></main></body></html>\n",
        list = list(records)
    )
}

/// The page for a user that does not exist.
pub fn no_such_user(user: &str, users: u64) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>No such user</title>\
<link rel=\"stylesheet\" href=\"/inbox/style.css\"></head><body><main><div class=\"panel\">\
<h1>No such user</h1><p class=\"empty\">User {} does not exist; this portal has users 1 to {users}. \
<a href=\"/?user=1\">Open user 1</a>.</p></div></main></body></html>\n",
        escape(user)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses() {
        for yes in [
            "http://127.0.0.1/a.png",
            "http://127.0.0.1:8080/a.png",
            "https://localhost/x",
            "http://[::1]:9/x",
            "HTTP://LOCALHOST:1",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "http://127.0.0.1.evil.test/a.png",
            "http://localhost@evil.test/",
            "http://evil.test/127.0.0.1",
            "https://example.com/x.png",
            "javascript:alert(1)",
            "/upload/a.png",
            "http://127.0.0.1:x/",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn stored_escapes_round_trip() {
        let stored = "&lt;img src=x onerror=alert(1)&gt; &amp;amp; &quot;&#039;";
        assert_eq!(
            escape(&unescape_stored(stored)),
            "&lt;img src=x onerror=alert(1)&gt; &amp;amp; &quot;&#39;"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(2048), "2.0 KB");
        assert_eq!(human_size(5 * 1024 * 1024), "5.0 MB");
    }
}
