//! The `flowgate` binary, built in this package too so that the black-box tests can start it
//! (cargo gives tests the path of their own package's binaries only). Same code as
//! `host/src/main.rs`: argument parsing, then the library.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = flowgate::cli::Cli::parse();
    flowgate::cli::init_tracing(cli.log_format);
    match flowgate::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
