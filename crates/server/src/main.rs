//! `fabd`: runs the router with zero configuration on the embedded store (or on PostgreSQL),
//! administers a stopped router's store (`fabd token create`), or copies a router from its
//! sled directory into PostgreSQL (`fabd migrate`).

use clap::{Parser, Subcommand};
use fabrouter_api::v1::Role;
use fabrouter_server::config::{Config, LogFormat, Overrides};
use fabrouter_server::{auth, open_store, start};

#[derive(Parser)]
#[command(name = "fabd", version, about = "The fabrouter router daemon")]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Manage API tokens directly in the store (only while fabd is stopped; use
    /// `fab admin token create` against a running router).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Copy a stopped router's state from its sled directory into a PostgreSQL database:
    /// designs with their bytes, tokens, nodes, jobs with their histories, printers, caches.
    /// Safe to run again after an interruption (what is there already is kept).
    Migrate {
        /// The sled data directory (the old `data_dir`).
        #[arg(long)]
        from: std::path::PathBuf,
        /// The PostgreSQL URL to copy into (postgres://user@host/db).
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token and print its secret once.
    Create {
        #[arg(long, value_parser = ["designer", "operator", "marketplace", "admin"])]
        role: String,
        #[arg(long, default_value = "")]
        label: String,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "SIGTERM handler unavailable; Ctrl-C still stops fabd");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: finishing requests and flushing the store");
}

fn role_of(word: &str) -> Role {
    match word {
        "designer" => Role::Designer,
        "operator" => Role::Operator,
        "marketplace" => Role::Marketplace,
        _ => Role::Admin,
    }
}

/// mimalloc: glibc's allocator spent about 8% of a submit's CPU and contended on its arena
/// locks across the router's threads (a free from another thread's arena wakes its waiters).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::resolve(&cli.overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fabd: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Token {
            action: TokenAction::Create { role, label },
        } => create_token(&config, role_of(&role), &label),
        Command::Migrate { from, to } => migrate(&from, &to),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fabd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let running = start(config, shutdown_signal()).await?;
    tracing::info!(
        addr = %running.addr,
        metrics = ?running.metrics_addr,
        data_dir = %running.state.config.data_dir.display(),
        "fabd serving (gRPC, gRPC-web, health, reflection)"
    );
    if let Some(path) = &running.new_admin_token {
        tracing::info!(
            path = %path.display(),
            "first start: created an admin token; `fab` reads it from there on this machine"
        );
    }
    running.wait().await
}

fn create_token(config: &Config, role: Role, label: &str) -> anyhow::Result<()> {
    let store = open_store(config)
        .map_err(|e| anyhow::anyhow!("{e:#}; if fabd is running, use `fab admin token create`"))?;
    let (rec, secret) = auth::create_token(store.as_ref(), role, label)?;
    store.flush()?;
    eprintln!(
        "created tokens/{} ({})",
        rec.id,
        auth::role_from_pb(role as i32).word()
    );
    println!("{secret}");
    Ok(())
}

fn migrate(from: &std::path::Path, to: &str) -> anyhow::Result<()> {
    use fabrouter_server::config::StoreChoice;
    if !matches!(StoreChoice::parse(to)?, StoreChoice::Postgres(_)) {
        anyhow::bail!("--to must be a postgres:// URL");
    }
    if !from.join("db").is_dir() {
        anyhow::bail!(
            "{} holds no fabd store (no db/ in it); --from is the old data_dir",
            from.display()
        );
    }
    let source = fabrouter_store::SledStore::open(from).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the store in {} ({e}); stop the fabd using it first",
            from.display()
        )
    })?;
    let target = fabrouter_store::PgStore::connect(to).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the PostgreSQL store at {}: {e}",
            fabrouter_store::redact_url(to)
        )
    })?;
    let report = fabrouter_store::copy_store(&source, &target)?;
    eprintln!(
        "copied {} into {}: {report}",
        from.display(),
        fabrouter_store::redact_url(to)
    );
    eprintln!("start fabd with store = \"postgres://…\" (or FABD_STORE) and the same data_dir");
    Ok(())
}
