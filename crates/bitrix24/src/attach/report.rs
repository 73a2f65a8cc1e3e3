//! Severities: what a finding costs, and the one place each rule is named.
//!
//! A check never refuses what the portal accepts unless asked to. Every finding is an
//! [`Severity::Error`] (the portal refuses the call, or the value cannot be sent) or a
//! [`Severity::Warning`] (the portal accepts the call but drops or changes part of it).
//! [`Report::into_result`] refuses errors always, and warnings too in strict mode.

use serde_json::Value;

use super::check::IssueKind;
use crate::error::Error;

/// How much a finding costs the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The portal accepts the call but drops or changes part of it. The notification is sent.
    Warning,
    /// The portal would refuse the call, or the value cannot be sent at all. Nothing is sent.
    Error,
}

impl Severity {
    /// `"error"` or `"warning"`, as a line of output starts.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl IssueKind {
    /// What this kind of issue costs: dropped or ignored parts are warnings, a refused call
    /// (`ATTACH_ERROR`, `ATTACH_OVERSIZE`) is an error.
    pub fn severity(self) -> Severity {
        match self {
            IssueKind::Ignored | IssueKind::Dropped => Severity::Warning,
            IssueKind::Oversize | IssueKind::Rejected => Severity::Error,
        }
    }
}

macro_rules! rules {
    ($($(#[$doc:meta])* $name:ident = $id:literal, fix: $fix:literal;)*) => {
        /// A rule of the portal that a check applies, with a stable id (for scripts, logs and
        /// bulk reports) and the general fix. The instance's own wording is in
        /// [`Finding::message`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum Rule {
            $($(#[$doc])* $name,)*
        }

        impl Rule {
            /// Every rule, in this order.
            pub const ALL: &'static [Rule] = &[$(Rule::$name,)*];

            /// The stable id, e.g. `attach.link.invalid`.
            pub fn id(self) -> &'static str {
                match self { $(Rule::$name => $id,)* }
            }

            /// The general fix, one phrase.
            pub fn fix(self) -> &'static str {
                match self { $(Rule::$name => $fix,)* }
            }
        }
    };
}

rules! {
    /// `ATTACH` is a string that is not JSON.
    NotJson = "attach.not-json", fix: "pass a list of blocks such as [{\"MESSAGE\": \"text\"}]";
    /// `ATTACH` or `BLOCKS` is neither a list nor an object.
    NotAList = "attach.not-a-list", fix: "pass a list of blocks such as [{\"MESSAGE\": \"text\"}]";
    /// A bare single block instead of a list of blocks.
    BareBlock = "attach.bare-block", fix: "wrap the block in [ ]";
    /// An object whose keys the portal ignores, reading only its values as blocks.
    ObjectKeys = "attach.object-keys", fix: "use a list [ … ]";
    /// A misspelled `BLOCKS` key.
    BlocksKey = "attach.blocks-key", fix: "write BLOCKS in capitals";
    /// No block at all.
    Empty = "attach.empty", fix: "add at least one block such as {\"MESSAGE\": \"text\"}";
    /// Every block was dropped.
    NothingLeft = "attach.nothing-left", fix: "fix the blocks reported above";
    /// The stored form is 60,000 characters or more.
    Oversize = "attach.oversize", fix: "shorten the text or send several notifications";
    /// A key the portal does not know.
    UnknownKey = "attach.key.unknown", fix: "use one of the known keys (they are case-sensitive)";
    /// A field that must be text is a list or an object.
    NotText = "attach.value.not-text", fix: "give text";
    /// A size or id that is not a positive whole number.
    NotPositive = "attach.value.not-positive", fix: "give a whole number of 1 or more";
    /// A link that does not start with `http://`, `https://` or `/`.
    LinkInvalid = "attach.link.invalid", fix: "use http://, https:// or /";
    /// A required link is missing.
    LinkMissing = "attach.link.missing", fix: "add LINK (http://, https:// or /)";
    /// A colour that is not `#RGB` or `#RRGGBB`.
    ColorInvalid = "attach.color.invalid", fix: "use #RGB or #RRGGBB";
    /// The attach's own COLOR is invalid; the portal picks a random one.
    ColorRandom = "attach.color.random", fix: "use #RGB, #RRGGBB or TRANSPARENT";
    /// An unknown `COLOR_TOKEN`.
    ColorTokenInvalid = "attach.color-token.invalid", fix: "use primary, secondary, alert or base";
    /// A block that is not an object, or an item that is not one.
    NotAnObject = "attach.block.not-an-object", fix: "give an object such as {\"MESSAGE\": \"text\"}";
    /// A block object without any block key.
    NoBlockKey = "attach.block.no-key", fix: "name the block: USER, LINK, RICH_LINK, MESSAGE, GRID, IMAGE, FILE or DELIMITER";
    /// A second block key in one block object.
    ExtraBlockKey = "attach.block.extra-key", fix: "put each block in its own object";
    /// A block value of the wrong shape (GRID not a list, IMAGE a string…).
    BlockShape = "attach.block.shape", fix: "give the shape the block's docs show";
    /// An empty list of items.
    EmptyBlock = "attach.block.empty", fix: "add an item or remove the block";
    /// A GRID item with neither NAME nor VALUE.
    EmptyItem = "attach.grid.item-empty", fix: "give NAME or VALUE (or DISPLAY LINE)";
    /// A MESSAGE without text.
    MessageEmpty = "attach.message.empty", fix: "give text or remove the block";
    /// A USER, or a LINK to a user or chat, without NAME.
    NameMissing = "attach.name.missing", fix: "add NAME";
    /// A USER with more than one click target.
    TargetIgnored = "attach.user.extra-target", fix: "give one of NETWORK_ID, USER_ID, CHAT_ID, BOT_ID, LINK";
    /// An unknown `AVATAR_TYPE`.
    AvatarTypeInvalid = "attach.user.avatar-type", fix: "use USER, CHAT or BOT";
    /// An unknown GRID `DISPLAY`.
    DisplayInvalid = "attach.grid.display", fix: "use BLOCK, LINE, ROW or TABLE";
    /// A LINK field the portal ignores because HTML is given.
    HtmlOverrides = "attach.link.html-overrides", fix: "remove it, or drop HTML";
    /// A LINK WIDTH or HEIGHT without a valid PREVIEW.
    SizeWithoutPreview = "attach.link.size-without-preview", fix: "add PREVIEW or remove the size";
    /// A Bitrix24 Network id the portal cuts to its letter and leading digits.
    NetworkId = "attach.network-id", fix: "give a letter followed by digits, e.g. n42";
    /// A DELIMITER that is not an object (the docs' own `true` among them).
    DelimiterShape = "attach.delimiter.shape", fix: "use {} or {\"SIZE\": 200, \"COLOR\": \"#c6c6c6\"}";
    /// The recipient is not a user id of 1 or more.
    UserId = "notify.user-id", fix: "give a user id of 1 or more";
    /// The notification has no text.
    MessageRequired = "notify.message.empty", fix: "give the notification a text";
    /// A list of ids is empty or holds an id below 1.
    Ids = "notify.ids", fix: "give ids of 1 or more";
    /// A value out of the portal's range (a page size, a search text too short…).
    OutOfRange = "notify.out-of-range", fix: "give a value in the range named";
    /// A TAG or SUB_TAG sent through a webhook, where the portal drops it.
    WebhookTag = "notify.tag.webhook", fix: "use an OAuth application, or leave the tag out";
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// One finding: where, which rule, how much it costs, and the one line that says what the
/// portal will do and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The parameter it is about: `ATTACH`, `USER_ID`, `MESSAGE`…
    pub field: String,
    /// Path inside the parameter, e.g. `blocks[2].IMAGE.LINK`; empty for the whole value.
    pub path: String,
    /// The rule.
    pub rule: Rule,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, what the portal will do and the fix, one line.
    pub message: String,
    effect: Effect,
    /// Position in the document, so strict refusals list lines in the order written.
    order: usize,
}

/// What the portal does, in a word, for [`Finding::effect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Ignores,
    Drops,
    Refuses,
    RefusesOversize,
    Random,
    Default,
}

impl Finding {
    pub(crate) fn attach(path: String, rule: Rule, kind: IssueKind, message: String) -> Finding {
        let effect = match kind {
            IssueKind::Rejected => Effect::Refuses,
            IssueKind::Oversize => Effect::RefusesOversize,
            IssueKind::Dropped => Effect::Drops,
            IssueKind::Ignored => match rule {
                Rule::ColorRandom => Effect::Random,
                Rule::DelimiterShape | Rule::DisplayInvalid => Effect::Default,
                _ => Effect::Ignores,
            },
        };
        Finding {
            field: "ATTACH".into(),
            path,
            rule,
            severity: kind.severity(),
            message,
            effect,
            order: 0,
        }
    }

    /// A finding about a whole parameter that the portal refuses.
    pub(crate) fn refused(
        field: impl Into<String>,
        rule: Rule,
        message: impl Into<String>,
    ) -> Finding {
        Finding::whole(field.into(), rule, Effect::Refuses, message.into())
    }

    /// A finding about a whole parameter that the portal accepts and ignores.
    pub(crate) fn ignored(
        field: impl Into<String>,
        rule: Rule,
        message: impl Into<String>,
    ) -> Finding {
        Finding::whole(field.into(), rule, Effect::Ignores, message.into())
    }

    fn whole(field: String, rule: Rule, effect: Effect, message: String) -> Finding {
        let severity = match effect {
            Effect::Refuses | Effect::RefusesOversize => Severity::Error,
            _ => Severity::Warning,
        };
        Finding {
            field,
            path: String::new(),
            rule,
            severity,
            message,
            effect,
            order: 0,
        }
    }

    /// What the portal will do, in a few words: `refuses the call (ATTACH_ERROR)`, `drops
    /// the block or item`, `ignores the field`, `replaces it with a random colour`, `uses its
    /// default`.
    pub fn effect(&self) -> &'static str {
        match (self.effect, self.field.as_str()) {
            (Effect::Refuses, "ATTACH") => "refuses the call (ATTACH_ERROR)",
            (Effect::Refuses, _) => "refuses the call",
            (Effect::RefusesOversize, _) => "refuses the call (ATTACH_OVERSIZE)",
            (Effect::Drops, _) => "drops the block or item",
            (Effect::Ignores, _) => "ignores the field",
            (Effect::Random, _) => "replaces it with a random colour",
            (Effect::Default, _) => "uses its default",
        }
    }

    /// The general fix of the rule ([`Rule::fix`]); the message has the instance's own.
    pub fn fix(&self) -> &'static str {
        self.rule.fix()
    }

    /// `FIELD: path: message` (or `FIELD: message` for the whole value), one line.
    pub fn line(&self) -> String {
        if self.path.is_empty() {
            format!("{}: {}", self.field, self.message)
        } else {
            format!("{}: {}: {}", self.field, self.path, self.message)
        }
    }
}

/// `path: message`, as [`Issue`](super::Issue) shows it, and as the lines of an
/// [`Error::InvalidArgument`] for the field read.
impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every finding of a check, split by severity, each list in document order.
///
/// ```
/// use bitrix24::{Attach, Severity};
/// let report = Attach::review_json(&serde_json::json!([{"DELIMITER": true}]));
/// assert!(report.errors.is_empty());
/// assert_eq!(report.warnings[0].rule.id(), "attach.delimiter.shape");
/// assert_eq!(report.warnings[0].severity, Severity::Warning);
/// assert!(report.clone().into_result(false).is_ok(), "sent: the portal draws a default line");
/// assert!(report.into_result(true).is_err(), "strict: refused");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// What the portal would refuse, or what cannot be sent.
    pub errors: Vec<Finding>,
    /// What the portal accepts but drops or changes.
    pub warnings: Vec<Finding>,
    pub(crate) stored: Option<Value>,
    pub(crate) measured: Option<usize>,
}

impl Report {
    /// Sorts findings into errors and warnings.
    pub fn from_findings(findings: impl IntoIterator<Item = Finding>) -> Report {
        let mut report = Report::default();
        report.extend(findings);
        report
    }

    pub(crate) fn extend(&mut self, findings: impl IntoIterator<Item = Finding>) {
        let start = self.errors.len() + self.warnings.len();
        for (i, mut f) in findings.into_iter().enumerate() {
            f.order = start + i;
            match f.severity {
                Severity::Error => self.errors.push(f),
                Severity::Warning => self.warnings.push(f),
            }
        }
    }

    /// Adds another report's findings (for example an attach's to a notification's).
    pub fn merge(&mut self, other: Report) {
        let mut others: Vec<Finding> = other.errors.into_iter().chain(other.warnings).collect();
        others.sort_by_key(|f| f.order);
        self.extend(others);
        if self.stored.is_none() {
            self.stored = other.stored;
            self.measured = other.measured;
        }
    }

    /// No finding at all.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.warnings.is_empty()
    }

    /// At least one error.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Whether the call would be refused before sending: with errors, or in strict mode with
    /// warnings too.
    pub fn refuses(&self, strict: bool) -> bool {
        self.has_errors() || (strict && !self.warnings.is_empty())
    }

    /// Errors then warnings (each in document order).
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.errors.iter().chain(&self.warnings)
    }

    /// The attach as the portal would store it, when this report checked one that it stores.
    pub fn stored(&self) -> Option<&Value> {
        self.stored.as_ref()
    }

    /// The stored attach's length as the portal measures it against the 60,000 limit.
    pub fn measured_len(&self) -> Option<usize> {
        self.measured
    }

    /// `Ok(self)` (warnings kept, for the caller to show) when nothing refuses the call;
    /// otherwise one [`Error::InvalidArgument`] naming the first refused field, with one line
    /// per refusing finding of that field, in document order. `strict` refuses warnings too.
    pub fn into_result(self, strict: bool) -> Result<Report, Error> {
        if !self.refuses(strict) {
            return Ok(self);
        }
        let mut refusing: Vec<&Finding> = if strict {
            self.findings().collect()
        } else {
            self.errors.iter().collect()
        };
        refusing.sort_by_key(|f| f.order);
        let field = refusing[0].field.clone();
        let lines: Vec<String> = refusing
            .iter()
            .filter(|f| f.field == field)
            .map(|f| f.to_string())
            .collect();
        Err(Error::invalid(field, lines.join("\n")))
    }
}
