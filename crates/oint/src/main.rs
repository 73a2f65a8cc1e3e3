//! `oint`: Bitrix24 notifications from the command line.

mod app;
mod blocks;
mod bulk;
mod cli;
mod config;
mod modern;
mod oauth;
mod output;
mod resolve;
mod run;
mod sandbox;
mod transport;

fn main() {
    let exit = app::main(std::env::args_os().collect());
    std::process::exit(exit as i32);
}
