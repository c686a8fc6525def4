//! `chantra`: parse the command line, start logging, run the command, and
//! turn any startup failure into one line on stderr and a non-zero exit.

use std::process::ExitCode;

use clap::Parser as _;

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
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
