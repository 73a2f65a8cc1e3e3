//! `oint`: Bitrix24 notifications from the command line.

fn main() {
    let exit = oint::app::main(std::env::args_os().collect());
    std::process::exit(exit as i32);
}
