//! FHIR R4 server for the French shared health record (Mon espace santé / DMP).
//!
//! [`build_server`] assembles the whole application from a [`Config`]; the binary and
//! the integration tests both call it.

pub mod access;
pub mod account;
pub mod audit;
pub mod clock;
pub mod config;
pub mod error;
pub mod fhir;
pub mod generate;
pub mod http;
pub mod lifecycle;
pub mod memory;
pub mod notify;
pub mod service;
pub mod store;

use std::net::TcpListener;

use actix_web::{App, HttpServer, web};
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslFiletype, SslMethod, SslVerifyMode};

pub use config::Config;

/// Everything a request needs, shared by all workers.
pub struct AppState {
    pub db: store::Db,
    pub authenticator: access::Authenticator,
    /// The habilitation matrix (R-ACC-6).
    pub matrix: std::sync::Arc<access::Matrix>,
    /// Parsed space facts, revalidated by each space's access version.
    pub spaces: std::sync::Arc<access::space_cache::SpaceCache>,
    /// The group committer of the trace (R-AUD-2).
    pub audit: audit::writer::AuditWriter,
    /// Moves logged events into the searchable trace; readers of the trace wait
    /// for it to catch up.
    pub trace_index: audit::indexer::TraceIndexer,
    /// Wakes the notification delivery worker after a write queued notifications.
    pub notifications: notify::Wakeup,
    /// The holders' accounts and the server's own token issuer (R-ACT-1 … 4).
    pub accounts: account::Accounts,
    /// The lifecycle job's thread, which ends with the state.
    pub lifecycle: lifecycle::jobs::LifecycleJob,
    /// The time the rules see (R-LIFE, R-PAT-1).
    pub clock: std::sync::Arc<dyn clock::Clock>,
    /// Bytes of request bodies the process holds at once, in KiB permits: requests
    /// past it wait their turn (bounded memory under concurrent large bodies).
    pub bodies_in_flight: std::sync::Arc<tokio::sync::Semaphore>,
    pub config: Config,
}

impl AppState {
    /// Opens the database (migrating it), loads the issuers' keys and starts the
    /// background workers, on the system clock.
    pub fn new(config: Config) -> Result<AppState, String> {
        Self::with_clock(config, std::sync::Arc::new(clock::SystemClock))
    }

    /// [`AppState::new`] with another clock (tests move time forward).
    pub fn with_clock(
        config: Config,
        clock: std::sync::Arc<dyn clock::Clock>,
    ) -> Result<AppState, String> {
        let matrix = access::Matrix::load(config.habilitation_matrix.as_deref())?;
        let mut db = store::Db::open(&config.database_url)?;
        let channel = notify::channel::from_config(&config)?;
        let accounts = account::Accounts::start(
            db.clone(),
            std::sync::Arc::clone(&channel),
            std::sync::Arc::clone(&clock),
            account::catalogue::Catalogue::load(config.app_catalogue.as_deref())?,
        )?;
        // From here on: the start's reads of the server's few keys are not a
        // request's path.
        store::sql::log_query_plans(config.log_query_plans);
        let own_keys: jsonwebtoken::jwk::JwkSet =
            serde_json::from_value(accounts.issuer().jwks()).map_err(|error| error.to_string())?;
        let mut authenticator = access::Authenticator::load(&config.trusted_issuers)?
            .trust_own_issuer(
                account::issuer::ISSUER,
                account::issuer::AUDIENCE,
                &own_keys,
            )?;
        if let Some(path) = &config.professional_directory {
            authenticator = authenticator.with_directory(access::directory::Directory::load(path)?);
        }
        let (notifications, wakeups) = notify::Wakeup::new();
        notify::delivery::start(
            db.clone(),
            channel,
            config.notification_retry_base_ms,
            wakeups,
        );
        // The trace of answered requests that an earlier run left in its log goes
        // into the database before this run's (R-AUD-2).
        // A damaged log is reported (and by `audit-verify`), not a reason to refuse
        // to serve: what it held past its damage is lost either way.
        audit::applier::recover(&db)?;
        let audit = audit::writer::AuditWriter::start(
            db.clone(),
            config.audit_group_commit,
            notifications.clone(),
            config.audit_log,
            config.audit_log_postgres,
        )?;
        let trace_index = audit::indexer::TraceIndexer::start(db.clone());
        let lifecycle = lifecycle::jobs::start(
            db.clone(),
            std::sync::Arc::clone(&clock),
            std::time::Duration::from_millis(config.lifecycle_interval_ms),
            notifications.clone(),
            audit.clone(),
        );
        // Requests' writes go through the group committer; the background workers
        // above write on their own.
        if config.write_group_commit {
            db.start_group_commit();
        }
        Ok(AppState {
            db,
            authenticator,
            matrix: std::sync::Arc::new(matrix),
            spaces: std::sync::Arc::new(access::space_cache::SpaceCache::new(100_000)),
            audit,
            trace_index,
            notifications,
            accounts,
            lifecycle,
            clock,
            bodies_in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(
                config.max_inflight_body_bytes.div_ceil(1024).max(1),
            )),
            config,
        })
    }
}

/// The TLS acceptor: the server's certificate, and with a client CA, client
/// certificates requested and verified (a client may still come without one and use
/// a bearer token).
fn tls_acceptor(config: &Config) -> Result<Option<SslAcceptorBuilder>, String> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let failed =
        |what: &str, error: openssl::error::ErrorStack| format!("TLS: cannot use {what}: {error}");
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(|e| failed("OpenSSL", e))?;
    builder
        .set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| failed(&key.display().to_string(), e))?;
    builder
        .set_certificate_chain_file(cert)
        .map_err(|e| failed(&cert.display().to_string(), e))?;
    builder
        .check_private_key()
        .map_err(|e| failed("the key with the certificate", e))?;
    if let Some(ca) = &config.tls_client_ca {
        builder
            .set_ca_file(ca)
            .map_err(|e| failed(&ca.display().to_string(), e))?;
        let names = openssl::x509::X509Name::load_client_ca_file(ca)
            .map_err(|e| failed(&ca.display().to_string(), e))?;
        builder.set_client_ca_list(names);
        builder.set_verify(SslVerifyMode::PEER);
    }
    Ok(Some(builder))
}

/// Records the verified client certificate of a TLS connection for the pipeline.
fn on_connect(connection: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    use actix_tls::accept::openssl::TlsStream;
    if let Some(stream) = connection.downcast_ref::<TlsStream<actix_web::rt::net::TcpStream>>()
        && let Some(certificate) = stream.ssl().peer_certificate()
        && let Some(identity) = access::directory::ClientCertificate::from_x509(&certificate)
    {
        data.insert(identity);
    }
}

/// Builds the HTTP server on an already bound listener (tests bind port 0).
pub fn build_server(
    state: AppState,
    listener: TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let workers = state.config.workers;
    let tls = tls_acceptor(&state.config).map_err(std::io::Error::other)?;
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            // No answer is ever sniffed into another type than the one it names.
            .wrap(
                actix_web::middleware::DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff")),
            )
            .app_data(state.clone())
            .configure(http::routes)
            .default_service(web::to(http::handlers::not_found))
    })
    .on_connect(on_connect);
    let mut server = match tls {
        Some(acceptor) => server.listen_openssl(listener, acceptor)?,
        None => server.listen(listener)?,
    };
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.run())
}
