//! The command's flow: parse, resolve, run, report. `main.rs` only calls [`main`].

use std::ffi::OsString;

use clap::{CommandFactory, Parser};

use crate::cli::{self, Cli, Library, Method, SandboxAction};
use crate::output::{self, Exit, Failure, Success};
use crate::resolve::{self, Job};
use crate::{run, sandbox};

pub fn main(args: Vec<OsString>) -> Exit {
    let args = canonicalize_method(args);
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return clap_error(e, &args),
    };
    match cli.library {
        None => {
            let _ = Cli::command().print_long_help();
            Exit::Ok
        }
        Some(Library::Bitrix24(b24)) => match b24.method {
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
            Some(method) => run_method(method),
        },
        Some(Library::Sandbox(args)) => run_sandbox(args.action),
    }
}

fn run_method(method: Method) -> Exit {
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
        Ok(rt) => rt.block_on(run::run(job)),
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
    if args.len() > 2 && args[1] == "bitrix24" {
        if let Some(name) = args[2].to_str().and_then(cli::canonical_method) {
            args[2] = name.into();
        }
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
            let first = rendered
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            let hint = match (kind, args.get(1).and_then(|a| a.to_str())) {
                (ErrorKind::InvalidSubcommand, Some("bitrix24")) => {
                    "; run 'oint bitrix24' to list the methods".to_string()
                }
                (_, Some("bitrix24")) if args.len() > 2 => {
                    format!("; see 'oint bitrix24 {} --help'", args[2].to_string_lossy())
                }
                _ => "; see 'oint --help'".to_string(),
            };
            output::report(Err(Failure::Usage(format!("{first}{hint}"))), None)
        }
    }
}
