//! The `flowgate` binary, built in this package too so that the black-box tests can start it
//! (cargo gives tests the path of their own package's binaries only). The same as
//! `host/src/main.rs`.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    flowgate::cli::main()
}
