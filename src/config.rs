//! Typed configuration: defaults, then an optional TOML file, then environment, then
//! flags (each later source wins). No globals: the resulting [`Config`] is passed to
//! [`crate::build_server`] explicitly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::Deserialize;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// An identity provider whose tokens the server accepts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// Exact `iss` claim value.
    pub issuer: String,
    /// Path of a JWKS file (RFC 7517) holding the issuer's public keys.
    pub jwks: PathBuf,
    /// `aud` value that tokens of this issuer must carry for this server.
    pub audience: String,
}

impl std::str::FromStr for TrustedIssuer {
    type Err = String;

    /// Parses `ISSUER,JWKS_FILE,AUDIENCE`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        match parts.as_slice() {
            [issuer, jwks, audience]
                if !issuer.is_empty() && !jwks.is_empty() && !audience.is_empty() =>
            {
                Ok(TrustedIssuer {
                    issuer: (*issuer).to_owned(),
                    jwks: PathBuf::from(jwks),
                    audience: (*audience).to_owned(),
                })
            }
            _ => Err(format!(
                "expected ISSUER,JWKS_FILE,AUDIENCE but got {text:?}"
            )),
        }
    }
}

/// Where notifications to patients are delivered (R-AUD-4).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum NotificationChannelSetting {
    /// A record in the server's log (development).
    Log,
    /// One JSON line per notification appended to a file (development, tests).
    File(PathBuf),
    /// An HTTP(S) POST of the notification, signed with HMAC-SHA256, to a gateway
    /// that sends the e-mail or SMS (a deployment).
    Webhook(String),
}

impl std::str::FromStr for NotificationChannelSetting {
    type Err = String;

    /// Parses `log`, `file:PATH` or `webhook:URL`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "log" {
            Ok(NotificationChannelSetting::Log)
        } else if let Some(path) = text.strip_prefix("file:").filter(|path| !path.is_empty()) {
            Ok(NotificationChannelSetting::File(PathBuf::from(path)))
        } else if let Some(url) = text
            .strip_prefix("webhook:")
            .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
        {
            Ok(NotificationChannelSetting::Webhook(url.to_owned()))
        } else {
            Err(format!(
                "expected log, file:PATH or webhook:http(s)://URL but got {text:?}"
            ))
        }
    }
}

impl TryFrom<String> for NotificationChannelSetting {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

/// The server's settings, fully resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Database URL: `sqlite://PATH` (or a plain file path) or `postgres://…`.
    pub database_url: String,
    /// Identity providers whose bearer tokens are accepted.
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// Base URL written in `fullUrl`, `Location` and paging links; when unset, it is
    /// taken from each request's scheme and `Host` header.
    pub public_base_url: Option<String>,
    /// Page size when a search has no `_count`.
    pub default_page_size: usize,
    /// Largest `_count` honoured; larger values are capped.
    pub max_page_size: usize,
    /// Most rows one _include or _revinclude clause brings (further rows are left out).
    pub max_include_rows: usize,
    /// Most versions one history request examines; past it the Bundle has no total and a next link.
    pub max_history_scan: usize,
    /// Bytes of request bodies held at once across all requests; past it, a request waits its turn, up to the body read timeout (then 503).
    pub max_inflight_body_bytes: usize,
    /// Most query parameters in one search (criteria, _sort, _include…); more gets 400.
    pub max_search_parameters: usize,
    /// Most comma-separated values of one search parameter; more gets 400.
    pub max_search_values: usize,
    /// Most _sort terms; more gets 400.
    pub max_sort_terms: usize,
    /// Most _include and _revinclude clauses in one search; more gets 400.
    pub max_includes: usize,
    /// Largest _offset of a search or history; larger gets 400.
    pub max_offset: usize,
    /// Largest total of resource bodies in one answer (search page, history, Bundle); past it, 413.
    pub max_answer_bytes: usize,
    /// Most entries in one batch or transaction Bundle; more gets 413.
    pub max_bundle_entries: usize,
    /// Longest time to receive a request body, in milliseconds; slower gets 408.
    pub body_read_timeout_ms: u64,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// Habilitation matrix file replacing the shipped one (R-ACC-6).
    pub habilitation_matrix: Option<PathBuf>,
    /// Catalogue of the apps a holder may authorise (R-ACT-4), replacing the
    /// shipped empty one.
    pub app_catalogue: Option<PathBuf>,
    /// TLS: the server's certificate chain and private key (PEM); HTTPS when both set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: CA certificates (PEM) whose client certificates identify
    /// professionals.
    pub tls_client_ca: Option<PathBuf>,
    /// Professional directory (JSON) that client certificates are looked up in.
    pub professional_directory: Option<PathBuf>,
    /// Commit the trace of many requests together (one fsync for a group) rather than
    /// one transaction per request. Both are durable before the response (R-AUD-2).
    pub audit_group_commit: bool,
    /// SQLite: make the trace of requests that wrote nothing durable in a log of
    /// the instance's own (one append and sync per group), applied to the database
    /// afterwards; false commits it to the database before each answer.
    pub audit_log: bool,
    /// PostgreSQL: make the trace of requests that wrote nothing durable as one row
    /// per group of `audit_log`, applied to the chains afterwards by the instance's
    /// applier; false commits it to the chains before each answer.
    pub audit_log_postgres: bool,
    /// SQLite: commit concurrent writes together (one fsync for a group), each answered
    /// once its group is durable. PostgreSQL runs writers side by side regardless.
    pub write_group_commit: bool,
    /// Delivery channel of notifications (R-AUD-4).
    pub notification_channel: NotificationChannelSetting,
    /// HMAC-SHA256 key of the webhook channel (a file, so it stays out of `ps`).
    pub notification_webhook_secret_file: Option<PathBuf>,
    /// First retry delay of a failed delivery; each retry doubles it (capped at 1 h).
    pub notification_retry_base_ms: u64,
    /// How often the lifecycle job runs (42-day openings, 10-year purges).
    pub lifecycle_interval_ms: u64,
    /// Log the database's plan of every query (diagnosis of slow searches; costs a
    /// planning round trip per query).
    pub log_query_plans: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            database_url: "sqlite://data/dmp-fhir.sqlite".to_owned(),
            trusted_issuers: Vec::new(),
            max_body_bytes: 20 * 1024 * 1024,
            log_format: LogFormat::Text,
            public_base_url: None,
            default_page_size: 20,
            max_page_size: 500,
            max_include_rows: 1000,
            max_history_scan: 10000,
            max_inflight_body_bytes: 25165824,
            max_search_parameters: 64,
            max_search_values: 100,
            max_sort_terms: 8,
            max_includes: 8,
            max_offset: 100000,
            max_answer_bytes: 16777216,
            max_bundle_entries: 500,
            body_read_timeout_ms: 30000,
            workers: 0,
            habilitation_matrix: None,
            app_catalogue: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            professional_directory: None,
            audit_group_commit: true,
            audit_log: true,
            audit_log_postgres: false,
            write_group_commit: true,
            notification_channel: NotificationChannelSetting::Log,
            notification_webhook_secret_file: None,
            notification_retry_base_ms: 2000,
            lifecycle_interval_ms: 60_000,
            log_query_plans: false,
        }
    }
}

/// Settings as flags and environment variables. Every field is optional so that a
/// flag left out does not hide the file's value.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// TOML configuration file (keys as in the README table).
    #[arg(long, env = "DMP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address and port to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "DMP_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST:PORT/DB [default: sqlite://data/dmp-fhir.sqlite].
    #[arg(long, env = "DMP_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Trusted token issuer as ISSUER,JWKS_FILE,AUDIENCE; repeat for several
    /// (environment: separate them with ';').
    #[arg(
        long = "trusted-issuer",
        env = "DMP_TRUSTED_ISSUERS",
        value_delimiter = ';'
    )]
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// Largest request body in bytes [default: 20971520].
    #[arg(long, env = "DMP_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Log format [default: text].
    #[arg(long, env = "DMP_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Public base URL for links (default: from each request's Host header).
    #[arg(long, env = "DMP_PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,
    /// Page size when a search has no _count [default: 20].
    #[arg(long, env = "DMP_DEFAULT_PAGE_SIZE")]
    pub default_page_size: Option<usize>,
    /// Largest _count honoured [default: 500].
    #[arg(long, env = "DMP_MAX_PAGE_SIZE")]
    pub max_page_size: Option<usize>,
    /// Most rows one _include or _revinclude clause brings (further rows are left out) [default: 1000].
    #[arg(long, env = "DMP_MAX_INCLUDE_ROWS")]
    pub max_include_rows: Option<usize>,
    /// Most versions one history request examines; past it the Bundle has no total and a next link [default: 10000].
    #[arg(long, env = "DMP_MAX_HISTORY_SCAN")]
    pub max_history_scan: Option<usize>,
    /// Bytes of request bodies held at once across all requests; past it, a request waits its turn, up to the body read timeout (then 503) [default: 25165824].
    #[arg(long, env = "DMP_MAX_INFLIGHT_BODY_BYTES")]
    pub max_inflight_body_bytes: Option<usize>,
    /// Most query parameters in one search (criteria, _sort, _include…); more gets 400 [default: 64].
    #[arg(long, env = "DMP_MAX_SEARCH_PARAMETERS")]
    pub max_search_parameters: Option<usize>,
    /// Most comma-separated values of one search parameter; more gets 400 [default: 100].
    #[arg(long, env = "DMP_MAX_SEARCH_VALUES")]
    pub max_search_values: Option<usize>,
    /// Most _sort terms; more gets 400 [default: 8].
    #[arg(long, env = "DMP_MAX_SORT_TERMS")]
    pub max_sort_terms: Option<usize>,
    /// Most _include and _revinclude clauses in one search; more gets 400 [default: 8].
    #[arg(long, env = "DMP_MAX_INCLUDES")]
    pub max_includes: Option<usize>,
    /// Largest _offset of a search or history; larger gets 400 [default: 100000].
    #[arg(long, env = "DMP_MAX_OFFSET")]
    pub max_offset: Option<usize>,
    /// Largest total of resource bodies in one answer (search page, history, Bundle); past it, 413 [default: 16777216].
    #[arg(long, env = "DMP_MAX_ANSWER_BYTES")]
    pub max_answer_bytes: Option<usize>,
    /// Most entries in one batch or transaction Bundle; more gets 413 [default: 500].
    #[arg(long, env = "DMP_MAX_BUNDLE_ENTRIES")]
    pub max_bundle_entries: Option<usize>,
    /// Longest time to receive a request body, in milliseconds; slower gets 408 [default: 30000].
    #[arg(long, env = "DMP_BODY_READ_TIMEOUT_MS")]
    pub body_read_timeout_ms: Option<u64>,
    /// HTTP worker threads, 0 for one per core [default: 0].
    #[arg(long, env = "DMP_WORKERS")]
    pub workers: Option<usize>,
    /// Habilitation matrix (JSON) replacing the shipped fhir-profiles/habilitation-matrix.json.
    #[arg(long, env = "DMP_HABILITATION_MATRIX")]
    pub habilitation_matrix: Option<PathBuf>,
    /// Catalogue of the apps a holder may authorise (JSON, SMART; README "Apps")
    /// replacing the shipped empty fhir-profiles/app-catalogue.json.
    #[arg(long, env = "DMP_APP_CATALOGUE")]
    pub app_catalogue: Option<PathBuf>,
    /// Server certificate chain (PEM): serve HTTPS (with --tls-key).
    #[arg(long, env = "DMP_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, env = "DMP_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) of professionals' client certificates (mutual TLS).
    #[arg(long, env = "DMP_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Professional directory (JSON) for client certificates.
    #[arg(long, env = "DMP_PROFESSIONAL_DIRECTORY")]
    pub professional_directory: Option<PathBuf>,
    /// Commit the trace of concurrent requests together (true) or one by one (false)
    /// [default: true].
    #[arg(long, env = "DMP_AUDIT_GROUP_COMMIT", action = clap::ArgAction::Set)]
    pub audit_group_commit: Option<bool>,
    /// SQLite: make the trace of reads durable in the instance's own log, applied
    /// to the database afterwards (true), or commit it to the database before each
    /// answer (false) [default: true].
    #[arg(long, env = "DMP_AUDIT_LOG", action = clap::ArgAction::Set)]
    pub audit_log: Option<bool>,
    /// PostgreSQL: make the trace of reads durable as a row per group of
    /// `audit_log`, applied to the chains afterwards (true), or commit it to the
    /// chains before each answer (false) [default: false].
    #[arg(long, env = "DMP_AUDIT_LOG_POSTGRES", action = clap::ArgAction::Set)]
    pub audit_log_postgres: Option<bool>,
    /// SQLite: commit concurrent writes together (true) or one by one (false)
    /// [default: true].
    #[arg(long, env = "DMP_WRITE_GROUP_COMMIT", action = clap::ArgAction::Set)]
    pub write_group_commit: Option<bool>,
    /// Notification delivery: log, file:PATH or webhook:URL [default: log].
    #[arg(long, env = "DMP_NOTIFICATION_CHANNEL")]
    pub notification_channel: Option<NotificationChannelSetting>,
    /// File holding the webhook's HMAC-SHA256 key.
    #[arg(long, env = "DMP_NOTIFICATION_WEBHOOK_SECRET_FILE")]
    pub notification_webhook_secret_file: Option<PathBuf>,
    /// First retry delay of a failed notification delivery, in ms [default: 2000].
    #[arg(long, env = "DMP_NOTIFICATION_RETRY_BASE_MS")]
    pub notification_retry_base_ms: Option<u64>,
    /// How often the lifecycle job runs, in ms [default: 60000].
    #[arg(long, env = "DMP_LIFECYCLE_INTERVAL_MS")]
    pub lifecycle_interval_ms: Option<u64>,
    /// Log each query's plan (target `dmp_fhir_server::plan`) [default: false].
    #[arg(long, env = "DMP_LOG_QUERY_PLANS", action = clap::ArgAction::Set)]
    pub log_query_plans: Option<bool>,
}

/// The configuration file's shape: the same keys as the flags, in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    #[serde(default)]
    trusted_issuers: Vec<TrustedIssuer>,
    max_body_bytes: Option<usize>,
    log_format: Option<LogFormat>,
    public_base_url: Option<String>,
    default_page_size: Option<usize>,
    max_page_size: Option<usize>,
    max_include_rows: Option<usize>,
    max_history_scan: Option<usize>,
    max_inflight_body_bytes: Option<usize>,
    max_search_parameters: Option<usize>,
    max_search_values: Option<usize>,
    max_sort_terms: Option<usize>,
    max_includes: Option<usize>,
    max_offset: Option<usize>,
    max_answer_bytes: Option<usize>,
    max_bundle_entries: Option<usize>,
    body_read_timeout_ms: Option<u64>,
    workers: Option<usize>,
    habilitation_matrix: Option<PathBuf>,
    app_catalogue: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    professional_directory: Option<PathBuf>,
    audit_group_commit: Option<bool>,
    audit_log: Option<bool>,
    audit_log_postgres: Option<bool>,
    write_group_commit: Option<bool>,
    notification_channel: Option<NotificationChannelSetting>,
    notification_webhook_secret_file: Option<PathBuf>,
    notification_retry_base_ms: Option<u64>,
    lifecycle_interval_ms: Option<u64>,
    log_query_plans: Option<bool>,
}

impl ConfigArgs {
    /// Resolves defaults, file, environment and flags into one [`Config`].
    pub fn resolve(&self) -> Result<Config, String> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => ConfigFile::default(),
        };
        let base = Config::default();
        // A path in the file is relative to the file, not to the working directory.
        let file_dir = self
            .config
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let file_issuers = file.trusted_issuers.into_iter().map(|mut issuer| {
            if issuer.jwks.is_relative() {
                issuer.jwks = file_dir.join(&issuer.jwks);
            }
            issuer
        });
        let trusted_issuers = if self.trusted_issuers.is_empty() {
            file_issuers.collect()
        } else {
            self.trusted_issuers.clone()
        };
        let config = Config {
            listen: self.listen.or(file.listen).unwrap_or(base.listen),
            database_url: self
                .database_url
                .clone()
                .or(file.database_url)
                .unwrap_or(base.database_url),
            trusted_issuers,
            max_body_bytes: self
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(base.max_body_bytes),
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(base.log_format),
            public_base_url: self
                .public_base_url
                .clone()
                .or(file.public_base_url)
                .map(|url| url.trim_end_matches('/').to_owned()),
            default_page_size: self
                .default_page_size
                .or(file.default_page_size)
                .unwrap_or(base.default_page_size),
            max_page_size: self
                .max_page_size
                .or(file.max_page_size)
                .unwrap_or(base.max_page_size),
            max_include_rows: self
                .max_include_rows
                .or(file.max_include_rows)
                .unwrap_or(base.max_include_rows),
            max_history_scan: self
                .max_history_scan
                .or(file.max_history_scan)
                .unwrap_or(base.max_history_scan),
            max_inflight_body_bytes: self
                .max_inflight_body_bytes
                .or(file.max_inflight_body_bytes)
                .unwrap_or(base.max_inflight_body_bytes),
            max_search_parameters: self
                .max_search_parameters
                .or(file.max_search_parameters)
                .unwrap_or(base.max_search_parameters),
            max_search_values: self
                .max_search_values
                .or(file.max_search_values)
                .unwrap_or(base.max_search_values),
            max_sort_terms: self
                .max_sort_terms
                .or(file.max_sort_terms)
                .unwrap_or(base.max_sort_terms),
            max_includes: self
                .max_includes
                .or(file.max_includes)
                .unwrap_or(base.max_includes),
            max_offset: self
                .max_offset
                .or(file.max_offset)
                .unwrap_or(base.max_offset),
            max_answer_bytes: self
                .max_answer_bytes
                .or(file.max_answer_bytes)
                .unwrap_or(base.max_answer_bytes),
            max_bundle_entries: self
                .max_bundle_entries
                .or(file.max_bundle_entries)
                .unwrap_or(base.max_bundle_entries),
            body_read_timeout_ms: self
                .body_read_timeout_ms
                .or(file.body_read_timeout_ms)
                .unwrap_or(base.body_read_timeout_ms),
            workers: self.workers.or(file.workers).unwrap_or(base.workers),
            habilitation_matrix: pick_path(
                &self.habilitation_matrix,
                file.habilitation_matrix,
                &file_dir,
            ),
            app_catalogue: pick_path(&self.app_catalogue, file.app_catalogue, &file_dir),
            tls_cert: pick_path(&self.tls_cert, file.tls_cert, &file_dir),
            tls_key: pick_path(&self.tls_key, file.tls_key, &file_dir),
            tls_client_ca: pick_path(&self.tls_client_ca, file.tls_client_ca, &file_dir),
            professional_directory: pick_path(
                &self.professional_directory,
                file.professional_directory,
                &file_dir,
            ),
            audit_group_commit: self
                .audit_group_commit
                .or(file.audit_group_commit)
                .unwrap_or(base.audit_group_commit),
            audit_log: self.audit_log.or(file.audit_log).unwrap_or(base.audit_log),
            audit_log_postgres: self
                .audit_log_postgres
                .or(file.audit_log_postgres)
                .unwrap_or(base.audit_log_postgres),
            write_group_commit: self
                .write_group_commit
                .or(file.write_group_commit)
                .unwrap_or(base.write_group_commit),
            notification_channel: self
                .notification_channel
                .clone()
                .or(file.notification_channel)
                .unwrap_or(base.notification_channel),
            notification_webhook_secret_file: pick_path(
                &self.notification_webhook_secret_file,
                file.notification_webhook_secret_file,
                &file_dir,
            ),
            notification_retry_base_ms: self
                .notification_retry_base_ms
                .or(file.notification_retry_base_ms)
                .unwrap_or(base.notification_retry_base_ms),
            lifecycle_interval_ms: self
                .lifecycle_interval_ms
                .or(file.lifecycle_interval_ms)
                .unwrap_or(base.lifecycle_interval_ms)
                .max(10),
            log_query_plans: self
                .log_query_plans
                .or(file.log_query_plans)
                .unwrap_or(base.log_query_plans),
        };
        if matches!(
            config.notification_channel,
            NotificationChannelSetting::Webhook(_)
        ) && config.notification_webhook_secret_file.is_none()
        {
            return Err(
                "--notification-channel webhook:URL needs --notification-webhook-secret-file"
                    .into(),
            );
        }
        if config.tls_cert.is_some() != config.tls_key.is_some() {
            return Err("--tls-cert and --tls-key go together".into());
        }
        if config.tls_client_ca.is_some()
            && (config.tls_cert.is_none() || config.professional_directory.is_none())
        {
            return Err(
                "--tls-client-ca needs --tls-cert, --tls-key and --professional-directory".into(),
            );
        }
        if config.default_page_size == 0 || config.max_page_size < config.default_page_size {
            return Err("page sizes must satisfy 0 < default_page_size <= max_page_size".into());
        }
        Ok(config)
    }
}

/// A path from the flags, else from the file (relative to the file's folder).
fn pick_path(
    flag: &Option<PathBuf>,
    from_file: Option<PathBuf>,
    file_dir: &Path,
) -> Option<PathBuf> {
    flag.clone().or_else(|| {
        from_file.map(|path| {
            if path.is_relative() {
                file_dir.join(path)
            } else {
                path
            }
        })
    })
}

fn read_file(path: &Path) -> Result<ConfigFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read configuration file {}: {error}", path.display()))?;
    toml::from_str(&text)
        .map_err(|error| format!("invalid configuration file {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_issuer_triple() {
        let issuer: TrustedIssuer = "https://psc.example,keys/psc.json,dmp".parse().unwrap();
        assert_eq!(issuer.issuer, "https://psc.example");
        assert_eq!(issuer.audience, "dmp");
        assert!(
            "https://psc.example,keys.json"
                .parse::<TrustedIssuer>()
                .is_err()
        );
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = std::env::temp_dir().join(format!("dmp-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("server.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nmax_body_bytes = 10\n[[trusted_issuers]]\nissuer = \"i\"\njwks = \"k.json\"\naudience = \"a\"\n",
        )
        .unwrap();
        let args = ConfigArgs {
            config: Some(file),
            max_body_bytes: Some(99),
            ..ConfigArgs::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.max_body_bytes, 99);
        assert_eq!(config.trusted_issuers[0].jwks, dir.join("k.json"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The README's configuration table documents every flag and its variable.
    #[test]
    fn the_readme_documents_every_setting() {
        use clap::Args as _;
        let readme = include_str!("../README.md");
        let command = ConfigArgs::augment_args(clap::Command::new("dmp-fhir-server"));
        for argument in command.get_arguments() {
            let Some(long) = argument.get_long() else {
                continue;
            };
            assert!(
                readme.contains(&format!("| `--{long}` |")),
                "--{long} is missing from the README table"
            );
            if let Some(env) = argument.get_env() {
                let env = env.to_string_lossy();
                assert!(
                    readme.contains(&format!("`{env}`")),
                    "{env} is missing from the README table"
                );
            }
        }
    }

    #[test]
    fn tls_settings_go_together() {
        let half = ConfigArgs {
            tls_cert: Some("server.crt".into()),
            ..ConfigArgs::default()
        };
        assert!(half.resolve().unwrap_err().contains("--tls-key"));
        let no_directory = ConfigArgs {
            tls_cert: Some("server.crt".into()),
            tls_key: Some("server.key".into()),
            tls_client_ca: Some("ca.crt".into()),
            ..ConfigArgs::default()
        };
        assert!(
            no_directory
                .resolve()
                .unwrap_err()
                .contains("--professional-directory")
        );
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("dmp-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("server.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let args = ConfigArgs {
            config: Some(file),
            ..ConfigArgs::default()
        };
        assert!(args.resolve().unwrap_err().contains("lisen"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
