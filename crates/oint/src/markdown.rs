//! Markdown to Bitrix24 BB-codes, for `--markdown`.
//!
//! The portal renders BB-codes only, while CI tools, chat templates and language models write
//! Markdown. pulldown-cmark parses it (CommonMark plus strikethrough, tables and task lists);
//! this module only maps each element to the BB-code the portal's message formatting knows:
//! `[b] [i] [s] [code] [quote] [url=…]`. What has no BB-code keeps its text: a heading becomes a
//! bold line, a list item a bullet or its number, a table cells joined by ` | `, an image a link
//! to it. Only `http(s)://` and `mailto:` targets become links; any other target (a
//! `javascript:` one, a relative path) is kept as plain text, so nothing clickable is made of it.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// `markdown` as BB-code text.
pub fn to_bbcode(markdown: &str) -> String {
    let options =
        Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES | Options::ENABLE_TASKLISTS;
    let mut out = Writer::default();
    for event in Parser::new_ext(markdown, options) {
        out.event(event);
    }
    out.finish()
}

#[derive(Default)]
struct Writer {
    text: String,
    /// One entry per open list: the next number of an ordered list, `None` for bullets.
    lists: Vec<Option<u64>>,
    /// Link targets of open links and images (`None`: not linkable, text only).
    links: Vec<Option<String>>,
    /// Inside a table row, before its first cell.
    first_cell: bool,
}

impl Writer {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => self.text.push_str(&text),
            Event::Code(code) => {
                self.text.push_str("[code]");
                self.text.push_str(&code);
                self.text.push_str("[/code]");
            }
            Event::Html(html) | Event::InlineHtml(html) => self.text.push_str(&html),
            Event::SoftBreak | Event::HardBreak => self.text.push('\n'),
            Event::Rule => {
                self.block_break();
                self.text.push_str("──────────");
                self.block_break();
            }
            Event::TaskListMarker(done) => self.text.push_str(if done { "☑ " } else { "☐ " }),
            Event::FootnoteReference(name) => {
                self.text.push('[');
                self.text.push_str(&name);
                self.text.push(']');
            }
            Event::InlineMath(math) | Event::DisplayMath(math) => self.text.push_str(&math),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            // Items of a list are its lines, loose or tight.
            Tag::Paragraph if self.lists.is_empty() => self.block_break(),
            Tag::Heading { .. } => {
                self.block_break();
                self.text.push_str("[b]");
            }
            Tag::BlockQuote(_) => {
                self.block_break();
                self.text.push_str("[quote]");
            }
            // A fence's language is for colouring, which the portal does not do.
            Tag::CodeBlock(_) => {
                self.block_break();
                self.text.push_str("[code]");
            }
            Tag::List(start) => {
                if self.lists.is_empty() {
                    self.block_break();
                }
                self.lists.push(start);
            }
            Tag::Item => {
                self.line_break();
                let depth = self.lists.len().saturating_sub(1);
                self.text.push_str(&"  ".repeat(depth));
                match self.lists.last_mut() {
                    Some(Some(n)) => {
                        self.text.push_str(&format!("{n}. "));
                        *n += 1;
                    }
                    _ => self.text.push_str("• "),
                }
            }
            Tag::Emphasis => self.text.push_str("[i]"),
            Tag::Strong => self.text.push_str("[b]"),
            Tag::Strikethrough => self.text.push_str("[s]"),
            Tag::Link { dest_url, .. } => {
                let target = linkable(&dest_url);
                if let Some(url) = &target {
                    self.text.push_str(&format!("[url={url}]"));
                }
                self.links.push(target);
            }
            Tag::Image { dest_url, .. } => {
                let target = linkable(&dest_url);
                if let Some(url) = &target {
                    self.text.push_str(&format!("[url={url}]"));
                }
                self.links.push(target);
            }
            Tag::Table(_) => self.block_break(),
            Tag::TableHead | Tag::TableRow => {
                self.line_break();
                self.first_cell = true;
            }
            Tag::TableCell => {
                if !self.first_cell {
                    self.text.push_str(" | ");
                }
                self.first_cell = false;
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Heading(_) => self.text.push_str("[/b]"),
            TagEnd::BlockQuote(_) => {
                trim_trailing_newlines(&mut self.text);
                self.text.push_str("[/quote]");
            }
            TagEnd::CodeBlock => {
                trim_trailing_newlines(&mut self.text);
                self.text.push_str("[/code]");
            }
            TagEnd::List(_) => {
                self.lists.pop();
            }
            TagEnd::Emphasis => self.text.push_str("[/i]"),
            TagEnd::Strong => self.text.push_str("[/b]"),
            TagEnd::Strikethrough => self.text.push_str("[/s]"),
            TagEnd::Link | TagEnd::Image => {
                if let Some(Some(_)) = self.links.pop() {
                    self.text.push_str("[/url]");
                }
            }
            _ => {}
        }
    }

    /// An empty line between blocks (none before the first, nor right inside a quote).
    fn block_break(&mut self) {
        trim_trailing_newlines(&mut self.text);
        if !self.text.is_empty() && !self.text.ends_with("[quote]") {
            self.text.push_str("\n\n");
        }
    }

    /// A new line, unless at the start of one.
    fn line_break(&mut self) {
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
        }
    }

    fn finish(mut self) -> String {
        trim_trailing_newlines(&mut self.text);
        self.text
    }
}

fn trim_trailing_newlines(text: &mut String) {
    while text.ends_with('\n') {
        text.pop();
    }
}

/// The target as it may stand in `[url=…]`: http(s) and mailto only, with the characters that
/// would end the tag early percent-encoded.
fn linkable(url: &str) -> Option<String> {
    let lower = url.trim().to_ascii_lowercase();
    if !(lower.starts_with("http://")
        || lower.starts_with("https://")
        || lower.starts_with("mailto:"))
    {
        return None;
    }
    Some(
        url.trim()
            .replace('[', "%5B")
            .replace(']', "%5D")
            .replace(' ', "%20"),
    )
}

#[cfg(test)]
mod tests {
    use super::to_bbcode;

    #[test]
    fn each_element_becomes_its_bb_code() {
        let table = [
            ("**bold** and __bold__", "[b]bold[/b] and [b]bold[/b]"),
            ("*it* _it_", "[i]it[/i] [i]it[/i]"),
            ("~~gone~~", "[s]gone[/s]"),
            ("run `make`", "run [code]make[/code]"),
            ("```sh\ncargo test\nls\n```", "[code]cargo test\nls[/code]"),
            ("    indented", "[code]indented[/code]"),
            (
                "[CI](https://ci.example.com/42)",
                "[url=https://ci.example.com/42]CI[/url]",
            ),
            (
                "<https://x.example>",
                "[url=https://x.example]https://x.example[/url]",
            ),
            ("# Deploy\ndone", "[b]Deploy[/b]\n\ndone"),
            ("## Status", "[b]Status[/b]"),
            ("> careful\n> now", "[quote]careful\nnow[/quote]"),
            ("- a\n- b", "• a\n• b"),
            ("3. c\n4. d", "3. c\n4. d"),
            ("- a\n  - b\n- c", "• a\n  • b\n• c"),
            ("- [x] done\n- [ ] todo", "• ☑ done\n• ☐ todo"),
            ("one\ntwo", "one\ntwo"),
            ("para 1\n\npara 2", "para 1\n\npara 2"),
            ("a\n\n---\n\nb", "a\n\n──────────\n\nb"),
            ("| h1 | h2 |\n|---|---|\n| a | b |", "h1 | h2\na | b"),
            (
                "![chart](https://x/c.png)",
                "[url=https://x/c.png]chart[/url]",
            ),
            (
                "**Build** failed:\n- `test_a`\n- `test_b`",
                "[b]Build[/b] failed:\n\n• [code]test_a[/code]\n• [code]test_b[/code]",
            ),
            ("", ""),
        ];
        for (markdown, want) in table {
            assert_eq!(to_bbcode(markdown), want, "{markdown:?}");
        }
    }

    #[test]
    fn only_web_and_mail_targets_become_links() {
        assert_eq!(
            to_bbcode("[click](javascript:alert(1))"),
            "click",
            "a script target stays text"
        );
        assert_eq!(to_bbcode("[doc](docs/readme.md)"), "doc");
        assert_eq!(
            to_bbcode("[mail](mailto:ops@example.com)"),
            "[url=mailto:ops@example.com]mail[/url]"
        );
        // A bracket in the target cannot close the tag early.
        assert_eq!(
            to_bbcode("[x](<https://x/a]b c>)"),
            "[url=https://x/a%5Db%20c]x[/url]"
        );
    }
}
