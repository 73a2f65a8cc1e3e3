//! The command's flow: parse, resolve, run, report. `main.rs` only calls [`main`].

use std::ffi::OsString;

use clap::{CommandFactory, Parser};

use crate::cli::{self, Cli, Command, Method, SandboxAction};
use crate::output::{self, Exit, Failure, Success};
use crate::resolve::{self, Job};
use crate::transport::Transport;
use crate::{modern, run, sandbox};

pub fn main(args: Vec<OsString>) -> Exit {
    let args = canonicalize_method(args);
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return clap_error(e, &args),
    };
    let transport = match Transport::from_flags(&cli.limits) {
        Ok(transport) => transport,
        Err(e) => return output::report(Err(Failure::Usage(e)), None),
    };
    match cli.command {
        None => {
            let _ = Cli::command().print_long_help();
            Exit::Ok
        }
        Some(Command::Bitrix24(b24)) => match b24.method {
            None => output::report(Ok(Success::Text(method_list())), None),
            // OPI prints a method's help when it is given no options at all.
            Some(_) if args.len() == 3 => {
                let name = args[2].to_string_lossy().into_owned();
                let mut cmd = Cli::command();
                let sub = cmd
                    .find_subcommand_mut("bitrix24")
                    .and_then(|b| b.find_subcommand_mut(&name));
                if let Some(sub) = sub {
                    let _ = sub
                        .clone()
                        .bin_name(format!("oint bitrix24 {name}"))
                        .print_long_help();
                }
                Exit::Ok
            }
            Some(method) => run_method(method, &transport),
        },
        Some(Command::Sandbox(args)) => run_sandbox(args.action),
        Some(Command::Notify(args)) => modern::notify(args, &transport),
        Some(Command::Call(args)) => modern::call(args, &transport),
        Some(Command::Completions { shell }) => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "oint", &mut script);
            write_ignoring_closed_pipe(&script)
        }
        Some(Command::Man) => {
            let mut page = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                Ok(()) => write_ignoring_closed_pipe(&page),
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

/// `oint man | head` closes the pipe early; that is not an error.
fn write_ignoring_closed_pipe(bytes: &[u8]) -> Exit {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => output::report(
            Err(Failure::Local(format!(
                "cannot write to standard output: {e}"
            ))),
            None,
        ),
        _ => Exit::Ok,
    }
}

fn run_method(method: Method, transport: &Transport) -> Exit {
    let job = match resolve::resolve(method) {
        Ok(job) => job,
        Err(e) => return output::report(Err(Failure::Usage(e.0)), None),
    };
    let common = match &job {
        Job::Send { common, .. } | Job::Print { common, .. } => common.clone(),
    };
    if common.debug {
        init_debug_logging();
    }
    let outcome = match runtime() {
        Ok(rt) => rt.block_on(run::run(job, transport)),
        Err(failure) => Err(failure),
    };
    output::report(outcome, common.out.as_deref())
}

fn run_sandbox(action: SandboxAction) -> Exit {
    let outcome = match action {
        SandboxAction::Path => sandbox::data_path()
            .map(|p| Success::Text(p.display().to_string()))
            .map_err(Failure::Local),
        SandboxAction::Reset => sandbox::reset()
            .map(|p| Success::Text(format!("sandbox cleared ({})", p.display())))
            .map_err(Failure::Local),
        SandboxAction::List => runtime().and_then(|rt| {
            rt.block_on(sandbox::notifications())
                .map(|n| Success::Json(serde_json::to_value(n).expect("notifications are JSON")))
                .map_err(Failure::Local)
        }),
    };
    output::report(outcome, None)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Local(format!("cannot start the async runtime: {e}")))
}

pub(crate) fn init_debug_logging() {
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
        && let Some(name) = args[2].to_str().and_then(cli::canonical_method)
    {
        args[2] = name.into();
    }
    args
}

fn method_list() -> String {
    let mut text = String::from(
        "oint bitrix24 <METHOD> [OPTIONS]   (oint bitrix24 <METHOD> --help for its options)\n",
    );
    for (region, methods) in cli::REGIONS {
        text.push_str(&format!("\n{region}:\n"));
        for (name, about) in *methods {
            text.push_str(&format!("  {name:<28} {about}\n"));
        }
    }
    text.push('\n');
    text.push_str(cli::EXIT_CODES);
    text
}

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
            let _ = e.print();
            Exit::Ok
        }
        kind => {
            let rendered = e.render().to_string();
            let first = one_line(&rendered);
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
