//! The portal's message formatting: BB-codes to HTML.
//!
//! The portal escapes a message and then turns the BB-codes of its formatting docs
//! (`[b] [i] [u] [s] [url] [url=…] [color=…] [size=…] [code] [quote] [br] [user=N] [chat=N]`,
//! plus `#BR#` and line breaks) into markup. Here the text is parsed into tags and runs of
//! text, every run is escaped, and every open tag is closed at the end, so no input can leave
//! markup open outside its card. Colours and sizes are not written as inline styles (the
//! page's Content-Security-Policy forbids them); they go into `data-*` attributes the page's
//! script applies after checking them again.

use super::render::{escape, safe_href};

/// Tags that take a value after `=`, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Bold,
    Italic,
    Underline,
    Strike,
    Url,
    Color,
    Size,
    Code,
    Quote,
    User,
    Chat,
    /// `[url=…]` with an address that must not become a link.
    NoLink,
}

impl Tag {
    fn from_name(name: &str) -> Option<Tag> {
        Some(match name {
            "b" => Tag::Bold,
            "i" => Tag::Italic,
            "u" => Tag::Underline,
            "s" => Tag::Strike,
            "url" => Tag::Url,
            "color" => Tag::Color,
            "size" => Tag::Size,
            "code" => Tag::Code,
            "quote" => Tag::Quote,
            "user" => Tag::User,
            "chat" => Tag::Chat,
            _ => return None,
        })
    }

    fn close(self) -> &'static str {
        match self {
            Tag::Bold => "</b>",
            Tag::Italic => "</i>",
            Tag::Underline => "</u>",
            Tag::Strike => "</s>",
            Tag::Url => "</a>",
            Tag::Color | Tag::Size | Tag::User | Tag::Chat | Tag::NoLink => "</span>",
            Tag::Code => "</code>",
            Tag::Quote => "</blockquote>",
        }
    }
}

/// One `[name]`, `[name=value]` or `[/name]` at the start of `s`: (closing, name, value,
/// length in bytes).
fn parse_tag(s: &str) -> Option<(bool, String, Option<String>, usize)> {
    // A tag never spans lines or gets long; "[" in text stays text. The scan stops at the
    // first byte that settles it, so text full of "[" costs linear time, not quadratic.
    let end = s
        .bytes()
        .enumerate()
        .skip(1)
        .take(2049)
        .find(|(_, b)| matches!(b, b']' | b'[' | b'\n'))
        .filter(|(_, b)| *b == b']')?
        .0;
    let inner = &s[1..end];
    if inner.is_empty() {
        return None;
    }
    let (closing, inner) = match inner.strip_prefix('/') {
        Some(rest) => (true, rest),
        None => (false, inner),
    };
    let (name, value) = match inner.split_once('=') {
        Some((n, v)) => (n, Some(v.trim_matches(['"', '\'']).to_owned())),
        None => (inner, None),
    };
    Some((closing, name.to_ascii_lowercase(), value, end + 1))
}

/// `#rgb`, `#rrggbb` or a plain colour name (letters only).
pub fn safe_color(c: &str) -> Option<&str> {
    let hex = c
        .strip_prefix('#')
        .is_some_and(|h| matches!(h.len(), 3 | 6) && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let named = !c.is_empty() && c.len() <= 20 && c.bytes().all(|b| b.is_ascii_alphabetic());
    (hex || named).then_some(c)
}

/// A font size in pixels, kept to what fits a card.
fn safe_size(v: &str) -> Option<u32> {
    let digits = v.trim().trim_end_matches("px");
    digits.parse::<u32>().ok().map(|n| n.clamp(8, 32))
}

/// Open tags kept at once; further opening tags stay text.
const MAX_DEPTH: usize = 64;

/// Render portal-formatted `text` (not escaped yet) as HTML.
pub fn to_html(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace("#BR#", "\n");
    let mut out = String::with_capacity(text.len() + 16);
    let mut stack: Vec<Tag> = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let Some(pos) = rest.find(['[', '\n']) else {
            out.push_str(&escape(rest));
            break;
        };
        out.push_str(&escape(&rest[..pos]));
        rest = &rest[pos..];
        if rest.starts_with('\n') {
            out.push_str("<br>");
            rest = &rest[1..];
            continue;
        }
        let Some((closing, name, value, len)) = parse_tag(rest) else {
            out.push('[');
            rest = &rest[1..];
            continue;
        };
        if name == "br" && !closing {
            out.push_str("<br>");
            rest = &rest[len..];
            continue;
        }
        let Some(tag) = Tag::from_name(&name) else {
            out.push('[');
            rest = &rest[1..];
            continue;
        };
        if closing {
            if let Some(at) = stack
                .iter()
                .rposition(|t| *t == tag || (tag == Tag::Url && *t == Tag::NoLink))
            {
                for t in stack.drain(at..).rev() {
                    out.push_str(t.close());
                }
            } else {
                out.push_str(&escape(&rest[..len]));
            }
            rest = &rest[len..];
            continue;
        }
        // Deeper nesting is no formatting anyone reads, and would make closing tags costly.
        if stack.len() >= MAX_DEPTH {
            out.push('[');
            rest = &rest[1..];
            continue;
        }
        rest = &rest[len..];
        match tag {
            Tag::Code => {
                // Nothing inside [code] is formatting.
                let (body, after) = split_at_close(rest, "code");
                out.push_str("<code class=\"bb-code\">");
                out.push_str(&escape(body));
                out.push_str("</code>");
                rest = after;
            }
            Tag::Url => match value {
                Some(href) => open_link(&mut out, &mut stack, &href),
                None => {
                    // `[url]X[/url]`: the text is the address.
                    let (body, after) = split_at_close(rest, "url");
                    match safe_href(body.trim()) {
                        Some(href) => {
                            out.push_str(&link_start(&href));
                            out.push_str(&escape(body));
                            out.push_str("</a>");
                        }
                        None => out.push_str(&escape(body)),
                    }
                    rest = after;
                }
            },
            Tag::Color => match value.as_deref().and_then(safe_color) {
                Some(c) => {
                    out.push_str(&format!(
                        "<span class=\"bb-color\" data-color=\"{}\">",
                        escape(c)
                    ));
                    stack.push(tag);
                }
                None => out.push_str(&escape(&format!("[color={}]", value.unwrap_or_default()))),
            },
            Tag::Size => match value.as_deref().and_then(safe_size) {
                Some(px) => {
                    out.push_str(&format!("<span class=\"bb-size\" data-size=\"{px}\">"));
                    stack.push(tag);
                }
                None => out.push_str("[size]"),
            },
            Tag::User | Tag::Chat => {
                let id = value
                    .as_deref()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                let kind = if tag == Tag::User { "user" } else { "chat" };
                out.push_str(&format!(
                    "<span class=\"bb-mention bb-{kind}\" data-{kind}=\"{id}\">"
                ));
                stack.push(tag);
            }
            Tag::Quote => {
                out.push_str("<blockquote class=\"bb-quote\">");
                stack.push(tag);
            }
            Tag::NoLink => {}
            Tag::Bold => simple(&mut out, &mut stack, tag, "<b>"),
            Tag::Italic => simple(&mut out, &mut stack, tag, "<i>"),
            Tag::Underline => simple(&mut out, &mut stack, tag, "<u>"),
            Tag::Strike => simple(&mut out, &mut stack, tag, "<s>"),
        }
    }
    for t in stack.into_iter().rev() {
        out.push_str(t.close());
    }
    out
}

fn simple(out: &mut String, stack: &mut Vec<Tag>, tag: Tag, open: &str) {
    out.push_str(open);
    stack.push(tag);
}

/// An `<a>` for an http(s) address; any other scheme gets a plain span, never a link.
fn open_link(out: &mut String, stack: &mut Vec<Tag>, href: &str) {
    match safe_href(href) {
        Some(href) => {
            out.push_str(&link_start(&href));
            stack.push(Tag::Url);
        }
        None => {
            out.push_str("<span class=\"bb-badlink\">");
            stack.push(Tag::NoLink);
        }
    }
}

fn link_start(href: &str) -> String {
    format!(
        "<a class=\"bb-url\" href=\"{}\" target=\"_blank\" rel=\"noopener noreferrer nofollow\">",
        escape(href)
    )
}

/// The text up to `[/name]` (any case) and what follows it; all of `s` when it never closes.
fn split_at_close<'a>(s: &'a str, name: &str) -> (&'a str, &'a str) {
    let close = format!("[/{name}]");
    // Compared in place: a lowercased copy of the rest for every tag would be quadratic.
    let found = s.match_indices("[/").map(|(at, _)| at).find(|&at| {
        s.as_bytes()
            .get(at..at + close.len())
            .is_some_and(|candidate| candidate.eq_ignore_ascii_case(close.as_bytes()))
    });
    match found {
        Some(at) => (&s[..at], &s[at + close.len()..]),
        None => (s, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::to_html;

    #[test]
    fn hostile_text_renders_and_stays_text() {
        // Would take minutes if each "[" scanned the rest of the text.
        let brackets = "[".repeat(1 << 20);
        assert_eq!(to_html(&brackets), brackets);
        let nested = format!("{}{}", "[b]".repeat(100_000), "[/i]".repeat(100_000));
        assert_eq!(to_html(&nested).matches("<b>").count(), 64);
        let codes = "[code][/CODE]".repeat(100_000);
        assert_eq!(to_html(&codes).matches("<code").count(), 100_000);
    }

    #[test]
    fn formatting_tags() {
        assert_eq!(to_html("[b]bold[/b] [I]it[/I]"), "<b>bold</b> <i>it</i>");
        assert_eq!(to_html("a#BR#b[br]c\nd"), "a<br>b<br>c<br>d");
        assert_eq!(to_html("[s][u]x[/u][/s]"), "<s><u>x</u></s>");
        assert_eq!(
            to_html("[color=#ff0000]red[/color]"),
            "<span class=\"bb-color\" data-color=\"#ff0000\">red</span>"
        );
        assert_eq!(
            to_html("[code][b]x[/b][/code]"),
            "<code class=\"bb-code\">[b]x[/b]</code>"
        );
        assert!(to_html("[quote]q[/quote]").starts_with("<blockquote"));
        assert!(to_html("[user=5]Ann[/user]").contains("data-user=\"5\""));
        assert!(to_html("[chat=7]Ops[/chat]").contains("data-chat=\"7\""));
    }

    #[test]
    fn unclosed_and_stray_tags_stay_balanced() {
        assert_eq!(to_html("[b]open"), "<b>open</b>");
        assert_eq!(to_html("x[/b]"), "x[/b]");
        assert_eq!(to_html("[b][i]x[/b]"), "<b><i>x</i></b>");
        assert_eq!(to_html("[unknown]a["), "[unknown]a[");
    }

    #[test]
    fn links_are_http_only() {
        let ok = to_html("[url=https://example.com/?a=1&b=2]go[/url]");
        assert!(
            ok.contains("href=\"https://example.com/?a=1&amp;b=2\""),
            "{ok}"
        );
        for bad in [
            "[url=javascript:alert(1)]x[/url]",
            "[url=JaVaScRiPt:alert(1)]x[/url]",
            "[url=data:text/html,<b>]x[/url]",
            "[url]javascript:alert(1)[/url]",
            "[url= javascript:alert(1)]x[/url]",
        ] {
            let html = to_html(bad);
            assert!(!html.contains("href"), "{bad} -> {html}");
        }
        assert!(to_html("[url]http://x.test/[/url]").contains("href=\"http://x.test/\""));
    }

    #[test]
    fn text_is_escaped() {
        let html = to_html("<img src=x onerror=alert(1)> \"q\" 'a' & [color=red\" onclick=x]t");
        assert!(!html.contains('<') || !html.contains("<img"), "{html}");
        assert!(html.contains("&lt;img"));
        assert!(!html.contains("onclick=x\""));
        assert!(!html.contains("\"q\""));
    }
}
