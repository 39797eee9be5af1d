//! Command line: `serve` (the default) and `migrate`.

use std::net::TcpListener;

use clap::{Parser, Subcommand};
use dmp_fhir_server::config::{ConfigArgs, LogFormat};
use dmp_fhir_server::{AppState, build_server};

/// FHIR R4 server for the French shared health record (Mon espace santé / DMP).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Create or migrate the database, then exit.
    Migrate,
    /// Check the trace's hash chains (R-AUD-3); exit status 1 names the first broken
    /// link of each broken chain.
    /// Run the lifecycle job once: open the pending spaces due (42 days after
    /// notification) and purge the closed spaces past retention (10 years).
    Lifecycle,
    AuditVerify {
        /// Database to check (default: the server's --database-url).
        #[arg(long)]
        database_url: Option<String>,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DMP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match cli.config.resolve() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => match dmp_fhir_server::store::Db::open(&config.database_url) {
            Ok(_) => {
                tracing::info!(
                    database = %dmp_fhir_server::store::redacted(&config.database_url),
                    "database is up to date"
                );
                std::process::ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("error: {message}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Lifecycle => lifecycle(&config.database_url),
        Command::AuditVerify { database_url } => {
            audit_verify(database_url.as_deref().unwrap_or(&config.database_url))
        }
        Command::Serve => serve(config),
    }
}

fn lifecycle(database_url: &str) -> std::process::ExitCode {
    let db = match dmp_fhir_server::store::Db::open(database_url) {
        Ok(db) => db,
        Err(message) => {
            eprintln!("error: {message}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match dmp_fhir_server::lifecycle::jobs::run_once(&db, chrono::Utc::now()) {
        Ok(report) => {
            println!(
                "{} spaces opened, {} closed spaces purged ({} resources removed)",
                report.opened, report.purged, report.resources_removed
            );
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn audit_verify(database_url: &str) -> std::process::ExitCode {
    let db = match dmp_fhir_server::store::Db::open(database_url) {
        Ok(db) => db,
        Err(message) => {
            eprintln!("error: {message}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match db.read_blocking(dmp_fhir_server::audit::chain::verify) {
        Ok(report) => {
            println!(
                "{} events in {} chains checked",
                report.events, report.chains
            );
            if report.broken.is_empty() {
                println!("every chain holds");
                std::process::ExitCode::SUCCESS
            } else {
                for link in &report.broken {
                    println!("BROKEN {link}");
                }
                std::process::ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

fn serve(config: dmp_fhir_server::Config) -> std::process::ExitCode {
    let listen = config.listen;
    if config.trusted_issuers.is_empty() {
        tracing::warn!(
            "no trusted issuer is configured: every request for data will get 401 (see README, Configuration)"
        );
    }
    let state = match AppState::new(config) {
        Ok(state) => state,
        Err(message) => {
            eprintln!("error: {message}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(listen) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on {listen}: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if cfg!(feature = "bench-rules-off") {
        tracing::warn!("built with bench-rules-off: the access rules are OFF; for benchmarks only");
    }
    tracing::info!(%listen, "serving FHIR R4");
    let result =
        actix_web::rt::System::new().block_on(async move { build_server(state, listener)?.await });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
