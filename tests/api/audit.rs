//! The trace (SPEC §8): an AuditEvent for every interaction, refused ones included
//! (R-AUD-1), durable before the answer even if the server is killed (R-AUD-2),
//! immutable and chained (R-AUD-3); who reads it (R-PAT-4, R-ACC-11).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::fixtures::{
    DOCTOR_IDNAT, INS, block_professional, document, labelled_document, nir, patient,
    permit_professional,
};
use crate::support::{As, Reply, ServerProcess, TestApp, match_ids, run_command};

const COLLEAGUE: &str = "810000000002";
const STRANGER: &str = "810000000003";

fn colleague() -> As {
    As::Professional {
        id_nat_ps: COLLEAGUE.into(),
        profession: "10".into(),
    }
}

/// An app with one patient (médecin traitant `As::doctor()`) and one document the
/// médecin traitant deposited.
fn space() -> (TestApp, String, String) {
    let app = TestApp::new();
    let (patient_id, document_id) = app.patient_with_document("2012-05-01");
    (app, patient_id, document_id)
}

/// Sends a request with a known X-Request-Id.
fn traced(
    app: &TestApp,
    method: &str,
    path: &str,
    who: &As,
    body: Option<&Value>,
    request_id: &str,
) -> Reply {
    let mut call = app
        .request(method, path)
        .as_(who)
        .header("X-Request-Id", request_id);
    if body.is_some() {
        call = call.header(
            "Content-Type",
            if method == "PATCH" {
                "application/json-patch+json"
            } else {
                "application/fhir+json"
            },
        );
    }
    call.send(body.map(Value::to_string))
}

fn code_at<'a>(event: &'a Value, pointer: &str) -> &'a str {
    event.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The entity references of an event.
fn entities(event: &Value) -> Vec<String> {
    event["entity"]
        .as_array()
        .expect("entities")
        .iter()
        .filter_map(|entity| entity.pointer("/what/reference").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

fn request_id_entity(event: &Value) -> String {
    event["entity"]
        .as_array()
        .expect("entities")
        .iter()
        .find(|entity| entity.pointer("/type/code") == Some(&json!("XrequestId")))
        .and_then(|entity| entity.pointer("/what/identifier/value"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

// ---------------------------------------------------------------- R-AUD-1

/// (method, path, body, status, subtype, action)
type Interaction<'a> = (&'a str, String, Option<Value>, u16, &'a str, &'a str);
/// (who, method, path, body, status, rule)
type Refusal<'a> = (
    As,
    &'a str,
    &'a str,
    Option<&'a Value>,
    u16,
    Option<&'a str>,
);

#[test]
fn r_aud_1_every_interaction_writes_its_event_with_its_codes() {
    let (app, patient_id, document_id) = space();
    let gp = As::doctor();
    let new_document = document(&patient_id, "11488-4", "2024-02-01");
    let mut updated = app
        .get(&format!("DocumentReference/{document_id}"), &gp)
        .json();
    updated["description"] = json!("relu");
    let status_patch = json!([{ "op": "replace", "path": "/status", "value": "superseded" }]);
    let transaction = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "resource": document(&patient_id, "11488-4", "2024-03-01"), "request": { "method": "POST", "url": "DocumentReference" } }
    ]});
    let batch = json!({ "resourceType": "Bundle", "type": "batch", "entry": [
        { "request": { "method": "GET", "url": format!("DocumentReference/{document_id}") } }
    ]});
    let search = format!("DocumentReference?patient={patient_id}&type=http://loinc.org|11488-4");
    let table: Vec<Interaction> = vec![
        (
            "GET",
            format!("DocumentReference/{document_id}"),
            None,
            200,
            "read",
            "R",
        ),
        (
            "GET",
            format!("DocumentReference/{document_id}/_history/1"),
            None,
            200,
            "vread",
            "R",
        ),
        ("GET", search.clone(), None, 200, "search-type", "E"),
        (
            "POST",
            "DocumentReference".into(),
            Some(new_document),
            201,
            "create",
            "C",
        ),
        (
            "PUT",
            format!("DocumentReference/{document_id}"),
            Some(updated),
            200,
            "update",
            "U",
        ),
        (
            "PATCH",
            format!("DocumentReference/{document_id}"),
            Some(status_patch),
            200,
            "patch",
            "U",
        ),
        (
            "GET",
            format!("DocumentReference/{document_id}/_history"),
            None,
            200,
            "history-instance",
            "R",
        ),
        (
            "POST",
            String::new(),
            Some(transaction),
            200,
            "transaction",
            "E",
        ),
        ("POST", String::new(), Some(batch), 200, "batch", "E"),
        (
            "DELETE",
            format!("DocumentReference/{document_id}"),
            None,
            204,
            "delete",
            "D",
        ),
    ];
    for (index, (method, path, body, status, subtype, action)) in table.into_iter().enumerate() {
        let request_id = format!("interaction-{index}-{subtype}");
        let reply = traced(&app, method, &path, &gp, body.as_ref(), &request_id);
        assert_eq!(reply.status, status, "{subtype}: {}", reply.body);
        assert_eq!(reply.header("x-request-id"), Some(request_id.as_str()));
        let events = app.audit_events(&request_id);
        assert_eq!(events.len(), 1, "{subtype}: one event for one patient");
        let event = &events[0];
        fhir_check::check("AuditEvent", &event.to_string())
            .unwrap_or_else(|issue| panic!("{subtype}: not a valid R4 AuditEvent: {issue:?}"));
        assert_eq!(code_at(event, "/type/code"), "rest");
        assert_eq!(code_at(event, "/subtype/0/code"), subtype);
        assert_eq!(code_at(event, "/action"), action, "{subtype}");
        assert_eq!(code_at(event, "/outcome"), "0", "{subtype}");
        assert!(
            entities(event).contains(&format!("Patient/{patient_id}")),
            "{subtype}: {event}"
        );
        assert_eq!(request_id_entity(event), request_id);
        assert_eq!(
            code_at(event, "/agent/0/who/identifier/value"),
            DOCTOR_IDNAT
        );
        assert_eq!(
            code_at(event, "/agent/0/purposeOfUse/0/coding/0/code"),
            "normal"
        );
        assert_eq!(code_at(event, "/agent/1/type/coding/0/code"), "110153");
        assert_eq!(code_at(event, "/agent/1/network/address"), "127.0.0.1");
        if matches!(subtype, "read" | "vread" | "update" | "patch" | "delete") {
            assert!(
                entities(event).contains(&format!("DocumentReference/{document_id}")),
                "{subtype}: {event}"
            );
        }
        if subtype == "search-type" {
            let query = event["entity"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|entity| entity["query"].as_str())
                .expect("the search's query entity");
            let query = String::from_utf8(STANDARD.decode(query).unwrap()).unwrap();
            assert!(query.contains(&format!("patient={patient_id}")), "{query}");
        }
        if subtype == "create" {
            let created = reply.json()["id"].as_str().unwrap().to_owned();
            assert!(entities(event).contains(&format!("DocumentReference/{created}")));
        }
    }
}

#[test]
fn r_aud_1_refusals_and_failures_are_traced_with_the_deciding_rule() {
    let (app, patient_id, document_id) = space();
    app.create(
        &As::Patient(patient_id.clone()),
        &block_professional(&patient_id, STRANGER),
    );
    let blocked = As::Professional {
        id_nat_ps: STRANGER.into(),
        profession: "10".into(),
    };
    let read = format!("DocumentReference/{document_id}");
    let search = format!("DocumentReference?patient={patient_id}");
    let malformed = json!("not a resource");
    let cases: Vec<Refusal> = vec![
        (blocked.clone(), "GET", &search, None, 403, Some("R-ACC-2")),
        (colleague(), "GET", &search, None, 403, Some("R-ACC-3")),
        // A document of a space the caller did not name: as if it did not exist, the
        // rule in the trace only.
        (colleague(), "GET", &read, None, 404, Some("R-ACC-3")),
        (As::System, "GET", &read, None, 403, Some("ACTOR-TABLE")),
        (
            As::doctor(),
            "POST",
            "DocumentReference",
            Some(&malformed),
            400,
            None,
        ),
    ];
    for (index, (who, method, path, body, status, rule)) in cases.into_iter().enumerate() {
        let request_id = format!("refused-{index}");
        let reply = traced(&app, method, path, &who, body, &request_id);
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        let events = app.audit_events(&request_id);
        assert_eq!(events.len(), 1, "{path} as {who:?}");
        let event = &events[0];
        fhir_check::check("AuditEvent", &event.to_string()).expect("a valid R4 AuditEvent");
        assert_eq!(code_at(event, "/outcome"), "4", "{event}");
        assert!(
            code_at(event, "/outcomeDesc").starts_with(&status.to_string()),
            "{event}"
        );
        if let Some(rule) = rule {
            if rule == "ACTOR-TABLE" {
                assert!(!code_at(event, "/extension/0/valueString").is_empty());
            } else {
                assert_eq!(code_at(event, "/extension/0/valueString"), rule, "{event}");
                // The refused access shows in the patient's trace.
                assert!(entities(event).contains(&format!("Patient/{patient_id}")));
            }
        }
    }
    // No credentials: traced too, with no patient (the caller is not known).
    let reply = traced(&app, "GET", &read, &As::Nobody, None, "anonymous-1");
    assert_eq!(reply.status, 401);
    let events = app.audit_events("anonymous-1");
    assert_eq!(events.len(), 1);
    assert_eq!(code_at(&events[0], "/outcome"), "4");
    assert_eq!(
        code_at(&events[0], "/agent/0/who/display"),
        "unauthenticated caller"
    );
    assert!(
        !entities(&events[0])
            .iter()
            .any(|e| e.starts_with("Patient/"))
    );
}

#[test]
fn r_aud_1_one_event_per_patient_concerned_also_for_searches() {
    let app = TestApp::new();
    let first = app.create(
        &As::System,
        &patient(&nir(), "Durand", "Anne", "1970-01-01"),
    );
    let second = app.create(
        &As::System,
        &patient(&nir(), "Durand", "Paul", "1972-01-01"),
    );
    let reply = traced(
        &app,
        "GET",
        "Patient?family=Durand",
        &As::doctor(),
        None,
        "two-patients",
    );
    assert_eq!(match_ids(&reply.json()).len(), 2);
    let events = app.audit_events("two-patients");
    let mut concerned: Vec<String> = events
        .iter()
        .map(|event| entities(event)[0].clone())
        .collect();
    concerned.sort();
    let mut expected = vec![format!("Patient/{first}"), format!("Patient/{second}")];
    expected.sort();
    assert_eq!(concerned, expected);
    // A count, or a total beyond the page, concerns every patient it counts.
    for (request_id, query) in [
        ("count-only", "_summary=count"),
        ("count-zero", "_count=0&_total=accurate"),
        ("short-page", "_count=1&_total=accurate"),
        ("next-link", "_count=1"),
    ] {
        let path = format!("Patient?family=Durand&{query}");
        let reply = traced(&app, "GET", &path, &As::doctor(), None, request_id);
        assert_eq!(reply.status, 200, "{}", reply.body);
        if request_id != "next-link" {
            assert_eq!(reply.json()["total"], 2, "{}", reply.body);
        }
        let mut concerned: Vec<String> = app
            .audit_events(request_id)
            .iter()
            .map(|event| entities(event)[0].clone())
            .collect();
        concerned.sort();
        assert_eq!(concerned, expected, "{query}");
    }
    // A lookup of several people by a chain (refused) or a conditional reference
    // (refused as ambiguous) concerns each; one found by a conditional reference,
    // that one.
    let mut deposit = document(&first, "11488-4", "2024-01-01");
    deposit["author"] = json!([{ "reference": "Patient?family=Durand" }]);
    let lookups = [
        (
            "GET",
            "DocumentReference?patient.family=Durand".to_owned(),
            None,
            403,
            expected.clone(),
        ),
        (
            "POST",
            "DocumentReference".to_owned(),
            Some(deposit.clone()),
            412,
            expected.clone(),
        ),
    ];
    for (index, (method, path, body, status, concerned_expected)) in lookups.into_iter().enumerate()
    {
        let request_id = format!("lookup-{index}");
        let reply = traced(
            &app,
            method,
            &path,
            &As::doctor(),
            body.as_ref(),
            &request_id,
        );
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        let mut concerned: Vec<String> = app
            .audit_events(&request_id)
            .iter()
            .map(|event| entities(event)[0].clone())
            .collect();
        concerned.sort();
        assert_eq!(concerned, concerned_expected, "{path}");
    }
    deposit["author"] = json!([{ "reference": "Patient?family=Durand&given=Paul" }]);
    let reply = traced(
        &app,
        "POST",
        "DocumentReference",
        &As::doctor(),
        Some(&deposit),
        "lookup-one",
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let mut concerned: Vec<String> = app
        .audit_events("lookup-one")
        .iter()
        .flat_map(entities)
        .filter(|entity| entity.starts_with("Patient/"))
        .collect();
    concerned.sort();
    concerned.dedup();
    assert_eq!(concerned, expected, "the deposit's space and the author's");
    // A feed's Patient whose INS a space holds (409 naming it), or whose
    // If-None-Exist matches several people (412): each person's trace shows it.
    let first_nir =
        app.get(&format!("Patient/{first}"), &As::doctor()).json()["identifier"][0]["value"]
            .as_str()
            .unwrap()
            .to_owned();
    let newcomer = patient(&first_nir, "Autre", "Personne", "1990-01-01");
    let reply = traced(
        &app,
        "POST",
        "Patient",
        &As::System,
        Some(&newcomer),
        "held-ins",
    );
    assert_eq!(reply.status, 409, "{}", reply.body);
    let concerned: Vec<String> = app
        .audit_events("held-ins")
        .iter()
        .map(|event| entities(event)[0].clone())
        .collect();
    assert!(
        concerned.contains(&format!("Patient/{first}")),
        "{concerned:?}"
    );
    let reply = app
        .request("POST", "Patient")
        .as_(&As::System)
        .header("Content-Type", "application/fhir+json")
        .header("If-None-Exist", "family=Durand")
        .header("X-Request-Id", "if-none-exist")
        .send(Some(
            patient(&nir(), "Durand", "Zoé", "1999-01-01").to_string(),
        ));
    assert_eq!(reply.status, 412, "{}", reply.body);
    let mut concerned: Vec<String> = app
        .audit_events("if-none-exist")
        .iter()
        .map(|event| entities(event)[0].clone())
        .collect();
    concerned.sort();
    assert_eq!(concerned, expected);
    // A chain into Patient through another reference than the space's is refused,
    // typed or not.
    for chain in ["author", "author:Patient"] {
        let reply = app.get(
            &format!("DocumentReference?patient={first}&{chain}.identifier={first_nir}"),
            &As::doctor(),
        );
        assert_eq!(reply.status, 400, "{}", reply.body);
    }
    let reply = app.get(
        &format!("DocumentReference?patient={first}&author:Patient.identifier={first_nir}"),
        &As::doctor(),
    );
    assert!(
        reply.body.contains("chains into Patient are not supported"),
        "{}",
        reply.body
    );
}

#[test]
fn r_aud_1_the_access_mode_and_its_reason_are_recorded() {
    let (app, patient_id, document_id) = space();
    let emergency = As::professional(
        STRANGER,
        "10",
        None,
        Some("bris_de_glace"),
        Some("patient inconscient aux urgences"),
    );
    let reply = traced(
        &app,
        "GET",
        &format!("DocumentReference/{document_id}"),
        &emergency,
        None,
        "emergency-1",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let event = &app.audit_events("emergency-1")[0];
    assert_eq!(
        code_at(event, "/purposeOfEvent/0/coding/0/code"),
        "bris_de_glace"
    );
    assert_eq!(
        code_at(event, "/purposeOfEvent/0/text"),
        "patient inconscient aux urgences"
    );
    assert_eq!(
        code_at(event, "/agent/0/purposeOfUse/0/coding/0/code"),
        "bris_de_glace"
    );
    let samu = As::professional(STRANGER, "10", None, Some("centre_15"), None);
    traced(
        &app,
        "GET",
        &format!("DocumentReference?patient={patient_id}"),
        &samu,
        None,
        "samu-1",
    );
    assert_eq!(
        code_at(
            &app.audit_events("samu-1")[0],
            "/purposeOfEvent/0/coding/0/code"
        ),
        "centre_15"
    );
}

// ---------------------------------------------------------------- R-PAT-4, R-ACC-11

/// Ids of the events a trace search returns, and its total.
fn trace(app: &TestApp, query: &str, who: &As) -> (Vec<Value>, i64) {
    let reply = app.get(
        &format!("AuditEvent?{query}&_total=accurate&_count=500"),
        who,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    (reply.resources(), reply.json()["total"].as_i64().unwrap())
}

/// The request ids the events of a trace name (`entity.what.identifier`).
fn traced_request_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .flat_map(|event| event["entity"].as_array().cloned().unwrap_or_default())
        .filter_map(|entity| {
            entity
                .pointer("/what/identifier/value")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// An event is durable before its answer and searchable once the indexer has
/// written its index rows; whoever searches the trace reads every access answered
/// before (read-your-writes): each professional's read is in the patient's search
/// sent right after its answer, and the total counts it, however fast the two follow
/// each other.
#[test]
fn r_pat_4_and_r_aud_2_an_answered_access_is_in_the_trace_searched_next() {
    let (app, patient_id, document_id) = space();
    let me = As::Patient(patient_id.clone());
    // The médecin traitant reads the document under a request id of the test's.
    let doctor_reads = |request_id: &str| {
        let reply = traced(
            &app,
            "GET",
            &format!("DocumentReference/{document_id}"),
            &As::doctor(),
            None,
            request_id,
        );
        assert_eq!(reply.status, 200);
    };
    let (_, mut total) = trace(&app, &format!("patient={patient_id}"), &me);
    for round in 0..25 {
        let request_id = format!("ryw-{round}");
        doctor_reads(&request_id);
        let (events, now) = trace(&app, &format!("patient={patient_id}"), &me);
        assert!(
            traced_request_ids(&events).contains(&request_id),
            "round {round}: the access just answered is not in the trace"
        );
        // The doctor's read and the patient's previous search, each traced.
        assert_eq!(now, total + 2, "round {round}");
        total = now;
    }
    // The professional's side (R-ACC-11), through an `_revinclude` of the trace: the
    // médecin traitant reads the space's whole trace, their own read just answered
    // included.
    for round in 0..10 {
        let request_id = format!("ryw-included-{round}");
        doctor_reads(&request_id);
        let bundle = app
            .get(
                &format!("Patient?_id={patient_id}&_revinclude=AuditEvent:patient&_count=500"),
                &As::doctor(),
            )
            .json();
        let included = entries_of(&bundle, "AuditEvent");
        assert!(
            traced_request_ids(&included).contains(&request_id),
            "round {round}: the read just answered is not among the included events"
        );
    }
}

/// R-PAT-4 / R-AUD-2 / R-AUD-4 with the trace's log (`--audit-log-postgres` on
/// PostgreSQL): while another connection holds the database's write lock
/// (SQLite) or the patient's chain (PostgreSQL),
/// a read is still answered (its events are durable in the log), and the holder's
/// search of the trace and of their notifications that follows waits until the
/// log is applied, then shows it: the access and the first-access notice.
#[test]
fn r_pat_4_an_access_answered_while_the_database_is_locked_is_in_what_is_read_next() {
    use diesel::connection::SimpleConnection;
    let app = TestApp::with(|config| config.audit_log_postgres = true);
    let (patient_id, document_id) = app.patient_with_document("2012-05-01");
    let me = As::Patient(patient_id.clone());
    let stranger = "810000000077";
    app.create(
        &me,
        &crate::support::fixtures::permit_professional(&patient_id, stranger),
    );
    let notices = || {
        let reply = app.get(
            &format!(
                "Communication?patient={patient_id}&category=http://terminology.hl7.org/CodeSystem/communication-category|notification&_count=100"
            ),
            &me,
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        entries_of(&reply.json(), "Communication")
            .iter()
            .filter(|notice| notice["topic"]["coding"][0]["code"] == "first-access")
            .count()
    };
    let notices_before = notices();
    let mut writer = app.connect();
    let (lock, unlock) = if app.is_postgres() {
        let chain = format!("hashtext('audit-chain/{patient_id}')");
        (
            format!("SELECT pg_advisory_lock({chain})"),
            format!("SELECT pg_advisory_unlock({chain})"),
        )
    } else {
        ("BEGIN IMMEDIATE".to_owned(), "COMMIT".to_owned())
    };
    writer.batch_execute(&lock).expect("the lock");
    let reply = traced(
        &app,
        "GET",
        &format!("DocumentReference/{document_id}"),
        &As::Professional {
            id_nat_ps: stranger.into(),
            profession: "10".into(),
        },
        None,
        "read-while-locked",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        writer.batch_execute(&unlock).expect("release");
    });
    assert_eq!(notices(), notices_before + 1, "the first access is told");
    let (events, _) = trace(&app, &format!("patient={patient_id}"), &me);
    assert!(
        traced_request_ids(&events).contains(&"read-while-locked".to_owned()),
        "the access answered while the database was locked is not in the trace"
    );
    release.join().unwrap();
}

/// R-AUD-3: `audit-verify` run while the server appends to the chains it checks
/// reads one snapshot: no link appended meanwhile is taken for a removed one.
#[test]
fn r_aud_3_the_chains_hold_when_checked_while_the_server_appends() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (app, _, document_id) = space();
    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    let reports = std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let path = format!("DocumentReference/{document_id}");
                    if app.get(&path, &As::doctor()).status == 200 {
                        reads.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
        // At least ten checks, and as many more as it takes (on a loaded machine)
        // for the server to append 20 reads' links while they run.
        let mut reports: Vec<(bool, String)> = Vec::new();
        while reports.len() < 10 || (reads.load(Ordering::SeqCst) <= 20 && reports.len() < 200) {
            reports.push(run_command(&[
                "audit-verify",
                "--database-url",
                &app.database_url,
            ]));
        }
        stop.store(true, Ordering::SeqCst);
        reports
    });
    let reads = reads.load(Ordering::SeqCst);
    assert!(reads > 20, "the server appended meanwhile: {reads} reads");
    for (holds, report) in reports {
        assert!(holds, "{report}");
    }
}

/// R-AUD-2 / R-PAT-4 with the trace's log: a SQLite database has one server
/// process (the trace's readers wait for its applier only, and it applies the log
/// a stopped server left); a second one on the same file refuses to start, saying
/// why, and the first goes on serving.
#[test]
fn a_second_server_on_the_same_sqlite_database_is_refused() {
    let (app, _, document_id) = space();
    if app.is_postgres() {
        // Several instances share a PostgreSQL database (tests/api/instances.rs).
        return;
    }
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_dmp-fhir-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &app.database_url,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start a second server");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = second.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            second.kill().ok();
            panic!("a second server serves the same SQLite database");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let output = second.wait_with_output().expect("its output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!status.success(), "{said}");
    assert!(
        said.contains("another server process serves this SQLite database"),
        "{said}"
    );
    // Nor under another name of the same file (a hard link: its own write-ahead
    // log and lock folder beside it).
    let file = app.database_url.trim_start_matches("sqlite://");
    let other_name = format!("{file}.other-name");
    std::fs::hard_link(file, &other_name).expect("a second name");
    let (served, said) = run_command(&[
        "audit-verify",
        "--database-url",
        &format!("sqlite://{other_name}"),
    ]);
    assert!(!served, "{said}");
    assert!(said.contains("hard links"), "{said}");
    std::fs::remove_file(&other_name).unwrap();
    let reply = app.get(&format!("DocumentReference/{document_id}"), &As::doctor());
    assert_eq!(reply.status, 200, "the first one still serves");
}

/// R-PAT-4 / R-AUD-2 under a burst: 1,600 reads from eight clients at once, their
/// events committed in groups and indexed in batches; the patient's trace searched
/// next counts every one of them (the catch-up batches of a queue far behind are
/// checked in `audit::indexer`'s own test).
#[test]
fn r_pat_4_a_burst_of_accesses_is_whole_in_the_trace_searched_next() {
    let (app, patient_id, document_id) = space();
    let me = As::Patient(patient_id.clone());
    let (_, before) = trace(&app, &format!("patient={patient_id}"), &me);
    let (threads, reads) = (8, 200);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (app, document_id) = (&app, &document_id);
                scope.spawn(move || {
                    (0..reads)
                        .map(|_| {
                            app.get(&format!("DocumentReference/{document_id}"), &As::doctor())
                                .status
                        })
                        .collect::<Vec<u16>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap())
            .collect()
    });
    assert!(statuses.iter().all(|status| *status == 200));
    let (_, after) = trace(&app, &format!("patient={patient_id}"), &me);
    // Every read, and the patient's first search.
    assert_eq!(after, before + (threads * reads) as i64 + 1);
}

fn agent_ids(events: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = events
        .iter()
        .map(|event| code_at(event, "/agent/0/who/identifier/value").to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[test]
fn r_pat_4_the_patient_reads_the_whole_trace_of_their_space_newest_first() {
    let (app, patient_id, document_id) = space();
    let me = As::Patient(patient_id.clone());
    app.create(&me, &permit_professional(&patient_id, COLLEAGUE));
    app.get(&format!("DocumentReference/{document_id}"), &colleague());
    app.get(&format!("DocumentReference/{document_id}"), &As::doctor());
    let (events, total) = trace(&app, &format!("patient={patient_id}"), &me);
    assert_eq!(total as usize, events.len());
    // Everyone's actions on the space: the médecin traitant's, the colleague's, the
    // patient's own.
    let agents = agent_ids(&events);
    assert!(agents.contains(&DOCTOR_IDNAT.to_owned()) && agents.contains(&COLLEAGUE.to_owned()));
    assert!(events.iter().any(|event| {
        code_at(event, "/agent/0/who/reference") == format!("Patient/{patient_id}")
    }));
    let recorded: Vec<&str> = events.iter().map(|e| code_at(e, "/recorded")).collect();
    let mut newest_first = recorded.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(recorded, newest_first);
    // Paged, with a next link that keeps the order.
    let page = app
        .get(&format!("AuditEvent?patient={patient_id}&_count=2"), &me)
        .json();
    assert_eq!(match_ids(&page).len(), 2);
    let next = crate::support::next_link(&page).expect("a next link");
    let second = app.get(&next, &me).json();
    let second_ids = match_ids(&second);
    assert_eq!(second_ids.len(), 2);
    assert!(!second_ids.iter().any(|id| match_ids(&page).contains(id)));
    // The representative has the patient's right; another patient sees only theirs.
    let (as_representative, _) = trace(
        &app,
        &format!("patient={patient_id}"),
        &As::Representative(patient_id.clone()),
    );
    assert!(as_representative.len() >= events.len());
    let other = app.create(&As::System, &patient(&nir(), "Autre", "Léa", "1990-01-01"));
    let (theirs, _) = trace(&app, &format!("patient={patient_id}"), &As::Patient(other));
    assert!(theirs.is_empty());
    let one = events[0]["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("AuditEvent/{one}"), &me).status, 200);
    assert_eq!(
        app.get(
            &format!("AuditEvent/{one}"),
            &As::Patient("someone-else".into())
        )
        .status,
        404
    );
}

#[test]
fn r_acc_11_a_professional_reads_their_own_trace_and_the_medecin_traitant_all() {
    let (app, patient_id, document_id) = space();
    let me = As::Patient(patient_id.clone());
    app.create(&me, &permit_professional(&patient_id, COLLEAGUE));
    traced(
        &app,
        "GET",
        &format!("DocumentReference/{document_id}"),
        &colleague(),
        None,
        "colleague-read",
    );
    traced(
        &app,
        "GET",
        &format!("DocumentReference/{document_id}"),
        &As::doctor(),
        None,
        "gp-read",
    );
    let colleague_event = app.audit_events("colleague-read")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let gp_event = app.audit_events("gp-read")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The colleague: their own actions only, by search and by id.
    let (events, total) = trace(&app, &format!("patient={patient_id}"), &colleague());
    assert_eq!(agent_ids(&events), vec![COLLEAGUE.to_owned()]);
    assert_eq!(total as usize, events.len());
    assert_eq!(
        app.get(&format!("AuditEvent/{colleague_event}"), &colleague())
            .status,
        200
    );
    let hidden = app.get(&format!("AuditEvent/{gp_event}"), &colleague());
    crate::support::assert_refused(&hidden, 404, "R-ACC-11");
    // Without a patient: their own actions in every space.
    let (own, _) = trace(&app, "outcome=0", &colleague());
    assert!(!own.is_empty());
    assert_eq!(agent_ids(&own), vec![COLLEAGUE.to_owned()]);
    // Through _revinclude: the same rule decides the included events.
    let bundle = app
        .get(
            &format!("Patient?_id={patient_id}&_revinclude=AuditEvent:patient"),
            &colleague(),
        )
        .json();
    let included = entries_of(&bundle, "AuditEvent");
    assert!(!included.is_empty());
    assert_eq!(agent_ids(&included), vec![COLLEAGUE.to_owned()]);
    // The médecin traitant: the whole trace of the space.
    let (all, _) = trace(&app, &format!("patient={patient_id}"), &As::doctor());
    let agents = agent_ids(&all);
    assert!(agents.contains(&COLLEAGUE.to_owned()) && agents.contains(&DOCTOR_IDNAT.to_owned()));
    assert_eq!(
        app.get(&format!("AuditEvent/{colleague_event}"), &As::doctor())
            .status,
        200
    );
    // A professional with no part in the space sees none of it.
    let stranger = As::Professional {
        id_nat_ps: STRANGER.into(),
        profession: "10".into(),
    };
    let (none, total) = trace(&app, &format!("patient={patient_id}"), &stranger);
    assert!(none.is_empty() && total == 0);
    // The system reads no trace (R-ACC-12).
    assert_eq!(
        app.get(&format!("AuditEvent?patient={patient_id}"), &As::System)
            .status,
        403
    );
}

// ---------------------------------------------------------------- R-AUD-3

#[test]
fn r_aud_3_no_path_changes_or_deletes_an_event() {
    let (app, patient_id, document_id) = space();
    traced(
        &app,
        "GET",
        &format!("DocumentReference/{document_id}"),
        &As::doctor(),
        None,
        "to-keep",
    );
    let event = app.audit_events("to-keep")[0].clone();
    let id = event["id"].as_str().unwrap().to_owned();
    let me = As::Patient(patient_id.clone());
    let mut changed = event.clone();
    changed["outcome"] = json!("4");
    assert_eq!(
        app.put(&format!("AuditEvent/{id}"), &me, &changed).status,
        405
    );
    assert_eq!(app.delete(&format!("AuditEvent/{id}"), &me).status, 405);
    let patch = json!([{ "op": "replace", "path": "/outcome", "value": "4" }]);
    let reply = app
        .request("PATCH", &format!("AuditEvent/{id}"))
        .as_(&me)
        .header("Content-Type", "application/json-patch+json")
        .send(Some(patch.to_string()));
    assert_eq!(reply.status, 405);
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "resource": changed, "request": { "method": "PUT", "url": format!("AuditEvent/{id}") } }
    ]});
    let reply = app.post("", &me, &bundle);
    assert!(reply.status >= 400, "{}", reply.body);
    // Nor SQL: the database refuses.
    assert!(
        app.try_execute_sql(&format!(
            "UPDATE resources SET content = '{{}}' WHERE res_type = 'AuditEvent' AND res_id = '{id}'"
        ))
        .unwrap_err()
        .contains("immutable")
    );
    assert!(
        app.try_execute_sql("DELETE FROM resources WHERE res_type = 'AuditEvent'")
            .unwrap_err()
            .contains("immutable")
    );
    assert!(
        app.try_execute_sql("DELETE FROM audit_chain")
            .unwrap_err()
            .contains("immutable")
    );
    assert_eq!(app.audit_events("to-keep")[0], event);
}

/// Runs `dmp-fhir-server audit-verify` on the app's database.
fn verify(app: &TestApp) -> (bool, String) {
    run_command(&["audit-verify", "--database-url", &app.database_url])
}

#[test]
fn r_aud_3_the_chain_check_finds_a_changed_or_removed_event() {
    let (app, patient_id, document_id) = space();
    for index in 0..5 {
        traced(
            &app,
            "GET",
            &format!("DocumentReference/{document_id}"),
            &As::doctor(),
            None,
            &format!("chained-{index}"),
        );
    }
    let (holds, report) = verify(&app);
    assert!(holds, "{report}");
    assert!(report.contains("every chain holds"), "{report}");
    // Someone with the database file changes an event's outcome.
    let target = app.audit_events("chained-2")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    if app.is_postgres() {
        app.execute_sql("DROP TRIGGER audit_event_immutable ON resources");
    } else {
        app.execute_sql("DROP TRIGGER audit_event_no_update");
    }
    app.execute_sql(&format!(
        "UPDATE resources SET content = replace(content, '\"outcome\":\"0\"', '\"outcome\":\"4\"') WHERE res_id = '{target}'"
    ));
    let (holds, report) = verify(&app);
    assert!(!holds);
    assert!(
        report.contains(&format!("AuditEvent/{target}")) && report.contains("was changed"),
        "{report}"
    );
    assert!(
        report.contains(&format!("Patient/{patient_id}")),
        "{report}"
    );
    // Someone removes the newest event of another space's chain.
    let (app, _, document_id) = space();
    traced(
        &app,
        "GET",
        &format!("DocumentReference/{document_id}"),
        &As::doctor(),
        None,
        "newest",
    );
    let newest = app.audit_events("newest")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    if app.is_postgres() {
        app.execute_sql("DROP TRIGGER audit_chain_immutable ON audit_chain");
        app.execute_sql("DROP TRIGGER audit_event_immutable ON resources");
    } else {
        app.execute_sql("DROP TRIGGER audit_chain_no_delete");
        app.execute_sql("DROP TRIGGER audit_event_no_delete");
    }
    app.execute_sql(&format!(
        "DELETE FROM audit_chain WHERE resource_pk = (SELECT pk FROM resources WHERE res_id = '{newest}')"
    ));
    app.execute_sql(&format!("DELETE FROM resources WHERE res_id = '{newest}'"));
    let (holds, report) = verify(&app);
    assert!(!holds);
    assert!(report.contains("events were removed"), "{report}");
}

// ---------------------------------------------------------------- R-AUD-2

/// Kills the server with SIGKILL in the middle of a load and checks that every
/// request that got an answer left its trace: on PostgreSQL, with the trace
/// committed before each answer and with its log (`--audit-log-postgres`).
#[test]
fn r_aud_2_a_killed_server_loses_no_trace_of_an_answered_request() {
    let postgres = killed_server_loses_no_trace(&[]);
    if postgres {
        killed_server_loses_no_trace(&["--audit-log-postgres", "true"]);
    }
}

/// [`r_aud_2_a_killed_server_loses_no_trace_of_an_answered_request`] with the
/// killed server's further flags; answers whether it ran on PostgreSQL.
fn killed_server_loses_no_trace(flags: &[&str]) -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let (app, _patient_id, document_id) = space();
    // A second server process, which the test kills: on a copy of the SQLite file
    // (the in-process server keeps the original), or on the same PostgreSQL database.
    let dir = crate::support::temp_dir("killed");
    let database_url = if app.is_postgres() {
        app.database_url.clone()
    } else {
        let db = dir.join("db.sqlite");
        app.execute_sql(&format!("VACUUM INTO '{}'", db.display()));
        format!("sqlite://{}", db.display())
    };
    let mut server = ServerProcess::start_with(&database_url, flags, &[("DMP_LOG", "error")]);
    let base = server.base.clone();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let token = As::doctor().token().unwrap();
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let (agent, answered, stop) = (agent.clone(), answered.clone(), stop.clone());
            let url = format!("{base}/DocumentReference/{document_id}");
            let token = token.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let request_id = format!("load-{worker}-{n}");
                    let reply = agent
                        .get(&url)
                        .header("Authorization", &format!("Bearer {token}"))
                        .header("X-Request-Id", &request_id)
                        .call();
                    match reply {
                        Ok(mut response) if response.status() == 200 => {
                            // Answered means the whole body arrived.
                            if response.body_mut().read_to_string().is_ok() {
                                answered.lock().unwrap().push(request_id);
                            }
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    server.kill();
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().expect("load thread");
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() > 50, "too little load: {}", answered.len());
    // On SQLite, what the killed server had only in its trace's log goes into the
    // database at the next start, or first thing in `audit-verify`; then the
    // chains, whole, hold.
    let (holds, report) = run_command(&["audit-verify", "--database-url", &database_url]);
    assert!(holds, "{report}");
    eprintln!("audit-verify after SIGKILL: {report}");
    if !app.is_postgres() {
        let logs = dir.join("db.sqlite-trace");
        let left = std::fs::read_dir(&logs).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.path().is_dir())
                .count()
        });
        assert_eq!(left, 0, "the killed server's log is applied and removed");
    }
    // Every answered request has its event in the database.
    let traced_ids: std::collections::HashSet<String> = {
        use diesel::{QueryableByName, RunQueryDsl};
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            request_id: String,
        }
        let target = dmp_fhir_server::store::dialect::target(&database_url).expect("URL");
        let mut conn = dmp_fhir_server::store::dialect::connect(&target).expect("open");
        diesel::sql_query("SELECT request_id FROM audit_chain WHERE request_id LIKE 'load-%'")
            .load::<Row>(&mut conn)
            .expect("query")
            .into_iter()
            .map(|row| row.request_id)
            .collect()
    };
    let lost: Vec<&String> = answered
        .iter()
        .filter(|id| !traced_ids.contains(*id))
        .collect();
    eprintln!(
        "SIGKILL under load: {} answered, {} traced (incl. unanswered in flight), {} lost",
        answered.len(),
        traced_ids.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "answered but not traced: {lost:?}");
    if app.is_postgres() {
        assert_eq!(app.stored_rows("audit_log"), 0, "the log is applied");
    }
    std::fs::remove_dir_all(dir).ok();
    app.is_postgres()
}

/// Each of the trace's search parameters finds the events it names through the
/// trace's own index (one row per event for its space, its professional and its
/// refusal mark; its date is its `lastUpdated`): the space's reference however it is
/// written (`patient`, typed or not, `entity`, chained), its dates before and after,
/// its codes (`type`, `subtype`, `outcome`, with and without system, negated),
/// its order by date, `_include` and `_revinclude` of its patient; and another
/// space's events, or dates that do not match, are not found (R-PAT-4).
#[test]
fn r_pat_4_every_trace_parameter_finds_the_events_of_the_space_it_names() {
    let (app, patient_id, document_id) = space();
    let nir = app
        .get(&format!("Patient/{patient_id}"), &As::System)
        .json()["identifier"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let (other_id, _) = app.patient_with_document("1990-01-01");
    let reads = |request_id: &str, document: &str| {
        let path = format!("DocumentReference/{document}");
        let reply = traced(&app, "GET", &path, &As::doctor(), None, request_id);
        assert_eq!(reply.status, 200, "{}", reply.body);
    };
    let before = app.get(&format!("DocumentReference/{document_id}"), &As::doctor());
    let first_instant = before.json()["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_owned();
    reads("index-read-1", &document_id);
    reads("index-read-2", &document_id);
    let me = As::Patient(patient_id.clone());
    let found = |query: &str| -> Vec<String> {
        let (events, total) = trace(&app, query, &me);
        assert_eq!(total as usize, events.len(), "{query}");
        traced_request_ids(&events)
            .into_iter()
            .filter(|id| id.starts_with("index-read-"))
            .collect()
    };
    let both = vec!["index-read-1".to_owned(), "index-read-2".to_owned()];
    for query in [
        format!("patient={patient_id}"),
        format!("patient=Patient/{patient_id}"),
        format!("entity=Patient/{patient_id}"),
        format!("patient.identifier=urn:oid:1.2.250.1.213.1.4.8|{nir}"),
        format!("patient={patient_id}&entity=DocumentReference/{document_id}"),
        format!("patient={patient_id}&date=ge{first_instant}"),
        format!("patient={patient_id}&_sort=date"),
        format!("patient={patient_id}&subtype=read"),
        format!("patient={patient_id}&subtype=http://hl7.org/fhir/restful-interaction|read,vread"),
        format!("patient={patient_id}&subtype:not=search-type"),
        format!("patient={patient_id}&type=rest&outcome=0"),
        format!("patient={patient_id}&outcome=|0"),
    ] {
        let mut ids = found(&query);
        ids.sort();
        assert_eq!(ids, both, "{query}");
    }
    for query in [
        format!("patient={patient_id}&date=lt{first_instant}"),
        format!("patient={patient_id}&entity=Patient/{other_id}"),
        format!("patient={patient_id}&subtype=|read"),
        format!("patient={patient_id}&subtype=search-type"),
        format!("patient={patient_id}&subtype:not=read"),
        format!("patient={patient_id}&outcome=4"),
        format!("patient={patient_id}&type=http://elsewhere|rest"),
    ] {
        assert!(found(&query).is_empty(), "{query}");
    }
    // Another space's holder does not find them by naming this space.
    let other = As::Patient(other_id.clone());
    let reply = app.get(&format!("AuditEvent?patient={patient_id}"), &other);
    assert!(
        reply.status != 200 || reply.json()["entry"].is_null(),
        "{}",
        reply.body
    );
    // Newest first by date: the second read before the first.
    let (events, _) = trace(&app, &format!("patient={patient_id}&_sort=-date"), &me);
    let recorded: Vec<&str> = events
        .iter()
        .map(|event| event["recorded"].as_str().unwrap())
        .collect();
    assert!(
        recorded.windows(2).all(|pair| pair[0] >= pair[1]),
        "{recorded:?}"
    );
    let order = traced_request_ids(&events);
    let position = |id: &str| order.iter().position(|found| found == id).unwrap();
    assert!(position("index-read-2") < position("index-read-1"));
    // The space's Patient included with its events, and its events with it.
    let bundle = app
        .get(
            &format!("AuditEvent?patient={patient_id}&_include=AuditEvent:patient&_count=500"),
            &me,
        )
        .json();
    let patients: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["resource"]["resourceType"] == "Patient")
        .collect();
    assert_eq!(patients.len(), 1, "{bundle}");
    assert_eq!(patients[0]["resource"]["id"], patient_id.as_str());
    let bundle = app
        .get(
            &format!("Patient?_id={patient_id}&_revinclude=AuditEvent:entity&_count=500"),
            &me,
        )
        .json();
    let included = entries_of(&bundle, "AuditEvent");
    let ids = traced_request_ids(&included);
    assert!(both.iter().all(|id| ids.contains(id)), "{ids:?}");
    // The document read, the events' one other entity: its `_include` and its
    // `_revinclude` (the trace is not searched through the resources it names).
    let reply = app.get(
        &format!("AuditEvent?patient={patient_id}&entity:DocumentReference.status=current"),
        &As::doctor(),
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    let bundle = app
        .get(
            &format!(
                "AuditEvent?patient={patient_id}&entity=DocumentReference/{document_id}\
                 &_include=AuditEvent:entity&_count=500"
            ),
            &me,
        )
        .json();
    let documents = entries_of(&bundle, "DocumentReference");
    assert_eq!(documents.len(), 1, "{bundle}");
    assert_eq!(documents[0]["id"], document_id.as_str());
    let bundle = app
        .get(
            &format!(
                "DocumentReference?_id={document_id}&_revinclude=AuditEvent:entity&_count=500"
            ),
            &me,
        )
        .json();
    let ids = traced_request_ids(&entries_of(&bundle, "AuditEvent"));
    assert!(both.iter().all(|id| ids.contains(id)), "{ids:?} {bundle}");
}

/// An event naming several resources keeps each in the trace's general search
/// index (one entity has its own column): the append writes those rows in the
/// event's own statement, and only when some event has them (on PostgreSQL the
/// statement names only the tables its events write; a write's trace and the
/// committer's groups share that statement's builder), so a deposit of two
/// documents is found by either, beside reads found by their one document.
#[test]
fn r_pat_4_an_event_naming_several_resources_is_found_by_each() {
    let (app, patient_id, document_id) = space();
    let reply = traced(
        &app,
        "GET",
        &format!("DocumentReference/{document_id}"),
        &As::doctor(),
        None,
        "one-document",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            { "resource": document(&patient_id, "11488-4", "2024-02-01"), "request": { "method": "POST", "url": "DocumentReference" } },
            { "resource": document(&patient_id, "11506-3", "2024-02-02"), "request": { "method": "POST", "url": "DocumentReference" } }
        ]
    });
    let reply = traced(
        &app,
        "POST",
        "",
        &As::doctor(),
        Some(&bundle),
        "two-documents",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let deposited: Vec<String> = reply.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let location = entry["response"]["location"].as_str().unwrap();
            location.split('/').nth(1).unwrap().to_owned()
        })
        .collect();
    assert_eq!(deposited.len(), 2, "{}", reply.body);
    let me = As::Patient(patient_id.clone());
    let found = |document: &str| -> Vec<String> {
        let (events, total) = trace(
            &app,
            &format!("patient={patient_id}&entity=DocumentReference/{document}"),
            &me,
        );
        assert_eq!(total as usize, events.len());
        let mut ids = traced_request_ids(&events);
        ids.retain(|id| id == "two-documents" || id == "one-document");
        ids
    };
    for document in &deposited {
        assert_eq!(found(document), ["two-documents"], "{document}");
    }
    assert_eq!(found(&document_id), ["one-document"]);
    let (events, _) = trace(&app, &format!("patient={patient_id}"), &me);
    let deposit: Vec<&Value> = events
        .iter()
        .filter(|event| request_id_entity(event) == "two-documents")
        .collect();
    assert_eq!(deposit.len(), 1, "one event in the space");
    let mut named = entities(deposit[0]);
    named.retain(|entity| entity.starts_with("DocumentReference/"));
    named.sort();
    let mut expected: Vec<String> = deposited
        .iter()
        .map(|id| format!("DocumentReference/{id}"))
        .collect();
    expected.sort();
    assert_eq!(named, expected);
    assert!(verify(&app).0, "the chains hold");
}

/// The entries of a Bundle of one resource type.
fn entries_of(bundle: &Value, kind: &str) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|entry| entry["resource"].clone())
        .filter(|resource| resource["resourceType"] == kind)
        .collect()
}

/// The members of a JSON value, depth first, in their order (`entity.0.what`…).
fn members(value: &Value, at: &str) -> Vec<String> {
    match value {
        Value::Object(object) => object
            .iter()
            .flat_map(|(name, item)| {
                let path = format!("{at}.{name}");
                std::iter::once(path.clone()).chain(members(item, &path))
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .flat_map(|(index, item)| members(item, &format!("{at}.{index}")))
            .collect(),
        _ => Vec::new(),
    }
}

/// The Patient entities an event shows its reader.
fn patients_named(event: &Value) -> Vec<String> {
    event["entity"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|entity| entity.pointer("/what/reference").and_then(Value::as_str))
        .filter(|reference| reference.starts_with("Patient/"))
        .map(str::to_owned)
        .collect()
}

/// R-ACC-11: a professional's attempts answered "not known" (a document of a space
/// they may not enter, alone or in a batch) are in their own trace without the space,
/// and no path ties them to it: not several patients, not `entity=Patient/…`, not an
/// `_include` of the event's patient, not a `_revinclude` from that Patient, not the
/// events their own reading of that trace leaves. The holder reads every attempt in
/// their space's trace (R-PAT-4), and so does the médecin traitant, with the space.
#[test]
fn r_acc_11_an_attempt_answered_not_known_never_ties_its_author_to_the_space() {
    let (app, patient_id, document_id) = space();
    let (other_id, _) = app.patient_with_document("1991-02-03");
    let stranger = As::Professional {
        id_nat_ps: STRANGER.into(),
        profession: "10".into(),
    };
    let read = format!("DocumentReference/{document_id}");
    assert_eq!(
        traced(&app, "GET", &read, &stranger, None, "probe-get").status,
        404
    );
    let batch = json!({ "resourceType": "Bundle", "type": "batch", "entry": [
        { "request": { "method": "GET", "url": read } }
    ]});
    let reply = traced(&app, "POST", "", &stranger, Some(&batch), "probe-batch");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json()["entry"][0]["response"]["status"]
            .as_str()
            .unwrap_or("")
            .split(' ')
            .next(),
        Some("404")
    );
    let probe_event = app.audit_events("probe-get")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Their own trace, searched with nothing tying it to a space, and read by id
    // (each leaves an event of its own): the attempts are there, without the space.
    let reply = traced(
        &app,
        "GET",
        "AuditEvent?outcome=4",
        &stranger,
        None,
        "own-search",
    );
    let own = entries_of(&reply.json(), "AuditEvent");
    assert!(traced_request_ids(&own).contains(&"probe-get".to_owned()));
    let path = format!("AuditEvent/{probe_event}");
    assert_eq!(
        traced(&app, "GET", &path, &stranger, None, "own-read").status,
        200
    );
    // Searched by that space in every other way: refused, or nothing of them.
    let space = format!("Patient/{patient_id}");
    for query in [
        format!("patient={patient_id},{patient_id}"),
        format!("patient={space},{space}"),
        format!("patient={patient_id},{other_id}"),
        format!("entity={space}"),
        format!("entity={space}&outcome=4"),
        format!("agent={space}"),
        "patient._lastUpdated=gt2000-01-01".to_owned(),
        format!("_id={probe_event}&entity={space}"),
    ] {
        let reply = app.get(&format!("AuditEvent?{query}&_count=500"), &stranger);
        if reply.status == 200 {
            let ids = traced_request_ids(&entries_of(&reply.json(), "AuditEvent"));
            assert!(
                !ids.iter().any(|id| id.starts_with("probe-")),
                "{query}: {ids:?}"
            );
        } else {
            assert!(
                (400..500).contains(&reply.status),
                "{query}: {}",
                reply.body
            );
        }
    }
    // Its patient is not included with it, nor it with its patient.
    let bundle = app
        .get(
            &format!("AuditEvent?_id={probe_event}&_include=AuditEvent:patient&_include=AuditEvent:entity"),
            &stranger,
        )
        .json();
    assert_eq!(entries_of(&bundle, "AuditEvent").len(), 1, "{bundle}");
    assert!(entries_of(&bundle, "Patient").is_empty(), "{bundle}");
    for revinclude in ["AuditEvent:patient", "AuditEvent:entity"] {
        let bundle = app
            .get(
                &format!("Patient?_id={patient_id}&_revinclude={revinclude}&_count=500"),
                &stranger,
            )
            .json();
        let ids = traced_request_ids(&entries_of(&bundle, "AuditEvent"));
        assert!(
            !ids.iter().any(|id| id.starts_with("probe-")),
            "{revinclude}: {ids:?}"
        );
    }
    // Nothing of all this shows them the space: not the batch's event, not the
    // events their reading of their own trace left.
    let (own, _) = trace(&app, "_count=500", &stranger);
    let mut found = Vec::new();
    for event in &own {
        let ids = traced_request_ids(std::slice::from_ref(event));
        if let Some(id) = ids.iter().find(|id| {
            ["probe-get", "probe-batch", "own-search", "own-read"].contains(&id.as_str())
        }) {
            assert!(patients_named(event).is_empty(), "{event}");
            found.push(id.clone());
        }
    }
    found.sort();
    assert_eq!(
        found,
        ["own-read", "own-search", "probe-batch", "probe-get"]
    );
    // The holder reads both attempts in their space's trace; the médecin traitant
    // reads them with the space.
    let me = As::Patient(patient_id.clone());
    for reader in [&me, &As::doctor()] {
        let (events, _) = trace(&app, &format!("patient={patient_id}"), reader);
        let mut attempts = events_of(&events, "probe-get");
        attempts.extend(events_of(&events, "probe-batch"));
        assert_eq!(attempts.len(), 2, "{reader:?}");
        for event in attempts {
            assert_eq!(patients_named(event), vec![space.clone()], "{event}");
        }
    }
}

/// The events of `events` that the request `request_id` left.
fn events_of<'a>(events: &'a [Value], request_id: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| {
            traced_request_ids(std::slice::from_ref(event))
                .iter()
                .any(|id| id == request_id)
        })
        .collect()
}

/// R-ACC-11: a deposit replacing a document hidden from its author (masked in the
/// deposit's space, or of another space) is answered as one replacing a document
/// nobody holds, and their own trace reads the same in the three cases: one event,
/// in the deposit's space, described as answered. The other space's holder and
/// médecin traitant read the attempt there (R-PAT-4); its author does not, by any
/// search or by id.
#[test]
fn r_acc_11_a_deposit_replacing_a_hidden_document_reads_as_one_replacing_nothing() {
    let (app, other_id, other_document) = space();
    let (patient_id, _) = app.patient_with_document("1991-02-03");
    app.create(
        &As::Patient(patient_id.clone()),
        &permit_professional(&patient_id, COLLEAGUE),
    );
    let masked = app.create(
        &As::doctor(),
        &labelled_document(&patient_id, "11488-4", "2024-01-03", "MASQUE_PS"),
    );
    let probes = [
        ("probe-none", "nobody-holds-this".to_owned()),
        ("probe-masked", masked),
        ("probe-other", other_document),
    ];
    for (request_id, target) in &probes {
        let mut deposit = document(&patient_id, "11488-4", "2024-02-01");
        deposit["relatesTo"] = json!([{ "code": "replaces",
            "target": { "reference": format!("DocumentReference/{target}") } }]);
        let reply = traced(
            &app,
            "POST",
            "DocumentReference",
            &colleague(),
            Some(&deposit),
            request_id,
        );
        assert_eq!(reply.status, 422, "{request_id}: {}", reply.body);
        assert!(!reply.body.contains("R-ACC"), "{}", reply.body);
    }
    let space = format!("Patient/{patient_id}");
    for query in ["subtype=create", "outcome=4", ""] {
        let (own, _) = trace(&app, query, &colleague());
        for (request_id, target) in &probes {
            let events = events_of(&own, request_id);
            assert_eq!(events.len(), 1, "{query} {request_id}: {events:?}");
            assert_eq!(
                patients_named(events[0]),
                vec![space.clone()],
                "{}",
                events[0]
            );
            assert_eq!(
                events[0]["outcomeDesc"],
                format!("422: relatesTo replaces DocumentReference/{target}, which is not known"),
            );
        }
    }
    // …in the same form: the same members in the same order (a member the hidden
    // cases' events lose once took the last member into its place, which told them
    // apart).
    let (own, _) = trace(&app, "subtype=create", &colleague());
    let shapes: Vec<Vec<String>> = probes
        .iter()
        .map(|(request_id, _)| members(events_of(&own, request_id)[0], ""))
        .collect();
    assert!(
        shapes.windows(2).all(|pair| pair[0] == pair[1]),
        "{shapes:#?}"
    );
    let (in_space, _) = trace(&app, &format!("patient={patient_id}"), &colleague());
    for (request_id, _) in &probes {
        assert_eq!(events_of(&in_space, request_id).len(), 1, "{request_id}");
    }
    // The space's holder and médecin traitant read the attempts alike: the status,
    // not the rule that refused a document hidden from them.
    for reader in [&As::Patient(patient_id.clone()), &As::doctor()] {
        let (events, _) = trace(&app, &format!("patient={patient_id}"), reader);
        for (request_id, _) in &probes {
            let event = events_of(&events, request_id);
            assert_eq!(event.len(), 1, "{reader:?} {request_id}");
            assert_eq!(event[0]["outcomeDesc"], "422", "{}", event[0]);
            assert!(!event[0].to_string().contains("audit-rule"), "{}", event[0]);
        }
    }
    // The holder's own deposit replacing a document of another space reads as one
    // replacing a document nobody holds.
    let me = As::Patient(patient_id.clone());
    for (request_id, target) in [
        ("own-none", "nobody-holds-this"),
        ("own-other", probes[2].1.as_str()),
    ] {
        let mut deposit = document(&patient_id, "11488-4", "2024-02-02");
        deposit["category"] = json!([{ "coding": [{ "system": "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument", "code": "90" }] }]);
        deposit["relatesTo"] = json!([{ "code": "replaces",
            "target": { "reference": format!("DocumentReference/{target}") } }]);
        let reply = traced(
            &app,
            "POST",
            "DocumentReference",
            &me,
            Some(&deposit),
            request_id,
        );
        assert_eq!(reply.status, 422, "{request_id}: {}", reply.body);
    }
    let (events, _) = trace(&app, &format!("patient={patient_id}"), &me);
    let none = events_of(&events, "own-none")[0].clone();
    let other = events_of(&events, "own-other")[0].clone();
    for field in ["extension", "outcome", "outcomeDesc"] {
        assert_eq!(
            none.get(field),
            other.get(field),
            "{field}: {none} / {other}"
        );
    }
    // The other space's trace shows the attempt to those who read it; its author
    // cannot read that event, even by id.
    for reader in [&As::Patient(other_id.clone()), &As::doctor()] {
        let (events, _) = trace(&app, &format!("patient={other_id}"), reader);
        let attempt = events_of(&events, "probe-other");
        assert_eq!(attempt.len(), 1, "{reader:?}");
        assert_eq!(
            patients_named(attempt[0]),
            vec![format!("Patient/{other_id}")]
        );
        let path = format!("AuditEvent/{}", attempt[0]["id"].as_str().unwrap());
        assert_eq!(app.get(&path, &colleague()).status, 404);
        assert_eq!(app.get(&path, reader).status, 200);
    }
}

/// R-PAT-4, R-ACC-11: a search naming two people leaves an event in each space;
/// each shows the query with its own patient's identifier or id, and masks the
/// other person's (their NIR is not the reader's to learn).
#[test]
fn r_pat_4_a_query_in_a_space_trace_names_no_other_person() {
    let (app, first, _) = space();
    let second = app.create(
        &As::System,
        &patient(&nir(), "Durand", "Paul", "1991-02-03"),
    );
    let family_of = |id: &str| if id == first { "Martin" } else { "Durand" };
    let born_of = |id: &str| {
        if id == first {
            "2012-05-01"
        } else {
            "1991-02-03"
        }
    };
    let nir_of = |id: &str| {
        app.get(&format!("Patient/{id}"), &As::doctor()).json()["identifier"][0]["value"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (first_nir, second_nir) = (nir_of(&first), nir_of(&second));
    let lookups = [
        (
            "lookup-nir",
            format!("Patient?identifier={INS}|{first_nir},{INS}|{second_nir}"),
        ),
        ("lookup-id", format!("Patient?_id={first},{second}")),
        ("lookup-name", "Patient?family=martin,Durand".to_owned()),
        (
            "lookup-born",
            "Patient?birthdate=2012-05-01,1991-02-03".to_owned(),
        ),
    ];
    for (request_id, path) in &lookups {
        let reply = traced(&app, "GET", path, &colleague(), None, request_id);
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(
            entries_of(&reply.json(), "Patient").len(),
            2,
            "{}",
            reply.body
        );
    }
    for (own, other) in [(&first, &second), (&second, &first)] {
        let (own_nir, other_nir) = (nir_of(own), nir_of(other));
        for reader in [As::Patient(own.clone()), As::doctor()] {
            let (events, _) = trace(&app, &format!("patient={own}"), &reader);
            for (request_id, _) in &lookups {
                let event = events_of(&events, request_id);
                assert_eq!(event.len(), 1, "{reader:?} {request_id}");
                let query = event[0]["entity"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find_map(|entity| entity["query"].as_str())
                    .map(|query| String::from_utf8(STANDARD.decode(query).unwrap()).unwrap())
                    .expect("a query entity");
                let (shown, hidden) = match *request_id {
                    "lookup-nir" => (own_nir.clone(), other_nir.clone()),
                    "lookup-born" => (born_of(own).to_owned(), born_of(other).to_owned()),
                    "lookup-name" => (
                        family_of(own).to_lowercase(),
                        family_of(other).to_lowercase(),
                    ),
                    _ => (own.clone(), other.clone()),
                };
                let query = query.to_lowercase();
                assert!(query.contains(shown.as_str()), "{query}");
                assert!(!query.contains(hidden.as_str()), "{query}");
            }
        }
    }
}

/// R-AUD-1, R-ACC-10: a Patient search matching more people than the page's bound
/// is answered (its page, a `next` link, a total only when every match was
/// recorded), never refused, and the last person stored, whose existence the answer
/// tells, is in the trace.
#[test]
fn r_aud_1_a_wide_patient_search_tells_of_no_one_it_does_not_trace() {
    let app = TestApp::with(|config| {
        config.max_page_size = 2;
        config.default_page_size = 2;
    });
    let people: Vec<(String, String)> = (0..3)
        .map(|index| {
            let ins = nir();
            let id = app.create(
                &As::System,
                &patient(&ins, "Durand", &format!("Enfant{index}"), "1990-01-01"),
            );
            (id, ins)
        })
        .collect();
    let last = &people[2];
    let listed = |with_last: bool| {
        let mut nirs: Vec<String> = people[..2].iter().map(|(_, ins)| ins.clone()).collect();
        nirs.push(if with_last { last.1.clone() } else { nir() });
        nirs.join(",")
    };
    for (index, query) in ["_summary=count", "_total=accurate", ""]
        .into_iter()
        .enumerate()
    {
        for with_last in [true, false] {
            let request_id = format!("wide-{index}-{with_last}");
            let path = format!("Patient?identifier={}&{query}", listed(with_last));
            let reply = traced(&app, "GET", &path, &As::doctor(), None, &request_id);
            assert_eq!(reply.status, 200, "{path}: {}", reply.body);
            if with_last && !query.is_empty() {
                // Three matched, two recorded at most in one page's bound and the
                // one past it: no total unless every match was recorded.
                let total = &reply.json()["total"];
                assert!(total.is_null() || total == 3, "{query}: {}", reply.body);
            }
            let concerned: Vec<String> = app
                .audit_events(&request_id)
                .iter()
                .map(|event| entities(event)[0].clone())
                .collect();
            if with_last {
                assert!(
                    concerned.contains(&format!("Patient/{}", last.0)),
                    "{query}: {concerned:?}"
                );
            }
        }
    }
}
