//! `chantra`: parse the command line, start logging, run the command, and
//! turn any startup failure into one line on stderr and a non-zero exit.

use std::process::ExitCode;

use clap::Parser as _;

/// jemalloc instead of glibc's malloc: under the publish load glibc spent a
/// quarter of the server's CPU in malloc, free and its arena locks (perf,
/// docs/BENCHMARKS.md). Measured side by side, 1 KiB publishes: glibc
/// 11.1–11.4k/s, mimalloc 14.0–15.3k/s, jemalloc 14.4–15.0k/s; memory per
/// idle stream 6.2, 6.9 and 5.9 KiB — jemalloc is as fast and the smallest.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // An optional .env supplies environment fallbacks before clap reads them.
    if let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        eprintln!("error: .env: {err}");
        return ExitCode::FAILURE;
    }
    let cli = chantra::cli::Cli::parse();
    chantra::telemetry::init();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(chantra::commands::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        // A client command's failure has its own exit code (`chantra --help` lists them).
        Err(err) => match err.downcast_ref::<chantra::client::ClientError>() {
            Some(client) => {
                eprintln!("error: {client}");
                ExitCode::from(client.exit_code())
            }
            None => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}
