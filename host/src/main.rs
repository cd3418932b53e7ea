//! The `flowgate` command. The daemon allocates a great deal of small, short-lived memory (JSON,
//! HTTP): mimalloc serves that with far less CPU than the system allocator (BENCHMARKS.md).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    flowgate::cli::main()
}
