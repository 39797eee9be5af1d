//! FHIR R4 server for the French shared health record (Mon espace santé / DMP).
//!
//! [`build_server`] assembles the whole application from a [`Config`]; the binary and
//! the integration tests both call it.

pub mod access;
pub mod audit;
pub mod config;
pub mod error;
pub mod fhir;
pub mod http;
pub mod service;
pub mod store;

use std::net::TcpListener;

use actix_web::{App, HttpServer, web};

pub use config::Config;

/// Everything a request needs, shared by all workers.
pub struct AppState {
    pub db: store::Db,
    pub authenticator: access::Authenticator,
    /// The habilitation matrix (R-ACC-6).
    pub matrix: std::sync::Arc<access::Matrix>,
    pub config: Config,
}

impl AppState {
    /// Opens the database (migrating it) and loads the issuers' keys.
    pub fn new(config: Config) -> Result<AppState, String> {
        let authenticator = access::Authenticator::load(&config.trusted_issuers)?;
        let matrix = access::Matrix::load(config.habilitation_matrix.as_deref())?;
        let db = store::Db::open(&config.database_url)?;
        Ok(AppState {
            db,
            authenticator,
            matrix: std::sync::Arc::new(matrix),
            config,
        })
    }
}

/// Builds the HTTP server on an already bound listener (tests bind port 0).
pub fn build_server(
    state: AppState,
    listener: TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let workers = state.config.workers;
    let state = web::Data::new(state);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(http::routes)
            .default_service(web::to(http::handlers::not_found))
    })
    .listen(listener)?;
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.run())
}
