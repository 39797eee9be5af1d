//! read, vread, create, update, conditional create, If-Match, JSON Patch, logical
//! delete, Binary (SPEC §3).

use serde_json::json;

use crate::support::fixtures::{INS, document, nir, patient};
use crate::support::{As, TestApp};

fn with_patient() -> (TestApp, String) {
    let app = TestApp::new();
    let id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    (app, id)
}

#[test]
fn create_answers_201_with_location_etag_and_the_stored_resource() {
    let app = TestApp::new();
    let reply = app.post(
        "Patient",
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let body = reply.json();
    let id = body["id"].as_str().unwrap();
    assert_eq!(body["meta"]["versionId"], "1");
    assert!(body["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    assert_eq!(reply.header("etag"), Some("W/\"1\""));
    assert_eq!(
        reply.header("location").unwrap(),
        format!("{}/Patient/{id}/_history/1", app.base)
    );
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/fhir+json")
    );
    let read = app.get(&format!("Patient/{id}"), &As::System);
    assert_eq!(read.status, 200);
    assert_eq!(read.json(), body);
    assert_eq!(read.header("etag"), Some("W/\"1\""));
    assert!(read.header("last-modified").unwrap().ends_with("GMT"));
}

#[test]
fn the_stored_json_keeps_everything_the_client_sent() {
    let app = TestApp::new();
    let mut body = patient(&nir(), "Martin", "Claire", "1980-05-01");
    body["extension"] = json!([{ "url": "http://example.org/weight", "valueDecimal": 0 }]);
    body["meta"] = json!({ "tag": [{ "system": "http://example.org/tags", "code": "vip" }], "versionId": "41" });
    // Hand-written so that the decimal's text is exactly as a client would send it.
    let text = body
        .to_string()
        .replace("\"valueDecimal\":0", "\"valueDecimal\":3.50");
    let reply = app
        .request("POST", "Patient")
        .as_(&As::System)
        .fhir()
        .send(Some(text));
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.id();
    let read = app.get(&format!("Patient/{id}"), &As::System);
    assert!(read.body.contains("\"valueDecimal\":3.50"), "{}", read.body);
    let stored = read.json();
    assert_eq!(stored["meta"]["tag"][0]["code"], "vip");
    assert_eq!(
        stored["meta"]["versionId"], "1",
        "the server owns versionId"
    );
    assert_eq!(stored["name"], body["name"]);
}

#[test]
fn update_makes_a_new_version_and_vread_reads_each() {
    let (app, id) = with_patient();
    let mut body = app.get(&format!("Patient/{id}"), &As::System).json();
    body["gender"] = json!("male");
    let reply = app.put(&format!("Patient/{id}"), &As::System, &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("etag"), Some("W/\"2\""));
    assert_eq!(reply.json()["meta"]["versionId"], "2");
    let first = app.get(&format!("Patient/{id}/_history/1"), &As::doctor());
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["gender"], "female");
    let second = app.get(&format!("Patient/{id}/_history/2"), &As::doctor());
    assert_eq!(second.json()["gender"], "male");
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/3"), &As::doctor())
            .status,
        404
    );
    assert_eq!(
        app.get(&format!("Patient/{id}/_history/x"), &As::doctor())
            .status,
        404
    );
}

#[test]
fn if_match_guards_updates_412_when_stale() {
    let (app, id) = with_patient();
    let mut body = app.get(&format!("Patient/{id}"), &As::System).json();
    body["gender"] = json!("male");
    let ok = app
        .request("PUT", &format!("Patient/{id}"))
        .as_(&As::System)
        .fhir()
        .header("If-Match", "W/\"1\"")
        .send(Some(body.to_string()));
    assert_eq!(ok.status, 200, "{}", ok.body);
    body["gender"] = json!("other");
    let stale = app
        .request("PUT", &format!("Patient/{id}"))
        .as_(&As::System)
        .fhir()
        .header("If-Match", "W/\"1\"")
        .send(Some(body.to_string()));
    assert_eq!(stale.status, 412, "{}", stale.body);
    assert_eq!(stale.issue_code(), "conflict");
    let current = app.get(&format!("Patient/{id}"), &As::System).json();
    assert_eq!(current["gender"], "male", "a stale update changes nothing");
    assert_eq!(current["meta"]["versionId"], "2");
}

#[test]
fn put_with_a_new_id_creates_and_a_mismatched_id_is_refused() {
    let app = TestApp::new();
    let mut body = patient(&nir(), "Petit", "Lou", "2001-02-03");
    body["id"] = json!("chosen-id");
    let reply = app.put("Patient/chosen-id", &As::System, &body);
    assert_eq!(reply.status, 201, "{}", reply.body);
    body["id"] = json!("other-id");
    let reply = app.put("Patient/chosen-id", &As::System, &body);
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("does not match"));
    body.as_object_mut().unwrap().remove("id");
    assert_eq!(app.put("Patient/chosen-id", &As::System, &body).status, 400);
    assert_eq!(
        app.get("Patient/chosen-id", &As::System).json()["meta"]["versionId"],
        "1"
    );
}

#[test]
fn conditional_create_returns_the_existing_match() {
    let app = TestApp::new();
    let number = nir();
    let body = patient(&number, "Martin", "Claire", "1980-05-01");
    let condition = format!("identifier={INS}|{number}");
    let first = app
        .request("POST", "Patient")
        .as_(&As::System)
        .fhir()
        .header("If-None-Exist", &condition)
        .send(Some(body.to_string()));
    assert_eq!(first.status, 201);
    let second = app
        .request("POST", "Patient")
        .as_(&As::System)
        .fhir()
        .header("If-None-Exist", &condition)
        .send(Some(body.to_string()));
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.id(), first.id());
    assert_eq!(app.data_rows(), 1);
    // Two matches: 412, nothing created.
    app.create(
        &As::System,
        &patient(&nir(), "Martin", "Jules", "1982-01-01"),
    );
    let ambiguous = app
        .request("POST", "Patient")
        .as_(&As::System)
        .fhir()
        .header("If-None-Exist", "family=Martin")
        .send(Some(body.to_string()));
    assert_eq!(ambiguous.status, 412, "{}", ambiguous.body);
    assert_eq!(app.data_rows(), 2);
}

#[test]
fn json_patch_changes_status_and_security_label_only() {
    let (app, patient_id) = with_patient();
    let id = app.create(
        &As::doctor(),
        &document(&patient_id, "11488-4", "2024-01-01"),
    );
    let path = format!("DocumentReference/{id}");
    let label = json!([{ "coding": [{ "system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument", "code": "MASQUE_PS" }] }]);
    let reply = app.json_patch(
        &path,
        &As::doctor(),
        &json!([
            { "op": "replace", "path": "/status", "value": "superseded" },
            { "op": "add", "path": "/securityLabel", "value": label }
        ]),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let patched = reply.json();
    assert_eq!(patched["status"], "superseded");
    assert_eq!(
        patched["securityLabel"][0]["coding"][0]["code"],
        "MASQUE_PS"
    );
    let masked = app
        .get(
            &format!("DocumentReference?patient={patient_id}&security-label=MASQUE_PS"),
            &As::doctor(),
        )
        .json();
    assert_eq!(masked["total"], 1, "the patched label is indexed");
    assert_eq!(patched["meta"]["versionId"], "2");
    let refused = app.json_patch(
        &path,
        &As::doctor(),
        &json!([{ "op": "replace", "path": "/date", "value": "2020-01-01" }]),
    );
    assert_eq!(refused.status, 422, "{}", refused.body);
    let failing_test = app.json_patch(
        &path,
        &As::doctor(),
        &json!([{ "op": "test", "path": "/status", "value": "current" }]),
    );
    assert_eq!(failing_test.status, 422);
    let wrong_type = app
        .request("PATCH", &path)
        .as_(&As::doctor())
        .fhir()
        .send(Some(
            json!([{ "op": "replace", "path": "/status", "value": "current" }]).to_string(),
        ));
    // Under application/fhir+json a PATCH is a FHIRPath Patch Parameters (R-MHD-7).
    assert_eq!(wrong_type.status, 400, "{}", wrong_type.body);
    let no_type = app
        .request("PATCH", &path)
        .as_(&As::doctor())
        .header("Content-Type", "text/plain")
        .send(Some("[]".into()));
    assert_eq!(no_type.status, 415);
    let stale = app
        .request("PATCH", &path)
        .as_(&As::doctor())
        .header("Content-Type", "application/json-patch+json")
        .header("If-Match", "W/\"1\"")
        .send(Some(
            json!([{ "op": "replace", "path": "/status", "value": "current" }]).to_string(),
        ));
    assert_eq!(stale.status, 412);
    let current = app.get(&path, &As::doctor()).json();
    assert_eq!(current["meta"]["versionId"], "2");
    assert_eq!(current["date"], "2024-01-01T10:00:00+01:00");
}

#[test]
fn delete_is_logical_410_afterwards_and_history_keeps_the_versions() {
    let (app, patient_id) = with_patient();
    let id = app.create(
        &As::doctor(),
        &document(&patient_id, "11488-4", "2024-01-01"),
    );
    let path = format!("DocumentReference/{id}");
    let reply = app.delete(&path, &As::doctor());
    assert_eq!(reply.status, 204, "{}", reply.body);
    let gone = app.get(&path, &As::doctor());
    assert_eq!(gone.status, 410);
    assert_eq!(gone.issue_code(), "deleted");
    assert_eq!(
        app.get(&format!("{path}/_history/1"), &As::doctor()).status,
        200
    );
    assert_eq!(
        app.get(&format!("{path}/_history/2"), &As::doctor()).status,
        410
    );
    let search = app
        .get(
            &format!("DocumentReference?patient={patient_id}"),
            &As::doctor(),
        )
        .json();
    assert_eq!(search["total"], 0);
    let history = app.get(&format!("{path}/_history"), &As::doctor()).json();
    assert_eq!(history["total"], 2);
    assert_eq!(history["entry"][0]["request"]["method"], "DELETE");
    assert!(history["entry"][0].get("resource").is_none());
    assert_eq!(
        app.delete(&path, &As::doctor()).status,
        204,
        "deleting again is harmless"
    );
    assert_eq!(
        app.delete("DocumentReference/unknown", &As::doctor())
            .status,
        404
    );
}

#[test]
fn binary_as_json_and_in_its_own_media_type() {
    let (app, patient_id) = with_patient();
    let pdf = b"%PDF-1.4\n%test document\n";
    let raw = app
        .request("POST", "Binary")
        .as_(&As::doctor())
        .header("Content-Type", "application/pdf")
        .header("X-Security-Context", &format!("Patient/{patient_id}"))
        .send_bytes(Some(pdf.to_vec()));
    assert_eq!(raw.status, 201, "{}", raw.body);
    let id = raw.id();
    let as_json = app
        .request("GET", &format!("Binary/{id}"))
        .as_(&As::doctor())
        .header("Accept", "application/fhir+json")
        .send(None)
        .json();
    assert_eq!(as_json["contentType"], "application/pdf");
    assert_eq!(
        as_json["securityContext"]["reference"],
        format!("Patient/{patient_id}")
    );
    let native = app
        .request("GET", &format!("Binary/{id}"))
        .as_(&As::doctor())
        .header("Accept", "application/pdf")
        .send(None);
    assert_eq!(native.status, 200);
    assert_eq!(native.header("content-type"), Some("application/pdf"));
    assert_eq!(native.body.as_bytes(), pdf);
    // ITI-68: `*/*` (or no Accept) takes the bytes too (R-MHD-6); a type the
    // content is not is 406.
    let any = app
        .request("GET", &format!("Binary/{id}"))
        .as_(&As::doctor())
        .header("Accept", "*/*")
        .send(None);
    assert_eq!(any.header("content-type"), Some("application/pdf"));
    assert_eq!(any.bytes, pdf);
    let other = app
        .request("GET", &format!("Binary/{id}"))
        .as_(&As::doctor())
        .header("Accept", "image/png")
        .send(None);
    assert_eq!(other.status, 406, "{}", other.body);
    // The patient reads it once a document of their space points at it; another
    // patient does not.
    assert_eq!(
        app.get(&format!("Binary/{id}"), &As::Patient(patient_id.clone()))
            .status,
        404
    );
    let mut pointing = document(&patient_id, "11488-4", "2024-06-01");
    pointing["content"] = json!([{ "attachment": { "contentType": "application/pdf", "url": format!("Binary/{id}") } }]);
    app.create(&As::doctor(), &pointing);
    assert_eq!(
        app.get(&format!("Binary/{id}"), &As::Patient(patient_id.clone()))
            .status,
        200
    );
    assert_eq!(
        app.get(&format!("Binary/{id}"), &As::Patient("someone-else".into()))
            .status,
        404
    );
    // A professional's Binary belongs to a space (its security context).
    let mut json_binary =
        json!({ "resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8=" });
    assert_eq!(app.post("Binary", &As::doctor(), &json_binary).status, 403);
    json_binary["securityContext"] = json!({ "reference": format!("Patient/{patient_id}") });
    assert_eq!(app.post("Binary", &As::doctor(), &json_binary).status, 201);
}

#[test]
fn a_patient_reads_their_own_space_and_nothing_else() {
    let app = TestApp::new();
    // A minor: their representative acts on their space (R-PAT-5, R-LIFE-5).
    let mine = app.create(&As::System, &patient(&nir(), "Martin", "Léo", "2015-03-01"));
    let theirs = app.create(
        &As::System,
        &patient(&nir(), "Autre", "Personne", "1970-01-01"),
    );
    let my_document = app.create(&As::doctor(), &document(&mine, "11488-4", "2024-01-01"));
    let their_document = app.create(&As::doctor(), &document(&theirs, "11488-4", "2024-01-01"));
    let me = As::Patient(mine.clone());
    assert_eq!(app.get(&format!("Patient/{mine}"), &me).status, 200);
    assert_eq!(
        app.get(&format!("DocumentReference/{my_document}"), &me)
            .status,
        200
    );
    for path in [
        format!("Patient/{theirs}"),
        format!("Patient/{theirs}/_history/1"),
        format!("Patient/{theirs}/_history"),
        format!("DocumentReference/{their_document}"),
        format!("DocumentReference/{their_document}/_history/1"),
    ] {
        let reply = app.get(&path, &me);
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert!(!reply.body.contains("Autre"));
    }
    // Nor can they write into another space.
    let reply = app.post(
        "DocumentReference",
        &me,
        &document(&theirs, "11488-4", "2024-01-01"),
    );
    assert_eq!(reply.status, 403, "{}", reply.body);
    let their_doc = app
        .get(
            &format!("DocumentReference/{their_document}"),
            &As::doctor(),
        )
        .json();
    assert_eq!(
        app.put(
            &format!("DocumentReference/{their_document}"),
            &me,
            &their_doc
        )
        .status,
        404
    );
    assert_eq!(
        app.delete(&format!("DocumentReference/{their_document}"), &me)
            .status,
        404
    );
    assert_eq!(
        app.get(
            &format!("DocumentReference/{their_document}"),
            &As::doctor()
        )
        .status,
        200
    );
    // A representative acts on the represented person's space only.
    let parent = As::Representative(mine.clone());
    assert_eq!(
        app.get(&format!("DocumentReference/{my_document}"), &parent)
            .status,
        200
    );
    assert_eq!(
        app.get(&format!("DocumentReference/{their_document}"), &parent)
            .status,
        404
    );
}

#[test]
fn a_document_must_point_at_an_existing_patient() {
    let app = TestApp::new();
    let reply = app.post(
        "DocumentReference",
        &As::doctor(),
        &document("nobody", "11488-4", "2024-01-01"),
    );
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(app.data_rows(), 0);
}

#[test]
fn audit_events_are_never_written_through_the_api() {
    let app = TestApp::new();
    let event = json!({ "resourceType": "AuditEvent", "recorded": "2024-01-01T00:00:00Z" });
    assert_eq!(app.post("AuditEvent", &As::System, &event).status, 405);
    assert_eq!(app.put("AuditEvent/x", &As::doctor(), &event).status, 405);
    assert_eq!(
        app.delete("AuditEvent/x", &As::Patient("p".into())).status,
        405
    );
    assert_eq!(app.data_rows(), 0);
}

#[test]
fn consents_and_communications_round_trip() {
    let (app, patient_id) = with_patient();
    let me = As::Patient(patient_id.clone());
    let consent = crate::support::fixtures::consent(&patient_id, "Practitioner/pr-810000000001");
    let consent_id = app.create(&me, &consent);
    let found = app
        .get(
            &format!("Consent?patient={patient_id}&actor=Practitioner/pr-810000000001"),
            &me,
        )
        .json();
    assert_eq!(found["total"], 1);
    assert_eq!(found["entry"][0]["resource"]["id"], consent_id.as_str());
    assert_eq!(
        app.delete(&format!("Consent/{consent_id}"), &me).status,
        204
    );
    let message = crate::support::fixtures::communication(&patient_id, "2024-03-01T10:00:00+01:00");
    let message_id = app.create(&As::doctor(), &message);
    let found = app
        .get(
            "Communication?sent=ge2024-03-01&sender=Practitioner/pr-810000000001",
            &me,
        )
        .json();
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["entry"][0]["resource"]["id"], message_id.as_str());
}

#[test]
fn concurrent_updates_with_the_same_if_match_have_exactly_one_winner() {
    let (app, id) = with_patient();
    let body = app.get(&format!("Patient/{id}"), &As::System).json();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|n| {
                let app = &app;
                let id = &id;
                let mut body = body.clone();
                body["name"][0]["given"] = json!([format!("Writer{n}")]);
                scope.spawn(move || {
                    app.request("PUT", &format!("Patient/{id}"))
                        .as_(&As::System)
                        .fhir()
                        .header("If-Match", "W/\"1\"")
                        .send(Some(body.to_string()))
                        .status
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    assert_eq!(
        statuses.iter().filter(|status| **status == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|status| **status == 412).count(),
        7,
        "{statuses:?}"
    );
    let current = app.get(&format!("Patient/{id}"), &As::System).json();
    assert_eq!(current["meta"]["versionId"], "2");
    assert_eq!(app.stored_rows("resource_versions"), 2);
}

#[test]
fn prefer_return_minimal_and_operation_outcome() {
    let app = TestApp::new();
    let body = patient(&nir(), "Martin", "Claire", "1980-05-01").to_string();
    let minimal = app
        .request("POST", "Patient")
        .as_(&As::System)
        .fhir()
        .header("Prefer", "return=minimal")
        .send(Some(body.clone()));
    assert_eq!(minimal.status, 201);
    assert!(minimal.body.is_empty(), "{}", minimal.body);
    assert!(minimal.header("location").is_some() && minimal.header("etag").is_some());
    let outcome = app
        .request("POST", "Patient")
        .as_(&As::System)
        .fhir()
        .header("Prefer", "return=OperationOutcome")
        // Another person: one space per INS.
        .send(Some(
            patient(&nir(), "Martin", "Claude", "1980-05-01").to_string(),
        ));
    assert_eq!(outcome.status, 201);
    assert_eq!(outcome.json()["resourceType"], "OperationOutcome");
    assert_eq!(app.data_rows(), 2);
}

/// Concurrent deposits, half of them refused inside their write (a professional with
/// no part in the space, R-ACC-3): every accepted one is stored, every refused one
/// leaves nothing, and each is traced. With write group commit (the default on
/// SQLite) they share transactions, each in its own savepoint; without it, each has
/// its own transaction: the same outcome either way.
fn concurrent_writes_succeed_or_fail_alone(app: TestApp) {
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let before = app.data_rows();
    let stranger = As::Professional {
        id_nat_ps: "810000009999".into(),
        profession: "10".into(),
    };
    let outcomes: Vec<(bool, u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..24)
            .map(|n| {
                let (app, patient_id, stranger) = (&app, &patient_id, &stranger);
                scope.spawn(move || {
                    let allowed = n % 2 == 0;
                    let who = if allowed {
                        As::doctor()
                    } else {
                        stranger.clone()
                    };
                    let request_id = format!("group-{n}");
                    let reply = app
                        .request("POST", "DocumentReference")
                        .as_(&who)
                        .fhir()
                        .header("X-Request-Id", &request_id)
                        .send(Some(
                            document(patient_id, "11488-4", "2024-01-01").to_string(),
                        ));
                    (allowed, reply.status, request_id)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    for (allowed, status, _) in &outcomes {
        assert_eq!(*status, if *allowed { 201 } else { 403 }, "{outcomes:?}");
    }
    assert_eq!(
        app.stored_rows("resources WHERE res_type = 'DocumentReference'"),
        12
    );
    assert_eq!(
        app.stored_rows("resource_author WHERE subject = '810000009999'"),
        0,
        "a refused deposit leaves nothing"
    );
    assert!(app.data_rows() >= before + 12);
    for (_, status, request_id) in &outcomes {
        let events = app.audit_events(request_id);
        assert_eq!(events.len(), 1, "{request_id}");
        let code = events[0]["outcome"].as_str().unwrap();
        assert_eq!(code, if *status == 201 { "0" } else { "4" }, "{request_id}");
    }
}

#[test]
fn concurrent_writes_succeed_or_fail_alone_with_group_commit() {
    concurrent_writes_succeed_or_fail_alone(TestApp::new());
}

#[test]
fn concurrent_writes_succeed_or_fail_alone_one_by_one() {
    concurrent_writes_succeed_or_fail_alone(TestApp::with(|config| {
        config.write_group_commit = false
    }));
}

#[test]
fn a_delete_with_a_stale_if_match_is_412_and_deletes_nothing() {
    let (app, patient_id) = with_patient();
    let id = app.create(
        &As::doctor(),
        &document(&patient_id, "11488-4", "2024-01-01"),
    );
    let path = format!("DocumentReference/{id}");
    let stale = app
        .request("DELETE", &path)
        .as_(&As::doctor())
        .header("If-Match", "W/\"999\"")
        .send(None);
    assert_eq!(stale.status, 412, "{}", stale.body);
    assert_eq!(app.get(&path, &As::doctor()).status, 200);
    let current = app
        .request("DELETE", &path)
        .as_(&As::doctor())
        .header("If-Match", "W/\"1\"")
        .send(None);
    assert_eq!(current.status, 204, "{}", current.body);
    assert_eq!(app.get(&path, &As::doctor()).status, 410);
}

/// SQLite: a write waits for the database's write lock that another connection
/// holds (a command run beside the server: `lifecycle`, `generate`), and then
/// succeeds, rather than failing at once when its group, having read, finds the
/// lock taken. PostgreSQL has no such lock (rows are locked one by one).
#[test]
fn a_write_waits_for_the_write_lock_another_connection_holds() {
    use diesel::connection::SimpleConnection;
    let app = TestApp::new();
    let (patient, _) = app.patient_with_document("1980-01-01");
    if app.is_postgres() {
        return;
    }
    let mut other = app.connect();
    other
        .batch_execute("BEGIN IMMEDIATE")
        .expect("the write lock");
    let held_since = std::time::Instant::now();
    let hold = std::time::Duration::from_millis(1000);
    let holder = std::thread::spawn(move || {
        std::thread::sleep(hold);
        other.batch_execute("COMMIT").expect("released");
    });
    // Several at once, so that they commit as a group.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let writes: Vec<_> = (0..8)
            .map(|day| {
                let (app, patient) = (&app, &patient);
                scope.spawn(move || {
                    // Sent while the lock is held (else this would not test it).
                    assert!(held_since.elapsed() < hold);
                    let reply = app.post(
                        "DocumentReference",
                        &As::doctor(),
                        &document(patient, "11488-4", &format!("2024-01-1{day}")),
                    );
                    assert_eq!(reply.status, 201, "{}", reply.body);
                    reply.status
                })
            })
            .collect();
        writes
            .into_iter()
            .map(|write| write.join().expect("a write"))
            .collect()
    });
    holder.join().expect("the holder thread");
    assert_eq!(statuses, vec![201; 8]);
}
