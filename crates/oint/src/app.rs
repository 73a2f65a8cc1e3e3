//! The app: parse, settle the global settings, run one command family on one runtime, and
//! report. The only module that prints a command's result or error and picks the exit code;
//! `main.rs` only calls [`main`].

use std::ffi::OsString;
use std::future::Future;

use clap::{CommandFactory, Parser};

use crate::commands::{self, opi};
use crate::flags::{self, Cli, Command, Method, NotifyAction, NotifyArgs};
use crate::output::{self, Exit, Failure, Success};
use crate::settings::{self, Global};

pub fn main(args: Vec<OsString>) -> Exit {
    let args = canonicalize_method(args);
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return clap_error(e, &args),
    };
    // A value that is not UTF-8 is not a valid setting either: said, not ignored.
    let env_strict = std::env::var_os("OINT_STRICT").map(|v| {
        v.to_str()
            .map_or_else(|| "\u{fffd}".to_string(), str::to_string)
    });
    let global = match settings::global(&cli.limits, &cli.checks, env_strict) {
        Ok(global) => global,
        Err(e) => return output::report(Err(Failure::Usage(e)), None),
    };
    match cli.command {
        None => print_styled(Cli::command().render_long_help()),
        Some(Command::Bitrix24(b24)) => match b24.method {
            None => output::report(Ok(Success::Text(method_list())), None),
            // OPI prints a method's help when it is given no options at all.
            Some(_) if args.len() == 3 => {
                let name = args[2].to_string_lossy().into_owned();
                let mut cmd = Cli::command();
                let sub = cmd
                    .find_subcommand_mut("bitrix24")
                    .and_then(|b| b.find_subcommand_mut(&name));
                match sub {
                    Some(sub) => print_styled(
                        sub.clone()
                            .bin_name(format!("oint bitrix24 {name}"))
                            .render_long_help(),
                    ),
                    None => Exit::Ok,
                }
            }
            Some(method) => run_opi(method, &global),
        },
        Some(Command::Sandbox(args)) => {
            output::report(block_on(commands::sandbox::command(args.action)), None)
        }
        Some(Command::Notify(NotifyArgs { connection, action })) => {
            if connection.debug {
                init_debug_logging();
            }
            let outcome = match action {
                NotifyAction::Bulk(flags) => {
                    block_on(commands::bulk::command(flags, &connection, &global))
                }
                action => block_on(commands::notify::command(
                    NotifyArgs { connection, action },
                    &global,
                )),
            };
            output::report(outcome, None)
        }
        Some(Command::Call(args)) => {
            if args.connection.debug {
                init_debug_logging();
            }
            output::report(block_on(commands::call::command(args, &global)), None)
        }
        #[cfg(feature = "serve")]
        Some(Command::Serve(args)) => {
            if args.connection.debug {
                init_debug_logging();
            }
            output::report(block_on(commands::serve::command(args, &global)), None)
        }
        Some(Command::Completions { shell }) => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "oint", &mut script);
            output::print(&script)
        }
        Some(Command::Man) => {
            let mut page = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                Ok(()) => output::print(&page),
                Err(e) => output::report(
                    Err(Failure::Local(format!(
                        "cannot render the manual page: {e}"
                    ))),
                    None,
                ),
            }
        }
    }
}

/// Help text, in colour on a terminal, through the one checked writer.
fn print_styled(text: clap::builder::StyledStr) -> Exit {
    use std::io::IsTerminal;
    let text = if std::io::stdout().is_terminal() {
        text.ansi().to_string()
    } else {
        text.to_string()
    };
    output::print(text.as_bytes())
}

fn run_opi(method: Method, global: &Global) -> Exit {
    // OPI's commands use no config portal, but the file's top-level `strict` holds for them.
    // They never needed the file, so a file they cannot read costs a warning, not the send.
    let strict = match settings::real_world(settings::top_level_strict) {
        Ok(from_file) => global.strict || from_file,
        Err(e) => {
            output::note(&format!("warning: {e}; its strict setting is not applied"));
            global.strict
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => return output::report(Err(e), None),
    };
    let job = match runtime.block_on(opi::plan(method, strict)) {
        Ok(job) => job,
        Err(e) => return output::report(Err(Failure::Usage(e.0)), None),
    };
    let common = job.common().clone();
    if common.debug {
        init_debug_logging();
    }
    // Before sending: a path that cannot take the answer must not cost a duplicate on retry.
    let out = match common.out.as_deref().map(output::OutFile::prepare) {
        Some(Ok(out)) => Some(out),
        Some(Err(e)) => return output::report(Err(Failure::Usage(e)), None),
        None => None,
    };
    // The limit store's password comes from the environment, as for the modern commands.
    let transport = settings::real_world(settings::store_password).and_then(|store_password| {
        global.transport.with_entry(&settings::EntryLimits {
            store_password,
            ..settings::EntryLimits::default()
        })
    });
    let transport = match transport {
        Ok(transport) => transport,
        Err(e) => return output::report(Err(Failure::Usage(e)), None),
    };
    output::report(runtime.block_on(opi::execute(job, &transport)), out)
}

/// The one runtime a command runs on.
fn block_on(command: impl Future<Output = Result<Success, Failure>>) -> Result<Success, Failure> {
    runtime()?.block_on(command)
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Local(format!("cannot start the async runtime: {e}")))
}

fn init_debug_logging() {
    use std::io::IsTerminal;
    // Directives match target prefixes, so the sandbox's own server logs need their own line.
    let filter = "bitrix24=debug,bitrix24_emulator=warn,oint=debug";
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .try_init();
}

/// `oint bitrix24 createpersonalnotification` means `CreatePersonalNotification`.
fn canonicalize_method(mut args: Vec<OsString>) -> Vec<OsString> {
    if args.len() > 2
        && args[1] == "bitrix24"
        && let Some(name) = args[2].to_str().and_then(flags::canonical_method)
    {
        args[2] = name.into();
    }
    args
}

fn method_list() -> String {
    let mut text = String::from(
        "oint bitrix24 <METHOD> [OPTIONS]   (oint bitrix24 <METHOD> --help for its options)\n",
    );
    for (region, methods) in flags::REGIONS {
        text.push_str(&format!("\n{region}:\n"));
        for (name, about) in *methods {
            text.push_str(&format!("  {name:<28} {about}\n"));
        }
    }
    text.push('\n');
    text.push_str(flags::EXIT_CODES);
    text
}

/// The global flags whose values are checked against [`crate::ranges`].
const LIMIT_FLAGS: &[&str] = &[
    "--rate",
    "--burst",
    "--timeout",
    "--connect-timeout",
    "--attempts",
];

/// Clap's first line, plus the indented list it sometimes announces with a colon
/// ("the following required arguments were not provided:").
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines();
    let mut text = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string();
    if text.ends_with(':') {
        let items: Vec<&str> = lines
            .take_while(|l| l.starts_with("  "))
            .map(str::trim)
            .collect();
        text = format!("{} {}", text.trim_end_matches(':'), items.join(", "));
    }
    text
}

/// Help and version go to stdout with exit 0; every other clap error becomes one line.
fn clap_error(e: clap::Error, args: &[OsString]) -> Exit {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            if e.use_stderr() {
                let _ = e.print();
                Exit::Ok
            } else {
                print_styled(e.render())
            }
        }
        kind => {
            let rendered = e.render().to_string();
            let mut first = one_line(&rendered);
            // The limit flags speak like every other check of oint ("--rate: must be …"),
            // which also keeps the value, perhaps a misplaced secret, out of the message.
            if kind == ErrorKind::ValueValidation
                && let Some(clap::error::ContextValue::String(arg)) =
                    e.get(clap::error::ContextKind::InvalidArg)
                && let Some(flag) = arg.split_whitespace().next()
                && LIMIT_FLAGS.contains(&flag)
                && let Some(source) = std::error::Error::source(&e)
            {
                first = format!("{flag}: {source}");
            }
            // A token or webhook URL typed into the wrong flag must not be echoed back.
            if let Some(clap::error::ContextValue::String(value)) =
                e.get(clap::error::ContextKind::InvalidValue)
                && crate::secrets::may_be_secret(value)
            {
                first = first.replace(value.as_str(), "(value not shown)");
            }
            let hint = match (kind, args.get(1).and_then(|a| a.to_str())) {
                (ErrorKind::InvalidSubcommand, Some("bitrix24")) => {
                    "; run 'oint bitrix24' to list the methods".to_string()
                }
                (_, Some("bitrix24")) if args.len() > 2 => {
                    format!("; see 'oint bitrix24 {} --help'", args[2].to_string_lossy())
                }
                _ => {
                    let words: Vec<String> = args
                        .iter()
                        .skip(1)
                        .map(|a| a.to_string_lossy().into_owned())
                        .take_while(|a| !a.starts_with('-'))
                        .take(2)
                        .collect();
                    let mut command = String::from("oint");
                    for word in words {
                        command.push(' ');
                        command.push_str(&word);
                    }
                    format!("; see '{command} --help'")
                }
            };
            output::report(Err(Failure::Usage(format!("{first}{hint}"))), None)
        }
    }
}
