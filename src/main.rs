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
    /// Load synthetic spaces for scale measurements (ids `gen-SEED-N`).
    Generate {
        /// Number of spaces (patients).
        #[arg(long)]
        patients: u64,
        /// Documents per space.
        #[arg(long, default_value_t = 20)]
        documents_per_patient: u64,
        /// Seed of the run (different seeds give different ids).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Writers side by side, each on its own connection (PostgreSQL; at most 8).
        #[arg(long, default_value_t = 1)]
        jobs: u64,
    },
    /// Run the lifecycle job once: open the pending spaces due (42 days after
    /// notification) and purge the closed spaces past retention (10 years).
    Lifecycle,
    /// Check the trace's hash chains (R-AUD-3); exit status 1 names the first broken
    /// link of each broken chain.
    AuditVerify {
        /// Database to check (default: the server's --database-url).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// The server's own token signing keys (R-ACT-4): list them, add one (it signs
    /// from the next start; earlier tokens stay valid until they expire), or retire
    /// one (its tokens are refused from the next start).
    IssuerKey {
        #[command(subcommand)]
        action: IssuerKeyAction,
    },
}

#[derive(Subcommand)]
enum IssuerKeyAction {
    /// Prints the key ids in use, newest (the signing one) first.
    List,
    /// Adds a new signing key and prints its id.
    Rotate,
    /// Retires the key with this id.
    Retire { kid: String },
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

/// The server's own allocations go to mimalloc (per-thread heaps, no arena locks:
/// malloc and free were 13 % of an audited read's samples under glibc). Its memory
/// is held in 2 MiB transparent huge pages where the kernel allows them, which held
/// 230-280 MB at 64 connections; without huge pages for this process it holds what
/// glibc did (about 90 MB) at the same speed (BENCHMARKS.md, 2026-12-05).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bounds what the allocators keep: no transparent huge pages for this process
/// (mimalloc's heaps, above); and glibc, which the C libraries (SQLite, OpenSSL,
/// libpq) still use, keeps large blocks it frees in its arenas once its threshold
/// for mapping them has risen (it follows the largest block freed), so that a
/// blocking pool of many threads each handling a large body in turn would hold a
/// peak per arena: a fixed threshold maps every block over 128 KiB on its own and
/// returns it to the system when freed.
fn bound_allocator_retention() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl only sets a flag of this process; called once, at start.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called once, at start, before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// libpq negotiates GSSAPI transport encryption by default (`gssencmode=prefer`):
/// every connection then initialises Kerberos, and Kerberos's exit handlers abort
/// a process one of whose threads (a pool filling itself, the trace's committer)
/// still connects or disconnects while it exits (`k5_mutex_lock: … Assertion`,
/// seen about once in 50 runs of `audit-verify`). Off unless the operator asks
/// for it: `PGGSSENCMODE`, or `gssencmode` in the URL, which libpq reads before
/// its environment.
fn default_postgres_gss_encryption_off() {
    if std::env::var_os("PGGSSENCMODE").is_none() {
        // SAFETY: called once, first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("PGGSSENCMODE", "disable") };
    }
}

fn main() -> std::process::ExitCode {
    default_postgres_gss_encryption_off();
    bound_allocator_retention();
    let sqlite_configured = dmp_fhir_server::store::dialect::configure_sqlite_process();
    let cli = Cli::parse();
    let config = match cli.config.resolve() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    if !sqlite_configured {
        tracing::warn!("SQLite was in use before its settings were made: it keeps its defaults");
    }
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
        Command::Generate {
            patients,
            documents_per_patient,
            seed,
            jobs,
        } => generate(
            &config.database_url,
            &dmp_fhir_server::generate::Options {
                patients,
                documents_per_patient,
                seed,
                jobs,
            },
        ),
        Command::AuditVerify { database_url } => {
            audit_verify(database_url.as_deref().unwrap_or(&config.database_url))
        }
        Command::IssuerKey { action } => issuer_key(&config.database_url, action),
        Command::Serve => serve(config),
    }
}

fn issuer_key(database_url: &str, action: IssuerKeyAction) -> std::process::ExitCode {
    use dmp_fhir_server::store::accounts;
    let db = match open_database(database_url) {
        Ok(db) => db,
        Err(code) => return code,
    };
    let now = dmp_fhir_server::fhir::date::fhir_instant(chrono::Utc::now());
    let done = db.write_blocking(|conn| {
        Ok(match action {
            IssuerKeyAction::List => accounts::issuer_keys(conn)?
                .into_iter()
                .map(|key| key.kid)
                .collect::<Vec<_>>()
                .join("\n"),
            IssuerKeyAction::Rotate => {
                dmp_fhir_server::account::issuer::OwnIssuer::rotate(conn, &now)
                    .map_err(dmp_fhir_server::error::ApiError::internal)?
            }
            IssuerKeyAction::Retire { kid } => {
                if accounts::issuer_keys(conn)?.len() < 2 {
                    return Err(dmp_fhir_server::error::ApiError::conflict(
                        "the last key in use cannot be retired: rotate first",
                    ));
                }
                match accounts::retire_issuer_key(conn, &kid, &now)? {
                    0 => {
                        return Err(dmp_fhir_server::error::ApiError::not_found(format!(
                            "no key {kid} in use"
                        )));
                    }
                    _ => format!("{kid} retired"),
                }
            }
        })
    });
    match done {
        Ok(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {}", error.message);
            std::process::ExitCode::FAILURE
        }
    }
}

/// The database of a command, or the exit code after saying why it did not open.
fn open_database(database_url: &str) -> Result<dmp_fhir_server::store::Db, std::process::ExitCode> {
    dmp_fhir_server::store::Db::open(database_url).map_err(|message| {
        eprintln!("error: {message}");
        std::process::ExitCode::FAILURE
    })
}

fn generate(
    database_url: &str,
    options: &dmp_fhir_server::generate::Options,
) -> std::process::ExitCode {
    let db = match open_database(database_url) {
        Ok(db) => db,
        Err(code) => return code,
    };
    let bar = indicatif::ProgressBar::new(options.patients);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} spaces, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    match dmp_fhir_server::generate::run(&db, options, |written| bar.inc(written)) {
        Ok(report) => {
            bar.finish();
            let seconds = started.elapsed().as_secs_f64().max(0.001);
            println!(
                "{} spaces, {} documents, {} resources in {seconds:.1} s ({:.0} documents/s, {:.0} resources/s)",
                report.patients,
                report.documents,
                report.resources,
                report.documents as f64 / seconds,
                report.resources as f64 / seconds
            );
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            bar.abandon();
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn lifecycle(database_url: &str) -> std::process::ExitCode {
    let db = match open_database(database_url) {
        Ok(db) => db,
        Err(code) => return code,
    };
    match dmp_fhir_server::lifecycle::jobs::run_once(&db, chrono::Utc::now()) {
        Ok(report) => {
            println!(
                "{} spaces opened, {} closed spaces purged ({} resources removed), {} expired account rows removed",
                report.opened, report.purged, report.resources_removed, report.account_rows_removed
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
    let db = match open_database(database_url) {
        Ok(db) => db,
        Err(code) => return code,
    };
    // The trace a stopped server left in its log is part of the chains.
    let damaged = match dmp_fhir_server::audit::applier::recover(&db) {
        Ok(recovered) => {
            if recovered.applied > 0 {
                println!(
                    "the trace's log: the events of {} requests applied",
                    recovered.applied
                );
            }
            for line in &recovered.damaged {
                println!("DAMAGED {line}");
            }
            !recovered.damaged.is_empty()
        }
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match db.read_blocking(dmp_fhir_server::audit::chain::verify) {
        Ok(report) => {
            println!(
                "{} events in {} chains checked",
                report.events, report.chains
            );
            if report.broken.is_empty() && !damaged {
                println!("every chain holds");
                std::process::ExitCode::SUCCESS
            } else if report.broken.is_empty() {
                println!("every chain holds, but a trace log was damaged (above)");
                std::process::ExitCode::FAILURE
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
