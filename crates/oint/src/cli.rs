//! Stage one of argument parsing: the raw flags, exactly as OPI's `oint` names them.
//!
//! Everything here is declarative so that `--help` and the parser can never disagree. Values
//! stay strings; [`crate::resolve`] checks and converts them, so that every mistake gets a
//! one-line message naming the flag.

use clap::{Args, Parser, Subcommand};

pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the portal answered with an error (its JSON is still printed), or the network failed
  2  usage or validation error, reported before anything is sent
  4  authentication or authorization error (NO_AUTH_FOUND, INVALID_CREDENTIALS, expired_token, ...)";

const TOP_EXAMPLES: &str = "\
Examples:
  oint bitrix24 CreatePersonalNotification --url sandbox --user 1 --text Hello
  oint sandbox list
  export BITRIX24_URL=https://portal.bitrix24.com/rest/1/SECRET/
  oint bitrix24 CreateSystemNotification --user 10 --text \"Disk full\"
  oint bitrix24 CreatePersonalNotification --help";

#[derive(Debug, Parser)]
#[command(
    name = "oint",
    version,
    about = "Bitrix24 notifications from the command line, compatible with OpenIntegrations' oint",
    after_help = format!("{TOP_EXAMPLES}\n\n{EXIT_CODES}"),
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub library: Option<Library>,
}

#[derive(Debug, Subcommand)]
pub enum Library {
    /// Bitrix24 methods, with OPI's names and options
    #[command(name = "bitrix24", disable_help_subcommand = true)]
    Bitrix24(Bitrix24),
    /// Inspect or clear the local sandbox portal used by --url sandbox
    #[command(name = "sandbox", disable_help_subcommand = true)]
    Sandbox(SandboxArgs),
}

#[derive(Debug, Args)]
pub struct Bitrix24 {
    #[command(subcommand)]
    pub method: Option<Method>,
}

/// OPI's method names. Matching is case-insensitive (see [`canonical_method`]).
#[derive(Debug, Subcommand)]
pub enum Method {
    /// Create a personal notification (im.notify.personal.add)
    #[command(name = "CreatePersonalNotification", after_help = personal_help())]
    CreatePersonalNotification(NotificationFlags),
    /// Create a system notification (im.notify.system.add)
    #[command(name = "CreateSystemNotification", after_help = system_help())]
    CreateSystemNotification(NotificationFlags),
    /// Delete a notification by its ID (im.notify.delete)
    #[command(name = "DeleteNotification", after_help = delete_help())]
    DeleteNotification(DeleteFlags),
    /// Make a picture block for --blocks (local, sends nothing)
    #[command(name = "GetPictureBlock", after_help = picture_help())]
    GetPictureBlock(BlockFlags),
    /// Make a file block for --blocks (local, sends nothing)
    #[command(name = "GetFileBlock", after_help = file_help())]
    GetFileBlock(BlockFlags),
}

/// The regions `oint bitrix24` lists, as OPI groups them.
pub const REGIONS: &[(&str, &[(&str, &str)])] = &[
    (
        "Notifications",
        &[
            (
                "CreatePersonalNotification",
                "Create a personal notification",
            ),
            ("CreateSystemNotification", "Create a system notification"),
            ("DeleteNotification", "Delete a notification by ID"),
        ],
    ),
    (
        "Messages",
        &[
            ("GetPictureBlock", "Make a picture attachment block"),
            ("GetFileBlock", "Make a file attachment block"),
        ],
    ),
];

/// Maps any spelling of a method name to OPI's, so that `createpersonalnotification` works.
pub fn canonical_method(name: &str) -> Option<&'static str> {
    REGIONS
        .iter()
        .flat_map(|(_, methods)| methods.iter())
        .map(|(m, _)| *m)
        .find(|m| m.eq_ignore_ascii_case(name))
}

/// Options every OPI method has.
#[derive(Debug, Args, Clone, Default)]
pub struct CommonFlags {
    /// Show the parsed options and what is sent and received (secrets masked)
    #[arg(long)]
    pub debug: bool,
    /// Print the request that would be sent (secrets masked) and send nothing
    #[arg(long)]
    pub test: bool,
    /// Write the result to this file instead of standard output
    #[arg(long, value_name = "PATH")]
    pub out: Option<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct NotificationFlags {
    /// Webhook URL (https://PORTAL/rest/USER_ID/SECRET/), portal domain with --token, or "sandbox"
    #[arg(long, value_name = "URL", env = "BITRIX24_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// ID of the user to notify
    #[arg(long, value_name = "ID")]
    pub user: Option<String>,
    /// Notification text (BB-codes allowed; \n becomes a new line)
    #[arg(long, value_name = "TEXT")]
    pub text: Option<String>,
    /// Uniqueness tag: a newer notification with the same tag replaces the old one (OAuth apps only)
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Attachment blocks: a JSON array, OPI's single-quoted form, or a path to a .json file
    #[arg(long, value_name = "JSON|FILE")]
    pub blocks: Option<String>,
    /// OAuth access token, when --url is a portal domain
    #[arg(
        long,
        value_name = "TOKEN",
        env = "BITRIX24_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    #[command(flatten)]
    pub common: CommonFlags,
}

#[derive(Debug, Args, Clone, Default)]
pub struct DeleteFlags {
    /// Webhook URL (https://PORTAL/rest/USER_ID/SECRET/), portal domain with --token, or "sandbox"
    #[arg(long, value_name = "URL", env = "BITRIX24_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// ID of the notification to delete
    #[arg(long, value_name = "ID")]
    pub notif: Option<String>,
    /// OAuth access token, when --url is a portal domain
    #[arg(
        long,
        value_name = "TOKEN",
        env = "BITRIX24_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    #[command(flatten)]
    pub common: CommonFlags,
}

#[derive(Debug, Args, Clone, Default)]
pub struct BlockFlags {
    /// Name shown for the picture or file
    #[arg(long, value_name = "NAME")]
    pub title: Option<String>,
    /// Link to the picture or file (http://, https:// or a portal path starting with /)
    #[arg(long, value_name = "LINK")]
    pub url: Option<String>,
    #[command(flatten)]
    pub common: CommonFlags,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    #[command(subcommand)]
    pub action: SandboxAction,
}

#[derive(Debug, Subcommand)]
pub enum SandboxAction {
    /// Print every notification stored in the sandbox, as JSON
    List,
    /// Delete every notification stored in the sandbox
    Reset,
    /// Print where the sandbox keeps its state
    Path,
}

fn personal_help() -> String {
    format!(
        "Examples:\n  oint bitrix24 CreatePersonalNotification --url sandbox --user 1 --text \"Hello\"\n  \
         oint bitrix24 CreatePersonalNotification --url \"https://b24-ar17wx.bitrix24.by/rest/1/SECRET/\" --user 1 --text \"Message text\" \\\n    \
         --blocks \"[{{'IMAGE':{{'NAME':'Image1','LINK':'https://example.com/picture.jpg'}}}}]\"\n  \
         oint bitrix24 CreatePersonalNotification --url b24-ar17wx.bitrix24.by --token \"$TOKEN\" --user 10 --text \"Message text\" --tag New\n\n\
         --url and --token may come from BITRIX24_URL and BITRIX24_TOKEN instead.\n\n{EXIT_CODES}"
    )
}

fn system_help() -> String {
    personal_help().replace("CreatePersonalNotification", "CreateSystemNotification")
}

fn delete_help() -> String {
    format!(
        "Examples:\n  oint bitrix24 DeleteNotification --url \"https://b24-ar17wx.bitrix24.by/rest/1/SECRET/\" --notif 7450\n\n\
         The portal deletes only notifications in the caller's own notifications; otherwise it answers false (exit 1).\n\n{EXIT_CODES}"
    )
}

fn picture_help() -> String {
    "Example:\n  oint bitrix24 GetPictureBlock --title Image1 --url https://example.com/picture.jpg"
        .into()
}

fn file_help() -> String {
    "Example:\n  oint bitrix24 GetFileBlock --title File1.docx --url https://example.com/document.docx".into()
}
