//! Attachments (`ATTACH`): rich blocks shown under a notification's text.
//!
//! Build one from typed blocks, or take the user's JSON with [`Attach::from_value`] (or the
//! strict [`Attach::from_json`]). Either way the attach is checked against the portal's own
//! rules before anything is sent, because the
//! portal rarely says no: it silently drops blocks and items it cannot use (an IMAGE whose
//! `LINK` is not `http://`, `https://` or `/`, an empty MESSAGE, a GRID item with neither NAME
//! nor VALUE…), skips unknown keys (so `LNK` quietly costs the image), replaces a bad COLOR
//! with a random one, and answers `ATTACH_ERROR` only when nothing at all is left. The 60,000
//! character limit is measured on the portal's *stored* form, after `htmlspecialchars` and with
//! `/` written as `\/`, so `&` counts five times and `/` twice; [`Attach::check`] measures it
//! the same way.
//!
//! [`Attach::review`] sorts what it finds by [`Severity`]: an error is what the portal refuses
//! (`ATTACH_ERROR`, `ATTACH_OVERSIZE`), so nothing is sent; a warning is what it accepts but
//! drops or changes, so the notification is still sent unless the caller is strict. Each
//! [`Finding`] has its path, its [`Rule`] (a stable id and the general fix), what the portal
//! will do ([`Finding::effect`]) and one line with the instance's fix.
//!
//! Two forms exist. The short form is a list of blocks. The full form is an object with
//! `BLOCKS` plus `ID`, `COLOR`, `COLOR_TOKEN` and `DESCRIPTION`; setting any of those with the
//! setters below switches to it. A bare single block such as `{"IMAGE": …}` is neither, and the
//! portal refuses it.
//!
//! ```
//! use bitrix24::{Attach, Block, Display, GridItem, Image};
//!
//! let attach = Attach::new([
//!     Block::message("[B]Deploy finished[/B]"),
//!     Block::grid([
//!         GridItem::new("Status", "green").display(Display::Line),
//!         GridItem::new("Duration", "4m 10s").display(Display::Line),
//!     ]),
//!     Block::images([Image::new("https://ci.example.com/chart.png").name("chart")]),
//! ])
//! .color("#29619b");
//! assert!(attach.check().is_ok());
//! assert_eq!(attach.as_json()["COLOR"], "#29619b");
//! ```
//!
//! Known gaps (docs/portal-behaviour.md §4.6, §4.12): the portal passes LINK's `HTML` through a sanitizer whose
//! output length is not known here (the text as sent is measured), and `COLOR_TOKEN` is checked
//! but, as in the server source, not part of the stored form.

mod check;
mod report;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::php;

pub use check::{Check, Issue, IssueKind, MAX_ATTACH_CHARS, Verdict};
pub use report::{Finding, Report, Rule, Severity};

/// One attachment block, e.g. `{"IMAGE": {"NAME": "…", "LINK": "…"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Block(Value);

fn to_value(item: &impl Serialize) -> Value {
    // Plain structs of strings and integers always serialise.
    serde_json::to_value(item).unwrap_or(Value::Null)
}

impl Block {
    /// A picture: `{"IMAGE": {"NAME": name, "LINK": link}}` (OPI's `GetPictureBlock`).
    pub fn image(name: impl Into<String>, link: impl Into<String>) -> Block {
        Block(json!({"IMAGE": {"NAME": name.into(), "LINK": link.into()}}))
    }

    /// Several pictures in one block: `{"IMAGE": [{…}, …]}`.
    ///
    /// ```
    /// use bitrix24::{Block, Image};
    /// let b = Block::images([Image::new("https://x.test/a.png").size(1000, 638)]);
    /// assert_eq!(
    ///     b.as_json().to_string(),
    ///     r#"{"IMAGE":[{"LINK":"https://x.test/a.png","WIDTH":1000,"HEIGHT":638}]}"#
    /// );
    /// ```
    pub fn images(images: impl IntoIterator<Item = Image>) -> Block {
        let list: Vec<Value> = images.into_iter().map(|i| to_value(&i)).collect();
        Block(json!({"IMAGE": list}))
    }

    /// A file: `{"FILE": {"NAME": name, "LINK": link}}` (OPI's `GetFileBlock`).
    pub fn file(name: impl Into<String>, link: impl Into<String>) -> Block {
        Block(json!({"FILE": {"NAME": name.into(), "LINK": link.into()}}))
    }

    /// Several files in one block: `{"FILE": [{…}, …]}`.
    pub fn files(files: impl IntoIterator<Item = File>) -> Block {
        let list: Vec<Value> = files.into_iter().map(|f| to_value(&f)).collect();
        Block(json!({"FILE": list}))
    }

    /// A line of text, BB-codes allowed: `{"MESSAGE": text}`.
    pub fn message(text: impl Into<String>) -> Block {
        Block(json!({"MESSAGE": text.into()}))
    }

    /// A horizontal line with the portal's defaults: `{"DELIMITER": {}}`.
    pub fn delimiter() -> Block {
        Block(json!({"DELIMITER": {}}))
    }

    /// A horizontal line with a size or colour: `{"DELIMITER": {"SIZE": …, "COLOR": …}}`.
    pub fn delimiter_with(delimiter: Delimiter) -> Block {
        Block(json!({"DELIMITER": to_value(&delimiter)}))
    }

    /// A user card: `{"USER": {"NAME": …, …}}`.
    ///
    /// ```
    /// use bitrix24::{Block, User};
    /// let b = Block::user(User::new("John Smith").user_id(7));
    /// assert_eq!(b.as_json().to_string(), r#"{"USER":{"NAME":"John Smith","USER_ID":7}}"#);
    /// ```
    pub fn user(user: User) -> Block {
        Block(json!({"USER": to_value(&user)}))
    }

    /// A link with a caption: `{"LINK": {"LINK": …, "NAME": …, …}}`.
    pub fn link(link: Link) -> Block {
        Block(json!({"LINK": to_value(&link)}))
    }

    /// An expanded link preview: `{"RICH_LINK": {…}}`. The portal accepts it, but the current
    /// docs do not list it; `Link::extra_image` applies here only.
    pub fn rich_link(link: Link) -> Block {
        Block(json!({"RICH_LINK": to_value(&link)}))
    }

    /// A grid of name-value items: `{"GRID": [{"DISPLAY": …, "NAME": …, "VALUE": …}, …]}`.
    ///
    /// ```
    /// use bitrix24::{Block, Display, GridItem};
    /// let b = Block::grid([GridItem::new("Status", "green").display(Display::Line)]);
    /// assert_eq!(
    ///     b.as_json().to_string(),
    ///     r#"{"GRID":[{"DISPLAY":"LINE","NAME":"Status","VALUE":"green"}]}"#
    /// );
    /// ```
    pub fn grid(items: impl IntoIterator<Item = GridItem>) -> Block {
        let list: Vec<Value> = items.into_iter().map(|i| to_value(&i)).collect();
        Block(json!({"GRID": list}))
    }

    /// A block as given, e.g. `{"DELIMITER": true}` from the docs; not checked here:
    /// [`Attach::review`] says what the portal will do with it.
    pub fn from_value(value: Value) -> Block {
        Block(value)
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

/// How a GRID item is laid out (`DISPLAY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Display {
    /// Each item on its own line (the portal's default).
    #[default]
    Block,
    /// Items as cards on one line, wrapping (`CARD` is the portal's alias).
    Line,
    /// Two columns, NAME | VALUE (`COLUMN` is the portal's alias).
    Row,
    /// A denser table; some clients show it as `Row`.
    Table,
}

/// A colour scheme from the docs (`COLOR_TOKEN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorToken {
    /// `primary`
    Primary,
    /// `secondary`
    Secondary,
    /// `alert`
    Alert,
    /// `base`, the default.
    Base,
}

/// How a USER block's avatar is drawn (`AVATAR_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AvatarType {
    /// A person.
    User,
    /// A chat.
    Chat,
    /// A bot.
    Bot,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => $field:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: impl Into<$ty>) -> Self {
                self.$field = Some(value.into());
                self
            }
        )*
    };
}

/// Numbers are taken as `u64` directly, so plain literals work.
macro_rules! number_setters {
    ($($(#[$doc:meta])* $name:ident => $field:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: u64) -> Self {
                self.$field = Some(value);
                self
            }
        )*
    };
}

/// A USER item: a card with a name, an avatar and where a click leads.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct User {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bot_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar_type: Option<AvatarType>,
}

impl User {
    /// A card showing `name` (required: the portal drops a USER without one).
    pub fn new(name: impl Into<String>) -> User {
        User {
            name: name.into(),
            avatar: None,
            link: None,
            user_id: None,
            chat_id: None,
            bot_id: None,
            network_id: None,
            avatar_type: None,
        }
    }

    setters! {
        /// Avatar picture URL (`http://`, `https://` or `/`).
        avatar: String => avatar,
        /// Where a click leads. The portal keeps one target, preferring NETWORK_ID, USER_ID,
        /// CHAT_ID, BOT_ID, then LINK.
        link: String => link,
        /// A Bitrix24 Network user.
        network_id: String => network_id,
        /// Overrides the avatar style.
        avatar_type: AvatarType => avatar_type,
    }

    number_setters! {
        /// Opens this portal user.
        user_id => user_id,
        /// Opens this chat (and draws a chat avatar).
        chat_id => chat_id,
        /// Opens this bot (and draws a bot avatar).
        bot_id => bot_id,
    }
}

/// A LINK (or RICH_LINK) item.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct Link {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    desc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    html: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preview: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra_image: Option<String>,
}

impl Link {
    fn empty() -> Link {
        Link {
            name: None,
            link: None,
            desc: None,
            html: None,
            preview: None,
            width: None,
            height: None,
            user_id: None,
            chat_id: None,
            network_id: None,
            extra_image: None,
        }
    }

    /// A link to `url` (`http://`, `https://` or a path from the portal root).
    pub fn new(url: impl Into<String>) -> Link {
        Link {
            link: Some(url.into()),
            ..Link::empty()
        }
    }

    /// A link opening a portal user; the portal needs the caption for it.
    pub fn to_user(name: impl Into<String>, user_id: u64) -> Link {
        Link {
            name: Some(name.into()),
            user_id: Some(user_id),
            ..Link::empty()
        }
    }

    /// A link opening a chat; the portal needs the caption for it.
    pub fn to_chat(name: impl Into<String>, chat_id: u64) -> Link {
        Link {
            name: Some(name.into()),
            chat_id: Some(chat_id),
            ..Link::empty()
        }
    }

    setters! {
        /// The caption (the URL is shown without one).
        name: String => name,
        /// A description under the caption.
        desc: String => desc,
        /// An HTML description, used instead of DESC; the portal then ignores the preview.
        html: String => html,
        /// Preview picture URL.
        preview: String => preview,
        /// Opens a Bitrix24 Network user (with a caption).
        network_id: String => network_id,
        /// RICH_LINK only: an extra picture URL.
        extra_image: String => extra_image,
    }

    /// Preview size in pixels (LINK only; ignored without a preview).
    pub fn preview_size(mut self, width: u64, height: u64) -> Self {
        self.width = Some(width);
        self.height = Some(height);
        self
    }
}

/// A GRID item: a name and a value, laid out by [`Display`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct GridItem {
    display: Display,
    name: String,
    value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    color_token: Option<ColorToken>,
    #[serde(skip_serializing_if = "Option::is_none")]
    color: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_id: Option<u64>,
}

impl GridItem {
    /// An item shown as `BLOCK`. Either may be empty, not both (unless the display is LINE):
    /// the portal drops items with neither.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> GridItem {
        GridItem {
            display: Display::Block,
            name: name.into(),
            value: value.into(),
            width: None,
            height: None,
            color_token: None,
            color: None,
            link: None,
            user_id: None,
            chat_id: None,
        }
    }

    /// The layout.
    pub fn display(mut self, display: Display) -> Self {
        self.display = display;
        self
    }

    setters! {
        /// Value colour from the docs' scheme.
        color_token: ColorToken => color_token,
        /// Value colour, `#RGB` or `#RRGGBB`.
        color: String => color,
        /// Makes the value a link (`http://`, `https://` or `/`).
        link: String => link,
    }

    number_setters! {
        /// Width in pixels.
        width => width,
        /// Height in pixels.
        height => height,
        /// Makes the value open a portal user.
        user_id => user_id,
        /// Makes the value open a chat.
        chat_id => chat_id,
    }
}

/// An IMAGE item.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct Image {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    link: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    preview: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u64>,
}

impl Image {
    /// The picture at `link` (`http://`, `https://` or `/`; the portal drops others).
    pub fn new(link: impl Into<String>) -> Image {
        Image {
            name: None,
            link: link.into(),
            preview: None,
            width: None,
            height: None,
        }
    }

    setters! {
        /// A caption.
        name: String => name,
        /// A thumbnail URL.
        preview: String => preview,
    }

    /// Size in pixels.
    pub fn size(mut self, width: u64, height: u64) -> Self {
        self.width = Some(width);
        self.height = Some(height);
        self
    }
}

/// A FILE item.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct File {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    link: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
}

impl File {
    /// The file at `link` (`http://`, `https://` or `/`; the portal drops others).
    pub fn new(link: impl Into<String>) -> File {
        File {
            name: None,
            link: link.into(),
            size: None,
        }
    }

    setters! {
        /// File name with extension; clients pick the icon from it.
        name: String => name,
    }

    number_setters! {
        /// Size in bytes, shown as is (not checked against the file).
        size => size,
    }
}

/// A DELIMITER's options.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct Delimiter {
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    color: Option<String>,
}

impl Delimiter {
    /// The portal's defaults (200 pixels wide).
    pub fn new() -> Delimiter {
        Delimiter::default()
    }

    setters! {
        /// `#RGB` or `#RRGGBB`.
        color: String => color,
    }

    number_setters! {
        /// Width in pixels.
        size => size,
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

    /// Takes user-supplied JSON (a list of blocks, or the full form with `BLOCKS`) and checks it
    /// against the portal's rules. Every mistake is reported, one line each with the path to
    /// the field and the fix, in one [`Error::InvalidArgument`] for `ATTACH`. A value the
    /// portal ignores (`[]`, `""`, `null`) gives an empty attach, which is not sent. A string
    /// is read as JSON, as the portal does.
    ///
    /// ```
    /// use bitrix24::Attach;
    /// let err = Attach::from_json(serde_json::json!([
    ///     {"MESSAGE": "Build 42"},
    ///     {"IMAGE": {"NAME": "chart", "LNK": "https://x.test/chart.png"}},
    /// ]))
    /// .unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "ATTACH: blocks[1].IMAGE.LNK: unknown key; did you mean LINK? \
    ///      Without LINK the portal drops this image"
    /// );
    /// ```
    pub fn from_json(value: Value) -> Result<Attach, Error> {
        let check = check::check(&value);
        if !check.is_ok() {
            return Err(Error::invalid("ATTACH", check.report()));
        }
        if check.verdict() == Verdict::Nothing {
            return Ok(Attach(Value::Array(Vec::new())));
        }
        Ok(Attach(match value {
            Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
            other => other,
        }))
    }

    /// Checks any raw `ATTACH` value against the portal's rules without building an attach:
    /// every issue, the verdict, the stored form and its measured length.
    ///
    /// ```
    /// use bitrix24::{Attach, Verdict};
    /// // `/` is measured as `\/`, so this text of 29,979 characters measures
    /// // 43 + 2 × 29,978 + 1 = 60,000: one character too long.
    /// let text = "/".repeat(29_978) + "a";
    /// let check = Attach::check_json(&serde_json::json!([{"MESSAGE": text}]));
    /// assert_eq!(check.measured_len(), Some(60_000));
    /// assert_eq!(check.verdict(), Verdict::Oversize);
    /// ```
    pub fn check_json(value: &Value) -> Check {
        check::check(value)
    }

    /// Checks this attach against the portal's rules (notifications do this before sending).
    pub fn check(&self) -> Check {
        check::check(&self.0)
    }

    /// Takes user-supplied JSON as the portal will read it, without refusing anything: a
    /// string is read as JSON, a value the portal ignores (`[]`, `""`, `null`…) gives an
    /// empty attach. [`Attach::review`] (or a notification's `to_request`) says what the
    /// portal will do with it; [`Attach::from_json`] is the strict form of this.
    ///
    /// ```
    /// use bitrix24::Attach;
    /// // The docs' own example: the portal draws a default delimiter.
    /// let attach = Attach::from_value(serde_json::json!([{"DELIMITER": true}]));
    /// let report = attach.review();
    /// assert!(report.errors.is_empty() && report.warnings.len() == 1);
    /// ```
    pub fn from_value(value: Value) -> Attach {
        if !php::truthy(&value) {
            return Attach(Value::Array(Vec::new()));
        }
        Attach(match value {
            // A string holding `[]` is truthy: the portal refuses it, so it is kept as sent.
            Value::String(s) => match serde_json::from_str::<Value>(&s) {
                Ok(v) if php::truthy(&v) => v,
                _ => Value::String(s),
            },
            other => other,
        })
    }

    /// What the portal will do with this attach: [`Report::errors`] (it refuses the call)
    /// and [`Report::warnings`] (it drops or changes part of it).
    pub fn review(&self) -> Report {
        check::check(&self.0).to_report()
    }

    /// [`Attach::review`] for any raw `ATTACH` value.
    ///
    /// ```
    /// use bitrix24::Attach;
    /// let report = Attach::review_json(&serde_json::json!({"MESSAGE": "bare"}));
    /// assert_eq!(report.errors[0].rule.id(), "attach.bare-block");
    /// ```
    pub fn review_json(value: &Value) -> Report {
        check::check(value).to_report()
    }

    /// Appends a block (to `BLOCKS` in the full form). A value that is neither form (only
    /// [`Attach::from_value`] can make one) becomes the list of its own values plus the block,
    /// as the portal would read it.
    ///
    /// ```
    /// use bitrix24::{Attach, Block};
    /// let mut attach = Attach::new([]).color("#ff0000");
    /// attach.push(Block::message("one"));
    /// attach.push(Block::delimiter());
    /// assert_eq!(attach.as_json()["BLOCKS"][1], serde_json::json!({"DELIMITER": {}}));
    /// ```
    pub fn push(&mut self, block: Block) {
        let target = match &mut self.0 {
            Value::Object(map) if map.contains_key("BLOCKS") => map
                .get_mut("BLOCKS")
                .filter(|b| b.is_array())
                .and_then(Value::as_array_mut),
            Value::Array(list) => Some(list),
            _ => None,
        };
        if let Some(list) = target {
            list.push(block.0);
            return;
        }
        // An odd value: keep what the portal would read of it, then the block.
        let mut list: Vec<Value> = match std::mem::take(&mut self.0) {
            Value::Object(map) => match map.get("BLOCKS") {
                Some(Value::Object(blocks)) => {
                    let mut map = map.clone();
                    let blocks: Vec<Value> = blocks.values().cloned().collect();
                    map.insert("BLOCKS".into(), Value::Array(blocks));
                    self.0 = Value::Object(map);
                    return self.push(block);
                }
                _ => map.into_iter().map(|(_, v)| v).collect(),
            },
            _ => Vec::new(),
        };
        list.push(block.0);
        self.0 = Value::Array(list);
    }

    /// Builder form of [`Attach::push`].
    pub fn with(mut self, block: Block) -> Attach {
        self.push(block);
        self
    }

    /// The attachment as JSON.
    pub fn as_json(&self) -> &Value {
        &self.0
    }

    /// True when there is nothing to attach (an empty list); such an attach is left out.
    pub fn is_empty(&self) -> bool {
        self.0.as_array().is_some_and(Vec::is_empty)
    }

    /// Sets a full-form field, switching to the full form, with keys in the docs' order.
    fn full(self, key: &str, value: Value) -> Attach {
        let mut fields = match self.0 {
            Value::Object(map) => map,
            blocks => {
                let mut map = Map::new();
                map.insert("BLOCKS".into(), blocks);
                map
            }
        };
        fields.insert(key.into(), value);
        let mut ordered = Map::new();
        for k in ["ID", "COLOR_TOKEN", "COLOR", "DESCRIPTION", "BLOCKS"] {
            if let Some(v) = fields.remove(k) {
                ordered.insert(k.into(), v);
            }
        }
        ordered.extend(fields);
        Attach(Value::Object(ordered))
    }

    /// The stripe colour, `#RGB` or `#RRGGBB` (full form). The portal replaces anything else
    /// with a random colour, so [`Attach::check`] reports it.
    pub fn color(self, color: impl Into<String>) -> Attach {
        self.full("COLOR", color.into().into())
    }

    /// No stripe colour (`COLOR: "TRANSPARENT"`, full form).
    pub fn transparent(self) -> Attach {
        self.full("COLOR", "TRANSPARENT".into())
    }

    /// The docs' colour scheme (`COLOR_TOKEN`, full form). The server source this library
    /// follows does not read it; newer portals may.
    pub fn color_token(self, token: ColorToken) -> Attach {
        self.full("COLOR_TOKEN", to_value(&token))
    }

    /// A description (full form).
    pub fn description(self, text: impl Into<String>) -> Attach {
        self.full("DESCRIPTION", text.into().into())
    }

    /// An id (full form). Current portals replace it with the current time.
    pub fn id(self, id: u64) -> Attach {
        self.full("ID", id.into())
    }
}

impl FromIterator<Block> for Attach {
    fn from_iter<I: IntoIterator<Item = Block>>(iter: I) -> Self {
        Attach::new(iter)
    }
}

#[cfg(test)]
mod tests;
