//! Thin binary: parse the command line, start logging, run the command.

use clap::Parser;
use version_app::cli::{run, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    version_app::telemetry::init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
