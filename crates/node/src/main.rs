//! `fab-node`: the makerspace node agent binary. Subcommands only parse arguments and hand
//! over to the library: `run` is the agent (router session, printers), `stream` sends one
//! G-code file to a printer.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fabrouter_node::stream::{self, StreamArgs};
use fabrouter_node::{NodeConfig, run_agent};

/// fabrouter node agent.
#[derive(Debug, Parser)]
#[command(name = "fab-node", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node agent: connect to the router and print what it assigns.
    Run {
        /// The node's TOML configuration.
        #[arg(long, env = "FAB_NODE_CONFIG")]
        config: PathBuf,
    },
    /// Stream a G-code file to a printer on a serial port (like Printrun's printcore).
    Stream(StreamArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter())),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Stream(args) => stream::run(args).await,
        Command::Run { config } => run(&config).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fab-node: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `run` logs what the agent does; `stream` keeps stderr for its progress bar.
fn default_filter() -> &'static str {
    if std::env::args().nth(1).as_deref() == Some("run") {
        "info"
    } else {
        "warn"
    }
}

async fn run(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = NodeConfig::from_toml_file(config)?;
    run_agent(config, async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
