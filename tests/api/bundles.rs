//! batch and transaction Bundles (SPEC §3): urn:uuid references resolved, each entry
//! authorised on its own, a transaction all or nothing.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::fixtures::{document, nir, patient};
use crate::support::{As, TestApp};

fn post_bundle(app: &TestApp, who: &As, bundle: &Value) -> crate::support::Reply {
    app.post("", who, bundle)
}

#[test]
fn a_transaction_resolves_urn_uuid_references() {
    let app = TestApp::new();
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let mut doc = document(&patient_id, "11488-4", "2024-01-01");
    doc["content"] = json!([{ "attachment": { "contentType": "application/pdf", "url": "urn:uuid:7d2a1e51-0000-4000-8000-000000000002" } }]);
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            { "fullUrl": "urn:uuid:7d2a1e51-0000-4000-8000-000000000001", "resource": doc, "request": { "method": "POST", "url": "DocumentReference" } },
            { "fullUrl": "urn:uuid:7d2a1e51-0000-4000-8000-000000000002",
              "resource": { "resourceType": "Binary", "contentType": "application/pdf", "data": "JVBERi0xLjQK", "securityContext": { "reference": format!("Patient/{patient_id}") } },
              "request": { "method": "POST", "url": "Binary" } },
            { "request": { "method": "GET", "url": format!("Patient/{patient_id}") } }
        ]
    });
    let reply = post_bundle(&app, &As::doctor(), &bundle);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let response = reply.json();
    assert_eq!(response["type"], "transaction-response");
    let entries = response["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["response"]["status"], "201 Created");
    assert_eq!(entries[1]["response"]["status"], "201 Created");
    assert_eq!(entries[2]["response"]["status"], "200 OK");
    let binary_id = entries[1]["resource"]["id"].as_str().unwrap();
    let stored = entries[0]["resource"].clone();
    assert_eq!(
        stored["content"][0]["attachment"]["url"],
        format!("Binary/{binary_id}")
    );
    let document_id = stored["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("DocumentReference/{document_id}"), &As::doctor())
            .json(),
        stored
    );
}

#[test]
fn a_failing_entry_rolls_the_whole_transaction_back() {
    let app = TestApp::new();
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let before = app.data_rows();
    let versions_before = app.stored_rows("resource_versions");
    // The documents' index rows (the trace's are written meanwhile by its indexer).
    let document_tokens = "search_token WHERE res_type = 'DocumentReference'";
    let tokens_before = app.stored_rows(document_tokens);
    let mut broken = document(&patient_id, "11488-4", "2024-01-01");
    broken.as_object_mut().unwrap().remove("type");
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            { "resource": document(&patient_id, "11488-4", "2024-01-01"), "request": { "method": "POST", "url": "DocumentReference" } },
            { "resource": broken, "request": { "method": "POST", "url": "DocumentReference" } }
        ]
    });
    let reply = post_bundle(&app, &As::doctor(), &bundle);
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("Bundle.entry[1]"), "{}", reply.body);
    assert_eq!(
        app.data_rows(),
        before,
        "nothing of the transaction is stored"
    );
    assert_eq!(app.stored_rows("resource_versions"), versions_before);
    assert_eq!(app.stored_rows(document_tokens), tokens_before);
}

#[test]
fn every_transaction_entry_is_authorised_on_its_own() {
    let app = TestApp::new();
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let before = app.data_rows();
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            { "resource": document(&patient_id, "11488-4", "2024-01-01"), "request": { "method": "POST", "url": "DocumentReference" } },
            { "resource": patient(&nir(), "Faux", "Patient", "2000-01-01"), "request": { "method": "POST", "url": "Patient" } }
        ]
    });
    let reply = post_bundle(&app, &As::doctor(), &bundle);
    assert_eq!(
        reply.status, 403,
        "a professional may not create a Patient: {}",
        reply.body
    );
    assert!(reply.body.contains("R-ACC-12"));
    assert_eq!(app.data_rows(), before);
    // A patient's transaction cannot read another space either.
    let other = app.create(
        &As::System,
        &patient(&nir(), "Autre", "Personne", "1970-01-01"),
    );
    let reading = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "request": { "method": "GET", "url": format!("Patient/{other}") } } ] });
    let reply = post_bundle(&app, &As::Patient(patient_id.clone()), &reading);
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert!(!reply.body.contains("Autre"));
}

#[test]
fn a_batch_reports_each_entry() {
    let app = TestApp::new();
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let other = app.create(
        &As::System,
        &patient(&nir(), "Autre", "Personne", "1970-01-01"),
    );
    let bundle = json!({
        "resourceType": "Bundle", "type": "batch",
        "entry": [
            { "resource": document(&patient_id, "11488-4", "2024-01-01"), "request": { "method": "POST", "url": "DocumentReference" } },
            { "resource": { "resourceType": "DocumentReference" }, "request": { "method": "POST", "url": "DocumentReference" } },
            { "request": { "method": "GET", "url": format!("DocumentReference?patient={patient_id}") } },
            { "request": { "method": "GET", "url": format!("Patient/{other}") } },
            { "request": { "method": "GET", "url": "Observation/1" } }
        ]
    });
    let reply = post_bundle(&app, &As::Patient(patient_id.clone()), &bundle);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let response = reply.json();
    assert_eq!(response["type"], "batch-response");
    let statuses: Vec<&str> = response["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["201 Created", "400", "200 OK", "404", "404"]);
    assert_eq!(
        response["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(response["entry"][2]["resource"]["total"], 1);
    assert!(!reply.body.contains("Autre"));
}

#[test]
fn a_transaction_patch_uses_a_json_patch_binary() {
    let app = TestApp::new();
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let document_id = app.create(
        &As::doctor(),
        &document(&patient_id, "11488-4", "2024-01-01"),
    );
    let operations = json!([{ "op": "replace", "path": "/status", "value": "entered-in-error" }]);
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [{
            "resource": { "resourceType": "Binary", "contentType": "application/json-patch+json", "data": STANDARD.encode(operations.to_string()) },
            "request": { "method": "PATCH", "url": format!("DocumentReference/{document_id}") }
        }]
    });
    let reply = post_bundle(&app, &As::doctor(), &bundle);
    assert_eq!(reply.status, 200, "{}", reply.body);
    // entered-in-error withdraws the document (R-MHD-7): gone from reads, the
    // patched version kept in its history.
    assert_eq!(
        app.get(&format!("DocumentReference/{document_id}"), &As::doctor())
            .status,
        410
    );
    assert_eq!(
        app.get(
            &format!("DocumentReference/{document_id}/_history/2"),
            &As::doctor()
        )
        .json()["status"],
        "entered-in-error"
    );
}

#[test]
fn a_transaction_conditional_create_reuses_the_match() {
    let app = TestApp::new();
    let number = nir();
    let existing = app.create(
        &As::System,
        &patient(&number, "Martin", "Claire", "1980-05-01"),
    );
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            { "fullUrl": "urn:uuid:00000000-0000-4000-8000-00000000000a", "resource": patient(&number, "Martin", "Claire", "1980-05-01"),
              "request": { "method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=urn:oid:1.2.250.1.213.1.4.8|{number}") } },
            { "resource": document("placeholder", "11488-4", "2024-01-01"), "request": { "method": "POST", "url": "DocumentReference" } }
        ]
    });
    let mut bundle = bundle;
    bundle["entry"][1]["resource"]["subject"]["reference"] =
        json!("urn:uuid:00000000-0000-4000-8000-00000000000a");
    let reply = post_bundle(&app, &As::System, &bundle);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let response = reply.json();
    assert_eq!(response["entry"][0]["response"]["status"], "200 OK");
    // The feed may create documents, not read them: the médecin traitant reads it.
    let location = response["entry"][1]["response"]["location"]
        .as_str()
        .expect("the document's location");
    let document_id = location
        .split_once("DocumentReference/")
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("DocumentReference/id");
    assert_eq!(
        app.get(&format!("DocumentReference/{document_id}"), &As::doctor())
            .json()["subject"]["reference"],
        format!("Patient/{existing}")
    );
    // One Patient (the match, not a copy) and the document.
    assert_eq!(app.stored_rows("resources WHERE res_type = 'Patient'"), 1);
    assert_eq!(
        app.stored_rows("resources WHERE res_type = 'DocumentReference'"),
        1
    );
}

/// Runs `rounds` transactions on each of `threads` threads at once, the even
/// threads' with `forward`'s entries, the odd threads' in the reverse order, and
/// returns every answer's status and body.
fn crossed_transactions(
    app: &TestApp,
    who: &As,
    threads: usize,
    rounds: usize,
    forward: impl Fn(usize, usize) -> Vec<Value> + Sync,
) -> Vec<(u16, String)> {
    crate::support::on_threads(threads, |thread| {
        (0..rounds)
            .map(|round| {
                let mut entries = forward(thread, round);
                if thread % 2 == 1 {
                    entries.reverse();
                }
                let bundle = json!({
                    "resourceType": "Bundle", "type": "transaction", "entry": entries
                });
                let reply = post_bundle(app, who, &bundle);
                (reply.status, reply.body)
            })
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

/// Writers run side by side on PostgreSQL. Transactions that name the same
/// resources in opposite orders, many at once, would wait on each other until the
/// database failed one of them (a 500 for a request that did nothing wrong): each
/// takes the turns it names in one order first (`service::locks`), so every one
/// succeeds, and every update is a version of its own.
#[test]
fn transactions_naming_the_same_resources_in_opposite_orders_all_succeed() {
    let app = TestApp::new();
    let spaces: Vec<String> = ["1980-05-01", "1981-06-02"]
        .iter()
        .map(|born| app.create(&As::System, &patient(&nir(), "Martin", "Claire", born)))
        .collect();
    let bodies: Vec<Value> = spaces
        .iter()
        .map(|id| {
            let mut body = app.get(&format!("Patient/{id}"), &As::System).json();
            body.as_object_mut().unwrap().remove("meta");
            body
        })
        .collect();
    let (threads, rounds) = (6, 8);
    let answers = crossed_transactions(&app, &As::System, threads, rounds, |thread, round| {
        bodies
            .iter()
            .map(|body| {
                let mut body = body.clone();
                body["name"][0]["given"] = json!([format!("T{thread}R{round}")]);
                json!({ "resource": body, "request": { "method": "PUT", "url": format!("Patient/{}", body["id"].as_str().unwrap()) } })
            })
            .collect()
    });
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    for id in &spaces {
        let stored = app.get(&format!("Patient/{id}"), &As::System).json();
        assert_eq!(
            stored["meta"]["versionId"],
            (1 + threads * rounds).to_string(),
            "every update of Patient/{id} is a version"
        );
    }

    // The médecin traitant's documents of the two spaces, updated the same way.
    let documents: Vec<Value> = spaces
        .iter()
        .map(|space| {
            let id = app.create(&As::doctor(), &document(space, "11488-4", "2024-01-01"));
            let mut body = app
                .get(&format!("DocumentReference/{id}"), &As::doctor())
                .json();
            body.as_object_mut().unwrap().remove("meta");
            body
        })
        .collect();
    let answers = crossed_transactions(&app, &As::doctor(), threads, rounds, |thread, round| {
        documents
            .iter()
            .map(|body| {
                let mut body = body.clone();
                body["description"] = json!(format!("T{thread}R{round}"));
                json!({ "resource": body, "request": { "method": "PUT", "url": format!("DocumentReference/{}", body["id"].as_str().unwrap()) } })
            })
            .collect()
    });
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }

    // New documents carrying the same two uniqueIds (R-MHD-3): each uniqueId is
    // stored once, and every other transaction is refused for it (409), none failed.
    let unique_ids = [
        "1.2.250.1.213.1.4.8.99999.71",
        "1.2.250.1.213.1.4.8.99999.72",
    ];
    let answers = crossed_transactions(&app, &As::doctor(), threads, 2, |_, _| {
        spaces
            .iter()
            .zip(unique_ids)
            .map(|(space, unique_id)| {
                let mut body = document(space, "11488-4", "2024-01-02");
                body["masterIdentifier"] = json!({ "system": "urn:ietf:rfc:3986", "value": format!("urn:oid:{unique_id}") });
                json!({ "resource": body, "request": { "method": "POST", "url": "DocumentReference" } })
            })
            .collect()
    });
    let accepted = answers.iter().filter(|(status, _)| *status == 200).count();
    for (status, body) in &answers {
        assert!(*status == 200 || *status == 409, "{status} {body}");
    }
    assert_eq!(accepted, 1, "one transaction stores both uniqueIds");
}

/// Runs `rounds` times on each of two threads at once: `first` on the one, `second`
/// on the other; returns every answer's status and body.
fn side_by_side(
    rounds: usize,
    first: impl Fn() -> crate::support::Reply + Sync,
    second: impl Fn() -> crate::support::Reply + Sync,
) -> Vec<(u16, String)> {
    crate::support::on_threads(2, |side| {
        (0..rounds)
            .map(|_| {
                let reply = if side == 0 { first() } else { second() };
                (reply.status, reply.body)
            })
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

/// A write's turns come in levels (`service::locks`): a resource before the INS or
/// uniqueId it carries, whether the write names both at once (a PUT) or learns the
/// second as it runs (a PATCH). Side by side on one resource, a PUT and a PATCH
/// both succeed, however their locks' keys sort; so do crossed transactions whose
/// conditional PATCH finds its match as it runs.
#[test]
fn a_put_and_a_patch_of_one_resource_side_by_side_both_succeed() {
    let app = TestApp::new();
    let rounds = 12;
    // The system's PUT of a Patient and the holder's declaration of the médecin
    // traitant, on several Patients (the keys of a Patient and of its INS sort
    // either way).
    for born in ["1980-05-01", "1981-06-02", "1982-07-03", "1983-08-04"] {
        let id = app.create(&As::System, &patient(&nir(), "Martin", "Claire", born));
        let mut body = app.get(&format!("Patient/{id}"), &As::System).json();
        body.as_object_mut().unwrap().remove("meta");
        let declare = json!([{ "op": "replace", "path": "/generalPractitioner", "value": [
            { "identifier": { "system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810000000001" } }] }]);
        let holder = As::Patient(id.clone());
        let answers = side_by_side(
            rounds,
            || app.put(&format!("Patient/{id}"), &As::System, &body),
            || app.json_patch(&format!("Patient/{id}"), &holder, &declare),
        );
        for (status, body) in &answers {
            assert_eq!(*status, 200, "{body}");
        }
    }

    // The médecin traitant's PUT of a document with a uniqueId and their PATCH of it.
    let space = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1984-09-05"),
    );
    let unique_ids = [
        "urn:oid:1.2.250.1.213.1.4.8.99999.81",
        "urn:oid:1.2.250.1.213.1.4.8.99999.82",
    ];
    let documents: Vec<Value> = unique_ids
        .iter()
        .map(|unique_id| {
            let mut body = document(&space, "11488-4", "2024-01-01");
            body["masterIdentifier"] = json!({ "system": "urn:ietf:rfc:3986", "value": unique_id });
            let id = app.create(&As::doctor(), &body);
            body["id"] = json!(id);
            body
        })
        .collect();
    let path = format!("DocumentReference/{}", documents[0]["id"].as_str().unwrap());
    let label = json!([{ "op": "add", "path": "/securityLabel", "value": [
        { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N" }] }] }]);
    let answers = side_by_side(
        rounds,
        || app.put(&path, &As::doctor(), &documents[0]),
        || app.json_patch(&path, &As::doctor(), &label),
    );
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }

    // Crossed transactions: a conditional PATCH of one document by its uniqueId and
    // a PUT of the other.
    let entries = |patched: usize| {
        let other = &documents[1 - patched];
        let operations = STANDARD.encode(label.to_string());
        json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
            { "resource": { "resourceType": "Binary", "contentType": "application/json-patch+json", "data": operations },
              "request": { "method": "PATCH", "url": format!("DocumentReference?identifier=urn:ietf:rfc:3986|{}", unique_ids[patched]) } },
            { "resource": other, "request": { "method": "PUT", "url": format!("DocumentReference/{}", other["id"].as_str().unwrap()) } }
        ]})
    };
    let (forward, backward) = (entries(0), entries(1));
    let answers = side_by_side(
        rounds,
        || post_bundle(&app, &As::doctor(), &forward),
        || post_bundle(&app, &As::doctor(), &backward),
    );
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
}

/// A transaction's conditional PATCH is resolved before the transaction takes its
/// turns; when another writer moves the match meanwhile, the transaction is refused
/// (409) rather than made to take the new match's turn out of order, which could
/// wait on a writer waiting on it (a 500 for both). Transactions moving which of
/// three documents is `current` run beside transactions patching the `current` one
/// by a conditional PATCH: every answer is a decision, none a failure.
#[test]
fn a_transactions_conditional_patch_whose_match_moves_is_refused_not_failed() {
    let app = TestApp::new();
    let space = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let documents: Vec<String> = (0..3)
        .map(|_| app.create(&As::doctor(), &document(&space, "11488-4", "2024-01-01")))
        .collect();
    let status = |value: &str| json!([{ "op": "replace", "path": "/status", "value": value }]);
    let patch_entry = |url: String, operations: &Value| {
        json!({ "resource": { "resourceType": "Binary", "contentType": "application/json-patch+json",
                              "data": STANDARD.encode(operations.to_string()) },
                "request": { "method": "PATCH", "url": url } })
    };
    for document in &documents[1..] {
        let reply = app.json_patch(
            &format!("DocumentReference/{document}"),
            &As::doctor(),
            &status("superseded"),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let label = json!([{ "op": "add", "path": "/securityLabel", "value": [
        { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N" }] }] }]);
    // Half the threads move `current` on (their entries reversed every other
    // thread), the other half patch the `current` one conditionally.
    let answers = crossed_transactions(&app, &As::doctor(), 8, 12, |thread, round| {
        if thread % 4 < 2 {
            let n = thread + round;
            let (from, to) = (&documents[n % 3], &documents[(n + 1) % 3]);
            vec![
                patch_entry(format!("DocumentReference/{from}"), &status("superseded")),
                patch_entry(format!("DocumentReference/{to}"), &status("current")),
            ]
        } else {
            vec![
                patch_entry(
                    format!("DocumentReference?patient={space}&status=current"),
                    &label,
                ),
                patch_entry(format!("DocumentReference/{}", documents[2]), &label),
                patch_entry(format!("DocumentReference/{}", documents[0]), &label),
            ]
        }
    });
    for (status, body) in &answers {
        assert!(*status < 500, "{status} {body}");
    }
}
