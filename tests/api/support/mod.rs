//! Test harness: a real server on a free loopback port with its own SQLite file,
//! signing keys generated at test time, and a small blocking HTTP client.

pub mod fixtures;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dmp_fhir_server::config::TrustedIssuer;
use dmp_fhir_server::store::dialect;
use dmp_fhir_server::{AppState, Config, build_server};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use serde_json::{Value, json};

pub const ISSUER: &str = "https://issuer.test";
pub const SECOND_ISSUER: &str = "https://hospital-idp.test";
pub const AUDIENCE: &str = "dmp-fhir-server";

/// A signing key and its public JWK.
pub struct TestKey {
    pub kid: &'static str,
    pub algorithm: Algorithm,
    pub private_pem: Vec<u8>,
    pub jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_key(kid: &'static str) -> TestKey {
    let rsa = Rsa::generate(2048).expect("RSA key");
    let jwk = json!({
        "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
        "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec()),
    });
    TestKey {
        kid,
        algorithm: Algorithm::RS256,
        private_pem: rsa.private_key_to_pem().expect("PEM"),
        jwk,
    }
}

fn ec_key(kid: &'static str) -> TestKey {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    let key = EcKey::generate(&group).expect("EC key");
    let mut ctx = BigNumContext::new().expect("ctx");
    let point = key
        .public_key()
        .to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut ctx)
        .expect("point");
    let jwk = json!({
        "kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    let pkcs8 = PKey::from_ec_key(key)
        .expect("pkey")
        .private_key_to_pem_pkcs8()
        .expect("PEM");
    TestKey {
        kid,
        algorithm: Algorithm::ES256,
        private_pem: pkcs8,
        jwk,
    }
}

/// Keys generated once per test run: the trusted issuer's RSA and EC keys, the
/// second issuer's key, and a key nobody trusts.
pub struct Keys {
    pub rsa: TestKey,
    pub ec: TestKey,
    pub second_issuer: TestKey,
    pub untrusted: TestKey,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: rsa_key("rsa-1"),
        ec: ec_key("ec-1"),
        second_issuer: ec_key("hospital-1"),
        untrusted: rsa_key("rsa-1"),
    })
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Signs `claims` with `key`.
pub fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.kid.to_owned());
    let encoding = match key.algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&key.private_pem).expect("RSA PEM"),
        _ => EncodingKey::from_ec_pem(&key.private_pem).expect("EC PEM"),
    };
    jsonwebtoken::encode(&header, claims, &encoding).expect("token")
}

/// Standard claims for the trusted issuer, valid for an hour.
pub fn base_claims(actor: &str, sub: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "actor": actor,
        "iat": now(), "nbf": now() - 5, "exp": now() + 3600,
    })
}

/// Who a request is made as.
#[derive(Clone, Debug)]
pub enum As {
    Nobody,
    System,
    Professional {
        id_nat_ps: String,
        profession: String,
    },
    Patient(String),
    Representative(String),
    Other(String),
    Token(String),
}

impl As {
    pub fn doctor() -> As {
        As::Professional {
            id_nat_ps: "810000000001".into(),
            profession: "10".into(),
        }
    }

    /// A professional with a profession, optional organisation and access mode.
    pub fn professional(
        id_nat_ps: &str,
        profession: &str,
        organization: Option<&str>,
        purpose: Option<&str>,
        reason: Option<&str>,
    ) -> As {
        let mut claims = base_claims("professional", id_nat_ps);
        claims["profession"] = json!(profession);
        if let Some(organization) = organization {
            claims["organization"] = json!(organization);
        }
        if let Some(purpose) = purpose {
            claims["purpose_of_use"] = json!(purpose);
        }
        if let Some(reason) = reason {
            claims["access_reason"] = json!(reason);
        }
        As::Token(sign(&keys().rsa, &claims))
    }

    pub fn token(&self) -> Option<String> {
        let claims = match self {
            As::Nobody => return None,
            As::Token(token) => return Some(token.clone()),
            As::System => {
                let mut claims = base_claims("system", "insurer-feed");
                // Its conditional creates search (`s`), among its own deposits.
                claims["scope"] =
                    json!("system/Patient.cruds system/DocumentReference.cs system/Binary.c");
                claims
            }
            As::Professional {
                id_nat_ps,
                profession,
            } => {
                let mut claims = base_claims("professional", id_nat_ps);
                claims["profession"] = json!(profession);
                claims
            }
            As::Patient(patient) => {
                let mut claims = base_claims("patient", &format!("user-{patient}"));
                claims["patient"] = json!(patient);
                claims
            }
            As::Representative(patient) => {
                let mut claims = base_claims("representative", &format!("parent-of-{patient}"));
                claims["patient"] = json!(patient);
                claims
            }
            As::Other(actor) => base_claims(actor, "someone"),
        };
        Some(sign(&keys().rsa, &claims))
    }
}

/// The entities of the events a trace Bundle holds, in order.
pub fn event_entities(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|entry| {
            entry["resource"]["entity"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// The URL of a Bundle's `next` link, if it has one.
pub fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|link| link["relation"] == "next")
        .and_then(|link| link["url"].as_str())
        .map(str::to_owned)
}

/// Ids of a searchset's `match` entries, in Bundle order.
pub fn match_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|entry| entry["search"]["mode"] == "match")
                .map(|entry| entry["resource"]["id"].as_str().expect("id").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    /// The body as text (empty when it is not UTF-8).
    pub body: String,
    /// The body's bytes.
    pub bytes: Vec<u8>,
    /// For a refusal (403, 404): the rules its trace records. A hidden resource's
    /// answer names no rule (its existence does not leak); the trace does.
    pub traced_rules: Vec<String>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }

    /// The resources of a Bundle answer's entries, in order (none without entries).
    pub fn resources(&self) -> Vec<Value> {
        self.json()["entry"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|entry| entry["resource"].clone())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The OperationOutcome's first issue code.
    pub fn issue_code(&self) -> String {
        let outcome = self.json();
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{}", self.body);
        outcome["issue"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The id of the resource the answer is about: its body's, or, when the caller
    /// may not read it back (a write under a scope that does not read its type),
    /// the one its `Location` names (`…/Type/id/_history/n`).
    pub fn id(&self) -> String {
        if self.body.is_empty()
            && let Some(location) = self.header("location")
        {
            let mut parts = location.rsplit('/');
            let (_, _, id) = (parts.next(), parts.next(), parts.next());
            return id.expect("a Location naming a version").to_owned();
        }
        self.json()["id"].as_str().expect("id").to_owned()
    }
}

/// A running server with its own database.
pub struct TestApp {
    pub base: String,
    /// The server's database: a SQLite file in the test's folder, or a fresh PostgreSQL database
    /// when `DMP_TEST_POSTGRES_URL` names a server.
    pub database_url: String,
    agent: ureq::Agent,
    /// The time the server's rules see; [`TestApp::advance`] moves it forward.
    clock: std::sync::Arc<dmp_fhir_server::clock::OffsetClock>,
    /// The server, stopped when the test ends, so that its connections, threads and
    /// files go with it (a PostgreSQL run would otherwise reach its connection limit).
    server: Option<(actix_web::dev::ServerHandle, std::thread::JoinHandle<()>)>,
    /// The server's trace writer, to wait for its log to be applied.
    trace: Option<dmp_fhir_server::audit::writer::AuditWriter>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop_server();
    }
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn temp_dir(label: &str) -> PathBuf {
    static EARLIER_RUNS_REMOVED: std::sync::Once = std::sync::Once::new();
    EARLIER_RUNS_REMOVED.call_once(remove_folders_of_ended_runs);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("dmp-test-{}-{label}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Whether the test run of this process id (as test folders and databases are
/// named) has ended.
fn run_ended(pid: &str) -> bool {
    pid.parse::<u32>()
        .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes the test folders of runs whose process has ended: a run's servers live
/// as long as its process, so its folders (their databases) outlive its tests.
fn remove_folders_of_ended_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|name| name.strip_prefix("dmp-test-"))
            .and_then(|rest| rest.split('-').next());
        if pid.is_some_and(run_ended) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The database of one test: with `DMP_TEST_POSTGRES_URL` (a URL of the server's
/// maintenance database), a new PostgreSQL database; else a SQLite file in `dir`.
fn test_database(dir: &std::path::Path) -> String {
    let Ok(admin) = std::env::var("DMP_TEST_POSTGRES_URL") else {
        return format!("sqlite://{}", dir.join("db.sqlite").display());
    };
    use diesel::RunQueryDsl;
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let name = format!("dmp_test_{}_{n}", std::process::id());
    let target = dialect::target(&admin).expect("DMP_TEST_POSTGRES_URL");
    let mut conn = dialect::connect(&target).expect("connect to DMP_TEST_POSTGRES_URL");
    static EARLIER_RUNS_DROPPED: std::sync::Once = std::sync::Once::new();
    EARLIER_RUNS_DROPPED.call_once(|| drop_databases_of_ended_runs(&mut conn));
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .expect("create the test database");
    match admin.rfind('/') {
        Some(slash) if slash > "postgres://".len() => {
            let (server, rest) = admin.split_at(slash);
            let query = rest.find('?').map_or("", |at| &rest[at..]);
            format!("{server}/{name}{query}")
        }
        _ => {
            panic!("DMP_TEST_POSTGRES_URL must name a database: postgres://user@host:port/postgres")
        }
    }
}

/// Drops the test databases of runs whose process has ended: a server kept between
/// runs (`scripts/throwaway-postgres.sh` in a shell of one's own) would otherwise
/// keep every run's databases (a run's servers live as long as its process).
fn drop_databases_of_ended_runs(conn: &mut dialect::Conn) {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let names =
        diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'dmp\\_test\\_%'")
            .load::<Name>(conn)
            .unwrap_or_default();
    for Name { datname } in names {
        if datname.split('_').nth(2).is_some_and(run_ended) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)"))
                .execute(conn);
        }
    }
}

impl TestApp {
    pub fn new() -> TestApp {
        Self::with(|_| {})
    }

    /// Starts a server after `adjust` has changed its configuration.
    pub fn with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let dir = temp_dir("app");
        let keys = keys();
        let jwks = dir.join("issuer.jwks.json");
        std::fs::write(
            &jwks,
            json!({ "keys": [keys.rsa.jwk, keys.ec.jwk] }).to_string(),
        )
        .expect("jwks");
        let second = dir.join("hospital.jwks.json");
        std::fs::write(
            &second,
            json!({ "keys": [keys.second_issuer.jwk] }).to_string(),
        )
        .expect("jwks");
        let database_url = test_database(&dir);
        let mut config = Config {
            database_url: database_url.clone(),
            trusted_issuers: vec![
                TrustedIssuer {
                    issuer: ISSUER.into(),
                    jwks,
                    audience: AUDIENCE.into(),
                },
                TrustedIssuer {
                    issuer: SECOND_ISSUER.into(),
                    jwks: second,
                    audience: "hospital-dmp".into(),
                },
            ],
            workers: 1,
            ..Config::default()
        };
        adjust(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let clock = std::sync::Arc::new(dmp_fhir_server::clock::OffsetClock::default());
        let state = AppState::with_clock(config, clock.clone()).expect("app state");
        let trace = Some(state.audit.clone());
        let (handle_sender, handle) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = build_server(state, listener).expect("server");
                handle_sender.send(server.handle()).expect("the test waits");
                server.await.expect("serve");
            });
        });
        let handle = handle.recv().expect("the server starts");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        TestApp {
            base,
            database_url,
            agent,
            clock,
            server: Some((handle, thread)),
            trace,
        }
    }

    pub fn request(&self, method: &str, path: &str) -> Call<'_> {
        Call {
            app: self,
            method: method.to_owned(),
            url: if path.starts_with("http") {
                path.to_owned()
            } else {
                format!("{}/{}", self.base, path.trim_start_matches('/'))
            },
            headers: Vec::new(),
        }
    }

    pub fn get(&self, path: &str, who: &As) -> Reply {
        self.request("GET", path).as_(who).send(None)
    }

    pub fn post(&self, path: &str, who: &As, body: &Value) -> Reply {
        self.request("POST", path)
            .as_(who)
            .fhir()
            .send(Some(body.to_string()))
    }

    /// A JSON Patch (`application/json-patch+json`) of `path`.
    pub fn json_patch(&self, path: &str, who: &As, operations: &Value) -> Reply {
        self.request("PATCH", path)
            .as_(who)
            .header("Content-Type", "application/json-patch+json")
            .send(Some(operations.to_string()))
    }

    pub fn put(&self, path: &str, who: &As, body: &Value) -> Reply {
        self.request("PUT", path)
            .as_(who)
            .fhir()
            .send(Some(body.to_string()))
    }

    pub fn delete(&self, path: &str, who: &As) -> Reply {
        self.request("DELETE", path).as_(who).send(None)
    }

    /// Creates and returns the new id, failing the test on anything but 201.
    /// A patient (born `born`, médecin traitant `As::doctor()`) and one document the
    /// médecin traitant deposited: their ids.
    pub fn patient_with_document(&self, born: &str) -> (String, String) {
        let patient_id = self.create(
            &As::System,
            &fixtures::patient(&fixtures::nir(), "Martin", "Claire", born),
        );
        let document_id = self.create(
            &As::doctor(),
            &fixtures::document(&patient_id, "11488-4", "2024-01-01"),
        );
        (patient_id, document_id)
    }

    pub fn create(&self, who: &As, body: &Value) -> String {
        let kind = body["resourceType"].as_str().expect("resourceType");
        let reply = self.post(kind, who, body);
        assert_eq!(reply.status, 201, "create {kind}: {}", reply.body);
        reply.id()
    }

    /// The number of rows of a table, read straight from the database: what the
    /// store really holds, not what the API shows.
    pub fn stored_rows(&self, table: &str) -> i64 {
        use diesel::{QueryableByName, RunQueryDsl};
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
            .load::<Count>(&mut self.connect())
            .expect("count")[0]
            .n
    }

    /// A connection of its own to the test's database.
    /// A connection of the test's own to the server's database, once every
    /// answered request's trace is in it (the server applies its trace's log
    /// after answering, `audit::applier`).
    pub fn connect(&self) -> dmp_fhir_server::store::Conn {
        if let Some(trace) = &self.trace {
            trace.wait_stored().expect("the trace is stored");
        }
        let target = dialect::target(&self.database_url).expect("database URL");
        let mut conn = dialect::connect(&target).expect("open the test database");
        // The server's own settings, its busy timeout among them: the server may be
        // writing (its trace, its lifecycle job) when a test reads or changes rows.
        dialect::prepare_connection(&mut conn).expect("connection settings");
        conn
    }

    /// Whether this run's database is PostgreSQL (`DMP_TEST_POSTGRES_URL`).
    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres")
    }
}

impl TestApp {
    /// Moves the time the server's rules see forward (42 days, 18 years…), without
    /// sleeping.
    pub fn advance(&self, by: chrono::TimeDelta) {
        self.clock.advance(by);
    }

    /// Stored resources other than the trace: every request, a refused one included,
    /// leaves AuditEvents (R-AUD-1); "stores nothing" means no other row.
    pub fn data_rows(&self) -> i64 {
        self.stored_rows("resources WHERE res_type <> 'AuditEvent'")
    }

    /// Stops the in-process server, its trace's indexer with it (at its next turn,
    /// within 50 ms): for a test whose server process must be the only one to
    /// index what it queues. The database stays, with the trace of every answered
    /// request.
    pub fn stop_server(&mut self) {
        if let Some(trace) = self.trace.take() {
            trace.wait_stored().expect("the trace is stored");
        }
        if let Some((handle, thread)) = self.server.take() {
            // The stop command is sent when `stop` is called; its future only waits.
            drop(handle.stop(false));
            let _ = thread.join();
        }
    }

    /// Takes the index of every stored AuditEvent back and queues them, as an
    /// earlier version of the server left the events it had not indexed yet (this
    /// one indexes an event with its append): the trace's indexer indexes them
    /// before any reader of the trace is answered.
    pub fn unindex_the_trace(&self) {
        use diesel::RunQueryDsl;
        let mut conn = self.connect();
        for statement in dmp_fhir_server::store::audit_index::UNINDEX_EVERY_EVENT {
            diesel::sql_query(statement)
                .execute(&mut conn)
                .expect(statement);
        }
    }

    /// The AuditEvents of one request (by its X-Request-Id), as stored.
    pub fn audit_events(&self, request_id: &str) -> Vec<Value> {
        self.query_texts(&format!(
            "SELECT r.content AS text FROM audit_chain c JOIN resources r ON r.pk = c.resource_pk \
             WHERE c.request_id = '{}' ORDER BY c.chain_key",
            request_id.replace('\'', "")
        ))
        .iter()
        .map(|text| serde_json::from_str(text).expect("stored JSON"))
        .collect()
    }

    /// The first column (text) of each row of a query on the database.
    pub fn query_texts(&self, query: &str) -> Vec<String> {
        use diesel::{QueryableByName, RunQueryDsl};
        #[derive(QueryableByName)]
        struct Text {
            #[diesel(sql_type = diesel::sql_types::Text)]
            text: String,
        }
        diesel::sql_query(query)
            .load::<Text>(&mut self.connect())
            .expect("query")
            .into_iter()
            .map(|row| row.text)
            .collect()
    }

    /// Runs a statement, returning the database's refusal instead of panicking.
    pub fn try_execute_sql(&self, statement: &str) -> Result<usize, String> {
        use diesel::RunQueryDsl;
        diesel::sql_query(statement)
            .execute(&mut self.connect())
            .map_err(|error| error.to_string())
    }

    /// Runs a statement on the database, for tests that must change what the server
    /// cannot (tampering with the trace, an old closure date).
    pub fn execute_sql(&self, statement: &str) -> usize {
        self.try_execute_sql(statement).expect("statement")
    }
}

/// A request being built.
pub struct Call<'a> {
    app: &'a TestApp,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
}

impl Call<'_> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn as_(self, who: &As) -> Self {
        match who.token() {
            Some(token) => self.header("Authorization", &format!("Bearer {token}")),
            None => self,
        }
    }

    pub fn fhir(self) -> Self {
        self.header("Content-Type", "application/fhir+json")
    }

    pub fn send(self, body: Option<String>) -> Reply {
        self.send_bytes(body.map(String::into_bytes))
    }

    pub fn send_bytes(self, body: Option<Vec<u8>>) -> Reply {
        let agent = &self.app.agent;
        let response = match (self.method.as_str(), body) {
            ("GET" | "DELETE", None) => {
                let mut request = if self.method == "GET" {
                    agent.get(&self.url)
                } else {
                    agent.delete(&self.url)
                };
                for (name, value) in &self.headers {
                    request = request.header(name, value);
                }
                request.call()
            }
            (method, body) => {
                let mut request = match method {
                    "POST" => agent.post(&self.url),
                    "PUT" => agent.put(&self.url),
                    "PATCH" => agent.patch(&self.url),
                    other => panic!("method {other} with a body"),
                };
                for (name, value) in &self.headers {
                    request = request.header(name, value);
                }
                request.send(body.unwrap_or_default())
            }
        };
        let mut response = response.expect("HTTP exchange");
        let status = response.status().as_u16();
        let headers: HashMap<String, String> = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    value.to_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .unwrap_or_default();
        let body = String::from_utf8(bytes.clone()).unwrap_or_default();
        let traced_rules = match (status, headers.get("x-request-id")) {
            (403 | 404, Some(request_id)) => self
                .app
                .audit_events(request_id)
                .iter()
                .flat_map(|event| event["extension"].as_array().cloned().unwrap_or_default())
                .filter(|extension| {
                    extension["url"]
                        == "https://dmp-fhir-server.fr/fhir/StructureDefinition/audit-rule"
                })
                .filter_map(|extension| extension["valueString"].as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let reply = Reply {
            status,
            headers,
            body,
            bytes,
            traced_rules,
        };
        capture(&reply);
        reply
    }
}

/// With `DMP_TEST_CAPTURE_DIR` set, every FHIR JSON answer of the suite is saved
/// there, one file each, for the third-party validators (conformance/run-validators.sh).
fn capture(reply: &Reply) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Ok(dir) = std::env::var("DMP_TEST_CAPTURE_DIR") else {
        return;
    };
    let fhir_json = reply
        .header("content-type")
        .is_some_and(|kind| kind.starts_with("application/fhir+json"));
    if !fhir_json || reply.body.is_empty() {
        return;
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{}-{n}.json", std::process::id());
    std::fs::write(std::path::Path::new(&dir).join(name), &reply.body).expect("capture");
}

/// Asserts a refusal: its status and its rule. A 403 names the rule in its
/// OperationOutcome; a 404 (a hidden resource) names none, answering as for a
/// resource that does not exist, and its trace records the rule.
pub fn assert_refused(reply: &Reply, status: u16, rule: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    if status == 404 {
        assert!(
            !reply.body.contains("rule "),
            "a hidden resource's answer names no rule: {}",
            reply.body
        );
        assert!(
            reply.traced_rules.iter().any(|traced| traced == rule),
            "expected {rule} in the trace, found {:?}: {}",
            reply.traced_rules,
            reply.body
        );
    } else {
        assert!(
            reply.body.contains(&format!("rule {rule}")),
            "expected {rule}: {}",
            reply.body
        );
    }
}

/// Waits (without a time assertion) until `ready` gives a value, for at most 20 s:
/// for what the server does in the background (deliveries, the lifecycle job).
/// Runs `work` on `threads` threads released together, each given its number;
/// their results in thread order.
pub fn on_threads<T: Send>(threads: usize, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = std::sync::Barrier::new(threads);
    let (barrier, work) = (&barrier, &work);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || {
                    barrier.wait();
                    work(thread)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a client thread"))
            .collect()
    })
}

pub fn eventually<T>(mut ready: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "not within 20 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A server process of the test binary's build on `database_url`, trusting the test
/// issuer; killed when dropped.
pub struct ServerProcess {
    pub base: String,
    child: std::process::Child,
    log: PathBuf,
}

impl ServerProcess {
    pub fn start(database_url: &str) -> ServerProcess {
        ServerProcess::start_with(database_url, &[], &[("DMP_LOG", "error")])
    }

    /// A server process with further flags and environment variables; what it prints
    /// goes to a file, read back by [`ServerProcess::output`].
    pub fn start_with(database_url: &str, args: &[&str], envs: &[(&str, &str)]) -> ServerProcess {
        let dir = temp_dir("process");
        let jwks = dir.join("issuer.jwks.json");
        std::fs::write(&jwks, json!({ "keys": [keys().rsa.jwk] }).to_string()).expect("jwks");
        let log = dir.join("server.log");
        let output = std::fs::File::create(&log).expect("server log");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_dmp-fhir-server"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--database-url")
            .arg(database_url)
            .arg("--trusted-issuer")
            .arg(format!("{ISSUER},{},{AUDIENCE}", jwks.display()))
            .arg("--workers")
            .arg("2")
            .args(args)
            .envs(envs.iter().copied())
            .stdout(output.try_clone().expect("server log"))
            .stderr(output)
            .spawn()
            .expect("start a server process");
        let base = format!("http://127.0.0.1:{port}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let ready = (0..400).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(25));
            agent.get(&format!("{base}/metadata")).call().is_ok()
        });
        assert!(ready, "the server process did not start");
        ServerProcess { base, child, log }
    }

    /// The process's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status")
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// What the process has printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Loads synthetic spaces into the app's database with `dmp-fhir-server generate`
/// (ids `gen-{seed}-{n}`); returns what it printed.
pub fn generate(app: &TestApp, patients: u64, documents_per_patient: u64, seed: u64) -> String {
    let (succeeded, printed) = run_command(&[
        "--database-url",
        &app.database_url,
        "generate",
        "--patients",
        &patients.to_string(),
        "--documents-per-patient",
        &documents_per_patient.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
    assert!(succeeded, "{printed}");
    printed
}

/// Runs the server binary with `args` (a command such as `audit-verify`): whether it
/// succeeded, and what it printed.
pub fn run_command(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dmp-fhir-server"))
        .args(args)
        .output()
        .expect("run the server binary");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// The seed of a property test's draws: fixed by default, so that a run (CI's among
/// them) is reproducible; `VAR=random` draws afresh, `VAR=N` replays seed N.
pub fn property_seed(var: &str) -> proptest::test_runner::RngSeed {
    use proptest::test_runner::RngSeed;
    match std::env::var(var).ok().as_deref().map(str::trim) {
        Some("random") => RngSeed::Random,
        Some(seed) => seed
            .parse()
            .map(RngSeed::Fixed)
            .unwrap_or(RngSeed::Fixed(20261129)),
        None => RngSeed::Fixed(20261129),
    }
}
