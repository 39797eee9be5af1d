//! The lifecycle of a space (SPEC §4, R-LIFE-1…5), with the server's clock moved
//! forward instead of sleeping.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::TimeDelta;
use serde_json::{Value, json};

use crate::support::fixtures::{INS, document, nir, patient};
use crate::support::{As, Reply, TestApp, assert_refused, eventually, run_command};

const STATE: &str = "https://dmp-fhir-server.fr/fhir/StructureDefinition/space-state";

/// A server whose lifecycle job runs every 50 ms.
fn app() -> TestApp {
    TestApp::with(|config| config.lifecycle_interval_ms = 50)
}

fn state(app: &TestApp, patient_id: &str) -> String {
    let reply = app.get(&format!("Patient/{patient_id}"), &As::System);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|extension| extension["url"] == STATE)
        .and_then(|extension| extension["valueCode"].as_str())
        .unwrap_or("")
        .to_owned()
}

fn operation(app: &TestApp, patient_id: &str, name: &str, who: &As) -> Reply {
    app.post(
        &format!("Patient/{patient_id}/${name}"),
        who,
        &json!({ "resourceType": "Parameters" }),
    )
}

/// The topics of the service's messages in the space.
fn service_topics(app: &TestApp, patient_id: &str) -> Vec<String> {
    let reply = app.get(
        &format!("Communication?patient={patient_id}&_count=100"),
        &As::Patient(patient_id.to_owned()),
    );
    reply.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| entry["resource"]["topic"]["coding"][0]["code"].as_str())
        .map(str::to_owned)
        .collect()
}

fn new_space(app: &TestApp, birth_date: &str) -> (String, String) {
    let number = nir();
    let id = app.create(
        &As::System,
        &patient(&number, "Durand", "Hélène", birth_date),
    );
    (id, number)
}

/// The birth date of someone who turns eighteen in two days (R-LIFE-5).
fn eighteen_in_two_days() -> String {
    (chrono::Utc::now() + TimeDelta::days(2))
        .date_naive()
        .checked_sub_months(chrono::Months::new(18 * 12))
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

// ---------------------------------------------------------------- R-LIFE-1

#[test]
fn r_life_1_a_space_opens_by_itself_42_days_after_notification() {
    let app = app();
    let (id, _) = new_space(&app, "1975-02-03");
    assert_eq!(state(&app, &id), "pending");
    assert!(service_topics(&app, &id).is_empty());
    app.advance(TimeDelta::days(41));
    assert_eq!(state(&app, &id), "pending");
    app.advance(TimeDelta::days(2));
    assert_eq!(state(&app, &id), "active");
    // The job records it and the service welcomes the person (R-MSG-2), once.
    eventually(|| (service_topics(&app, &id) == ["welcome"]).then_some(()));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(service_topics(&app, &id), ["welcome"]);
    // A notification date given by the feeding system counts instead of the creation.
    let mut notified = patient(&nir(), "Petit", "Jean", "1960-01-01");
    notified["extension"] = json!([{
        "url": "https://dmp-fhir-server.fr/fhir/StructureDefinition/space-notified",
        "valueDateTime": "2020-01-01T00:00:00Z"
    }]);
    let early = app.create(&As::System, &notified);
    assert_eq!(state(&app, &early), "active");
    // The person may open it earlier.
    let (eager, _) = new_space(&app, "1980-01-01");
    let reply = operation(&app, &eager, "activate", &As::Patient(eager.clone()));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("\"active\""));
    assert_eq!(service_topics(&app, &eager), ["welcome"]);
    // The state the feeding system writes is not stored (the server keeps it).
    let mut echoed = app.get(&format!("Patient/{eager}"), &As::System).json();
    echoed["extension"] = json!([{ "url": STATE, "valueCode": "closed" }]);
    assert_eq!(
        app.put(&format!("Patient/{eager}"), &As::System, &echoed)
            .status,
        200
    );
    assert_eq!(state(&app, &eager), "active");
}

// ---------------------------------------------------------------- R-LIFE-2

#[test]
fn r_life_2_opposition_returns_a_pdf_proof_and_can_be_reversed() {
    let app = app();
    let (id, number) = new_space(&app, "1975-02-03");
    let me = As::Patient(id.clone());
    // Only the holder opposes.
    assert_refused(
        &operation(&app, &id, "oppose", &As::doctor()),
        403,
        "R-ACC-12",
    );
    assert_refused(
        &operation(&app, &id, "oppose", &As::System),
        403,
        "R-ACC-12",
    );
    assert_eq!(
        operation(&app, &id, "oppose", &As::Patient("someone-else".into())).status,
        404
    );
    let reply = operation(&app, &id, "oppose", &me);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let binary = reply.json();
    assert_eq!(binary["resourceType"], "Binary");
    assert_eq!(binary["contentType"], "application/pdf");
    let pdf = STANDARD.decode(binary["data"].as_str().unwrap()).unwrap();
    let text = lopdf::Document::load_mem(&pdf)
        .expect("a PDF")
        .extract_text(&[1])
        .expect("its text");
    let today = chrono::Utc::now().format("%d/%m/%Y").to_string();
    for expected in [
        "DURAND Hélène",
        number.as_str(),
        today.as_str(),
        "opposition",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text:?}");
    }
    // Asked as a PDF, the proof comes as one.
    let raw = app
        .request("POST", &format!("Patient/{id}/$oppose"))
        .as_(&me)
        .header("Accept", "application/pdf")
        .send(None);
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-type"), Some("application/pdf"));
    assert!(raw.bytes.starts_with(b"%PDF-"));
    assert_eq!(state(&app, &id), "opposed");
    // Opposed: professionals are refused (R-ACC-1); the person sees only their
    // Patient, and may reverse their choice at any time.
    assert_refused(
        &app.get(&format!("DocumentReference?patient={id}"), &me),
        403,
        "R-LIFE-2",
    );
    assert_eq!(app.get(&format!("Patient/{id}"), &me).status, 200);
    app.advance(TimeDelta::days(60));
    assert_eq!(
        state(&app, &id),
        "opposed",
        "an opposed space never opens by itself"
    );
    assert_eq!(operation(&app, &id, "activate", &me).status, 200);
    assert_eq!(state(&app, &id), "active");
    // A space in use is closed, not opposed.
    app.create(&As::doctor(), &document(&id, "11488-4", "2024-01-01"));
    assert_refused(&operation(&app, &id, "oppose", &me), 409, "R-LIFE-2");
}

// ---------------------------------------------------------------- R-LIFE-3

#[test]
fn r_life_3_a_closed_space_is_archived_and_reopened() {
    let app = app();
    let (id, _) = new_space(&app, "1975-02-03");
    let me = As::Patient(id.clone());
    let document_id = app.create(&As::doctor(), &document(&id, "11488-4", "2024-01-01"));
    assert_eq!(operation(&app, &id, "close", &me).status, 200);
    assert_eq!(state(&app, &id), "closed");
    // Nobody reads or feeds it, not even in an emergency; the patient only reopens.
    let emergency = As::professional(
        "810000000003",
        "10",
        None,
        Some("bris_de_glace"),
        Some("urgence"),
    );
    assert_refused(
        &app.get(&format!("DocumentReference/{document_id}"), &emergency),
        404,
        "R-ACC-1",
    );
    assert_refused(
        &app.get(&format!("DocumentReference/{document_id}"), &me),
        403,
        "R-LIFE-3",
    );
    assert_refused(
        &app.post(
            "DocumentReference",
            &me,
            &document(&id, "11488-4", "2024-02-01"),
        ),
        403,
        "R-LIFE-3",
    );
    assert_refused(&operation(&app, &id, "activate", &me), 409, "R-LIFE-3");
    // Reopened: the archived data is back.
    assert_eq!(operation(&app, &id, "reopen", &me).status, 200);
    assert_eq!(
        app.get(&format!("DocumentReference/{document_id}"), &me)
            .status,
        200
    );
    assert_refused(&operation(&app, &id, "reopen", &me), 409, "R-LIFE-3");
}

fn data_of(app: &TestApp, patient_id: &str) -> i64 {
    app.stored_rows(&format!(
        "resource_compartment WHERE patient_id = '{patient_id}' AND res_type NOT IN ('Patient', 'AuditEvent')"
    ))
}

#[test]
fn r_life_3_deletion_purges_at_once_and_retention_after_ten_years() {
    let app = app();
    let (deleted, _) = new_space(&app, "1975-02-03");
    let me = As::Patient(deleted.clone());
    app.create(&As::doctor(), &document(&deleted, "11488-4", "2024-01-01"));
    assert!(data_of(&app, &deleted) > 0);
    let events_before = app.stored_rows("audit_chain");
    let reply = app.post(
        &format!("Patient/{deleted}/$close"),
        &me,
        &json!({ "resourceType": "Parameters", "parameter": [{ "name": "delete", "valueBoolean": true }] }),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(data_of(&app, &deleted), 0, "the archive is purged at once");
    assert!(
        app.stored_rows("audit_chain") > events_before,
        "the trace stays"
    );
    // Reopened after a deletion: an empty, active space.
    assert_eq!(operation(&app, &deleted, "reopen", &me).status, 200);
    assert_eq!(
        app.get(
            &format!("DocumentReference?patient={deleted}&_total=accurate"),
            &me
        )
        .json()["total"],
        0
    );
    // Deleted again: what came since the reopening goes too, and it stays gone
    // after the next reopening.
    let since = app.create(&As::doctor(), &document(&deleted, "11488-4", "2024-02-01"));
    let again = app.post(
        &format!("Patient/{deleted}/$close?delete=true"),
        &me,
        &json!({ "resourceType": "Parameters" }),
    );
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(data_of(&app, &deleted), 0, "the second deletion purges too");
    assert_eq!(operation(&app, &deleted, "reopen", &me).status, 200);
    assert_eq!(
        app.get(&format!("DocumentReference/{since}"), &As::doctor())
            .status,
        404
    );
    // A closed space is kept ten years, then purged by the lifecycle job.
    let (kept, _) = new_space(&app, "1975-02-03");
    app.create(&As::doctor(), &document(&kept, "11488-4", "2024-01-01"));
    assert_eq!(
        operation(&app, &kept, "close", &As::Patient(kept.clone())).status,
        200
    );
    app.advance(TimeDelta::days(365 * 10 - 5));
    std::thread::sleep(Duration::from_millis(300));
    assert!(data_of(&app, &kept) > 0, "kept for ten years");
    app.advance(TimeDelta::days(10));
    eventually(|| (data_of(&app, &kept) == 0).then_some(()));
    let events: i64 = app.stored_rows(&format!("audit_chain WHERE chain_key = '{kept}'"));
    assert!(events > 0, "AuditEvents outlive the purge");
}

#[test]
fn r_life_3_the_lifecycle_command_purges_what_is_due() {
    let app = TestApp::new();
    let (id, _) = new_space(&app, "1975-02-03");
    app.create(&As::doctor(), &document(&id, "11488-4", "2024-01-01"));
    assert_eq!(
        operation(&app, &id, "close", &As::Patient(id.clone())).status,
        200
    );
    // Eleven years ago, as far as the file says.
    app.execute_sql(&format!(
        "UPDATE space_lifecycle SET closed_at = '2015-01-01T00:00:00.000000Z' WHERE patient_id = '{id}'"
    ));
    let (succeeded, printed) = run_command(&["--database-url", &app.database_url, "lifecycle"]);
    assert!(succeeded, "{printed}");
    assert!(printed.contains("1 closed spaces purged"), "{printed}");
    assert_eq!(data_of(&app, &id), 0);
}

// ---------------------------------------------------------------- R-LIFE-4

#[test]
fn r_life_4_the_state_shows_in_identity_answers() {
    let app = TestApp::new();
    let (id, number) = new_space(&app, "1975-02-03");
    let found = app
        .get(&format!("Patient?identifier={INS}|{number}"), &As::doctor())
        .json();
    let resource = &found["entry"][0]["resource"];
    assert_eq!(resource["id"], id.as_str());
    let states: Vec<&Value> = resource["extension"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|extension| extension["url"] == STATE)
        .collect();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0]["valueCode"], "pending");
    fhir_check::check("Patient", &resource.to_string()).expect("a valid R4 Patient");
}

// ---------------------------------------------------------------- R-LIFE-5

#[test]
fn r_life_5_representatives_lose_access_on_the_18th_birthday() {
    let app = TestApp::new();
    let (id, _) = new_space(&app, &eighteen_in_two_days());
    let document_id = app.create(&As::doctor(), &document(&id, "11488-4", "2024-01-01"));
    let parent = As::Representative(id.clone());
    let read = |who: &As| app.get(&format!("DocumentReference/{document_id}"), who);
    assert_eq!(read(&parent).status, 200);
    app.advance(TimeDelta::days(3));
    assert_refused(&read(&parent), 403, "R-LIFE-5");
    assert_refused(
        &app.get(&format!("DocumentReference?patient={id}"), &parent),
        403,
        "R-LIFE-5",
    );
    assert_refused(
        &app.post(
            "DocumentReference",
            &parent,
            &document(&id, "11488-4", "2024-02-01"),
        ),
        403,
        "R-LIFE-5",
    );
    assert_refused(&operation(&app, &id, "close", &parent), 403, "R-LIFE-5");
    // The space stays open, for the person.
    assert_eq!(read(&As::Patient(id.clone())).status, 200);
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_operation_input_is_a_400_and_changes_nothing() {
    let app = TestApp::new();
    let (id, _) = new_space(&app, "1975-02-03");
    let me = As::Patient(id.clone());
    let before = app.stored_rows("space_lifecycle WHERE state = 'pending'");
    for (path, body) in [
        (
            format!("Patient/{id}/$close"),
            json!({ "resourceType": "Patient" }),
        ),
        (
            format!("Patient/{id}/$close?delete=maybe"),
            json!({ "resourceType": "Parameters" }),
        ),
    ] {
        let reply = app.post(&path, &me, &body);
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        assert_eq!(
            reply.issue_code(),
            if path.contains("maybe") {
                "value"
            } else {
                "invalid"
            }
        );
    }
    let malformed = app
        .request("POST", &format!("Patient/{id}/$close"))
        .as_(&me)
        .fhir()
        .send(Some("{".into()));
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    assert_eq!(
        app.post(
            &format!("Patient/{id}/$unknown"),
            &me,
            &json!({ "resourceType": "Parameters" })
        )
        .status,
        404
    );
    assert_eq!(
        app.stored_rows("space_lifecycle WHERE state = 'pending'"),
        before
    );
    assert_eq!(state(&app, &id), "pending");
}

// ---------------------------------------------------------------- every path

/// What a closed space (or a representative past majority) must refuse, on every
/// path to the space's data: read, vread, history, search (its total, a chained
/// search, `_include`), a paging link obtained before, Binary, transaction and batch
/// entries; and `_revinclude` from the Patient must bring no document.
struct Paths {
    patient: String,
    nir: String,
    document: String,
    binary: String,
    next_page: String,
}

fn open_space_with_data(app: &TestApp, birth_date: &str) -> Paths {
    let (patient_id, number) = new_space(app, birth_date);
    let mut first = None;
    for day in 1..=3 {
        let id = app.create(
            &As::doctor(),
            &document(&patient_id, "11488-4", &format!("2024-01-0{day}")),
        );
        first.get_or_insert(id);
    }
    let binary = app.create(
        &As::doctor(),
        &json!({ "resourceType": "Binary", "contentType": "application/pdf",
                 "securityContext": { "reference": format!("Patient/{patient_id}") },
                 "data": "JVBERi0xLjQK" }),
    );
    // The document that opens it to whoever may read the document.
    let mut pointing = document(&patient_id, "11488-4", "2024-01-04");
    pointing["content"] = json!([{ "attachment": { "contentType": "application/pdf", "url": format!("Binary/{binary}") } }]);
    app.create(&As::doctor(), &pointing);
    let page = app
        .get(
            &format!("DocumentReference?patient={patient_id}&_count=1"),
            &As::doctor(),
        )
        .json();
    let next_page = crate::support::next_link(&page).expect("a next link");
    Paths {
        patient: patient_id,
        nir: number,
        document: first.unwrap(),
        binary,
        next_page,
    }
}

/// `status` for what names the space (searches); `by_id` for a resource named by id,
/// which a professional is told does not exist (404) and a holder is refused (403).
fn assert_closed_on_every_path(
    app: &TestApp,
    paths: &Paths,
    who: &As,
    (status, by_id): (u16, u16),
    rule: &str,
) {
    let Paths {
        patient,
        nir,
        document,
        binary,
        next_page,
    } = paths;
    for path in [
        format!("DocumentReference/{document}"),
        format!("DocumentReference/{document}/_history/1"),
        format!("DocumentReference/{document}/_history"),
        format!("Binary/{binary}"),
    ] {
        assert_refused(&app.get(&path, who), by_id, rule);
    }
    for path in [
        format!("DocumentReference?patient={patient}"),
        format!("DocumentReference?patient={patient}&_summary=count"),
        format!(
            "DocumentReference?patient={patient}&_total=accurate&_include=DocumentReference:subject"
        ),
        format!("DocumentReference?patient.identifier={INS}%7C{nir}"),
        format!("Consent?patient={patient}"),
        format!("Communication?patient={patient}"),
    ] {
        assert_refused(&app.get(&path, who), status, rule);
    }
    let next = next_page.split_once("/DocumentReference").unwrap().1;
    assert_refused(
        &app.get(&format!("DocumentReference{next}"), who),
        status,
        rule,
    );
    // From the Patient, no document comes along.
    let reply = app.get(
        &format!("Patient?_id={patient}&_revinclude=DocumentReference:patient"),
        who,
    );
    assert!(
        !reply.body.contains("\"DocumentReference\""),
        "{}",
        reply.body
    );
    // Bundles decide each entry with the same rules.
    let transaction = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "request": { "method": "GET", "url": format!("DocumentReference/{document}") } } ] });
    assert_refused(&app.post("", who, &transaction), by_id, rule);
    let mut batch = transaction.clone();
    batch["type"] = json!("batch");
    batch["entry"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "request": {
        "method": "GET", "url": format!("DocumentReference?patient={patient}") } }));
    let reply = app.post("", who, &batch);
    assert_eq!(reply.status, 200, "{}", reply.body);
    for (entry, expected) in reply.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .zip([by_id, status])
    {
        assert_eq!(entry["response"]["status"], expected.to_string(), "{entry}");
        assert!(entry.get("resource").is_none(), "{entry}");
    }
}

#[test]
fn r_acc_1_and_r_life_3_a_closed_space_is_closed_on_every_path() {
    let app = app();
    let paths = open_space_with_data(&app, "1980-04-02");
    let holder = As::Patient(paths.patient.clone());
    // Open: both sides get in.
    assert_eq!(
        app.get(
            &format!("DocumentReference/{}", paths.document),
            &As::doctor()
        )
        .status,
        200
    );
    assert_eq!(
        app.get(&format!("Binary/{}", paths.binary), &holder).status,
        200
    );
    assert_eq!(
        operation(&app, &paths.patient, "close", &holder).status,
        200
    );
    // Closed: the médecin traitant, in every mode (R-ACC-1)…
    assert_closed_on_every_path(&app, &paths, &As::doctor(), (403, 404), "R-ACC-1");
    let emergency = As::professional(
        "810000000003",
        "10",
        None,
        Some("bris_de_glace"),
        Some("urgence vitale"),
    );
    assert_closed_on_every_path(&app, &paths, &emergency, (403, 404), "R-ACC-1");
    // …and the holder, who keeps only their Patient (R-LIFE-3).
    assert_closed_on_every_path(&app, &paths, &holder, (403, 403), "R-LIFE-3");
    assert_eq!(
        app.get(&format!("Patient/{}", paths.patient), &holder)
            .status,
        200
    );
    // Reopened: the same paths serve again.
    assert_eq!(
        operation(&app, &paths.patient, "reopen", &holder).status,
        200
    );
    for who in [As::doctor(), holder] {
        assert_eq!(
            app.get(&format!("Binary/{}", paths.binary), &who).status,
            200
        );
        let next = paths.next_page.split_once("/DocumentReference").unwrap().1;
        assert_eq!(
            app.get(&format!("DocumentReference{next}"), &who).status,
            200
        );
    }
}

#[test]
fn r_life_5_a_representative_past_majority_is_refused_on_every_path() {
    let app = TestApp::new();
    let paths = open_space_with_data(&app, &eighteen_in_two_days());
    let parent = As::Representative(paths.patient.clone());
    assert_eq!(
        app.get(&format!("Binary/{}", paths.binary), &parent).status,
        200
    );
    app.advance(TimeDelta::days(3));
    assert_closed_on_every_path(&app, &paths, &parent, (403, 403), "R-LIFE-5");
    // The person themselves keeps everything.
    let person = As::Patient(paths.patient.clone());
    assert_eq!(
        app.get(&format!("Binary/{}", paths.binary), &person).status,
        200
    );
}

#[test]
fn r_acc_1_and_r_life_2_an_opposed_space_is_closed_on_every_path() {
    let app = app();
    // Documents deposited while the space was pending, then the person opposes.
    let paths = open_space_with_data(&app, "1975-02-03");
    let holder = As::Patient(paths.patient.clone());
    assert_eq!(
        operation(&app, &paths.patient, "oppose", &holder).status,
        200
    );
    assert_closed_on_every_path(&app, &paths, &As::doctor(), (403, 404), "R-ACC-1");
    assert_closed_on_every_path(&app, &paths, &holder, (403, 403), "R-LIFE-2");
    // $activate opens it: the same paths serve again.
    assert_eq!(
        operation(&app, &paths.patient, "activate", &holder).status,
        200
    );
    for who in [As::doctor(), holder] {
        assert_eq!(
            app.get(&format!("Binary/{}", paths.binary), &who).status,
            200
        );
    }
}

/// R-LIFE-3, R-ACC-1: a closed space's data is archived for the feed too. The system
/// that deposited a document there neither changes it (PATCH, PUT, a PATCH `test`,
/// a conditional PATCH), moves it to another space, nor reads it back through a
/// conditional create; in the open space it did all of that.
#[test]
fn r_life_3_the_feed_neither_changes_moves_nor_reads_a_closed_spaces_data() {
    let app = app();
    let (closed, _) = new_space(&app, "1975-02-03");
    let (other, _) = new_space(&app, "1980-04-05");
    // The feed with every scope of its own (As::System only creates documents).
    let feed = As::Token(crate::support::sign(
        &crate::support::keys().rsa,
        &crate::support::base_claims("system", "insurer-feed"),
    ));
    let mut deposit = document(&closed, "11488-4", "2024-01-01");
    deposit["identifier"] = json!([{ "system": "urn:x", "value": "sysdoc" }]);
    let id = app.create(&feed, &deposit);
    let path = format!("DocumentReference/{id}");
    let patch = |target: &str, ops: Value| {
        app.request("PATCH", target)
            .as_(&feed)
            .header("Content-Type", "application/json-patch+json")
            .send(Some(ops.to_string()))
    };
    let superseded = json!([{ "op": "replace", "path": "/status", "value": "superseded" }]);
    let current = json!([{ "op": "replace", "path": "/status", "value": "current" }]);
    // Open: the feed changes its own deposit.
    let first = patch(&path, superseded.clone());
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(patch(&path, current.clone()).status, 200);
    assert_eq!(
        operation(&app, &closed, "close", &As::Patient(closed.clone())).status,
        200
    );
    let refused = |reply: Reply, what: &str| {
        assert_eq!(reply.status, 403, "{what}: {}", reply.body);
        assert!(reply.body.contains("R-ACC-1"), "{what}: {}", reply.body);
    };
    refused(patch(&path, superseded.clone()), "PATCH");
    refused(
        patch(
            &path,
            json!([{ "op": "test", "path": "/status", "value": "current" }]),
        ),
        "PATCH test",
    );
    refused(
        patch("DocumentReference?identifier=urn:x|sysdoc", superseded),
        "conditional PATCH",
    );
    let mut changed = app.get(&path, &As::doctor()).json();
    changed = if changed["resourceType"] == "DocumentReference" {
        changed
    } else {
        // Nobody reads a closed space: the version written back is the deposit.
        let mut again = deposit.clone();
        again["id"] = json!(id);
        again
    };
    changed["description"] = json!("changed while closed");
    refused(app.put(&path, &feed, &changed), "PUT");
    changed["subject"] = json!({ "reference": format!("Patient/{other}") });
    refused(app.put(&path, &feed, &changed), "PUT moving it out");
    refused(app.delete(&path, &feed), "DELETE");
    // A conditional create matching it answers without the archived body.
    let reply = app
        .request("POST", "DocumentReference")
        .as_(&feed)
        .fhir()
        .header("If-None-Exist", "identifier=urn:x|sysdoc")
        .send(Some(deposit.to_string()));
    assert!(
        !reply.body.contains("11488-4"),
        "{}: {}",
        reply.status,
        reply.body
    );
    // Reopened: the document is as it was closed, in its own space.
    assert_eq!(
        operation(&app, &closed, "reopen", &As::Patient(closed.clone())).status,
        200
    );
    let document = app.get(&path, &As::Patient(closed.clone())).json();
    assert_eq!(document["status"], "current");
    assert!(document.get("description").is_none(), "{document}");
    assert_eq!(
        document["subject"]["reference"],
        format!("Patient/{closed}")
    );
}

/// The médecin traitant's deposit of a document into `space`, to run at once with
/// other requests.
fn deposit<'a>(app: &'a TestApp, space: &str) -> Box<dyn Fn() -> Reply + Send + Sync + 'a> {
    let space = space.to_owned();
    Box::new(move || {
        app.post(
            "DocumentReference",
            &As::doctor(),
            &document(&space, "11488-4", "2024-01-01"),
        )
    })
}

/// Runs `actions` at once, each on a thread of its own; their answers in order.
fn at_once(actions: Vec<Box<dyn Fn() -> Reply + Send + Sync + '_>>) -> Vec<Reply> {
    crate::support::on_threads(actions.len(), |n| actions[n]())
}

/// A change of a space's lifecycle takes the space's turn alone; every write into
/// the space decides on it under the turn, shared (`Gate::with_space_turns`). So a
/// deletion (`$close` with `delete`) and the médecin traitant's deposits at once
/// leave no document behind, an opposition of an active space never leaves one in
/// the opposed space,
/// and the person opening their space twice at once is welcomed once (R-LIFE-2,
/// R-LIFE-3, R-MSG-2). PostgreSQL's writers run side by side; SQLite's one at a
/// time.
#[test]
fn r_life_a_change_of_lifecycle_and_deposits_at_once_leave_nothing_past_it() {
    let app = app();
    for round in 0..4 {
        let (space, _) = new_space(&app, "1975-02-03");
        let holder = As::Patient(space.clone());
        assert_eq!(operation(&app, &space, "activate", &holder).status, 200);
        app.create(&As::doctor(), &document(&space, "11488-4", "2024-01-01"));
        let mut actions = vec![Box::new(|| {
            app.post(
                &format!("Patient/{space}/$close"),
                &holder,
                &json!({ "resourceType": "Parameters", "parameter": [{ "name": "delete", "valueBoolean": true }] }),
            )
        }) as Box<dyn Fn() -> Reply + Send + Sync>];
        actions.extend((0..6).map(|_| deposit(&app, &space)));
        let answers = at_once(actions);
        assert_eq!(answers[0].status, 200, "{}", answers[0].body);
        for answer in &answers[1..] {
            assert!(
                answer.status == 201 || (400..500).contains(&answer.status),
                "round {round}: {} {}",
                answer.status,
                answer.body
            );
        }
        assert_eq!(
            data_of(&app, &space),
            0,
            "round {round}: a deposit outlived the deletion"
        );
    }
    for round in 0..4 {
        let (space, _) = new_space(&app, "1975-02-03");
        let holder = As::Patient(space.clone());
        // An active space that was never used may be opposed; one holding a
        // document is closed instead (409).
        assert_eq!(operation(&app, &space, "activate", &holder).status, 200);
        let mut actions = vec![Box::new(|| operation(&app, &space, "oppose", &holder))
            as Box<dyn Fn() -> Reply + Send + Sync>];
        actions.extend((0..6).map(|_| deposit(&app, &space)));
        let answers = at_once(actions);
        for answer in &answers {
            assert!(
                answer.status < 500,
                "round {round}: {} {}",
                answer.status,
                answer.body
            );
        }
        if answers[0].status == 200 {
            assert_eq!(state(&app, &space), "opposed");
            assert_eq!(
                app.stored_rows(&format!(
                    "resource_compartment WHERE patient_id = '{space}' AND res_type = 'DocumentReference'"
                )),
                0,
                "round {round}: a document in an opposed space"
            );
        }
    }
    for round in 0..4 {
        let (space, _) = new_space(&app, "1975-02-03");
        let holder = As::Patient(space.clone());
        let answers = at_once(
            (0..4)
                .map(|_| {
                    Box::new(|| operation(&app, &space, "activate", &holder))
                        as Box<dyn Fn() -> Reply + Send + Sync>
                })
                .collect(),
        );
        for answer in &answers {
            assert_eq!(answer.status, 200, "round {round}: {}", answer.body);
        }
        assert_eq!(service_topics(&app, &space), ["welcome"], "round {round}");
    }
    // The holder's transactions changing a Consent, at once with their `$close`: a
    // transaction takes its spaces' turns before their versions' rows, as the
    // operation does.
    for round in 0..4 {
        let (space, _) = new_space(&app, "1975-02-03");
        let holder = As::Patient(space.clone());
        assert_eq!(operation(&app, &space, "activate", &holder).status, 200);
        let mut consent = crate::support::fixtures::consent(&space, "Practitioner/pr-810000000007");
        let id = app.create(&holder, &consent);
        consent["id"] = json!(id);
        let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
            { "resource": consent, "request": { "method": "PUT", "url": format!("Consent/{id}") } }
        ]});
        let mut actions = vec![Box::new(|| operation(&app, &space, "close", &holder))
            as Box<dyn Fn() -> Reply + Send + Sync>];
        actions.extend((0..3).map(|_| {
            Box::new(|| app.post("", &holder, &bundle)) as Box<dyn Fn() -> Reply + Send + Sync>
        }));
        let answers = at_once(actions);
        assert_eq!(answers[0].status, 200, "{}", answers[0].body);
        for answer in &answers[1..] {
            assert!(
                answer.status < 500,
                "round {round}: {} {}",
                answer.status,
                answer.body
            );
        }
    }
}
