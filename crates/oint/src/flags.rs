//! Stage one of argument parsing: the raw flags, exactly as OPI's `oint` names them.
//!
//! Everything here is declarative so that `--help` and the parser can never disagree. Values
//! stay strings where OPI takes strings; the settings and the command families check and
//! convert them, so that every mistake gets a one-line message naming the flag. A leaf: it
//! uses nothing of the crate but the ranges its number flags are parsed into.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the portal answered with an error (its JSON is still printed), or the network failed,
     or the answer could not be written to standard output (the request was sent)
  2  usage or validation error, reported before anything is sent
  3  oint notify bulk: some rows were delivered, not all
  4  authentication or authorization error (NO_AUTH_FOUND, INVALID_CREDENTIALS, expired_token, ...),
     or the OAuth server refused to refresh the access token (invalid_grant, invalid_client)
  5  outcome unknown: a write may or may not have taken effect, and was not resent to avoid a duplicate";

const NOTIFY_EXAMPLES: &str = "\
Examples:
  oint notify send --url sandbox --user 1 --text \"Build #42 passed\"
  oint notify send --user 10 --text \"Disk 91% full\" --system --tag disk-alert --sub-tag host-7
  oint notify send --user 10 --text Deployed --image chart=https://ci.example.com/c.png
  oint notify list --all --json
  oint notify read --all
  oint notify delete --tag disk-alert

Connection: --url/--token, else BITRIX24_URL/BITRIX24_TOKEN, else the config file's portal
(--portal NAME, OINT_PORTAL or default_portal in ~/.config/oint/config.toml or $OINT_CONFIG).

OAuth applications: with BITRIX24_CLIENT_ID, BITRIX24_CLIENT_SECRET and BITRIX24_REFRESH_TOKEN
(or client_id, client_secret[_file] and refresh_token in the config file) oint refreshes the
access token itself and keeps it in BITRIX24_TOKEN_STORE (default: a file under the data
directory); --token is then optional. BITRIX24_OAUTH_URL sets the token endpoint.";

const CALL_EXAMPLES: &str = "\
Examples:
  oint call server.time
  oint call im.notify.system.add USER_ID=10 MESSAGE=\"Disk full\" 'ATTACH[0][MESSAGE]=see /var/log'
  oint call im.notify.get --params '{\"LIMIT\": 5}'
  oint call im.notify.personal.add --params @notification.json

key=value pairs are sent as strings; key[sub]=v and key[]=v nest as in Bitrix24's PHP syntax.
--params (JSON, or @FILE) is read first, then key=value pairs are laid over it.";

#[cfg(feature = "serve")]
const SERVE_EXAMPLES: &str = "\
Examples:
  oint serve --url sandbox --route ops=1
  oint serve --portal work --listen 127.0.0.1:9380 --route ops=1,10
  curl -d '{\"user\": 1, \"text\": \"Backup done\"}' http://127.0.0.1:9380/notify
  OINT_SERVE_TOKEN=$(cat /etc/oint/relay.token) oint serve --listen 0.0.0.0:9380 --route ops=10
  oint serve --portal work --queue redis://10.0.0.5:6379/0 --route ops=10   # on each relay host

Endpoints: POST /notify ({\"user\" | \"users\", \"text\", \"tag\", \"sub_tag\", \"attach\",
\"system\", \"markdown\"}: the fields of a notify bulk row), POST /alertmanager/ROUTE (an
Alertmanager webhook receiver), POST /grafana/ROUTE (a Grafana webhook contact point),
GET /healthz, GET /metrics, GET /queue, POST /queue/requeue and POST /queue/purge
({\"ids\": […]} or {\"all\": true}: dead letters back to the queue, or deleted). An accepted
notification is answered 202 with its id once it is synced to the queue; it is delivered in
batches of 50 at the portal's pace, shared with every oint process on this machine. SIGTERM
stops accepting, finishes the batches in flight and exits 0 (a second SIGTERM exits 1 at once);
after kill -9 the next start resumes the queue (with a Redis queue, another relay takes over
within seconds).";

const SEND_EXAMPLES: &str = "\
Examples:
  oint notify send --url sandbox --user 1 --text \"Build #42 passed\"
  oint notify send --user 10 --text \"Disk 91% full\" --system --tag disk-alert --sub-tag host-7
  oint notify send --user 10 --text Deployed --image chart=https://ci.example.com/c.png --color #29619b
  oint notify send --user 10 --text Report --attach report-blocks.json
  df -h | oint notify send --user 10 --text -
  oint notify send --user 10 --markdown --text \"**Deploy failed**: see [the log](https://ci.example.com/42)\"";

const BITRIX24_EXAMPLES: &str = "\
Examples:
  oint bitrix24
  oint bitrix24 CreatePersonalNotification --url sandbox --user 1 --text Hello
  oint bitrix24 GetPictureBlock --title Chart --url https://example.com/chart.png";

const SANDBOX_EXAMPLES: &str = "\
Examples:
  oint notify send --url sandbox --user 1 --text Hello
  oint sandbox list
  oint sandbox reset";

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
    about = "Bitrix24 notifications from the command line",
    version,
    long_about = "Bitrix24 notifications from the command line: OpenIntegrations-compatible \
                  `oint bitrix24 …` commands, and a modern `oint notify …` grammar.",
    after_help = format!("{TOP_EXAMPLES}\n\n{EXIT_CODES}"),
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub limits: LimitFlags,
    #[command(flatten)]
    pub checks: CheckFlags,
}

/// How strict the checks made before sending are; every command takes these.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Checks")]
pub struct CheckFlags {
    /// Refuse warnings too (exit 2, nothing sent): an attachment part the portal would drop or
    /// change, or a tag over a webhook. Without it each warning is one `warning: …` line on
    /// stderr and the notification is sent. Also OINT_STRICT=1, and `strict = true` in the
    /// config file (top level, or for notify and call the portal used); errors, which the
    /// portal would refuse, are always refused
    #[arg(long, global = true)]
    pub strict: bool,
}

/// How hard to drive the portal; every command takes these.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Limits")]
pub struct LimitFlags {
    /// Your portal's rate limit: standard (2 requests/s, burst 50) or enterprise (5/s, 250)
    #[arg(long, global = true, value_name = "PLAN")]
    pub plan: Option<String>,
    /// Override the plan's drain rate, in requests per second (0.0001 to 10000)
    #[arg(long, global = true, value_name = "R", value_parser = crate::ranges::parse_rate)]
    pub rate: Option<f64>,
    /// Override the plan's burst, in requests (1 to 100000)
    #[arg(long, global = true, value_name = "B", value_parser = crate::ranges::parse_burst)]
    pub burst: Option<f64>,
    /// Seconds to wait for a connection, 0.001 to 3600 [default: 10]
    #[arg(long, global = true, value_name = "SECONDS", value_parser = crate::ranges::parse_connect_timeout)]
    pub connect_timeout: Option<f64>,
    /// Seconds to wait for each answer, 0.001 to 86400 [default: 65]
    #[arg(long, global = true, value_name = "SECONDS", value_parser = crate::ranges::parse_timeout)]
    pub timeout: Option<f64>,
    /// Attempts per request, the first included, 1 to 100, for every failure that may be
    /// retried (QUERY_LIMIT_EXCEEDED too); retries also stop 180 s after the first attempt
    /// [default: 6]
    #[arg(long, global = true, value_name = "N", value_parser = crate::ranges::parse_attempts)]
    pub attempts: Option<u32>,
    /// Seconds of server time the portal lets each method use per 10 minutes, 0.001 to 100000
    /// [default: 480, the cloud's]; a method that nears it pauses until the portal resets it,
    /// on every host sharing --limit-store
    #[arg(long, global = true, value_name = "SECONDS", value_parser = crate::ranges::parse_operating_budget)]
    pub operating_budget: Option<f64>,
    /// Share the rate-limit bucket, and an OAuth application's tokens and refresh lock,
    /// between machines through Redis: redis://HOST:PORT/DB or rediss:// (TLS). The password may be in the URL or in OINT_LIMIT_STORE_PASSWORD /
    /// OINT_LIMIT_STORE_PASSWORD_FILE; it is never printed. Also OINT_LIMIT_STORE, and
    /// `limit_store` in the config file (top level or a portal). Unreachable at start: exit 1
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "OINT_LIMIT_STORE",
        hide_env_values = true
    )]
    pub limit_store: Option<String>,
    /// When the limit store is unreachable at start: `local` paces with this machine's
    /// bucket instead of failing, with a warning
    #[arg(long, global = true, value_name = "MODE", value_parser = ["local"])]
    pub limit_store_fallback: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bitrix24 methods, with OPI's names and options
    #[command(name = "bitrix24", disable_help_subcommand = true, after_help = BITRIX24_EXAMPLES)]
    Bitrix24(Bitrix24),
    /// Inspect or clear the local sandbox portal used by --url sandbox
    #[command(name = "sandbox", disable_help_subcommand = true, after_help = SANDBOX_EXAMPLES)]
    Sandbox(SandboxArgs),
    /// Send, list, read, answer and delete notifications
    #[command(disable_help_subcommand = true, after_help = NOTIFY_EXAMPLES)]
    Notify(NotifyArgs),
    /// Call any Bitrix24 method with the same auth and error handling
    #[command(after_help = CALL_EXAMPLES)]
    Call(CallArgs),
    /// Run a relay: accept notifications and alerts over HTTP, queue them durably, deliver
    /// them at the portal's pace
    #[cfg(feature = "serve")]
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Print a shell completion script: oint completions bash > /etc/bash_completion.d/oint
    #[command(
        after_help = "Examples:\n  oint completions bash > /etc/bash_completion.d/oint\n  oint completions zsh > \"${fpath[1]}/_oint\"\n  oint completions fish > ~/.config/fish/completions/oint.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): oint man | man -l -
    #[command(
        after_help = "Examples:\n  oint man | man -l -\n  oint man > /usr/local/share/man/man1/oint.1"
    )]
    Man,
}

/// How the modern commands print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// JSON on one or more lines, for scripts
    Json,
    /// Tab-separated values, one record a line
    Plain,
    /// An aligned table, for people
    Table,
}

/// Where to send and how to print, shared by the modern commands. Its `Debug` masks the URL
/// (a webhook's holds its secret) and the token.
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "Connection and output")]
pub struct Connection {
    /// Portal from the config file ([portals.NAME])
    #[arg(long, global = true, value_name = "NAME")]
    pub portal: Option<String>,
    /// Webhook URL, portal domain (with a token), or "sandbox" [env: BITRIX24_URL]
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// OAuth access token; prefer --token-file or BITRIX24_TOKEN [env: BITRIX24_TOKEN]; optional
    /// with BITRIX24_CLIENT_ID/BITRIX24_CLIENT_SECRET set (see OAuth applications below)
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read the OAuth access token from this file (must not be readable by others)
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Read the OAuth access token from the first line of standard input
    #[arg(long, global = true)]
    pub token_stdin: bool,
    /// Output format [default: table on a terminal, json otherwise]
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
    /// Same as --output json
    #[arg(long, global = true)]
    pub json: bool,
    /// Show what is sent and received on stderr (secrets masked)
    #[arg(long, global = true)]
    pub debug: bool,
    /// Print the request that would be sent (secrets masked) and send nothing; several
    /// batches (notify send to more than 50 users) print as a list
    #[arg(long, global = true)]
    pub dry_run: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |v: &Option<String>| v.as_ref().map(|_| bitrix24::MASK);
        f.debug_struct("Connection")
            .field("portal", &self.portal)
            .field("url", &masked(&self.url))
            .field("token", &masked(&self.token))
            .field("token_file", &self.token_file)
            .field("token_stdin", &self.token_stdin)
            .field("output", &self.output)
            .field("json", &self.json)
            .field("debug", &self.debug)
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

#[derive(Debug, Args)]
pub struct NotifyArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub action: NotifyAction,
}

#[derive(Debug, Subcommand)]
pub enum NotifyAction {
    /// Send a notification (im.notify.personal.add, or im.notify.system.add with --system)
    #[command(after_help = SEND_EXAMPLES)]
    Send(SendFlags),
    /// Delete notifications by id, tag or sub-tag (im.notify.delete)
    #[command(
        after_help = "Examples:\n  oint notify delete --id 7450\n  oint notify delete --tag disk-alert          # OAuth app: every user's\n  oint notify delete --sub-tag host-7 --client-id app.123   # over a webhook"
    )]
    Delete(DeleteByFlags),
    /// Mark notifications read or unread (im.notify.read, read.list, read.all)
    #[command(
        after_help = "Examples:\n  oint notify read --all\n  oint notify read --ids 7450,7451\n  oint notify read --id 7450 --only-current --unread"
    )]
    Read(ReadFlags),
    /// Answer a notification with text (im.notify.answer)
    #[command(after_help = "Examples:\n  oint notify answer --id 7450 --text \"On it\"")]
    Answer(AnswerFlags),
    /// Press a button of a confirmation notification (im.notify.confirm)
    #[command(after_help = "Examples:\n  oint notify confirm --id 7450 --value Y")]
    Confirm(ConfirmFlags),
    /// List your notifications, newest first (im.notify.get)
    #[command(
        after_help = "Examples:\n  oint notify list\n  oint notify list --all --json | jq '.[] | select(.read == false) | .id'\n  oint notify list --limit 10 --output plain"
    )]
    List(ListFlags),
    /// Search your notifications by text (im.notify.history.search)
    #[command(
        after_help = "Examples:\n  oint notify search backup\n  oint notify search \"disk full\" --limit 5 --json"
    )]
    Search(SearchFlags),
    /// Send many notifications from a JSON Lines or CSV file, in batches, resumably
    #[command(after_help = BULK_HELP)]
    Bulk(BulkFlags),
}

const BULK_HELP: &str = "\
Rows (JSON Lines, one object a line; or CSV with a header line):
  {\"user\": 10, \"text\": \"Payslip ready\", \"tag\": \"payslip-10\", \"sub_tag\": \"hr\", \"system\": true, \"markdown\": false, \"attach\": [...]}
  user,text,tag,sub_tag,system,attach,markdown     (markdown: true converts the row's text to BB-codes)

Every row is checked first: if any is bad, each is reported as 'line N: ...' and nothing is sent
(exit 2), unless --skip-invalid. Exit 0 when every row was delivered, 3 when some were, and
when none were: 4 if the credentials were refused, 5 if every outcome is unknown, else 1. With --journal, a run that was stopped (even kill -9) can be run again: delivered and
refused rows are skipped; rows whose fate is unknown are resent only when a tag from an OAuth
app makes that safe, and reported otherwise. A batch is journaled as sending only when it takes
its rate-limit slot, so rows still waiting for it are simply sent by the next run.
--report and --journal must not be the input or each other (exit 2), and are never written
through a symbolic link (O_NOFOLLOW). A row over 1 MiB is an invalid row.

Examples:
  oint notify bulk --input reminders.jsonl --report report.jsonl --journal reminders.journal
  psql -c \"copy (select id as user, 'Timesheet due' as text from staff) to stdout csv header\" |
    oint notify bulk --input - --format csv";

/// `--format` of `notify bulk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// One JSON object a line: {"user": 10, "text": "…", "tag": "…", "system": false, "attach": […]}
    Jsonl,
    /// A header line with the column names (user,text,tag,sub_tag,system,attach), then one row a line
    Csv,
}

/// The most standard input `notify bulk --input -` spools by default, in MiB.
pub const DEFAULT_STDIN_LIMIT_MIB: u64 = 1024;

#[derive(Debug, Args, Clone)]
pub struct BulkFlags {
    /// Input file, or - for standard input
    #[arg(long, value_name = "FILE|-")]
    pub input: String,
    /// Input format [default: csv for *.csv, else jsonl]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<InputFormat>,
    /// Send the valid rows even if some rows are invalid
    #[arg(long)]
    pub skip_invalid: bool,
    /// Write one JSON line per row: its id, its error, or outcome_unknown
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Record each batch's outcome here, durably, so that a stopped run can resume
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Batches in flight at once
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub concurrency: u64,
    /// With --input -: the most standard input spooled to an unnamed temporary file (in
    /// TMPDIR, removed when oint ends), in MiB; longer input is refused (exit 2)
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_STDIN_LIMIT_MIB, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub stdin_limit: u64,
}

#[derive(Debug, Args, Clone)]
pub struct SendFlags {
    /// Recipient's user ID; several, comma-separated, get one notification each, sent in
    /// batches of 50, with one result per user (exit 3 when only some were delivered)
    #[arg(long, value_name = "ID", required = true, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..))]
    pub user: Vec<u64>,
    /// Notification text (BB-codes allowed), or - to read it from standard input
    #[arg(long, value_name = "TEXT")]
    pub text: String,
    /// The text is Markdown: bold, italic, strike, code, links, lists, headings and quotes
    /// become the BB-codes the portal renders
    #[arg(long)]
    pub markdown: bool,
    /// Send as a system notification, with no author
    #[arg(long)]
    pub system: bool,
    /// Uniqueness tag: a newer notification with the same tag replaces the old one (OAuth apps only)
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Secondary tag, for deleting groups of notifications (OAuth apps only)
    #[arg(long, value_name = "TAG")]
    pub sub_tag: Option<String>,
    /// Text for e-mail and other external channels
    #[arg(long, value_name = "TEXT")]
    pub message_out: Option<String>,
    /// Attachment: JSON (list of blocks or full form), OPI's single-quoted form, a file path, or
    /// an https:// URL to download it from (http:// only for loopback; at most 1 MiB, 10 s)
    #[arg(long, value_name = "FILE|JSON|URL")]
    pub attach: Option<String>,
    /// Add a picture block (repeatable)
    #[arg(long, value_name = "NAME=URL")]
    pub image: Vec<String>,
    /// Add a file block (repeatable)
    #[arg(long, value_name = "NAME=URL")]
    pub file: Vec<String>,
    /// Colour of the attachment's stripe, e.g. #29619b
    #[arg(long, value_name = "#HEX")]
    pub color: Option<String>,
    /// OAuth application's client id, sent as CLIENT_ID (the docs say webhooks need it for tags)
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct DeleteByFlags {
    #[command(flatten)]
    pub target: DeleteTargetFlags,
    /// The application whose tags to delete; required for --tag/--sub-tag over a webhook
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
}

/// Exactly one of these.
#[derive(Debug, Args, Clone)]
#[group(required = true, multiple = false)]
pub struct DeleteTargetFlags {
    /// Delete this notification (only your own notifications can be deleted by id)
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub id: Option<u64>,
    /// Delete every notification with this tag, for all users
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Delete every notification with this sub-tag, for all users
    #[arg(long, value_name = "TAG")]
    pub sub_tag: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct ReadFlags {
    #[command(flatten)]
    pub target: ReadTargetFlags,
    /// Mark unread instead of read (not with --all)
    #[arg(long, conflicts_with = "all")]
    pub unread: bool,
    /// With --id: only that notification
    #[arg(long, requires = "id", conflicts_with_all = ["all", "ids"])]
    pub only_current: bool,
}

/// Exactly one of these.
#[derive(Debug, Args, Clone)]
#[group(required = true, multiple = false)]
pub struct ReadTargetFlags {
    /// This notification and every newer one (with --only-current: just this one)
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub id: Option<u64>,
    /// These notifications, comma-separated
    #[arg(long, value_name = "ID,ID,…", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..))]
    pub ids: Vec<u64>,
    /// All of your notifications
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args, Clone)]
pub struct AnswerFlags {
    /// Notification to answer
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub id: u64,
    /// The answer
    #[arg(long, value_name = "TEXT")]
    pub text: String,
}

#[derive(Debug, Args, Clone)]
pub struct ConfirmFlags {
    /// Confirmation notification
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub id: u64,
    /// Value of the button to press, e.g. Y or N
    #[arg(long, value_name = "VALUE")]
    pub value: String,
}

#[derive(Debug, Args, Clone)]
pub struct ListFlags {
    /// Notifications per page (1–50)
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub limit: u32,
    /// Every page, not just the first
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args, Clone)]
pub struct SearchFlags {
    /// Text to look for (at least 3 characters)
    #[arg(value_name = "TEXT")]
    pub text: String,
    /// Results per page (1–50)
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Bitrix24 method, e.g. im.notify.get or server.time
    #[arg(value_name = "METHOD")]
    pub method: String,
    // Written as `help` rather than a doc comment: rustdoc would read the brackets as links.
    #[arg(
        value_name = "KEY=VALUE",
        help = "Parameters as key=value; key[sub]=value and key[]=value nest"
    )]
    pub params: Vec<String>,
    /// Parameters as a JSON object, or @FILE to read one from a file
    #[arg(long = "params", value_name = "JSON|@FILE")]
    pub params_json: Option<String>,
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
    /// Print the request that would be sent (secrets masked) and send nothing; several
    /// batches (notify send to more than 50 users) print as a list
    #[arg(long)]
    pub test: bool,
    /// Write the result to this file instead of standard output (checked before sending)
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
    /// Attachment blocks: a JSON array, OPI's single-quoted form, a path to a .json file, or an
    /// https:// URL to download them from (http:// only for loopback; at most 1 MiB, 10 s)
    #[arg(long, value_name = "JSON|FILE|URL")]
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

/// `oint serve`'s own flags; the connection flags are the modern commands'.
#[cfg(feature = "serve")]
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Address to listen on; anything but loopback needs a token (--auth-token-file)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9380")]
    pub listen: String,
    /// The queue's SQLite file [default: DATA_DIR/oint/serve/PORTAL.sqlite3], or
    /// redis://HOST:PORT/DB (rediss:// for TLS) for a queue several relays share (password
    /// in the URL or OINT_LIMIT_STORE_PASSWORD / OINT_LIMIT_STORE_PASSWORD_FILE)
    #[arg(long, value_name = "FILE|URL")]
    pub queue: Option<PathBuf>,
    /// Pending notifications the queue holds at most; beyond it, 503 with Retry-After
    #[arg(long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub queue_limit: u64,
    /// An alert route: /alertmanager/NAME and /grafana/NAME notify these users (repeatable;
    /// routes with templates go in the config file, [serve.routes.NAME])
    #[arg(long = "route", value_name = "NAME=USER[,USER…]")]
    pub routes: Vec<String>,
    /// File holding the bearer token clients must send (must not be readable by others);
    /// also OINT_SERVE_TOKEN
    #[arg(long, value_name = "PATH")]
    pub auth_token_file: Option<PathBuf>,
    /// Batch requests in flight at once (1 to 16)
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    pub concurrency: u32,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    #[command(subcommand)]
    pub action: SandboxAction,
}

#[derive(Debug, Subcommand)]
pub enum SandboxAction {
    /// Print every notification stored in the sandbox, as JSON
    #[command(
        after_help = "Examples:\n  oint sandbox list\n  oint sandbox list | jq '.[-1].message'"
    )]
    List,
    /// Delete every notification stored in the sandbox
    #[command(after_help = "Examples:\n  oint sandbox reset")]
    Reset,
    /// Print where the sandbox keeps its state
    #[command(
        after_help = "Examples:\n  oint sandbox path\n  OINT_SANDBOX_DATA=/tmp/sb.sqlite3 oint sandbox path"
    )]
    Path,
    /// Serve the sandbox portal (REST API and the web inbox at /) until Ctrl-C or SIGTERM;
    /// the first line printed is "listening on http://ADDR"
    #[command(
        after_help = "Examples:\n  oint sandbox serve\n  oint sandbox serve --listen 127.0.0.1:8024"
    )]
    Serve {
        /// Loopback address to listen on (port 0: any free port)
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
}

fn personal_help() -> String {
    format!(
        "Examples:\n  oint bitrix24 CreatePersonalNotification --url sandbox --user 1 --text \"Hello\"\n  \
         oint bitrix24 CreatePersonalNotification --url \"https://b24-ar17wx.bitrix24.by/rest/1/SECRET/\" --user 1 --text \"Message text\" \\\n    \
         --blocks \"[{{'IMAGE':{{'NAME':'Image1','LINK':'https://example.com/picture.jpg'}}}}]\"\n  \
         oint bitrix24 CreatePersonalNotification --url b24-ar17wx.bitrix24.by --token \"$TOKEN\" --user 10 --text \"Message text\" --tag New\n\n\
         --url and --token may come from BITRIX24_URL and BITRIX24_TOKEN instead. With BITRIX24_CLIENT_ID, BITRIX24_CLIENT_SECRET \
         and BITRIX24_REFRESH_TOKEN set, --token is optional: oint refreshes the access token and keeps it in BITRIX24_TOKEN_STORE.\n\n{EXIT_CODES}"
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

#[cfg(test)]
mod tests {
    //! Parsing only: which argument lists the grammar accepts and what they mean. Running the
    //! commands is tested end to end in `tests/`.
    use super::*;

    fn parse(args: &str) -> Result<Cli, clap::error::ErrorKind> {
        Cli::try_parse_from(std::iter::once("oint").chain(args.split_whitespace()))
            .map_err(|e| e.kind())
    }

    #[test]
    fn modern_grammar_table() {
        use clap::error::ErrorKind::*;
        let ok = [
            "notify send --user 10 --text hi",
            "notify send --user 10 --text hi --system --tag t --sub-tag s --image a=/b --image c=/d --file f=/g --color #fff",
            "notify --url sandbox send --user 1 --text hi",
            "notify send --user 1 --text hi --url sandbox --json --dry-run --debug",
            "notify delete --id 5",
            "notify delete --tag t --client-id app",
            "notify read --ids 1,2,3 --unread",
            "notify read --id 4 --only-current",
            "notify read --all",
            "notify answer --id 4 --text ok",
            "notify confirm --id 4 --value Y",
            "notify list --all --limit 20 --output plain",
            "notify search host-7 --limit 5",
            "call server.time",
            "call im.notify.get LIMIT=5 --params {}",
            "--plan enterprise notify list",
            "notify list --rate 20 --burst 10 --attempts 2 --timeout 5",
            "completions zsh",
            "man",
        ];
        for args in ok {
            assert!(parse(args).is_ok(), "{args}: {:?}", parse(args).err());
        }
        let bad = [
            ("notify send --user 0 --text hi", ValueValidation),
            ("notify send --user ten --text hi", ValueValidation),
            ("notify send --text hi", MissingRequiredArgument),
            ("notify delete", MissingRequiredArgument),
            ("notify delete --id 1 --tag t", ArgumentConflict),
            ("notify read --all --unread", ArgumentConflict),
            ("notify read --only-current --all", ArgumentConflict),
            ("notify read --only-current --ids 1", ArgumentConflict),
            ("notify list --limit 51", ValueValidation),
            ("notify list --output yaml", InvalidValue),
            ("completions tcsh", InvalidValue),
            ("notify frobnicate", InvalidSubcommand),
        ];
        for (args, kind) in bad {
            assert_eq!(parse(args).err(), Some(kind), "{args}");
        }
    }

    /// Every command and subcommand shows how it is used at the end of its `--help`.
    #[test]
    fn every_help_ends_with_examples() {
        fn walk(cmd: &clap::Command, path: String, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            let after = cmd
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            if !after.contains("Example") {
                missing.push(path.clone());
            }
            for sub in cmd.get_subcommands() {
                walk(sub, path.clone(), missing);
            }
        }
        let mut missing = Vec::new();
        let cli = <Cli as clap::CommandFactory>::command();
        walk(&cli, String::new(), &mut missing);
        assert!(missing.is_empty(), "no examples in --help of: {missing:?}");
    }

    #[test]
    fn debug_masks_connection_secrets() {
        let Ok(Cli {
            command: Some(Command::Notify(args)),
            ..
        }) = parse(
            "notify list --url https://x.bitrix24.com/rest/1/hook-secret-1/ --token tok-secret-2",
        )
        else {
            panic!("parses")
        };
        let shown = format!("{args:?}");
        assert!(
            !shown.contains("hook-secret-1") && !shown.contains("tok-secret-2"),
            "{shown}"
        );
    }

    #[test]
    fn parsed_values_land_where_they_belong() {
        let Ok(Cli {
            command: Some(Command::Notify(args)),
            limits,
            checks,
        }) = parse("--plan enterprise notify read --ids 3,4 --unread --url sandbox --strict")
        else {
            panic!("notify read parses")
        };
        assert_eq!(limits.plan.as_deref(), Some("enterprise"));
        assert!(checks.strict, "--strict is global");
        assert_eq!(args.connection.url.as_deref(), Some("sandbox"));
        let NotifyAction::Read(read) = args.action else {
            panic!("read")
        };
        assert_eq!(
            (read.target.ids, read.unread, read.target.all),
            (vec![3, 4], true, false)
        );
    }
}
