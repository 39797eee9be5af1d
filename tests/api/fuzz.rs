//! Property-based fuzzing, over real HTTP, of the parsers a caller reaches: search
//! parameters (GET and POST `_search`), JSON Patch bodies, batch and transaction
//! Bundles, `Authorization` headers and resource bodies (FHIR JSON and raw Binary).
//!
//! One server per test. Every answer is checked: never a 5xx, never a hung or dropped
//! connection, every 4xx an OperationOutcome (valid R4). After the run, the server
//! still serves its CapabilityStatement and, unchanged, a Patient and a document
//! created at the start.
//!
//! Cases per test come from `DMP_FUZZ_CASES` (default 64); the draws are the same from
//! run to run unless `DMP_FUZZ_SEED` says `random` (or another seed). To look harder:
//! `DMP_FUZZ_SEED=random DMP_FUZZ_CASES=2000 cargo test --test api fuzz`. A failure
//! prints the smallest failing input and the request that showed it.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};

use crate::support::fixtures::{communication, consent, document, nir, patient};
use crate::support::{AUDIENCE, As, ISSUER, Reply, SECOND_ISSUER, TestApp, TestKey, keys, now};

// ---------------------------------------------------------------------------------
// The harness: one server, requests with a deadline, the checks every answer passes.
// ---------------------------------------------------------------------------------

/// Longest wait for an answer before the connection counts as hung.
const PATIENCE: Duration = Duration::from_secs(30);

const FHIR_JSON: &str = "application/fhir+json";

const TRE_A07: &str = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";

fn cases() -> u32 {
    std::env::var("DMP_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.trim().parse().ok())
        .unwrap_or(64)
}

/// Runs `check` on generated inputs; panics with the smallest failing one.
fn fuzz<S>(strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: fmt::Debug,
{
    let mut runner = TestRunner::new(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        // Every shrinking step is a request or two: bounded, so a failure is reported
        // within minutes even when each step waits for a hung answer.
        max_shrink_time: 120_000,
        rng_seed: crate::support::property_seed("DMP_FUZZ_SEED"),
        ..ProptestConfig::default()
    });
    if let Err(failure) = runner.run(&strategy, check) {
        panic!("{failure}");
    }
}

/// One HTTP request, kept whole so that a failure can print it.
#[derive(Clone)]
struct Req {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Req {
    fn new(method: &'static str, path: impl Into<String>) -> Req {
        Req {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn by(self, who: &As) -> Req {
        match who.token() {
            Some(token) => self.header("Authorization", &format!("Bearer {token}")),
            None => self,
        }
    }

    fn body(mut self, bytes: Vec<u8>) -> Req {
        self.body = Some(bytes);
        self
    }

    fn fhir(self, value: &Value) -> Req {
        self.header("Content-Type", FHIR_JSON)
            .body(value.to_string().into_bytes())
    }
}

impl fmt::Display for Req {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} /{}", self.method, self.path.trim_start_matches('/'))?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {value}")?;
        }
        if let Some(body) = &self.body {
            writeln!(f)?;
            writeln!(f, "{}", String::from_utf8_lossy(body))?;
        }
        Ok(())
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| {
            payload
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
        })
        .unwrap_or_else(|| "panic".to_owned())
}

/// Who a fuzzed request is made as.
#[derive(Debug, Clone, Copy)]
enum Who {
    Doctor,
    Patient,
    System,
    Nobody,
}

/// A server, the space the fuzzed requests aim at, and a sentinel space they never
/// name, read at the end to show the server still serves it unchanged.
struct World {
    app: Arc<TestApp>,
    doctor: As,
    patient: As,
    system: As,
    targets: Targets,
    sentinel: Vec<(String, Value)>,
}

/// Ids the fuzzed requests may name (and change).
#[derive(Clone, Debug)]
struct Targets {
    patient: String,
    documents: Vec<String>,
    binary: String,
    /// Fresh INS-NIR for Patients the fuzz creates.
    nirs: Vec<String>,
}

impl World {
    fn new() -> World {
        let app = TestApp::new();
        // Signed once: the same token text each time, as a real client sends it.
        let signed = |who: As| As::Token(who.token().expect("a token"));
        let doctor = signed(As::doctor());
        let system = signed(As::System);
        let sentinel_patient = app.create(
            &system,
            &patient(&nir(), "Sentinelle", "Anne", "1970-01-01"),
        );
        let sentinel_document = app.create(
            &doctor,
            &document(&sentinel_patient, "11488-4", "2023-03-03"),
        );
        let patient_id = app.create(&system, &patient(&nir(), "Martin", "Claire", "1980-05-01"));
        let documents = [
            ("11488-4", "2024-01-01"),
            ("34133-9", "2024-02-15"),
            ("18748-4", "2023-12-31"),
        ]
        .iter()
        .map(|(code, day)| app.create(&doctor, &document(&patient_id, code, day)))
        .collect();
        let binary = app
            .request("POST", "Binary")
            .as_(&doctor)
            .header("Content-Type", "application/pdf")
            .header("X-Security-Context", &format!("Patient/{patient_id}"))
            .send_bytes(Some(b"%PDF-1.4\n".to_vec()));
        assert_eq!(binary.status, 201, "{}", binary.body);
        let sentinel = [
            format!("Patient/{sentinel_patient}"),
            format!("DocumentReference/{sentinel_document}"),
        ]
        .into_iter()
        .map(|path| {
            let reply = app.get(&path, &doctor);
            assert_eq!(reply.status, 200, "{path}: {}", reply.body);
            let body = reply.json();
            (path, body)
        })
        .collect();
        World {
            app: Arc::new(app),
            patient: signed(As::Patient(patient_id.clone())),
            doctor,
            system,
            targets: Targets {
                patient: patient_id,
                documents,
                binary: binary.id(),
                nirs: (0..4).map(|_| nir()).collect(),
            },
            sentinel,
        }
    }

    fn who(&self, who: Who) -> &As {
        match who {
            Who::Doctor => &self.doctor,
            Who::Patient => &self.patient,
            Who::System => &self.system,
            Who::Nobody => &As::Nobody,
        }
    }

    /// Sends a request on a thread of its own, so that a hung answer fails the case
    /// instead of blocking the run.
    fn send(&self, request: &Req) -> Result<Reply, TestCaseError> {
        let app = Arc::clone(&self.app);
        let call = request.clone();
        let (done, answer) = mpsc::channel();
        std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let mut builder = app.request(call.method, &call.path);
                for (name, value) in &call.headers {
                    builder = builder.header(name, value);
                }
                builder.send_bytes(call.body)
            }));
            let _ = done.send(outcome.map_err(|payload| panic_text(payload.as_ref())));
        });
        match answer.recv_timeout(PATIENCE) {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => Err(TestCaseError::fail(format!(
                "no HTTP answer ({error}) to\n{request}"
            ))),
            Err(_) => Err(TestCaseError::fail(format!(
                "no answer within {} s to\n{request}",
                PATIENCE.as_secs()
            ))),
        }
    }

    /// Sends a request and checks its answer is sound.
    fn exchange(&self, request: &Req) -> Result<Reply, TestCaseError> {
        let reply = self.send(request)?;
        sound(request, &reply)?;
        Ok(reply)
    }

    /// The server still answers normal requests, and the sentinel space is as it was.
    fn still_serves(&self) {
        let metadata = self.app.get("metadata", &As::Nobody);
        assert_eq!(metadata.status, 200, "{}", metadata.body);
        assert_eq!(metadata.json()["resourceType"], "CapabilityStatement");
        for (path, before) in &self.sentinel {
            let reply = self.app.get(path, &As::doctor());
            assert_eq!(reply.status, 200, "{path}: {}", reply.body);
            assert_eq!(&reply.json(), before, "{path} changed");
        }
    }
}

/// What every answer must be: below 500; a 4xx is an OperationOutcome in FHIR JSON;
/// any FHIR JSON body is a resource.
fn sound(request: &Req, reply: &Reply) -> Result<(), TestCaseError> {
    prop_assert!(
        reply.status < 500,
        "{} {} to\n{request}",
        reply.status,
        reply.body
    );
    let media_type = reply.header("content-type").unwrap_or("");
    if (400..500).contains(&reply.status) {
        prop_assert!(
            media_type.starts_with(FHIR_JSON),
            "{} with Content-Type {media_type:?} and body {:?} to\n{request}",
            reply.status,
            reply.body
        );
        if let Err(issue) = fhir_check::check("OperationOutcome", &reply.body) {
            return Err(TestCaseError::fail(format!(
                "{} {} is not a valid OperationOutcome ({issue:?}) to\n{request}",
                reply.status, reply.body
            )));
        }
        let outcome: Value = serde_json::from_str(&reply.body).unwrap_or_default();
        prop_assert!(
            outcome["resourceType"] == "OperationOutcome",
            "{} {} to\n{request}",
            reply.status,
            reply.body
        );
    } else if media_type.starts_with(FHIR_JSON) && !reply.body.is_empty() {
        let resource: Value = serde_json::from_str(&reply.body).unwrap_or_default();
        prop_assert!(
            resource["resourceType"].is_string(),
            "{} {} to\n{request}",
            reply.status,
            reply.body
        );
    }
    Ok(())
}

fn body_json(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_default()
}

// ---------------------------------------------------------------------------------
// Building blocks: awkward strings, numbers and JSON values.
// ---------------------------------------------------------------------------------

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

/// Strings that often break parsers: escapes, case and accent folding that
/// changes lengths, controls, bidi marks, very long text.
fn awkward_string() -> BoxedStrategy<String> {
    prop_oneof![
        6 => select(owned(&[
            "", " ", "\u{0}", "\\", "\\\\", "\\,", "\\|", "\\$", "a\\", "\"", "'", "é", "e\u{301}",
            "ß", "İ", "ǅ", "ﬀ", "𝔘", "\u{202e}", "\u{feff}", "\u{fffd}", "../", "%", "%00",
            "_", "*", "urn:uuid:", "Patient/", "Patient//", "'; DROP TABLE resources; --",
            "\u{7f}", "\t", "\r\n", "null", "true", "NaN", "-0", "[]", "{}",
        ])),
        1 => (select(owned(&["a", "é", "𝔘", "\\,", "1,", "|"])), 100..1500usize)
            .prop_map(|(piece, times)| piece.repeat(times)),
        3 => "\\PC{0,24}",
        1 => any::<String>(),
    ]
    .boxed()
}

/// Integers and decimals past every integer type, and a few that are not numbers.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "20",
    "500",
    "501",
    "100000",
    "100001",
    "18446744073709551616",
    "18446744073709551615",
    "9223372036854775808",
    "9223372036854775807",
    "-9223372036854775809",
    "99999999999999999999999999",
    "1e3",
    "1.5",
    "0x10",
    "+5",
    " 5",
    "5 ",
    "０",
    "",
];

fn field_name() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(owned(&[
            "resourceType", "id", "meta", "text", "extension", "url", "valueString", "status",
            "subject", "reference", "coding", "system", "code", "identifier", "value",
            "contained", "", "_status", "fhir_comments",
        ])),
        1 => "\\PC{0,12}",
    ]
    .boxed()
}

/// Headers a request may carry besides its own, each read by a parser of its own:
/// `Prefer`, `Accept` (and `_format`'s negotiation), `X-Request-Id`.
fn extra_headers() -> BoxedStrategy<Vec<(&'static str, String)>> {
    let prefer = select(owned(&[
        "handling=strict",
        "handling=lenient",
        "return=minimal",
        "return=OperationOutcome",
        "return=representation",
        "handling=strict, return=minimal",
        "handling=strict;return=OperationOutcome",
        "respond-async",
        "return=",
        "=",
        ",",
        "",
    ]));
    let accept = select(owned(&[
        "application/fhir+json",
        "application/fhir+xml",
        "application/xml",
        "application/json;q=0",
        "*/*",
        "text/*",
        "text/html",
        "application/pdf",
        "image/png, application/fhir+xml",
        "",
        ",",
        ";q=0",
        "application/fhir+json; fhirVersion=3.0",
    ]));
    let request_id = prop_oneof![
        select(vec![
            "fuzz-1".to_owned(),
            String::new(),
            "a".repeat(64),
            "a".repeat(65),
            "../x".to_owned(),
            "x y".to_owned(),
        ]),
        "[ -~]{0,80}",
    ];
    let header = prop_oneof![
        prefer.prop_map(|value| ("Prefer", value)),
        accept.prop_map(|value| ("Accept", value)),
        request_id.prop_map(|value| ("X-Request-Id", value)),
    ];
    prop_oneof![
        3 => Just(Vec::new()),
        2 => prop::collection::vec(header, 1..3),
    ]
    .boxed()
}

fn with_headers(mut request: Req, headers: &[(&'static str, String)]) -> Req {
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request
}

/// JSON leaves of every type, integers past i64 included.
fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|n| serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)),
        select(vec![
            json!(u64::MAX),
            json!(1.8446744073709552e19),
            json!(-1e300),
            json!(1e-300)
        ]),
        awkward_string().prop_map(Value::String),
    ]
    .boxed()
}

/// Any JSON value, a few levels deep.
fn json_value() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((field_name(), inner), 0..6)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A chain of `depth` nested extensions (valid FHIR at any depth, two JSON levels
/// each).
fn nested_extension(depth: usize) -> Value {
    let mut value = json!({ "url": "http://example.org/fuzz", "valueString": "leaf" });
    for _ in 0..depth {
        value = json!({ "url": "http://example.org/fuzz", "extension": [value] });
    }
    value
}

fn label(code: &str) -> Value {
    json!({ "coding": [{ "system": TRE_A07, "code": code }] })
}

/// Byte-level damage to a JSON text: cut short, a byte sequence slipped in (invalid
/// UTF-8, huge numbers, stray syntax), a key repeated at the top, or a prefix.
#[derive(Debug, Clone)]
enum Damage {
    Truncate(Index),
    Insert(Index, &'static [u8]),
    DuplicateKey(&'static str),
    Prefix(&'static [u8]),
}

const INSERTS: &[&[u8]] = &[
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\"\\ud800\"",
    b"\"\\udc00\\ud800\"",
    b"1e400",
    b"-1e400",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"0.00000000000000000000000000000000000000000000000000001",
    b"NaN",
    b"Infinity",
    b"\x00",
    b",",
    b"}",
    b"]",
    b"{",
    b"[",
    b"\"",
    b"\\",
    b"\xef\xbb\xbf",
    b"/*c*/",
    b" ",
];

const DUPLICATES: &[&str] = &[
    r#""resourceType":"Patient","#,
    r#""resourceType":"DocumentReference","#,
    r#""resourceType":5,"#,
    r#""id":"fuzz","#,
    r#""id":"x","id":"y","#,
    r#""meta":{"versionId":"99"},"#,
    r#""status":"entered-in-error","#,
    r#""subject":{"reference":"Patient/other"},"#,
    r#""securityLabel":[{"coding":[{"system":"x","code":"N"}]}],"#,
    r#""contentType":"text/html","#,
];

fn damage() -> BoxedStrategy<Damage> {
    prop_oneof![
        any::<Index>().prop_map(Damage::Truncate),
        (any::<Index>(), select(INSERTS)).prop_map(|(at, bytes)| Damage::Insert(at, bytes)),
        select(DUPLICATES).prop_map(Damage::DuplicateKey),
        select(vec![
            &b"\xef\xbb\xbf"[..],
            b" \n",
            b"\xff\xfe",
            b"[",
            b"null"
        ])
        .prop_map(Damage::Prefix),
    ]
    .boxed()
}

fn apply(damage: &Damage, mut text: Vec<u8>) -> Vec<u8> {
    match damage {
        Damage::Truncate(at) => {
            text.truncate(at.index(text.len() + 1));
            text
        }
        Damage::Insert(at, bytes) => {
            let at = at.index(text.len() + 1);
            text.splice(at..at, bytes.iter().copied());
            text
        }
        Damage::DuplicateKey(member) => {
            if text.first() == Some(&b'{') {
                text.splice(1..1, member.bytes());
            }
            text
        }
        Damage::Prefix(bytes) => [*bytes, &text[..]].concat(),
    }
}

// ---------------------------------------------------------------------------------
// 1. Search parameters.
// ---------------------------------------------------------------------------------

const SEARCH_KEYS: &[&str] = &[
    "_count",
    "_offset",
    "_sort",
    "_include",
    "_revinclude",
    "_elements",
    "_total",
    "_summary",
    "_id",
    "_lastUpdated",
    "_format",
    "_pretty",
    "_include:iterate",
    "_revinclude:iterate",
    "_has:DocumentReference:patient:status",
    "_text",
    "_list",
    "type",
    "date",
    "patient",
    "subject",
    "category",
    "author",
    "status",
    "security-label",
    "identifier",
    "family",
    "given",
    "birthdate",
    "gender",
    "general-practitioner",
    "actor",
    "purpose",
    "sender",
    "recipient",
    "part-of",
    "sent",
    "agent",
    "subtype",
    "outcome",
    "entity",
    "participant",
    "content-binary",
    "patient.identifier",
    "patient.family",
    "patient.birthdate",
    "subject:Patient.identifier",
    "subject:Patient.family",
    "subject.family",
    "subject:Group.name",
    "author.identifier",
    "author:Practitioner.identifier",
    "general-practitioner.identifier",
    "patient.general-practitioner.identifier",
    "patient.identifier:not",
    "patient.family:exact",
    "patient._id",
    "patient._lastUpdated",
    ".",
    "patient.",
    ".identifier",
    "patient..identifier",
];

const MODIFIERS: &[&str] = &[
    "not",
    "exact",
    "missing",
    "contains",
    "text",
    "above",
    "below",
    "in",
    "of-type",
    "identifier",
    "Patient",
    "Practitioner",
    "Device",
    "Group",
    "iterate",
    "",
    ":",
    "not:not",
];

const PREFIXES: &[&str] = &[
    "", "", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "EQ", "g", "gee",
];

const DATES: &[&str] = &[
    "2024",
    "2024-01",
    "2024-01-01",
    "2024-01-01T10:00:00+01:00",
    "2024-01-01T10:00:00.123456789Z",
    "2024-01-01T10:00Z",
    "2024-01-01T10:00+01:00",
    "2024-01-01T10:00",
    "2024-01-01T10:00:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59+14:00",
    "0000-01-01T00:00:00-14:00",
    "0000",
    "9999",
    "-001",
    "+2024",
    "2024-02-30",
    "2024-13",
    "2024-00",
    "2024-1-1",
    "10000-01-01",
    "2024-01-01T25:00:00Z",
    "2024-01-01T10:00:00+99:00",
    "T",
    "2024-01-01 10:00:00",
    "２０２４",
];

/// Values meaningful to one parameter or another.
fn special_values(targets: &Targets) -> Vec<String> {
    let patient = &targets.patient;
    let document = &targets.documents[0];
    let mut values = owned(&[
        "_lastUpdated",
        "-_lastUpdated",
        "_id,-_id",
        "date,-date",
        "-",
        "--date",
        ",",
        "birthdate",
        "sent",
        "_lastUpdated,_lastUpdated,_lastUpdated,_lastUpdated,_lastUpdated,_lastUpdated,_lastUpdated,_lastUpdated,_lastUpdated",
        "DocumentReference:patient",
        "DocumentReference:subject:Patient",
        "DocumentReference:subject:Group",
        "DocumentReference:author",
        "DocumentReference:author:Practitioner",
        "DocumentReference:content-binary",
        "DocumentReference:*",
        "Patient:general-practitioner",
        "Consent:patient",
        "Consent:actor",
        "Communication:patient",
        "Communication:part-of",
        "Communication:participant",
        "AuditEvent:patient",
        "AuditEvent:entity",
        "AuditEvent:entity:Binary",
        ":",
        "::",
        "a:b:c:d",
        "*",
        "id,meta",
        "resourceType",
        "a.b",
        "content",
        "accurate",
        "none",
        "estimate",
        "count",
        "false",
        "true",
        "text",
        "data",
        "json",
        "xml",
        "application/fhir+json",
        "application/fhir+xml",
        "text/html",
        "http://loinc.org|11488-4",
        "|11488-4",
        "http://loinc.org|",
        "|",
        "||",
        "a|b|c",
        "urn:oid:1.2.250.1.213.1.4.8|",
        "urn:oid:1.2.250.1.71.4.2.1|810000000001",
        "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument|INVISIBLE_PATIENT",
        "MASKED_PS",
        "current",
        "entered-in-error",
        "female",
        "Martin",
        "MARTIN",
        "martín",
        "Practitioner/pr-810000000001",
        "pr-810000000001",
        "Patient/",
        "/",
        "Patient/../x",
        "http://example.org/fhir/Patient/1",
        "urn:uuid:8f2a4b6c-0000-4000-8000-000000000001",
        "Patient/1/_history/1",
        "Unknown/1",
        "true",
        "false",
    ]);
    values.extend([
        patient.clone(),
        format!("Patient/{patient}"),
        format!("DocumentReference/{document}"),
        document.clone(),
        format!("{patient},{document}"),
        format!("Patient/{patient}/_history/1"),
    ]);
    values
}

fn search_key() -> BoxedStrategy<String> {
    prop_oneof![
        10 => select(SEARCH_KEYS).prop_map(str::to_owned),
        4 => (select(SEARCH_KEYS), select(MODIFIERS)).prop_map(|(key, modifier)| format!("{key}:{modifier}")),
        1 => "\\PC{0,16}",
        1 => awkward_string(),
    ]
    .boxed()
}

fn search_value(targets: &Targets) -> BoxedStrategy<String> {
    let special = select(special_values(targets));
    let short = prop_oneof![
        select(NUMBERS).prop_map(str::to_owned),
        (select(PREFIXES), select(DATES)).prop_map(|(prefix, date)| format!("{prefix}{date}")),
        special.clone(),
    ];
    prop_oneof![
        3 => select(NUMBERS).prop_map(str::to_owned),
        3 => (select(PREFIXES), select(DATES)).prop_map(|(prefix, date)| format!("{prefix}{date}")),
        4 => special,
        2 => awkward_string(),
        1 => prop::collection::vec(short, 2..160).prop_map(|values| values.join(",")),
        1 => Just(String::new()),
    ]
    .boxed()
}

/// Pieces of a query string sent as they are, undecoded: broken escapes, stray
/// separators.
const RAW_PIECES: &[&str] = &[
    "%",
    "%2",
    "%zz",
    "%FF",
    "%C3%A9",
    "%C3",
    "%00",
    "%2C",
    "%5C%2C",
    "%7C",
    "%E2%80%AE",
    "+",
    "=",
    "&",
    "&&",
    "==",
    ";",
    "%26",
    "%3D",
    "_count",
    "_sort",
    "_include",
    "patient",
    "date",
    "ge2024",
    "sa2024",
    "1",
    "-",
    ":not",
    ":",
    ".",
    "DocumentReference:patient",
];

#[derive(Debug, Clone)]
struct SearchCase {
    resource: &'static str,
    who: Who,
    pairs: Vec<(String, String)>,
    raw: String,
    /// POST `_search`: the Content-Type and how many pairs stay in the URL.
    post: Option<(Option<&'static str>, Index)>,
    strict: bool,
    headers: Vec<(&'static str, String)>,
}

fn search_case(targets: &Targets) -> BoxedStrategy<SearchCase> {
    let pair = (search_key(), search_value(targets));
    let patient = format!("Patient/{}", targets.patient);
    let pairs = (
        prop::collection::vec(pair, 0..6),
        prop::option::of(select(vec![
            ("patient".to_owned(), targets.patient.clone()),
            ("patient".to_owned(), patient.clone()),
            ("subject".to_owned(), patient),
        ])),
        prop::option::weighted(0.03, 60..70usize),
    )
        .prop_map(|(mut pairs, patient, many)| {
            if let Some(patient) = patient {
                pairs.insert(0, patient);
            }
            if let Some(many) = many {
                pairs.extend((0..many).map(|n| ("_id".to_owned(), format!("id-{n}"))));
            }
            pairs
        });
    let raw = prop_oneof![
        4 => Just(String::new()),
        1 => prop::collection::vec(select(RAW_PIECES), 1..8).prop_map(|pieces| pieces.concat()),
    ];
    let post = prop::option::weighted(
        0.3,
        (
            prop_oneof![
                6 => Just(Some("application/x-www-form-urlencoded")),
                1 => select(vec![
                    None,
                    Some("application/x-www-form-urlencoded; charset=utf-8"),
                    Some("APPLICATION/X-WWW-FORM-URLENCODED"),
                    Some("text/plain"),
                    Some("application/json"),
                    Some("multipart/form-data; boundary=x"),
                ]),
            ],
            any::<Index>(),
        ),
    );
    (
        select(vec![
            "DocumentReference",
            "DocumentReference",
            "DocumentReference",
            "Patient",
            "Patient",
            "Consent",
            "Communication",
            "AuditEvent",
        ]),
        select(vec![
            Who::Doctor,
            Who::Doctor,
            Who::Doctor,
            Who::Doctor,
            Who::Patient,
            Who::System,
            Who::Nobody,
        ]),
        pairs,
        raw,
        post,
        prop::bool::weighted(0.2),
        extra_headers(),
    )
        .prop_map(
            |(resource, who, pairs, raw, post, strict, headers)| SearchCase {
                resource,
                who,
                pairs,
                raw,
                post,
                strict,
                headers,
            },
        )
        .boxed()
}

fn encode(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn joined(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("&")
}

fn search_request(world: &World, case: &SearchCase) -> Req {
    let who = world.who(case.who);
    let request = match case.post {
        None => {
            let query = joined(&[&encode(&case.pairs), &case.raw]);
            Req::new("GET", format!("{}?{query}", case.resource)).by(who)
        }
        Some((content_type, split)) => {
            let split = split.index(case.pairs.len() + 1);
            let (in_url, in_body) = case.pairs.split_at(split);
            let path = match encode(in_url) {
                query if query.is_empty() => format!("{}/_search", case.resource),
                query => format!("{}/_search?{query}", case.resource),
            };
            let request = Req::new("POST", path).by(who);
            let request = match content_type {
                Some(content_type) => request.header("Content-Type", content_type),
                None => request,
            };
            request.body(joined(&[&encode(in_body), &case.raw]).into_bytes())
        }
    };
    let request = with_headers(request, &case.headers);
    if case.strict {
        request.header("Prefer", "handling=strict")
    } else {
        request
    }
}

#[test]
fn search_parameters() {
    let world = World::new();
    fuzz(search_case(&world.targets), |case| {
        let request = search_request(&world, &case);
        let reply = world.exchange(&request)?;
        if reply.status != 200 {
            return Ok(());
        }
        let bundle = body_json(&reply);
        prop_assert!(
            bundle["type"] == "searchset",
            "{} to\n{request}",
            reply.body
        );
        // The links the server writes are searches it answers.
        for relation in ["self", "next", "previous"] {
            let url = bundle["link"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|link| link["relation"] == relation)
                .and_then(|link| link["url"].as_str());
            if let Some(url) = url {
                let follow = Req::new("GET", url).by(world.who(case.who));
                let answer = world.exchange(&follow)?;
                prop_assert_eq!(
                    answer.status,
                    200,
                    "the {} link of\n{}\nanswered {}",
                    relation,
                    request,
                    answer.body
                );
            }
        }
        Ok(())
    });
    world.still_serves();
}

// ---------------------------------------------------------------------------------
// 2. JSON Patch.
// ---------------------------------------------------------------------------------

const PATCH_SEGMENTS: &[&str] = &[
    "",
    "-",
    "~1",
    "~0",
    "~",
    "~2",
    "~01",
    "0",
    "1",
    "2",
    "99",
    "-1",
    "01",
    "18446744073709551616",
    "9223372036854775808",
    "status",
    "docStatus",
    "securityLabel",
    "coding",
    "code",
    "system",
    "display",
    "id",
    "meta",
    "versionId",
    "lastUpdated",
    "resourceType",
    "content",
    "attachment",
    "data",
    "url",
    "subject",
    "reference",
    "date",
    "type",
    "category",
    "author",
    "text",
    "extension",
    "contained",
    "generalPractitioner",
    "identifier",
    "value",
    "𝔘",
    "a b",
];

const PATCH_PATHS: &[&str] = &[
    "/status",
    "/securityLabel",
    "/securityLabel/0",
    "/securityLabel/-",
    "/securityLabel/0/coding/0/code",
    "/securityLabel/0/coding/-",
    "/generalPractitioner",
    "/generalPractitioner/0",
    "/generalPractitioner/-",
    "/id",
    "/meta/versionId",
    "/resourceType",
    "/subject/reference",
    "/content/0/attachment/data",
    "",
    "/",
    "/-",
];

fn patch_path() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => select(PATCH_PATHS).prop_map(Value::from),
        6 => (prop::collection::vec(select(PATCH_SEGMENTS), 0..7), prop::bool::weighted(0.9))
            .prop_map(|(segments, slash)| {
                let path = segments.join("/");
                Value::from(if slash { format!("/{path}") } else { path })
            }),
        1 => (1..300usize, select(vec!["0", "a", "-", "extension", "~1"]))
            .prop_map(|(depth, segment)| Value::from(format!("/{}", vec![segment; depth].join("/")))),
        1 => json_leaf(),
    ]
    .boxed()
}

fn patch_value() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => select(vec![
            json!("entered-in-error"),
            json!("current"),
            json!("superseded"),
            json!(""),
            json!([label("N")]),
            json!([label("INVISIBLE_PATIENT")]),
            json!([label("MASKED_PS"), label("INVISIBLE_REPRESENTANT_LEGAL")]),
            label("MASKED_PS"),
            json!({ "system": TRE_A07, "code": "N" }),
            json!([{ "identifier": { "system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810000000002" } }]),
            json!({ "reference": "Practitioner/pr-810000000002" }),
            json!("Patient/other"),
            json!({ "versionId": "1" }),
            json!([]),
            json!({}),
        ]),
        3 => json_value(),
        1 => (1..80usize).prop_map(|depth| {
            json!([{ "coding": [{ "system": TRE_A07, "code": "N" }], "extension": [nested_extension(depth)] }])
        }),
    ]
    .boxed()
}

fn patch_operation() -> BoxedStrategy<Value> {
    let op = prop_oneof![
        12 => select(vec!["add", "remove", "replace", "move", "copy", "test"]).prop_map(Value::from),
        1 => select(vec!["ADD", "", "get", "_test", " add", "add\u{0}"]).prop_map(Value::from),
        1 => json_leaf(),
    ];
    (
        prop::option::weighted(0.95, op),
        prop::option::weighted(0.92, patch_path()),
        prop::option::weighted(0.6, patch_value()),
        prop::option::weighted(0.3, patch_path()),
        prop::option::weighted(0.08, (field_name(), json_value())),
    )
        .prop_map(|(op, path, value, from, extra)| {
            let mut operation = Map::new();
            if let Some(op) = op {
                operation.insert("op".into(), op);
            }
            if let Some(path) = path {
                operation.insert("path".into(), path);
            }
            if let Some(value) = value {
                operation.insert("value".into(), value);
            }
            if let Some(from) = from {
                operation.insert("from".into(), from);
            }
            if let Some((name, value)) = extra {
                operation.insert(name, value);
            }
            Value::Object(operation)
        })
        .boxed()
}

/// A JSON Patch document: mostly arrays of operations, also any JSON, and damaged
/// text.
fn patch_document() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(patch_operation(), 0..5)
            .prop_map(|operations| Value::Array(operations).to_string().into_bytes()),
        1 => json_value().prop_map(|value| value.to_string().into_bytes()),
        1 => (prop::collection::vec(patch_operation(), 1..3), damage())
            .prop_map(|(operations, damage)| apply(&damage, Value::Array(operations).to_string().into_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
    .boxed()
}

const IF_MATCH: &[&str] = &[
    "W/\"1\"",
    "W/\"2\"",
    "\"1\"",
    "W/\"\"",
    "W/\"18446744073709551616\"",
    "W/\"9223372036854775808\"",
    "W/\"-1\"",
    "W/\"1.0\"",
    "*",
    "",
    "W/",
    "W/\"",
    "\"",
    "garbage",
    "W/\"1\", W/\"2\"",
];

#[derive(Debug, Clone)]
struct PatchCase {
    who: Who,
    path: String,
    content_type: Option<&'static str>,
    if_match: Option<&'static str>,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

fn patch_case(targets: &Targets) -> BoxedStrategy<PatchCase> {
    let mut paths: Vec<String> = targets
        .documents
        .iter()
        .map(|id| format!("DocumentReference/{id}"))
        .collect();
    let documents = select(paths.clone());
    paths.extend([
        format!("Patient/{}", targets.patient),
        format!("Binary/{}", targets.binary),
        "DocumentReference/nope".to_owned(),
        "DocumentReference/..".to_owned(),
        format!("DocumentReference/{}", "x".repeat(200)),
        "Consent/nope".to_owned(),
    ]);
    (
        select(vec![
            Who::Doctor,
            Who::Doctor,
            Who::Patient,
            Who::Patient,
            Who::System,
        ]),
        prop_oneof![6 => documents, 1 => select(paths)],
        prop_oneof![
            12 => Just(Some("application/json-patch+json")),
            1 => select(vec![
                None,
                Some("application/json"),
                Some(FHIR_JSON),
                Some("application/json-patch+json; charset=utf-8"),
                Some("application/merge-patch+json"),
                Some("text/plain"),
            ]),
        ],
        prop::option::weighted(0.1, select(IF_MATCH)),
        patch_document(),
        extra_headers(),
    )
        .prop_map(
            |(who, path, content_type, if_match, body, headers)| PatchCase {
                who,
                path,
                content_type,
                if_match,
                body,
                headers,
            },
        )
        .boxed()
}

#[test]
fn json_patch_bodies() {
    let world = World::new();
    fuzz(patch_case(&world.targets), |case| {
        let mut request = Req::new("PATCH", case.path.clone()).by(world.who(case.who));
        if let Some(content_type) = case.content_type {
            request = request.header("Content-Type", content_type);
        }
        if let Some(if_match) = case.if_match {
            request = request.header("If-Match", if_match);
        }
        let request = with_headers(request, &case.headers).body(case.body.clone());
        let reply = world.exchange(&request)?;
        if reply.status == 200 {
            // What a patch stored reads back.
            let read = Req::new("GET", case.path.clone()).by(world.who(case.who));
            let answer = world.exchange(&read)?;
            prop_assert!(
                matches!(answer.status, 200 | 404),
                "reading back after\n{}\nanswered {} {}",
                request,
                answer.status,
                answer.body
            );
        }
        Ok(())
    });
    for id in &world.targets.documents {
        let request = Req::new("GET", format!("DocumentReference/{id}")).by(&world.doctor);
        let reply = world.send(&request).expect("an answer");
        sound(&request, &reply).expect("a sound answer");
    }
    world.still_serves();
}

// ---------------------------------------------------------------------------------
// 3. batch and transaction Bundles.
// ---------------------------------------------------------------------------------

const UUIDS: &[&str] = &[
    "urn:uuid:8f2a4b6c-0000-4000-8000-000000000001",
    "urn:uuid:8f2a4b6c-0000-4000-8000-000000000002",
    "urn:uuid:8f2a4b6c-0000-4000-8000-000000000003",
];

fn full_url(targets: &Targets) -> BoxedStrategy<Value> {
    let mut urls = owned(UUIDS);
    urls.extend(owned(&[
        "urn:uuid:",
        "urn:uuid:not-a-uuid",
        "urn:oid:1.2.3",
        "http://example.org/fhir/Patient/1",
        "",
    ]));
    urls.push(format!("Patient/{}", targets.patient));
    prop_oneof![8 => select(urls).prop_map(Value::from), 1 => json_leaf()].boxed()
}

fn entry_url(targets: &Targets) -> BoxedStrategy<Value> {
    let patient = &targets.patient;
    let document = &targets.documents[0];
    let mut urls = owned(&[
        "Patient",
        "DocumentReference",
        "Binary",
        "Consent",
        "Communication",
        "AuditEvent",
        "Practitioner",
        "Bundle",
        "DocumentReference?x",
        "DocumentReference?_count=18446744073709551616",
        "DocumentReference?date=sa2024",
        "DocumentReference?_include=DocumentReference:patient&_revinclude=AuditEvent:entity",
        "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|",
        "Patient/_history",
        "Patient/_history?_count=-1",
        "DocumentReference/_search",
        "Practitioner/1",
        "Patient/nope",
        "DocumentReference/nope/_history/1",
        "",
        "/",
        "?",
        "//",
        "?_count=1",
        "Patient/a/b/c/d",
        "Patient/$activate",
        "http://example.org/fhir/Patient",
        "urn:uuid:8f2a4b6c-0000-4000-8000-000000000001",
        "DocumentReference/urn:uuid:8f2a4b6c-0000-4000-8000-000000000001",
        "DocumentReference?patient=urn:uuid:8f2a4b6c-0000-4000-8000-000000000001",
        "DocumentReference?%zz=%FF",
    ]);
    urls.extend([
        format!("Patient/{patient}"),
        format!("Patient/{patient}/_history"),
        format!("Patient/{patient}/_history/1"),
        format!("Patient/{patient}/$close"),
        format!("DocumentReference/{document}"),
        format!("DocumentReference/{document}/_history"),
        format!("DocumentReference/{document}/_history/1"),
        format!("DocumentReference/{document}/_history/x"),
        format!("DocumentReference/{document}/_history/18446744073709551616"),
        format!("DocumentReference?patient={patient}&_count=1"),
        format!("DocumentReference?patient={patient}&date=ge2024&_sort=-date"),
        format!("Binary/{}", targets.binary),
        format!("Consent?patient={patient}"),
        format!("Communication?patient={patient}&_revinclude=Communication:part-of"),
        format!("http://127.0.0.1:1/DocumentReference/{document}"),
    ]);
    urls.extend(
        targets
            .documents
            .iter()
            .map(|id| format!("DocumentReference/{id}")),
    );
    prop_oneof![
        12 => select(urls).prop_map(Value::from),
        1 => "\\PC{0,30}".prop_map(Value::from),
        1 => json_leaf(),
    ]
    .boxed()
}

fn if_none_exist(targets: &Targets) -> BoxedStrategy<Value> {
    let mut queries = owned(&[
        "",
        "x",
        "identifier=urn:oid:1.2.250.1.213.1.4.8|",
        "identifier=|",
        "_id=",
        "date=sa2024",
        "%zz",
        "&&&",
        "_count=18446744073709551616",
        "identifier=urn:oid:1.2.250.1.213.1.4.8|285067512345639",
        "?identifier=x",
    ]);
    queries.push(format!("patient={}", targets.patient));
    queries.push(format!("_id={}", targets.documents[0]));
    prop_oneof![6 => select(queries).prop_map(Value::from), 1 => json_leaf()].boxed()
}

fn entry_request(targets: &Targets) -> BoxedStrategy<Value> {
    let method = prop_oneof![
        12 => select(vec!["GET", "POST", "PUT", "DELETE", "PATCH"]).prop_map(Value::from),
        1 => select(vec!["HEAD", "OPTIONS", "", "get", "Post"]).prop_map(Value::from),
        1 => json_leaf(),
    ];
    let request = (
        prop::option::weighted(0.95, method),
        prop::option::weighted(0.95, entry_url(targets)),
        prop::option::weighted(0.15, if_none_exist(targets)),
        prop::option::weighted(
            0.15,
            prop_oneof![4 => select(IF_MATCH).prop_map(Value::from), 1 => json_leaf()],
        ),
    )
        .prop_map(|(method, url, if_none_exist, if_match)| {
            let mut request = Map::new();
            for (name, value) in [
                ("method", method),
                ("url", url),
                ("ifNoneExist", if_none_exist),
                ("ifMatch", if_match),
            ] {
                if let Some(value) = value {
                    request.insert(name.into(), value);
                }
            }
            Value::Object(request)
        });
    prop_oneof![12 => request, 1 => json_value()].boxed()
}

fn entry_resource(targets: &Targets) -> BoxedStrategy<Value> {
    let patient_id = targets.patient.clone();
    let documents = {
        let patient_id = patient_id.clone();
        (
            select(vec![
                format!("Patient/{patient_id}"),
                UUIDS[0].to_owned(),
                UUIDS[1].to_owned(),
                "Patient/nope".to_owned(),
                "urn:uuid:".to_owned(),
            ]),
            prop::option::weighted(0.3, select(owned(UUIDS))),
            prop::option::weighted(0.3, (field_name(), json_value())),
        )
            .prop_map(move |(subject, attachment, change)| {
                let mut body = document(&patient_id, "11488-4", "2024-05-05");
                body["subject"] = json!({ "reference": subject });
                if let Some(url) = attachment {
                    body["content"] =
                        json!([{ "attachment": { "contentType": "application/pdf", "url": url } }]);
                }
                if let Some((name, value)) = change {
                    body[name] = value;
                }
                body
            })
    };
    let binaries = (
        select(vec![
            json!({ "reference": format!("Patient/{patient_id}") }),
            json!({ "reference": UUIDS[0] }),
            json!({ "reference": "Patient/nope" }),
            json!("Patient"),
        ]),
        select(vec!["application/pdf", "text/plain", "", "application/json-patch+json"]),
    )
        .prop_map(|(context, content_type)| {
            json!({ "resourceType": "Binary", "contentType": content_type, "data": "JVBERi0xLjQK", "securityContext": context })
        });
    let patches = prop_oneof![
        4 => patch_document().prop_map(|bytes| Value::from(STANDARD.encode(bytes))),
        1 => "[A-Za-z0-9+/=!_-]{0,30}".prop_map(Value::from),
        1 => json_leaf(),
    ]
    .prop_flat_map(|data| {
        (
            Just(data),
            select(vec![
                "application/json-patch+json",
                "application/json",
                "application/json-patch+json; charset=utf-8",
            ]),
            prop::bool::weighted(0.9),
        )
    })
    .prop_map(|(data, content_type, binary)| {
        json!({
            "resourceType": if binary { "Binary" } else { "Parameters" },
            "contentType": content_type,
            "data": data,
        })
    });
    let nirs = select(targets.nirs.clone());
    let others = (nirs, select(UUIDS)).prop_map({
        let patient_id = patient_id.clone();
        move |(nir, uuid)| {
            vec![
                patient(&nir, "Durand", "Léa", "1990-09-09"),
                consent(&patient_id, "Practitioner/pr-810000000001"),
                consent(&patient_id, uuid),
                communication(&patient_id, "2024-01-01T10:00:00+01:00"),
                json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
                    { "request": { "method": "DELETE", "url": format!("Patient/{patient_id}") } }
                ] }),
            ]
        }
    });
    let others =
        (others, any::<Index>()).prop_map(|(others, at)| others[at.index(others.len())].clone());
    prop_oneof![
        4 => documents,
        2 => binaries,
        3 => patches,
        3 => others,
        1 => json_value(),
    ]
    .boxed()
}

fn bundle_entry(targets: &Targets) -> BoxedStrategy<Value> {
    (
        prop::option::weighted(0.5, full_url(targets)),
        prop::option::weighted(0.93, entry_request(targets)),
        prop::option::weighted(0.85, entry_resource(targets)),
    )
        .prop_map(|(full_url, request, resource)| {
            let mut entry = Map::new();
            for (name, value) in [
                ("fullUrl", full_url),
                ("request", request),
                ("resource", resource),
            ] {
                if let Some(value) = value {
                    entry.insert(name.into(), value);
                }
            }
            Value::Object(entry)
        })
        .boxed()
}

#[derive(Debug, Clone)]
struct BundleCase {
    who: Who,
    bundle: Value,
    headers: Vec<(&'static str, String)>,
}

fn bundle_case(targets: &Targets) -> BoxedStrategy<BundleCase> {
    let resource_type = prop_oneof![
        12 => Just(Some(Value::from("Bundle"))),
        1 => select(vec![
            None,
            Some(json!("bundle")),
            Some(json!("Patient")),
            Some(json!("")),
            Some(json!(5)),
        ]),
    ];
    let kind = prop_oneof![
        6 => select(vec!["batch", "transaction"]).prop_map(|kind| Some(Value::from(kind))),
        1 => select(vec![
            None,
            Some(json!("searchset")),
            Some(json!("collection")),
            Some(json!("Transaction")),
            Some(json!("batch-response")),
            Some(json!(["batch"])),
        ]),
    ];
    let entries = prop_oneof![
        16 => prop::collection::vec(bundle_entry(targets), 0..6).prop_map(|entries| Some(Value::Array(entries))),
        1 => Just(None),
        1 => json_leaf().prop_map(Some),
        1 => (500..503usize).prop_map(|count| Some(Value::Array(vec![json!({}); count]))),
    ];
    (
        select(vec![
            Who::Doctor,
            Who::Doctor,
            Who::Doctor,
            Who::System,
            Who::Patient,
        ]),
        resource_type,
        kind,
        entries,
        extra_headers(),
    )
        .prop_map(|(who, resource_type, kind, entries, headers)| {
            let mut bundle = Map::new();
            for (name, value) in [
                ("resourceType", resource_type),
                ("type", kind),
                ("entry", entries),
            ] {
                if let Some(value) = value {
                    bundle.insert(name.into(), value);
                }
            }
            BundleCase {
                who,
                bundle: Value::Object(bundle),
                headers,
            }
        })
        .boxed()
}

#[test]
fn bundles() {
    let world = World::new();
    fuzz(bundle_case(&world.targets), |case| {
        let request = Req::new("POST", "/").by(world.who(case.who));
        let request = with_headers(request, &case.headers).fhir(&case.bundle);
        let reply = world.exchange(&request)?;
        if reply.status != 200 {
            return Ok(());
        }
        let response = body_json(&reply);
        let expected = match case.bundle["type"].as_str() {
            Some("transaction") => "transaction-response",
            _ => "batch-response",
        };
        prop_assert!(response["type"] == expected, "{} to\n{request}", reply.body);
        let sent = case.bundle["entry"].as_array().map_or(0, Vec::len);
        let entries = response["entry"].as_array().cloned().unwrap_or_default();
        prop_assert_eq!(entries.len(), sent, "{} to\n{}", reply.body, request);
        // A batch reports each entry's failure inside its 200: still never a 5xx.
        for entry in &entries {
            let status = entry["response"]["status"].as_str().unwrap_or("");
            prop_assert!(
                status.starts_with('2') || status.starts_with('3') || status.starts_with('4'),
                "entry status {:?} in {} to\n{}",
                status,
                reply.body,
                request
            );
            if !entry["response"]["outcome"].is_null() {
                prop_assert!(
                    entry["response"]["outcome"]["resourceType"] == "OperationOutcome",
                    "{} to\n{request}",
                    reply.body
                );
            }
        }
        Ok(())
    });
    world.still_serves();
}

// ---------------------------------------------------------------------------------
// 4. Authorization headers and tokens.
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum SigningKey {
    Rsa,
    Ec,
    SecondIssuer,
    Untrusted,
}

impl SigningKey {
    fn key(self) -> &'static TestKey {
        let keys = keys();
        match self {
            SigningKey::Rsa => &keys.rsa,
            SigningKey::Ec => &keys.ec,
            SigningKey::SecondIssuer => &keys.second_issuer,
            SigningKey::Untrusted => &keys.untrusted,
        }
    }
}

#[derive(Debug, Clone)]
enum Signature {
    /// Signed by the key over the header and claims as sent.
    Real,
    Empty,
    Text(String),
}

#[derive(Debug, Clone)]
enum Credential {
    /// The whole header value.
    Raw(String),
    /// A JWT: these header and claims, signed by the key.
    Jwt {
        header: Value,
        claims: Value,
        key: SigningKey,
        signature: Signature,
    },
}

fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

impl Credential {
    fn header_value(&self) -> String {
        match self {
            Credential::Raw(value) => value.clone(),
            Credential::Jwt {
                header,
                claims,
                key,
                signature,
            } => {
                let signed = format!("{}.{}", b64(&header.to_string()), b64(&claims.to_string()));
                let signature = match signature {
                    Signature::Real => {
                        let key = key.key();
                        let encoding = match key.algorithm {
                            Algorithm::RS256 => EncodingKey::from_rsa_pem(&key.private_pem),
                            _ => EncodingKey::from_ec_pem(&key.private_pem),
                        }
                        .expect("PEM");
                        jsonwebtoken::crypto::sign(signed.as_bytes(), &encoding, key.algorithm)
                            .expect("signature")
                    }
                    Signature::Empty => String::new(),
                    Signature::Text(text) => text.clone(),
                };
                format!("Bearer {signed}.{signature}")
            }
        }
    }
}

/// A value for one claim: mostly well-typed and plausible, often not.
fn claim_value(name: &'static str, targets: &Targets) -> BoxedStrategy<Value> {
    let t = now();
    let numbers = vec![
        json!(t + 3600),
        json!(t + 60),
        json!(t - 3600),
        json!(t - 5),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(t as f64 + 3600.7),
        json!(u64::MAX),
        json!(u64::MAX - 10),
        json!(1.8446744073709552e19),
        json!(9_223_372_036_854_775_808u64),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(1e300),
        json!(-1e300),
        json!((t + 3600).to_string()),
        json!("soon"),
    ];
    let strings = |items: Vec<Value>| -> BoxedStrategy<Value> {
        prop_oneof![8 => select(items), 1 => json_leaf(), 1 => json_value()].boxed()
    };
    match name {
        "exp" | "nbf" | "iat" => prop_oneof![8 => select(numbers), 1 => json_leaf()].boxed(),
        "actor" => strings(vec![
            json!("patient"),
            json!("representative"),
            json!("professional"),
            json!("system"),
            json!("insurer"),
            json!(""),
            json!("PATIENT"),
            json!(["patient"]),
        ]),
        "patient" => strings(vec![
            json!(targets.patient),
            json!(""),
            json!("nope"),
            json!("../x"),
            json!(format!("Patient/{}", targets.patient)),
            json!("x".repeat(5000)),
        ]),
        "scope" => strings(vec![
            json!(""),
            json!("patient/*.read"),
            json!("patient/*.rs"),
            json!("system/*.*"),
            json!("system/Patient.cruds system/DocumentReference.c system/Binary.c"),
            json!("user/DocumentReference.r user/Patient.r"),
            json!("   "),
            json!(["patient/*.read"]),
            json!("openid ".repeat(2000)),
        ]),
        "purpose_of_use" => strings(vec![
            json!("normal"),
            json!("bris_de_glace"),
            json!("centre_15"),
            json!(""),
            json!("BRIS_DE_GLACE"),
            json!("emergency"),
        ]),
        "aud" => strings(vec![
            json!(AUDIENCE),
            json!("hospital-dmp"),
            json!([AUDIENCE]),
            json!([]),
            json!(["x", AUDIENCE]),
            json!(""),
        ]),
        "iss" => strings(vec![
            json!(ISSUER),
            json!(SECOND_ISSUER),
            json!(format!("{ISSUER}/")),
            json!(""),
            json!([ISSUER]),
        ]),
        "profession" => strings(vec![
            json!("10"),
            json!("21"),
            json!(""),
            json!(10),
            json!("99"),
        ]),
        _ => strings(vec![
            json!("810000000001"),
            json!(""),
            json!("Dr Fuzz"),
            json!("urgence"),
            json!("750000001"),
            json!("x".repeat(3000)),
        ]),
    }
}

const CLAIMS: &[&str] = &[
    "exp",
    "nbf",
    "iat",
    "actor",
    "patient",
    "scope",
    "purpose_of_use",
    "access_reason",
    "aud",
    "iss",
    "sub",
    "profession",
    "specialty",
    "organization",
    "name",
    "client_id",
    "azp",
];

fn claims(targets: &Targets) -> BoxedStrategy<Value> {
    let patient = targets.patient.clone();
    let base = select(vec!["professional", "patient", "representative", "system"]).prop_map(
        move |actor| {
            let t = now();
            let mut claims = json!({
                "iss": ISSUER, "aud": AUDIENCE, "sub": "fuzz", "actor": actor,
                "iat": t, "nbf": t - 5, "exp": t + 3600,
            });
            match actor {
                "professional" => claims["profession"] = json!("10"),
                "system" => {}
                _ => claims["patient"] = json!(patient),
            }
            claims
        },
    );
    let changes: Vec<BoxedStrategy<Option<Option<Value>>>> = CLAIMS
        .iter()
        .map(|name| {
            let chance = if matches!(*name, "exp" | "nbf") {
                0.3
            } else {
                0.1
            };
            prop::option::weighted(
                chance,
                prop::option::weighted(0.85, claim_value(name, targets)),
            )
            .boxed()
        })
        .collect();
    (base, changes)
        .prop_map(|(mut claims, changes)| {
            for (name, change) in CLAIMS.iter().zip(changes) {
                match change {
                    None => {}
                    Some(None) => {
                        claims.as_object_mut().expect("claims").remove(*name);
                    }
                    Some(Some(value)) => claims[*name] = value,
                }
            }
            claims
        })
        .boxed()
}

fn jwt_header(key: SigningKey) -> BoxedStrategy<Value> {
    let algorithm = match key.key().algorithm {
        Algorithm::RS256 => "RS256",
        _ => "ES256",
    };
    let header = json!({ "alg": algorithm, "kid": key.key().kid, "typ": "JWT" });
    let changes = (
        prop::option::weighted(
            0.2,
            prop_oneof![
                6 => select(vec!["RS256", "ES256", "HS256", "none", "None", "", "RS512", "PS256", "ES384", "EdDSA"]).prop_map(Value::from),
                1 => json_leaf(),
            ],
        ),
        prop::option::weighted(
            0.2,
            prop_oneof![
                6 => select(vec!["rsa-1", "ec-1", "hospital-1", "", "unknown"]).prop_map(Value::from),
                1 => json_leaf(),
            ],
        ),
        prop::option::weighted(
            0.1,
            select(vec![
                ("typ", json!("at+jwt")),
                ("crit", json!(["exp"])),
                ("jwk", json!({ "kty": "RSA", "n": "AQAB", "e": "AQAB" })),
                ("jwk", json!({ "kty": "oct", "k": "" })),
                ("jku", json!("http://127.0.0.1:1/jwks")),
                ("x5c", json!(["not a certificate"])),
                ("x5t", json!(5)),
                ("cty", json!(null)),
            ]),
        ),
        prop::option::weighted(0.05, json_value()),
    );
    (Just(header), changes)
        .prop_map(|(mut header, (alg, kid, extra, replaced))| {
            if let Some(alg) = alg {
                header["alg"] = alg;
            }
            if let Some(kid) = kid {
                header["kid"] = kid;
            }
            if let Some((name, value)) = extra {
                header[name] = value;
            }
            replaced.unwrap_or(header)
        })
        .boxed()
}

fn credential(targets: &Targets) -> BoxedStrategy<Credential> {
    let segment = "[A-Za-z0-9_-]{0,40}";
    let raw = prop_oneof![
        2 => "[ -~]{0,60}".prop_map(Credential::Raw),
        2 => "[ -~]{0,60}".prop_map(|text| Credential::Raw(format!("Bearer {text}"))),
        2 => select(owned(&[
            "", "Bearer", "Bearer ", "Bearer  ", "bearer x", "BEARER x", "Basic dXNlcjpwYXNz",
            "Bearer .", "Bearer ..", "Bearer ...", "Bearer a.b.c", "Bearer e30.e30.",
            "Bearer eyJhbGciOiJub25lIn0.e30.", " Bearer x", "Bearer  x.y.z", "Bearer x y",
        ])).prop_map(Credential::Raw),
        2 => prop::collection::vec(segment, 1..6)
            .prop_map(|segments| Credential::Raw(format!("Bearer {}", segments.join(".")))),
        2 => (json_value(), json_value(), segment).prop_map(|(header, claims, signature)| {
            Credential::Raw(format!(
                "Bearer {}.{}.{signature}",
                b64(&header.to_string()),
                b64(&claims.to_string())
            ))
        }),
    ];
    let key = prop_oneof![
        8 => Just(SigningKey::Rsa),
        3 => Just(SigningKey::Ec),
        1 => Just(SigningKey::SecondIssuer),
        1 => Just(SigningKey::Untrusted),
    ];
    let jwt = (key, claims(targets))
        .prop_flat_map(|(key, claims)| {
            let signature = prop_oneof![
                12 => Just(Signature::Real),
                1 => Just(Signature::Empty),
                1 => segment.prop_map(Signature::Text),
            ];
            (Just(key), jwt_header(key), Just(claims), signature)
        })
        .prop_map(|(key, header, claims, signature)| Credential::Jwt {
            header,
            claims,
            key,
            signature,
        });
    prop_oneof![1 => raw, 3 => jwt].boxed()
}

#[derive(Debug, Clone)]
struct TokenCase {
    credential: Credential,
    target: usize,
}

#[test]
fn authorization_headers() {
    let world = World::new();
    let targets = &world.targets;
    let requests = [
        Req::new("GET", format!("DocumentReference/{}", targets.documents[0])),
        Req::new(
            "GET",
            format!("DocumentReference?patient={}", targets.patient),
        ),
        Req::new("GET", format!("Patient/{}", targets.patient)),
        Req::new("GET", "metadata"),
        Req::new("POST", "Binary")
            .header("Content-Type", "text/plain")
            .header(
                "X-Security-Context",
                &format!("Patient/{}", targets.patient),
            )
            .body(b"hello".to_vec()),
    ];
    let strategy = (credential(targets), 0..requests.len())
        .prop_map(|(credential, target)| TokenCase { credential, target });
    fuzz(strategy, |case| {
        let request = requests[case.target]
            .clone()
            .header("Authorization", &case.credential.header_value());
        // Twice: the first verifies the token, the second may be answered from the
        // cache of verified tokens; both must agree.
        let first = world.exchange(&request)?;
        let second = world.exchange(&request)?;
        prop_assert_eq!(
            first.status,
            second.status,
            "{} then {} to\n{}",
            first.body,
            second.body,
            request
        );
        for reply in [&first, &second] {
            if reply.status == 401 {
                prop_assert!(
                    reply
                        .header("www-authenticate")
                        .is_some_and(|value| value.starts_with("Bearer")),
                    "401 without WWW-Authenticate: Bearer to\n{request}"
                );
            }
        }
        Ok(())
    });
    world.still_serves();
}

// ---------------------------------------------------------------------------------
// 5. Resource bodies.
// ---------------------------------------------------------------------------------

const RESOURCE_TYPES: &[&str] = &[
    "Patient",
    "patient",
    "PATIENT",
    " Patient",
    "Patient ",
    "Patient\u{0}",
    "Pati\u{301}ent",
    "",
    "DocumentReference",
    "Consent",
    "Communication",
    "Binary",
    "Bundle",
    "OperationOutcome",
    "AuditEvent",
    "Parameters",
];

const CONTENT_TYPES: &[&str] = &[
    "application/pdf",
    "text/plain",
    "image/png",
    "application/octet-stream",
    "text/html",
    "image/svg+xml",
    "application/xml",
    "text/xml",
    "application/fhir+xml",
    "application/xml+fhir",
    "application/fhir+json",
    "application/json",
    "application/json; charset=utf-16",
    "application/json-patch+json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "",
    ";",
    "a/b/c",
    "x",
    "application/pdf; charset=\"",
    "*/*",
    "text/*",
];

#[derive(Debug, Clone)]
enum Payload {
    /// A valid resource of the target type, changed: members replaced, added or
    /// removed, `resourceType` varied, an extension chain nested deep, the text
    /// damaged.
    Json {
        /// One string of the valid body (the n-th, depth first) replaced.
        string: Option<(Index, String)>,
        changes: Vec<(String, Option<Value>)>,
        resource_type: Option<Option<Value>>,
        nesting: Option<usize>,
        damage: Option<Damage>,
    },
    /// Bytes as they come.
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
struct BodyCase {
    /// Index in the targets of [`body_targets`].
    target: usize,
    payload: Payload,
    content_type: Option<&'static str>,
    security_context: Option<String>,
    if_none_exist: Option<String>,
    headers: Vec<(&'static str, String)>,
}

/// The types bodies are posted to, who posts them and a valid body of each.
fn body_targets(world: &World) -> Vec<(&'static str, Who, Value)> {
    let patient_id = &world.targets.patient;
    vec![
        (
            "Patient",
            Who::System,
            patient(&world.targets.nirs[0], "Durand", "Léa", "1990-09-09"),
        ),
        (
            "DocumentReference",
            Who::Doctor,
            document(patient_id, "11488-4", "2024-03-03"),
        ),
        (
            "Consent",
            Who::Patient,
            consent(patient_id, "Practitioner/pr-810000000002"),
        ),
        (
            "Communication",
            Who::Doctor,
            communication(patient_id, "2024-01-01T10:00:00+01:00"),
        ),
        (
            "Binary",
            Who::Doctor,
            json!({
                "resourceType": "Binary", "contentType": "application/pdf", "data": "JVBERi0xLjQK",
                "securityContext": { "reference": format!("Patient/{patient_id}") },
            }),
        ),
    ]
}

fn body_case(world: &World, count: usize) -> BoxedStrategy<BodyCase> {
    let targets = &world.targets;
    let member = prop_oneof![
        3 => select(owned(&[
            "resourceType", "id", "meta", "text", "extension", "modifierExtension", "contained",
            "implicitRules", "language", "identifier", "name", "birthDate", "gender",
            "generalPractitioner", "status", "type", "category", "subject", "date", "author",
            "content", "securityLabel", "patient", "provision", "policyRule", "scope", "sender",
            "recipient", "payload", "sent", "contentType", "data", "securityContext",
        ])),
        1 => field_name(),
    ];
    let plausible = select(vec![
        json!("x"),
        json!(""),
        json!([]),
        json!({}),
        json!(["x"]),
        json!(1),
        json!("2024-01-01"),
        json!("2024-01-01T10:00:00+01:00"),
        json!("current"),
        json!("female"),
        json!({ "reference": "Patient/nope" }),
        json!([{ "reference": "Practitioner/pr-810000000001" }]),
        json!({ "coding": [{ "system": "http://loinc.org", "code": "11488-4" }] }),
        json!([{ "coding": [{ "system": "http://loinc.org", "code": "11488-4" }] }]),
        json!([label("INVISIBLE_PATIENT")]),
        json!([{ "url": "http://example.org/fuzz", "valueString": "x" }]),
        json!({ "versionId": "7", "lastUpdated": "1999-01-01T00:00:00Z", "security": [] }),
        json!({ "status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script></div>" }),
        json!([{ "resourceType": "Patient", "id": "c1" }]),
    ]);
    let replacement = prop_oneof![
        3 => json_value().prop_map(Some),
        3 => plausible.prop_map(Some),
        1 => Just(None),
    ];
    let json = (
        prop::option::weighted(
            0.3,
            (
                any::<Index>(),
                prop_oneof![
                    1 => select(owned(&["\u{0}", "a\u{0}b", "\u{1f}", "\u{85}", "\u{2028}"])),
                    3 => awkward_string(),
                ],
            ),
        ),
        prop::collection::vec((member, replacement), 0..3),
        prop::option::weighted(
            0.2,
            prop_oneof![
                4 => select(RESOURCE_TYPES).prop_map(|kind| Some(Value::from(kind))),
                1 => Just(None),
                1 => json_leaf().prop_map(Some),
            ],
        ),
        prop::option::weighted(0.1, 1..70usize),
        prop::option::weighted(0.25, damage()),
    )
        .prop_map(
            |(string, changes, resource_type, nesting, damage)| Payload::Json {
                string,
                changes,
                resource_type,
                nesting,
                damage,
            },
        );
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|value| value.to_string().into_bytes()),
    ]
    .prop_map(Payload::Bytes);
    let mut contexts = owned(&[
        "",
        "Patient/",
        "Patient/nope",
        "urn:uuid:x",
        "DocumentReference",
    ]);
    contexts.extend([
        format!("Patient/{}", targets.patient),
        format!("DocumentReference/{}", targets.documents[0]),
        format!("Binary/{}", targets.binary),
    ]);
    let mut queries = owned(&["", "x", "identifier=|", "_id=%zz", "date=sa2024", "&&"]);
    queries.push(format!(
        "identifier=urn:oid:1.2.250.1.213.1.4.8|{}",
        targets.nirs[0]
    ));
    queries.push(format!("patient={}", targets.patient));
    (
        0..count,
        prop_oneof![4 => json, 1 => bytes],
        prop_oneof![
            10 => Just(Some(FHIR_JSON)),
            1 => Just(None),
            2 => select(CONTENT_TYPES).prop_map(Some),
        ],
        prop::option::weighted(0.5, select(contexts)),
        prop::option::weighted(0.1, select(queries)),
        extra_headers(),
    )
        .prop_map(
            |(target, payload, content_type, security_context, if_none_exist, headers)| BodyCase {
                target,
                payload,
                content_type,
                security_context,
                if_none_exist,
                headers,
            },
        )
        .boxed()
}

/// The strings of a JSON value, depth first.
fn string_leaves<'a>(value: &'a mut Value, strings: &mut Vec<&'a mut String>) {
    match value {
        Value::String(text) => strings.push(text),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| string_leaves(item, strings)),
        Value::Object(members) => members
            .values_mut()
            .for_each(|item| string_leaves(item, strings)),
        _ => {}
    }
}

fn body_bytes(base: &Value, payload: &Payload) -> Vec<u8> {
    match payload {
        Payload::Bytes(bytes) => bytes.clone(),
        Payload::Json {
            string,
            changes,
            resource_type,
            nesting,
            damage,
        } => {
            let mut body = base.clone();
            if let Some((at, text)) = string {
                let mut strings = Vec::new();
                string_leaves(&mut body, &mut strings);
                if !strings.is_empty() {
                    let at = at.index(strings.len());
                    *strings[at] = text.clone();
                }
            }
            let members = body.as_object_mut().expect("an object");
            for (name, value) in changes {
                match value {
                    Some(value) => members.insert(name.clone(), value.clone()),
                    None => members.remove(name),
                };
            }
            match resource_type {
                None => {}
                Some(None) => {
                    members.remove("resourceType");
                }
                Some(Some(kind)) => {
                    members.insert("resourceType".into(), kind.clone());
                }
            }
            if let Some(depth) = nesting {
                members.insert("extension".into(), json!([nested_extension(*depth)]));
            }
            let text = body.to_string().into_bytes();
            match damage {
                Some(damage) => apply(damage, text),
                None => text,
            }
        }
    }
}

#[test]
fn resource_bodies() {
    let world = World::new();
    let targets = body_targets(&world);
    fuzz(body_case(&world, targets.len()), |case| {
        let (kind, who, base) = &targets[case.target];
        let who = world.who(*who);
        let mut request = Req::new("POST", *kind).by(who);
        // Raw bytes in their own media type go to Binary, with a security context.
        let raw_binary = *kind == "Binary" && matches!(case.payload, Payload::Bytes(_));
        let content_type = if raw_binary {
            case.content_type.filter(|kind| *kind != FHIR_JSON)
        } else {
            case.content_type
        };
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        if let Some(context) = &case.security_context
            && *kind == "Binary"
        {
            request = request.header("X-Security-Context", context);
        }
        if let Some(query) = &case.if_none_exist {
            request = request.header("If-None-Exist", query);
        }
        let request = with_headers(request, &case.headers).body(body_bytes(base, &case.payload));
        let reply = world.exchange(&request)?;
        if reply.status == 201 {
            // What was stored reads back, as JSON and, for a Binary, in its own type.
            let id = reply
                .header("location")
                .and_then(|location| location.split(&format!("/{kind}/")).nth(1))
                .and_then(|rest| rest.split('/').next())
                .unwrap_or_default()
                .to_owned();
            prop_assert!(!id.is_empty(), "201 without a Location to\n{}", request);
            let read = Req::new("GET", format!("{kind}/{id}")).by(who);
            let answer = world.exchange(&read)?;
            prop_assert!(
                matches!(answer.status, 200 | 403 | 404),
                "reading back after\n{}\nanswered {} {}",
                request,
                answer.status,
                answer.body
            );
            if *kind == "Binary"
                && let Some(content_type) = content_type
            {
                let native = read.header("Accept", content_type);
                world.exchange(&native)?;
            }
        }
        Ok(())
    });
    world.still_serves();
}
