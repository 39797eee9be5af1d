//! The egress and write gates (ARCHITECTURE "Choke points"): paths that once carried
//! their own check — conditional matches, old versions, type history, Binary
//! pointers, includes under narrow scopes, JSON Patch `from`, subject moves — each
//! tried by an actor the rules keep out, and by one they let in. Test names carry
//! the rule they defend.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::fixtures::{
    IDNAT_PS, INS, block_professional, document, labelled_document, nir, patient,
    permit_professional,
};
use crate::support::{As, Reply, TestApp, assert_refused, base_claims, keys, sign};

const COLLEAGUE: &str = "810000000002";
const STRANGER: &str = "810000000003";

/// Two spaces whose médecin traitant is `As::doctor()`: A holds a consultation
/// report, a psychiatric synthesis and a masked report, all by the médecin traitant.
struct Spaces {
    app: TestApp,
    a: String,
    b: String,
    consultation: String,
    psychiatric: String,
    masked: String,
}

fn spaces() -> Spaces {
    let app = TestApp::new();
    let a = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "2012-05-01"),
    );
    let b = app.create(
        &As::System,
        &patient(&nir(), "Durand", "Paul", "1970-02-03"),
    );
    let gp = As::doctor();
    let consultation = app.create(&gp, &document(&a, "11488-4", "2024-01-01"));
    let psychiatric = app.create(&gp, &document(&a, "68599-0", "2024-01-02"));
    let masked = app.create(
        &gp,
        &labelled_document(&a, "11488-4", "2024-01-03", "MASQUE_PS"),
    );
    Spaces {
        app,
        a,
        b,
        consultation,
        psychiatric,
        masked,
    }
}

fn doctor(id_nat_ps: &str) -> As {
    As::professional(id_nat_ps, "10", None, None, None)
}

fn dentist() -> As {
    As::professional(COLLEAGUE, "40", None, None, None)
}

/// A patient's token carrying SMART scopes.
fn patient_with_scopes(patient: &str, scope: &str) -> As {
    let mut claims = base_claims("patient", &format!("app-of-{patient}"));
    claims["patient"] = json!(patient);
    claims["scope"] = json!(scope);
    As::Token(sign(&keys().rsa, &claims))
}

fn patch(app: &TestApp, path: &str, who: &As, operations: &Value) -> Reply {
    app.request("PATCH", path)
        .as_(who)
        .header("Content-Type", "application/json-patch+json")
        .send(Some(operations.to_string()))
}

fn post_if_none_exist(app: &TestApp, who: &As, body: &Value, query: &str) -> Reply {
    app.request("POST", "DocumentReference")
        .as_(who)
        .fhir()
        .header("If-None-Exist", query)
        .send(Some(body.to_string()))
}

/// The JSON Patch by which the patient masks a document (R-PAT-2, R-ACC-7).
fn mask_patch() -> Value {
    json!([{ "op": "add", "path": "/securityLabel", "value": [{ "coding": [{
        "system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument",
        "code": "MASQUE_PS" }] }] }])
}

/// Every resource id in a Bundle's entries.
fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["resource"]["id"].as_str().map(str::to_owned))
        .collect()
}

// ---------------------------------------------------------------- conditional matches

#[test]
fn r_acc_12_the_system_reads_no_document_through_a_conditional_create() {
    let s = spaces();
    let feed = document(&s.a, "11502-2", "2024-02-01");
    for query in [
        // Several matches: never a 412 that would count someone else's documents.
        format!("patient={}", s.a),
        format!("_id={}", s.masked),
        format!("_id={}", s.psychiatric),
        format!("patient={}&type=http://loinc.org|68599-0", s.a),
    ] {
        let reply = post_if_none_exist(&s.app, &As::System, &feed, &query);
        assert_eq!(reply.status, 201, "{query}: {}", reply.body);
        // What was created is a new document: the médecin traitant reads it.
        let created = reply.id();
        let stored = s
            .app
            .get(&format!("DocumentReference/{created}"), &As::doctor())
            .json();
        assert_eq!(stored["type"]["coding"][0]["code"], "11502-2", "{query}");
        for hidden in [&s.masked, &s.psychiatric, &s.consultation] {
            assert_ne!(&created, hidden, "{query}");
        }
    }
    // The same inside a transaction.
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [{ "resource": feed, "request": { "method": "POST", "url": "DocumentReference",
                    "ifNoneExist": format!("_id={}", s.masked) } }]
    });
    let reply = s.app.post("", &As::System, &bundle);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(!reply.body.contains(&s.masked), "{}", reply.body);
    assert!(!reply.body.contains("MASQUE_PS"), "{}", reply.body);
}

#[test]
fn r_acc_9_the_system_deposits_idempotently_among_its_own_documents() {
    let s = spaces();
    let mut feed = document(&s.a, "11502-2", "2024-02-01");
    feed["masterIdentifier"] =
        json!({ "system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.7" });
    let first = post_if_none_exist(
        &s.app,
        &As::System,
        &feed,
        "identifier=urn:oid:1.2.250.1.999.7",
    );
    assert_eq!(first.status, 201, "{}", first.body);
    let again = post_if_none_exist(
        &s.app,
        &As::System,
        &feed,
        "identifier=urn:oid:1.2.250.1.999.7",
    );
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(
        again.id(),
        first.id(),
        "its own deposit is found and answered"
    );
}

#[test]
fn r_acc_12_a_json_patch_test_tells_the_system_nothing() {
    let s = spaces();
    // A feed allowed to read and change documents (a patch reads what it changes):
    // the rules, not its scopes, stop it.
    let feed = {
        let mut claims = base_claims("system", "insurer-feed");
        claims["scope"] = json!("system/DocumentReference.cruds");
        As::Token(sign(&keys().rsa, &claims))
    };
    let path = format!("DocumentReference/{}", s.psychiatric);
    let right = patch(
        &s.app,
        &path,
        &feed,
        &json!([{ "op": "test", "path": "/type/coding/0/code", "value": "68599-0" }]),
    );
    let wrong = patch(
        &s.app,
        &path,
        &feed,
        &json!([{ "op": "test", "path": "/type/coding/0/code", "value": "11488-4" }]),
    );
    assert_eq!(right.status, 404, "{}", right.body);
    assert_eq!(wrong.status, 404, "{}", wrong.body);
    let nowhere = patch(
        &s.app,
        "DocumentReference/no-such-document",
        &feed,
        &json!([{ "op": "test", "path": "/status", "value": "current" }]),
    );
    assert_eq!(nowhere.status, 404);
}

// ---------------------------------------------------------------- JSON Patch from

#[test]
fn r_pat_3_a_patch_moving_identity_out_of_the_patient_is_refused() {
    let s = spaces();
    let path = format!("Patient/{}", s.a);
    let before = s.app.get(&path, &As::System).json();
    for operations in [
        json!([{ "op": "move", "from": "/name/0/family", "path": "/generalPractitioner/0/display" }]),
        json!([{ "op": "move", "from": "/birthDate", "path": "/generalPractitioner/0/display" }]),
        json!([{ "op": "move", "from": "/gender", "path": "/generalPractitioner/-" }]),
        json!([{ "op": "copy", "from": "/identifier/0", "path": "/generalPractitioner/-" },
               { "op": "remove", "path": "/identifier" }]),
    ] {
        let reply = patch(&s.app, &path, &As::Patient(s.a.clone()), &operations);
        assert_eq!(reply.status, 422, "{operations}: {}", reply.body);
    }
    let after = s.app.get(&path, &As::System).json();
    for element in [
        "name",
        "birthDate",
        "gender",
        "identifier",
        "generalPractitioner",
    ] {
        assert_eq!(before[element], after[element], "{element} unchanged");
    }
    // What the rule allows still works: declaring the médecin traitant.
    let declared = patch(
        &s.app,
        &path,
        &As::Patient(s.a.clone()),
        &json!([{ "op": "replace", "path": "/generalPractitioner",
                  "value": [{ "identifier": { "system": IDNAT_PS, "value": COLLEAGUE } }] }]),
    );
    assert_eq!(declared.status, 200, "{}", declared.body);
}

#[test]
fn r_acc_6_a_patch_cannot_move_a_document_type_into_a_label() {
    let s = spaces();
    let path = format!("DocumentReference/{}", s.psychiatric);
    let patient = As::Patient(s.a.clone());
    s.app
        .create(&patient, &permit_professional(&s.a, COLLEAGUE));
    for operations in [
        json!([{ "op": "move", "from": "/type/coding/0", "path": "/securityLabel" }]),
        json!([{ "op": "add", "path": "/securityLabel", "value": [] },
               { "op": "move", "from": "/type", "path": "/securityLabel/-" }]),
        json!([{ "op": "add", "path": "/securityLabel", "value": [] },
               { "op": "move", "from": "/description", "path": "/securityLabel/-" }]),
        json!([{ "op": "add", "path": "/securityLabel", "value": [] },
               { "op": "move", "from": "/date", "path": "/securityLabel/-" }]),
    ] {
        let reply = patch(&s.app, &path, &patient, &operations);
        assert_eq!(reply.status, 422, "{operations}: {}", reply.body);
    }
    assert_refused(&s.app.get(&path, &dentist()), 404, "R-ACC-6");
    // Masking stays the patient's right (R-PAT-2).
    let mask = patch(
        &s.app,
        &format!("DocumentReference/{}", s.consultation),
        &patient,
        &mask_patch(),
    );
    assert_eq!(mask.status, 200, "{}", mask.body);
}

// ---------------------------------------------------------------- versions

/// vread and instance history of `id` as `who`: the versions whose body came back.
fn versions_seen(s: &Spaces, who: &As, id: &str, versions: i64) -> (Vec<i64>, Vec<i64>) {
    let read: Vec<i64> = (1..=versions)
        .filter(|version| {
            let reply = s
                .app
                .get(&format!("DocumentReference/{id}/_history/{version}"), who);
            assert!(
                matches!(reply.status, 200 | 403 | 404 | 410),
                "{}",
                reply.body
            );
            reply.status == 200
        })
        .collect();
    let history = s.app.get(&format!("DocumentReference/{id}/_history"), who);
    let listed = if history.status == 200 {
        history.json()["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry.get("resource").is_some())
            .map(|entry| {
                entry["resource"]["meta"]["versionId"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    } else {
        Vec::new()
    };
    (read, listed)
}

#[test]
fn r_acc_6_an_older_version_of_another_type_stays_hidden() {
    let s = spaces();
    let gp = As::doctor();
    s.app
        .create(&s.patient_token(), &permit_professional(&s.a, COLLEAGUE));
    // A psychiatric synthesis retyped as a consultation report: version 1 stays
    // psychiatric for the dentist.
    let mut retyped = s
        .app
        .get(&format!("DocumentReference/{}", s.psychiatric), &gp)
        .json();
    retyped["type"]["coding"][0]["code"] = json!("11488-4");
    let reply = s.app.put(
        &format!("DocumentReference/{}", s.psychiatric),
        &gp,
        &retyped,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (read, listed) = versions_seen(&s, &dentist(), &s.psychiatric, 2);
    assert_eq!(read, vec![2]);
    assert_eq!(listed, vec![2]);
    let (read, listed) = versions_seen(&s, &gp, &s.psychiatric, 2);
    assert_eq!(read, vec![1, 2], "the médecin traitant reads both");
    assert_eq!(listed, vec![2, 1]);
}

#[test]
fn r_acc_7_versions_of_a_masked_document_stay_masked_after_its_deletion() {
    let s = spaces();
    s.app
        .create(&s.patient_token(), &permit_professional(&s.a, COLLEAGUE));
    let colleague = doctor(COLLEAGUE);
    let (read, _) = versions_seen(&s, &colleague, &s.masked, 1);
    assert!(read.is_empty());
    assert_eq!(
        s.app
            .delete(&format!("DocumentReference/{}", s.masked), &As::doctor())
            .status,
        204
    );
    let (read, listed) = versions_seen(&s, &colleague, &s.masked, 2);
    assert!(read.is_empty(), "versions {read:?} of a masked document");
    assert!(
        listed.is_empty(),
        "versions {listed:?} of a masked document"
    );
    let deleted = s
        .app
        .get(&format!("DocumentReference/{}", s.masked), &colleague);
    assert_eq!(
        deleted.status, 404,
        "not even its deletion: {}",
        deleted.body
    );
    // The author still sees what they deposited, and that it was deleted.
    let (read, _) = versions_seen(&s, &As::doctor(), &s.masked, 1);
    assert_eq!(read, vec![1]);
    assert_eq!(
        s.app
            .get(&format!("DocumentReference/{}", s.masked), &As::doctor())
            .status,
        410
    );
}

#[test]
fn r_acc_7_a_version_is_hidden_when_the_document_is_masked_now() {
    let s = spaces();
    s.app
        .create(&s.patient_token(), &permit_professional(&s.a, COLLEAGUE));
    let mask = patch(
        &s.app,
        &format!("DocumentReference/{}", s.consultation),
        &s.patient_token(),
        &mask_patch(),
    );
    assert_eq!(mask.status, 200, "{}", mask.body);
    let (read, listed) = versions_seen(&s, &doctor(COLLEAGUE), &s.consultation, 2);
    assert!(
        read.is_empty(),
        "the unmasked version 1 of a masked document: {read:?}"
    );
    assert!(listed.is_empty());
}

#[test]
fn r_pat_1_versions_awaiting_announcement_stay_hidden_from_the_patient() {
    let s = spaces();
    let pending = s.app.create(
        &As::doctor(),
        &labelled_document(&s.a, "11502-2", "2024-03-01", "INVISIBLE_PATIENT"),
    );
    assert_eq!(
        s.app
            .delete(&format!("DocumentReference/{pending}"), &As::doctor())
            .status,
        204
    );
    let (read, listed) = versions_seen(&s, &s.patient_token(), &pending, 2);
    assert!(read.is_empty(), "{read:?}");
    assert!(listed.is_empty(), "{listed:?}");
}

#[test]
fn r_pat_1_and_r_pat_5_type_history_shows_only_what_the_holder_may_see() {
    let s = spaces();
    let (pending, from_parents) = s.hidden_from_holders();
    let elsewhere = s
        .app
        .create(&As::doctor(), &document(&s.b, "11488-4", "2024-03-03"));
    for (who, hidden, shown) in [
        (
            s.patient_token(),
            vec![&pending, &elsewhere],
            vec![&s.consultation, &from_parents],
        ),
        (
            As::Representative(s.a.clone()),
            vec![&pending, &from_parents, &elsewhere],
            vec![&s.consultation, &s.masked],
        ),
    ] {
        let reply = s.app.get("DocumentReference/_history?_count=50", &who);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let bundle = reply.json();
        let ids = entry_ids(&bundle);
        for id in hidden {
            assert!(!ids.contains(id), "{who:?} sees {id}");
        }
        for id in shown {
            assert!(ids.contains(id), "{who:?} misses {id}");
        }
        assert_eq!(
            bundle["total"].as_u64().unwrap() as usize,
            bundle["entry"].as_array().unwrap().len(),
            "the total counts what is shown"
        );
    }
}

// ---------------------------------------------------------------- subject moves

#[test]
fn r_acc_3_moving_a_document_is_a_deposit_into_the_new_space() {
    let s = spaces();
    // A space whose médecin traitant is someone else: the doctor is not authorised.
    let mut other = patient(&nir(), "Petit", "Jeanne", "1980-01-01");
    other["generalPractitioner"] =
        json!([{ "identifier": { "system": IDNAT_PS, "value": STRANGER } }]);
    let c = s.app.create(&As::System, &other);
    let path = format!("DocumentReference/{}", s.consultation);
    let mut moved = s.app.get(&path, &As::doctor()).json();
    moved["subject"] = json!({ "reference": format!("Patient/{c}") });
    assert_refused(&s.app.put(&path, &As::doctor(), &moved), 403, "R-ACC-3");
    // Into a closed space (R-ACC-1), even one the doctor is authorised on.
    assert_eq!(
        s.app
            .post(
                &format!("Patient/{}/$close", s.b),
                &As::Patient(s.b.clone()),
                &json!({"resourceType": "Parameters"})
            )
            .status,
        200
    );
    moved["subject"] = json!({ "reference": format!("Patient/{}", s.b) });
    assert_refused(&s.app.put(&path, &As::doctor(), &moved), 403, "R-ACC-1");
    assert_eq!(
        s.app.get(&path, &As::doctor()).json()["subject"]["reference"],
        format!("Patient/{}", s.a),
        "the document stayed where it was"
    );
}

#[test]
fn r_pat_1_a_holder_moves_nothing_out_of_their_space() {
    let s = spaces();
    let mine = s.app.create(&s.patient_token(), &{
        let mut own = document(&s.a, "11502-2", "2024-04-01");
        own["category"][0]["coding"][0]["code"] = json!("90");
        own
    });
    let path = format!("DocumentReference/{mine}");
    let mut moved = s.app.get(&path, &s.patient_token()).json();
    moved["subject"] = json!({ "reference": format!("Patient/{}", s.b) });
    assert_refused(
        &s.app.put(&path, &s.patient_token(), &moved),
        403,
        "R-PAT-1",
    );
}

// ---------------------------------------------------------------- Binary pointers

#[test]
fn r_acc_2_a_binary_opens_only_through_documents_of_its_own_space() {
    let s = spaces();
    let binary = s.app.create(
        &As::doctor(),
        &json!({ "resourceType": "Binary", "contentType": "application/pdf", "data": "JVBERi0xLjQK",
                 "securityContext": { "reference": format!("Patient/{}", s.a) } }),
    );
    let mut pointing = document(&s.a, "11488-4", "2024-05-01");
    pointing["content"] = json!([{ "attachment": { "contentType": "application/pdf", "url": format!("Binary/{binary}") } }]);
    s.app.create(&As::doctor(), &pointing);
    // A blocks a professional who is authorised on B: a document of B pointing at
    // A's content does not open it.
    s.app
        .create(&s.patient_token(), &block_professional(&s.a, COLLEAGUE));
    s.app.create(
        &As::Patient(s.b.clone()),
        &permit_professional(&s.b, COLLEAGUE),
    );
    let mut lure = document(&s.b, "11488-4", "2024-05-02");
    lure["content"] = json!([{ "attachment": { "contentType": "application/pdf", "url": format!("Binary/{binary}") } }]);
    s.app.create(&doctor(COLLEAGUE), &lure);
    let mut patient_lure = document(&s.b, "11502-2", "2024-05-03");
    patient_lure["category"][0]["coding"][0]["code"] = json!("90");
    patient_lure["content"] = lure["content"].clone();
    s.app.create(&As::Patient(s.b.clone()), &patient_lure);
    for who in [doctor(COLLEAGUE), As::Patient(s.b.clone())] {
        let reply = s.app.get(&format!("Binary/{binary}"), &who);
        assert_eq!(reply.status, 404, "{who:?}: {}", reply.body);
    }
    for who in [As::doctor(), s.patient_token()] {
        assert_eq!(s.app.get(&format!("Binary/{binary}"), &who).status, 200);
    }
}

// ---------------------------------------------------------------- scopes on includes

#[test]
fn r_acc_13_a_narrow_scope_gets_nothing_through_includes() {
    let s = spaces();
    let narrow = patient_with_scopes(&s.a, "patient/Patient.rs");
    for include in [
        "_revinclude=DocumentReference:patient",
        "_revinclude=Consent:patient",
        "_revinclude=AuditEvent:patient",
        "_revinclude=Communication:patient",
    ] {
        let reply = s
            .app
            .get(&format!("Patient?_id={}&{include}", s.a), &narrow);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let bundle = reply.json();
        let types: Vec<&str> = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry["resource"]["resourceType"].as_str())
            .collect();
        assert_eq!(types, vec!["Patient"], "{include}");
    }
    // The scope that grants documents lets them through.
    let wide = patient_with_scopes(&s.a, "patient/Patient.rs patient/DocumentReference.rs");
    let reply = s.app.get(
        &format!("Patient?_id={}&_revinclude=DocumentReference:patient", s.a),
        &wide,
    );
    assert!(entry_ids(&reply.json()).contains(&s.consultation));
}

// ---------------------------------------------------------------- messages, Consents

#[test]
fn r_msg_5_a_patient_never_writes_as_a_professional() {
    let s = spaces();
    let started = s.app.create(
        &As::doctor(),
        &crate::support::fixtures::message_from(
            &s.a,
            crate::support::fixtures::DOCTOR_IDNAT,
            "2024-06-01T10:00:00Z",
        ),
    );
    let mut answer = crate::support::fixtures::communication(&s.a, "2024-06-02T10:00:00Z");
    answer["inResponseTo"] = json!([{ "reference": format!("Communication/{started}") }]);
    answer["recipient"] = json!([{ "identifier": { "system": IDNAT_PS, "value": crate::support::fixtures::DOCTOR_IDNAT } }]);
    answer["sender"] = json!({ "identifier": { "system": IDNAT_PS, "value": COLLEAGUE } });
    assert_refused(
        &s.app.post("Communication", &s.patient_token(), &answer),
        403,
        "R-MSG-5",
    );
    answer["sender"] = json!({ "reference": format!("Patient/{}", s.a) });
    let reply = s.app.post("Communication", &s.patient_token(), &answer);
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[test]
fn r_acc_1_a_professional_declares_no_consent_in_a_closed_space() {
    let s = spaces();
    assert_eq!(
        s.app
            .post(
                &format!("Patient/{}/$close", s.b),
                &As::Patient(s.b.clone()),
                &json!({"resourceType": "Parameters"})
            )
            .status,
        200
    );
    assert_refused(
        &s.app.post(
            "Consent",
            &doctor(COLLEAGUE),
            &permit_professional(&s.b, COLLEAGUE),
        ),
        403,
        "R-ACC-1",
    );
}

// ---------------------------------------------------------------- Binary served raw

#[test]
fn a_binary_is_served_inert_in_a_checked_media_type() {
    let s = spaces();
    for bad in [
        "text/html\r\nX-Injected: 1",
        "text html",
        "",
        "text/",
        "a\u{7}/b",
    ] {
        let reply = s.app.post(
            "Binary",
            &As::doctor(),
            &json!({ "resourceType": "Binary", "contentType": bad, "data": "eA==",
                     "securityContext": { "reference": format!("Patient/{}", s.a) } }),
        );
        assert!(matches!(reply.status, 400 | 422), "{bad:?}: {}", reply.body);
    }
    let page = STANDARD.encode("<script>alert(document.cookie)</script>");
    let id = s.app.create(
        &As::doctor(),
        &json!({ "resourceType": "Binary", "contentType": "text/html", "data": page,
                 "securityContext": { "reference": format!("Patient/{}", s.a) } }),
    );
    let raw = s
        .app
        .request("GET", &format!("Binary/{id}"))
        .as_(&As::doctor())
        .header("Accept", "text/html")
        .send(None);
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("x-content-type-options"), Some("nosniff"));
    assert!(
        raw.header("content-security-policy")
            .unwrap_or("")
            .contains("sandbox")
    );
    assert_eq!(raw.header("content-disposition"), Some("attachment"));
    // A type stored before types were checked goes out as bytes, not as a 500.
    s.app.execute_sql(&format!(
        "UPDATE resources SET content = REPLACE(content, '\"text/html\"', '\"text/html\\u0007x\"') WHERE res_id = '{id}'"
    ));
    let raw = s
        .app
        .request("GET", &format!("Binary/{id}"))
        .as_(&As::doctor())
        .header("Accept", "*/*")
        .send(None);
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert_eq!(raw.header("content-type"), Some("application/octet-stream"));
}

// ---------------------------------------------------------------- links and ids

#[test]
fn links_never_come_from_forwarded_headers() {
    let s = spaces();
    let reply = s
        .app
        .request(
            "GET",
            &format!("DocumentReference?patient={}&_count=1", s.a),
        )
        .as_(&As::doctor())
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Proto", "javascript")
        .header("Forwarded", "host=evil.example;proto=javascript")
        .send(None);
    assert_eq!(reply.status, 200);
    assert!(!reply.body.contains("evil.example"), "{}", reply.body);
    assert!(!reply.body.contains("javascript"), "{}", reply.body);
    assert!(reply.body.contains(&s.app.base), "{}", reply.body);
}

#[test]
fn ids_follow_the_fhir_grammar_and_a_url_can_carry_them() {
    let s = spaces();
    for id in ["..", ".", "a b", "x".repeat(65).as_str()] {
        let bundle = json!({
            "resourceType": "Bundle", "type": "batch",
            "entry": [{ "resource": { "resourceType": "Patient", "id": id,
                                      "identifier": [{ "system": INS, "value": nir() }],
                                      "name": [{ "family": "X" }], "birthDate": "1990-01-01" },
                        "request": { "method": "PUT", "url": format!("Patient/{id}") } }]
        });
        let reply = s.app.post("", &As::System, &bundle);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let status = reply.json()["entry"][0]["response"]["status"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(status.starts_with("400"), "{id:?}: {status}");
    }
}

impl Spaces {
    fn patient_token(&self) -> As {
        As::Patient(self.a.clone())
    }

    /// Two documents of A by the médecin traitant: one awaiting its announcement
    /// (R-PAT-1), one hidden from representatives (R-PAT-5).
    fn hidden_from_holders(&self) -> (String, String) {
        let pending = self.app.create(
            &As::doctor(),
            &labelled_document(&self.a, "11502-2", "2024-03-01", "INVISIBLE_PATIENT"),
        );
        let from_parents = self.app.create(
            &As::doctor(),
            &labelled_document(
                &self.a,
                "11502-2",
                "2024-03-02",
                "INVISIBLE_REPRESENTANTS_LEGAUX",
            ),
        );
        (pending, from_parents)
    }
}

// ---------------------------------------------------------------- one text, one meaning

#[test]
fn r_acc_3_a_document_names_one_subject_whatever_the_reader() {
    let s = spaces();
    // Two `reference` members: a reader keeping the first sees a document of B, the
    // rules would index the last (A). Refused, nothing stored.
    let body = format!(
        r#"{{"resourceType":"DocumentReference","status":"current",
            "type":{{"coding":[{{"system":"http://loinc.org","code":"11488-4"}}]}},
            "subject":{{"reference":"Patient/{}","reference":"Patient/{}"}},
            "content":[{{"attachment":{{"contentType":"application/pdf","data":"JVBERi0xLjQK"}}}}]}}"#,
        s.b, s.a
    );
    let before = s.app.data_rows();
    let reply = s
        .app
        .request("POST", "DocumentReference")
        .as_(&As::doctor())
        .fhir()
        .send(Some(body));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("appears twice"), "{}", reply.body);
    let mut control = patient(&nir(), "Ma\u{0}rtin", "Claire", "1980-01-01");
    control["identifier"][0]["system"] = json!(INS);
    assert_eq!(s.app.post("Patient", &As::System, &control).status, 400);
    assert_eq!(s.app.data_rows(), before);
}

#[test]
fn a_search_naming_no_patient_finds_nothing_on_every_backend() {
    let s = spaces();
    for query in [
        "DocumentReference?patient.identifier=0".to_owned(),
        "Consent?patient.identifier=x|y".to_owned(),
        "AuditEvent?patient.identifier=x|y".to_owned(),
        format!("DocumentReference?patient={}&patient=0", s.a),
    ] {
        let reply = s.app.get(&query, &As::doctor());
        assert_eq!(reply.status, 200, "{query}: {}", reply.body);
        assert!(reply.json()["entry"].is_null(), "{query}: {}", reply.body);
    }
    for path in ["DocumentReference/%00", "DocumentReference/%00/_history"] {
        assert_eq!(s.app.get(path, &As::doctor()).status, 404, "{path}");
    }
    assert_eq!(
        s.app.delete("DocumentReference/%00", &As::doctor()).status,
        404
    );
}

// ---------------------------------------------------------------- what an attacker found

#[test]
fn r_pat_1_a_document_of_ones_own_pointing_at_hidden_content_opens_nothing() {
    let s = spaces();
    s.app
        .create(&s.patient_token(), &permit_professional(&s.a, COLLEAGUE));
    let binary = s.app.create(
        &As::doctor(),
        &json!({ "resourceType": "Binary", "contentType": "text/plain", "data": STANDARD.encode("pas encore annoncé"),
                 "securityContext": { "reference": format!("Patient/{}", s.a) } }),
    );
    let mut hidden = labelled_document(&s.a, "68599-0", "2024-07-01", "INVISIBLE_PATIENT");
    hidden["securityLabel"][0]["coding"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument", "code": "MASQUE_PS" }));
    hidden["content"] = json!([{ "attachment": { "contentType": "text/plain", "url": format!("Binary/{binary}") } }]);
    s.app.create(&As::doctor(), &hidden);
    // Each deposits, in the same space, a document of their own pointing at it.
    let pointer = |category: &str| {
        let mut own = document(&s.a, "11488-4", "2024-07-02");
        own["category"][0]["coding"][0]["code"] = json!(category);
        own["content"] = json!([{ "attachment": { "contentType": "text/plain", "url": format!("Binary/{binary}") } }]);
        own
    };
    for (who, category) in [
        (s.patient_token(), "90"),
        (doctor(COLLEAGUE), "10"),
        (
            As::professional(STRANGER, "10", None, Some("bris_de_glace"), Some("urgence")),
            "10",
        ),
    ] {
        assert_eq!(
            s.app
                .post("DocumentReference", &who, &pointer(category))
                .status,
            201
        );
        let reply = s.app.get(&format!("Binary/{binary}"), &who);
        assert_eq!(reply.status, 404, "{who:?}: {}", reply.body);
        assert!(!reply.body.contains("annonc"));
    }
    assert_eq!(
        s.app.get(&format!("Binary/{binary}"), &As::doctor()).status,
        200
    );
}

#[test]
fn a_hidden_resource_answers_word_for_word_as_a_missing_one() {
    let s = spaces();
    let dentist_reply = s
        .app
        .get(&format!("DocumentReference/{}", s.psychiatric), &{
            s.app
                .create(&s.patient_token(), &permit_professional(&s.a, COLLEAGUE));
            dentist()
        });
    let missing = s.app.get("DocumentReference/no-such-document", &dentist());
    let strip = |reply: &Reply| {
        reply
            .body
            .replace(&s.psychiatric, "ID")
            .replace("no-such-document", "ID")
    };
    assert_eq!(dentist_reply.status, 404);
    assert_eq!(strip(&dentist_reply), strip(&missing));
    assert_eq!(dentist_reply.traced_rules, vec!["R-ACC-6".to_owned()]);
    // A stranger to the space: a document by id is not known either.
    let stranger = s.app.get(
        &format!("DocumentReference/{}", s.consultation),
        &doctor(STRANGER),
    );
    assert_eq!(
        strip(&stranger).replace(&s.consultation, "ID"),
        strip(&missing)
    );
    for (path, version) in [(&s.psychiatric, 1), (&s.psychiatric, 9)] {
        let reply = s.app.get(
            &format!("DocumentReference/{path}/_history/{version}"),
            &dentist(),
        );
        assert_eq!(reply.status, 404);
        assert!(!reply.body.contains("rule"), "{}", reply.body);
    }
}

#[test]
fn r_pat_2_only_the_patient_unmasks_a_document() {
    let s = spaces();
    let path = format!("DocumentReference/{}", s.consultation);
    let mask = mask_patch();
    assert_eq!(patch(&s.app, &path, &s.patient_token(), &mask).status, 200);
    // The author may neither remove the label nor leave it out of a correction.
    assert_refused(
        &patch(
            &s.app,
            &path,
            &As::doctor(),
            &json!([{ "op": "remove", "path": "/securityLabel" }]),
        ),
        403,
        "R-PAT-2",
    );
    let mut corrected = s.app.get(&path, &As::doctor()).json();
    corrected.as_object_mut().unwrap().remove("securityLabel");
    corrected["description"] = json!("corrigé");
    assert_refused(&s.app.put(&path, &As::doctor(), &corrected), 403, "R-PAT-2");
    // The patient unmasks.
    assert_eq!(
        patch(
            &s.app,
            &path,
            &s.patient_token(),
            &json!([{ "op": "remove", "path": "/securityLabel" }])
        )
        .status,
        200
    );
}

#[test]
fn r_acc_2_a_deny_the_rules_cannot_apply_is_refused() {
    let s = spaces();
    let deny = |actor: Value| {
        let mut consent = block_professional(&s.a, COLLEAGUE);
        consent["provision"]["actor"][0]["reference"] = actor;
        consent
    };
    for actor in [
        json!({ "reference": format!("Practitioner/{COLLEAGUE}") }),
        json!({ "identifier": { "value": COLLEAGUE } }),
        json!({ "identifier": { "system": "urn:oid:1.2.250.1.71.4.2.1".to_uppercase(), "value": COLLEAGUE } }),
        json!({ "identifier": { "system": IDNAT_PS, "value": format!(" {COLLEAGUE}") } }),
    ] {
        let reply = s
            .app
            .post("Consent", &s.patient_token(), &deny(actor.clone()));
        assert_eq!(reply.status, 422, "{actor}: {}", reply.body);
    }
    // An authorisation for a while only would be applied for ever.
    let mut for_a_while = permit_professional(&s.a, COLLEAGUE);
    for_a_while["provision"]["period"] = json!({ "end": "2024-01-31" });
    assert_eq!(
        s.app
            .post("Consent", &s.patient_token(), &for_a_while)
            .status,
        422
    );
    let mut nested = permit_professional(&s.a, COLLEAGUE);
    nested["provision"]["provision"] = json!([{ "type": "deny" }]);
    assert_eq!(
        s.app.post("Consent", &s.patient_token(), &nested).status,
        422
    );
    // The form the rules apply is stored and enforced.
    assert_eq!(
        s.app
            .post(
                "Consent",
                &s.patient_token(),
                &block_professional(&s.a, COLLEAGUE)
            )
            .status,
        201
    );
}

#[test]
fn r_pat_4_an_event_belongs_to_the_space_it_concerns() {
    let s = spaces();
    // B's holder tries A's document: the event is in A's trace, not in B's.
    let attempt = s
        .app
        .request("GET", &format!("DocumentReference/{}", s.psychiatric))
        .as_(&As::Patient(s.b.clone()))
        .header("X-Request-Id", "b-tries-a")
        .send(None);
    assert_eq!(attempt.status, 404);
    let event = s.app.audit_events("b-tries-a")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let in_trace = |who: &As, patient: &str| {
        let bundle = s
            .app
            .get(
                &format!("AuditEvent?patient={patient}&_count=500&_total=accurate"),
                who,
            )
            .json();
        let ids = entry_ids(&bundle);
        assert_eq!(
            bundle["total"].as_u64().unwrap() as usize,
            ids.len(),
            "{bundle}"
        );
        ids.contains(&event)
    };
    assert!(
        in_trace(&s.patient_token(), &s.a),
        "A reads every access to A"
    );
    assert!(
        !in_trace(&As::Patient(s.b.clone()), &s.b),
        "not in B's space"
    );
}

#[test]
fn a_write_is_not_undone_for_the_size_of_its_answer() {
    let s = spaces();
    let mut large = document(&s.a, "11502-2", "2024-08-01");
    large["category"][0]["coding"][0]["code"] = json!("90");
    large["content"][0]["attachment"]["data"] =
        json!(STANDARD.encode(vec![b'%'; 13 * 1024 * 1024]));
    // Past the 16 MiB bound of an answer's bodies, a single resource still goes.
    let reply = s.app.post("DocumentReference", &s.patient_token(), &large);
    assert_eq!(
        reply.status,
        201,
        "{}",
        &reply.body[..reply.body.len().min(300)]
    );
    let id = reply.id();
    let read = s
        .app
        .get(&format!("DocumentReference/{id}"), &s.patient_token());
    assert_eq!(read.status, 200);
    assert!(read.body.len() > 16 * 1024 * 1024);
    // Two of them in one answer are past the bound.
    s.app.post("DocumentReference", &s.patient_token(), &large);
    let page = s.app.get(
        &format!("DocumentReference?patient={}&_count=50", s.a),
        &s.patient_token(),
    );
    assert_eq!(
        page.status,
        413,
        "{}",
        &page.body[..page.body.len().min(300)]
    );
}

/// Rewrites in place the type coding (LOINC 11488-4) of a stored document to the
/// system `system` (`None`: no system), as a writer that checked no type would have
/// stored it: in its index, its current row and its stored versions.
fn rewrite_type_system(app: &TestApp, id: &str, system: Option<&str>) {
    let sql_system = system.map_or("NULL".to_owned(), |system| format!("'{system}'"));
    let coding = match system {
        Some(system) => format!("\"system\":\"{system}\",\"code\":\"11488-4\""),
        None => "\"code\":\"11488-4\"".to_owned(),
    };
    app.execute_sql(&format!(
        "UPDATE search_token SET system = {sql_system} WHERE param = 'type' AND resource_pk = (SELECT pk FROM resources WHERE res_id = '{id}')"
    ));
    for table in ["resources", "resource_versions"] {
        app.execute_sql(&format!(
            "UPDATE {table} SET content = REPLACE(content, '\"system\":\"http://loinc.org\",\"code\":\"11488-4\"', '{coding}') WHERE res_id = '{id}'"
        ));
    }
    // The type its compartment rows carry (`resources::sole_document_type`): none
    // without a system.
    let sql_code = if system.is_some() {
        "'11488-4'"
    } else {
        "NULL"
    };
    app.execute_sql(&format!(
        "UPDATE resource_compartment SET doc_system = {sql_system}, doc_code = {sql_code} \
         WHERE resource_pk = (SELECT pk FROM resources WHERE res_id = '{id}')"
    ));
}

#[test]
fn r_acc_6_a_type_is_written_the_one_way_the_matrix_reads_it() {
    let s = spaces();
    s.app
        .create(&s.patient_token(), &permit_professional(&s.a, COLLEAGUE));
    for coding in [
        json!({ "system": "urn:oid:2.16.840.1.113883.6.1", "code": "68599-0" }),
        json!({ "system": "http://loinc.org/", "code": "68599-0" }),
        json!({ "system": "https://loinc.org", "code": "68599-0" }),
        json!({ "system": "urn:oid:1.2.250.1.213.1.1.4.12", "code": "EXPPAT_3" }),
        json!({ "system": "http://example.org/types", "code": "68599-0" }),
        json!({ "system": "http://loinc.org", "code": " 68599-0" }),
        json!({ "system": "http://loinc.org", "code": "68599-0\u{200b}" }),
        json!({ "system": "http://loinc.org", "code": "６８５９９-０" }),
        json!({ "system": "http://loinc.org", "code": "68599-O" }),
        json!({ "system": "http://loinc.org", "code": "068599-0" }),
        json!({ "system": "http://loinc.org", "code": "68599-1" }),
        json!({ "system": "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire", "code": "EXPPAT_\u{ff13}" }),
        json!({ "code": "68599-0" }),
    ] {
        let stored = s.app.data_rows();
        let mut body = document(&s.a, "68599-0", "2024-09-01");
        body["type"] = json!({ "coding": [coding.clone()] });
        let reply = s.app.post("DocumentReference", &As::doctor(), &body);
        assert_eq!(reply.status, 422, "{coding}: {}", reply.body);
        assert_eq!(reply.json()["resourceType"], "OperationOutcome");
        assert_eq!(s.app.data_rows(), stored, "{coding}: nothing stored");
    }
    let mut text_only = document(&s.a, "68599-0", "2024-09-01");
    text_only["type"] = json!({ "text": "Synthèse psychiatrique" });
    assert_eq!(
        s.app
            .post("DocumentReference", &As::doctor(), &text_only)
            .status,
        422
    );
    // A document stored before types were checked, with a type the matrix cannot
    // read: refused to a profession the matrix opens "all but…", by read and search.
    let legacy = s
        .app
        .create(&As::doctor(), &document(&s.a, "11488-4", "2024-09-02"));
    assert_eq!(
        s.app
            .get(&format!("DocumentReference/{legacy}"), &dentist())
            .status,
        200
    );
    rewrite_type_system(&s.app, &legacy, None);
    // Refused by id, by version and in its history, left out of an include, and
    // left out of a search whose total stays exact.
    let hidden_from = |who: &As, id: &str| {
        for path in [
            format!("DocumentReference/{id}"),
            format!("DocumentReference/{id}/_history/1"),
        ] {
            assert_refused(&s.app.get(&path, who), 404, "R-ACC-6");
        }
        let history = s.app.get(&format!("DocumentReference/{id}/_history"), who);
        match history.status {
            404 => assert_refused(&history, 404, "R-ACC-6"),
            _ => assert!(entry_ids(&history.json()).is_empty(), "{}", history.body),
        }
        let included = s.app.get(
            &format!("Patient?_id={}&_revinclude=DocumentReference:patient", s.a),
            who,
        );
        assert_eq!(included.status, 200, "{}", included.body);
        assert!(!included.body.contains(id), "{}", included.body);
        let search = s
            .app
            .get(
                &format!("DocumentReference?patient={}&_total=accurate", s.a),
                who,
            )
            .json();
        assert!(!entry_ids(&search).contains(&id.to_owned()), "{search}");
        assert_eq!(
            search["total"].as_u64().unwrap() as usize,
            entry_ids(&search).len()
        );
    };
    hidden_from(&dentist(), &legacy);
    // Nor one stored with its system written another way: the matrix excludes by
    // system and code, and cannot tell what another spelling names (here an
    // `https` LOINC, which would pass an exclusion of `http://loinc.org|80788-3`).
    let respelled = s
        .app
        .create(&As::doctor(), &document(&s.a, "11488-4", "2024-09-03"));
    let read = |who: &As| {
        s.app
            .get(&format!("DocumentReference/{respelled}"), who)
            .status
    };
    assert_eq!(read(&dentist()), 200);
    assert_eq!(read(&doctor(COLLEAGUE)), 200);
    rewrite_type_system(&s.app, &respelled, Some("https://loinc.org"));
    for who in [dentist(), doctor(COLLEAGUE)] {
        hidden_from(&who, &respelled);
    }
    // The holder still reads it (the matrix is the professionals').
    assert_eq!(read(&s.patient_token()), 200);
}

/// A space's search decides a document's type on its compartment row (its one
/// coding with a system), or probes its codings when it has none or several. Every
/// write that brings a type kept from the dentist into a space the dentist reads all
/// of keeps that row right: a new document, one in a transaction, a document moved
/// in, a type changed by update, a second coding added. Each is then left out of
/// the dentist's page and exact total, and counted for the médecin traitant.
#[test]
fn r_acc_6_every_write_into_a_space_is_decided_by_its_type_in_the_search() {
    let s = spaces();
    let c = s.app.create(
        &As::System,
        &patient(&nir(), "Petit", "Jeanne", "1980-01-01"),
    );
    s.app
        .create(&As::Patient(c.clone()), &permit_professional(&c, COLLEAGUE));
    let consultation = s
        .app
        .create(&As::doctor(), &document(&c, "11488-4", "2024-03-01"));
    // The page with its exact total; the count alone and the pages one by one,
    // through their `next` links, tell the same.
    let searched = |who: &As| -> (Vec<String>, Value) {
        let bundle = s
            .app
            .get(
                &format!("DocumentReference?patient={c}&_total=accurate"),
                who,
            )
            .json();
        let (ids, total) = (entry_ids(&bundle), bundle["total"].clone());
        let counted = s
            .app
            .get(
                &format!("DocumentReference?patient={c}&_summary=count"),
                who,
            )
            .json();
        assert_eq!(counted["total"], total, "{counted}");
        let mut paged = Vec::new();
        let mut url = format!("DocumentReference?patient={c}&_count=1&_total=accurate");
        loop {
            let page = s.app.get(&url, who).json();
            assert_eq!(page["total"], total, "{page}");
            paged.extend(entry_ids(&page));
            match crate::support::next_link(&page) {
                Some(next) => url = next,
                None => break,
            }
        }
        let (mut listed, mut shown) = (paged, ids.clone());
        listed.sort();
        shown.sort();
        assert_eq!(listed, shown, "page by page");
        (ids, total)
    };
    // Each step starts from a space the dentist may read all of.
    let settled = || {
        assert_eq!(searched(&dentist()), (vec![consultation.clone()], json!(1)));
    };
    let kept_from_dentist = |added: &str| {
        assert_eq!(
            searched(&dentist()),
            (vec![consultation.clone()], json!(1)),
            "{added}"
        );
        let (ids, total) = searched(&As::doctor());
        assert!(ids.contains(&added.to_owned()), "{added}");
        assert_eq!(total, json!(2), "{added}");
        let gone = s
            .app
            .delete(&format!("DocumentReference/{added}"), &As::doctor());
        assert!(gone.status < 300, "{}", gone.body);
    };

    // A new document.
    settled();
    let created = s
        .app
        .create(&As::doctor(), &document(&c, "68599-0", "2024-03-02"));
    kept_from_dentist(&created);

    // In a transaction.
    settled();
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [{ "resource": document(&c, "68599-0", "2024-03-03"),
                    "request": { "method": "POST", "url": "DocumentReference" } }]
    });
    let reply = s.app.post("", &As::doctor(), &bundle);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let in_transaction = reply.json()["entry"][0]["response"]["location"]
        .as_str()
        .and_then(|location| location.split('/').nth(1))
        .expect("the document's location")
        .to_owned();
    kept_from_dentist(&in_transaction);

    // Moved in from another space of the same médecin traitant.
    settled();
    let path = format!("DocumentReference/{}", s.psychiatric);
    let mut moved = s.app.get(&path, &As::doctor()).json();
    moved["subject"] = json!({ "reference": format!("Patient/{c}") });
    let reply = s.app.put(&path, &As::doctor(), &moved);
    assert_eq!(reply.status, 200, "{}", reply.body);
    kept_from_dentist(&s.psychiatric);

    // A stored document's type changed by update (a PATCH may not change it).
    let other = s
        .app
        .create(&As::doctor(), &document(&c, "11488-4", "2024-03-04"));
    let both = |ids: Vec<String>| {
        let mut ids = ids;
        ids.sort();
        ids
    };
    let mut expected = both(vec![consultation.clone(), other.clone()]);
    assert_eq!(both(searched(&dentist()).0), expected);
    let path = format!("DocumentReference/{other}");
    let mut changed = s.app.get(&path, &As::doctor()).json();
    changed["type"]["coding"][0]["code"] = json!("68599-0");
    assert_eq!(s.app.put(&path, &As::doctor(), &changed).status, 200);
    expected.retain(|id| *id != other);
    assert_eq!(
        searched(&dentist()),
        (expected.clone(), json!(1)),
        "changed by update"
    );
    let gone = s.app.delete(&path, &As::doctor());
    assert!(gone.status < 300, "{}", gone.body);

    // Two codings with a system, one kept from dentists: probed, and left out
    // whichever comes first; one coding without a system beside a kept one, alike.
    for codings in [
        json!([{ "system": "http://loinc.org", "code": "11488-4" },
               { "system": "http://loinc.org", "code": "68599-0" }]),
        json!([{ "system": "http://loinc.org", "code": "68599-0" },
               { "system": "http://loinc.org", "code": "11488-4" }]),
        json!([{ "code": "11488-4" }, { "system": "http://loinc.org", "code": "68599-0" }]),
    ] {
        settled();
        let mut body = document(&c, "11488-4", "2024-03-05");
        body["type"] = json!({ "coding": codings });
        let reply = s.app.post("DocumentReference", &As::doctor(), &body);
        if reply.status == 422 {
            // A coding without a system is refused at write (R-ACC-6's one way).
            assert!(codings.to_string().contains("{\"code\""), "{}", reply.body);
            continue;
        }
        assert_eq!(reply.status, 201, "{codings}: {}", reply.body);
        kept_from_dentist(&reply.id());
    }
}

/// R-ACC-6: the matrix is data, replaceable without a rebuild. A matrix that writes a
/// type of another code system has documents of that type stored and decided by it
/// (the write accepts the systems of the matrix in force, not a fixed list), and a
/// type of a system it does not write refused at write, naming the ones it reads.
#[test]
fn r_acc_6_a_replaced_matrix_reads_the_types_of_its_own_systems() {
    let local = "https://types.example.org/local";
    let local_type = format!("{local}|LOCAL-1");
    let mut matrix: Value =
        serde_json::from_str(include_str!("../../fhir-profiles/habilitation-matrix.json"))
            .expect("the shipped matrix");
    matrix["documentTypes"][&local_type] = json!("Compte rendu d'un usage local");
    for rule in matrix["rules"].as_array_mut().expect("rules") {
        // Kept from dentists, like the shipped directives anticipées.
        if rule["profession"] == "40" {
            rule["types"]
                .as_array_mut()
                .expect("types")
                .push(json!(local_type));
        }
    }
    let path = crate::support::temp_dir("matrix").join("habilitation-matrix.json");
    std::fs::write(&path, matrix.to_string()).expect("the replaced matrix");
    let app = TestApp::with(|config| config.habilitation_matrix = Some(path.clone()));
    let a = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "2012-05-01"),
    );
    app.create(&As::Patient(a.clone()), &permit_professional(&a, COLLEAGUE));
    let typed = |system: &str, code: &str| {
        let mut body = document(&a, "11488-4", "2024-09-01");
        body["type"] = json!({ "coding": [{ "system": system, "code": code }] });
        body
    };
    let stored = app.create(&As::doctor(), &typed(local, "LOCAL-1"));
    let consultation = app.create(&As::doctor(), &document(&a, "11488-4", "2024-09-02"));
    // A system the matrix does not write: refused, the matrix's systems named.
    let refused = app.post(
        "DocumentReference",
        &As::doctor(),
        &typed("https://types.example.org/other", "LOCAL-1"),
    );
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains(local), "{}", refused.body);
    // Decided by the matrix: the médecin traitant and another médecin read it, the
    // dentist, authorised on the space, does not, by read or by search.
    app.create(&As::Patient(a.clone()), &permit_professional(&a, STRANGER));
    for who in [As::doctor(), doctor(STRANGER)] {
        let read = app.get(&format!("DocumentReference/{stored}"), &who);
        assert_eq!(read.status, 200, "{}", read.body);
    }
    for path in [
        format!("DocumentReference/{stored}"),
        format!("DocumentReference/{stored}/_history/1"),
    ] {
        assert_refused(&app.get(&path, &dentist()), 404, "R-ACC-6");
    }
    let included = |who: &As| {
        app.get(
            &format!("Patient?_id={a}&_revinclude=DocumentReference:patient"),
            who,
        )
    };
    let to_dentist = included(&dentist());
    assert_eq!(to_dentist.status, 200, "{}", to_dentist.body);
    assert!(!to_dentist.body.contains(&stored), "{}", to_dentist.body);
    assert!(included(&As::doctor()).body.contains(&stored));
    let search = app
        .get(
            &format!("DocumentReference?patient={a}&_total=accurate"),
            &dentist(),
        )
        .json();
    assert_eq!(entry_ids(&search), vec![consultation.clone()], "{search}");
    assert_eq!(search["total"], 1, "{search}");
    let search = app
        .get(
            &format!("DocumentReference?patient={a}&_total=accurate"),
            &As::doctor(),
        )
        .json();
    assert_eq!(search["total"], 2, "{search}");
}

#[test]
fn r_life_1_one_space_per_person() {
    let s = spaces();
    let taken =
        s.app.get(&format!("Patient/{}", s.a), &As::System).json()["identifier"][0]["value"]
            .as_str()
            .unwrap()
            .to_owned();
    let twin = patient(&taken, "Martin", "Claire", "2012-05-01");
    let reply = s.app.post("Patient", &As::System, &twin);
    assert_eq!(reply.status, 409, "{}", reply.body);
    // Nor by moving another space's identity onto it.
    let mut b = s.app.get(&format!("Patient/{}", s.b), &As::System).json();
    b["identifier"][0]["value"] = json!(taken);
    assert_eq!(
        s.app
            .put(&format!("Patient/{}", s.b), &As::System, &b)
            .status,
        409
    );
    let found = s
        .app
        .get(&format!("Patient?identifier={INS}|{taken}"), &As::doctor())
        .json();
    assert_eq!(found["entry"].as_array().unwrap().len(), 1);
    // The same Patient updated keeps its INS.
    let mut a = s.app.get(&format!("Patient/{}", s.a), &As::System).json();
    a["name"][0]["given"] = json!(["Clara"]);
    assert_eq!(
        s.app
            .put(&format!("Patient/{}", s.a), &As::System, &a)
            .status,
        200
    );
}

#[test]
fn r_acc_4_and_r_acc_5_emergency_modes_take_what_they_say() {
    let s = spaces();
    let read = |who: &As| {
        s.app
            .get(&format!("DocumentReference?patient={}", s.a), who)
    };
    // A reason of nothing but a zero-width space is no reason.
    let silent = As::professional(
        STRANGER,
        "10",
        None,
        Some("bris_de_glace"),
        Some("\u{200b} "),
    );
    assert_refused(&read(&silent), 403, "R-ACC-4");
    // The SAMU regulating physician is a médecin.
    let nurse = As::professional(STRANGER, "60", None, Some("centre_15"), None);
    assert_refused(&read(&nurse), 403, "R-ACC-5");
    let physician = As::professional(STRANGER, "10", None, Some("centre_15"), None);
    assert_eq!(read(&physician).status, 200);
    // A token must say who it is.
    let mut claims = base_claims("professional", "");
    claims["profession"] = json!("10");
    assert_eq!(read(&As::Token(sign(&keys().rsa, &claims))).status, 401);
}

#[test]
fn r_pat_4_the_trace_names_no_resource_the_holder_may_not_see() {
    let s = spaces();
    let (pending, from_parents) = s.hidden_from_holders();
    s.app
        .get(&format!("DocumentReference/{pending}"), &As::doctor());
    s.app
        .get(&format!("DocumentReference/{from_parents}"), &As::doctor());
    let trace = |who: &As| {
        let reply = s
            .app
            .get(&format!("AuditEvent?patient={}&_count=500", s.a), who);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    };
    let patient_view = trace(&s.patient_token());
    assert!(
        !patient_view.contains(&pending),
        "the patient's trace names {pending}"
    );
    assert!(patient_view.contains(&from_parents));
    assert!(patient_view.contains("REDACTED"));
    let parent_view = trace(&As::Representative(s.a.clone()));
    assert!(!parent_view.contains(&pending) && !parent_view.contains(&from_parents));
    // Every access is still there, and the médecin traitant's trace names everything.
    let events = |body: &str| {
        serde_json::from_str::<Value>(body).unwrap()["entry"]
            .as_array()
            .unwrap()
            .len()
    };
    let gp_view = trace(&As::doctor());
    assert!(gp_view.contains(&pending) && gp_view.contains(&from_parents));
    assert!(events(&patient_view) >= 4);
}

// ---------------------------------------------------------------- second round

#[test]
fn a_professionals_own_trace_tells_no_more_than_the_answer_they_got() {
    let s = spaces();
    let stranger = doctor(STRANGER);
    for (request_id, id) in [
        ("probe-hidden", s.psychiatric.as_str()),
        ("probe-none", "no-such-document"),
    ] {
        let reply = s
            .app
            .request("GET", &format!("DocumentReference/{id}"))
            .as_(&stranger)
            .header("X-Request-Id", request_id)
            .send(None);
        assert_eq!(reply.status, 404);
    }
    let own = s.app.get("AuditEvent?_count=100", &stranger).json();
    let text = own.to_string();
    assert!(
        !text.contains(&format!("Patient/{}", s.a)),
        "the space: {text}"
    );
    assert!(!text.contains("rule R-ACC"), "the rule: {text}");
    // The médecin traitant of the space reads the probe with the rule that refused
    // it (R-ACC-11), the details of its outcome being the requester's.
    let gp = s
        .app
        .get(
            &format!("AuditEvent?patient={}&_count=200", s.a),
            &As::doctor(),
        )
        .body;
    assert!(gp.contains("\"valueString\":\"R-ACC-3\""), "{gp}");
    assert!(gp.contains("\"outcomeDesc\":\"404\""), "{gp}");
}

#[test]
fn r_pat_1_the_holder_learns_nothing_of_a_hidden_document_from_the_trace() {
    let s = spaces();
    let pending = s.app.create(
        &As::doctor(),
        &labelled_document(&s.a, "11502-2", "2024-10-01", "INVISIBLE_PATIENT"),
    );
    // A professional refused it: the holder sees the attempt, not the document.
    s.app
        .get(&format!("DocumentReference/{pending}"), &doctor(STRANGER));
    // The holder's own probe leaves nothing in their trace.
    let count = |query: &str| {
        s.app
            .get(
                &format!("AuditEvent?patient={}&{query}&_summary=count", s.a),
                &s.patient_token(),
            )
            .json()["total"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        s.app
            .get(&format!("DocumentReference/{pending}"), &s.patient_token())
            .status,
        404
    );
    assert_eq!(
        s.app
            .get("DocumentReference/no-such-document", &s.patient_token())
            .status,
        404
    );
    let trace = s
        .app
        .get(
            &format!("AuditEvent?patient={}&_count=500", s.a),
            &s.patient_token(),
        )
        .body;
    assert!(!trace.contains(&pending), "{trace}");
    // Searching the trace by the hidden document counts nothing.
    assert_eq!(count(&format!("entity=DocumentReference/{pending}")), 0);
    assert_eq!(count("entity=DocumentReference/no-such-document"), 0);
    assert_eq!(
        s.app
            .get(
                &format!("AuditEvent?patient={}&entity:DocumentReference.security-label=INVISIBLE_PATIENT", s.a),
                &s.patient_token()
            )
            .status,
        400
    );
}

#[test]
fn r_pat_2_deleting_and_writing_again_does_not_unmask() {
    let s = spaces();
    let path = format!("DocumentReference/{}", s.consultation);
    let mask = mask_patch();
    let mut unmasked = s.app.get(&path, &As::doctor()).json();
    assert_eq!(patch(&s.app, &path, &s.patient_token(), &mask).status, 200);
    assert_eq!(s.app.delete(&path, &As::doctor()).status, 204);
    unmasked.as_object_mut().unwrap().remove("meta");
    assert_refused(&s.app.put(&path, &As::doctor(), &unmasked), 403, "R-PAT-2");
}

/// R-PAT-2, R-MHD-3: a replacement is no way around a masking. The author of a
/// document the patient masked, who may not lift the masking by an update, deposits
/// a replacement without the label: the replacement stays masked, and its masking is
/// still the patient's. A professional who masked a document themselves lifts it by
/// a replacement, as by an update.
#[test]
fn r_pat_2_replacing_a_masked_document_keeps_the_patients_masking() {
    let s = spaces();
    s.app
        .create(&s.patient_token(), &permit_professional(&s.a, COLLEAGUE));
    let replacement = |replaced: &str, date: &str| {
        let mut body = document(&s.a, "11488-4", date);
        body["relatesTo"] = json!([{ "code": "replaces", "target": { "reference": format!("DocumentReference/{replaced}") } }]);
        body
    };
    assert_eq!(
        s.app
            .get(&format!("DocumentReference/{}", s.consultation), &dentist())
            .status,
        200,
        "the dentist reads the report before it is masked"
    );
    let path = format!("DocumentReference/{}", s.consultation);
    assert_eq!(
        patch(&s.app, &path, &s.patient_token(), &mask_patch()).status,
        200
    );
    let reply = s.app.post(
        "DocumentReference",
        &As::doctor(),
        &replacement(&s.consultation, "2024-02-01"),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let kept = reply.id();
    assert!(
        reply.body.contains("MASQUE_PS"),
        "the replacement carries the masking: {}",
        reply.body
    );
    let kept_path = format!("DocumentReference/{kept}");
    assert_eq!(s.app.get(&kept_path, &dentist()).status, 404);
    let found = s
        .app
        .get(&format!("DocumentReference?patient={}", s.a), &dentist());
    assert!(!found.body.contains(&kept), "{}", found.body);
    // Its masking is the patient's: the author may not lift it; the patient does.
    assert_refused(
        &patch(
            &s.app,
            &kept_path,
            &As::doctor(),
            &json!([{ "op": "remove", "path": "/securityLabel" }]),
        ),
        403,
        "R-PAT-2",
    );
    assert_eq!(
        patch(
            &s.app,
            &kept_path,
            &s.patient_token(),
            &json!([{ "op": "remove", "path": "/securityLabel" }])
        )
        .status,
        200
    );
    assert_eq!(s.app.get(&kept_path, &dentist()).status, 200);
    // A replacement that carries a masking of its own keeps the patient's as theirs:
    // its depositor does not become the one who may lift it.
    assert_eq!(
        patch(&s.app, &kept_path, &s.patient_token(), &mask_patch()).status,
        200
    );
    let mut labelled = replacement(&kept, "2024-02-03");
    labelled["securityLabel"] = json!([{ "coding": [{ "system": "urn:x", "code": "MASQUE_PS" }] }]);
    let reply = s.app.post("DocumentReference", &As::doctor(), &labelled);
    assert_eq!(reply.status, 201, "{}", reply.body);
    let labelled_path = format!("DocumentReference/{}", reply.id());
    assert_refused(
        &patch(
            &s.app,
            &labelled_path,
            &As::doctor(),
            &json!([{ "op": "remove", "path": "/securityLabel" }]),
        ),
        403,
        "R-PAT-2",
    );
    assert_eq!(s.app.get(&labelled_path, &dentist()).status, 404);
    // The médecin traitant masked `masked` at its deposit: their replacement lifts it.
    let reply = s.app.post(
        "DocumentReference",
        &As::doctor(),
        &replacement(&s.masked, "2024-02-02"),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert!(!reply.body.contains("MASQUE_PS"), "{}", reply.body);
    assert_eq!(
        s.app
            .get(&format!("DocumentReference/{}", reply.id()), &dentist())
            .status,
        200
    );
}

#[test]
fn r_acc_2_and_r_acc_4_consents_the_rules_would_ignore_are_refused() {
    let s = spaces();
    let mut purposeful_block = block_professional(&s.a, STRANGER);
    purposeful_block["provision"]["purpose"] =
        json!([{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG" }]);
    let mut untyped = block_professional(&s.a, COLLEAGUE);
    untyped["provision"].as_object_mut().unwrap().remove("type");
    let mut other_purpose = crate::support::fixtures::emergency_setting(&s.a, "deny", "BTG");
    other_purpose["provision"]["purpose"][0]["code"] = json!("TREAT");
    let mut modifier = permit_professional(&s.a, COLLEAGUE);
    modifier["modifierExtension"] =
        json!([{ "url": "https://example.org/only-on-sundays", "valueBoolean": true }]);
    for consent in [purposeful_block, untyped, other_purpose, modifier] {
        let reply = s.app.post("Consent", &s.patient_token(), &consent);
        assert_eq!(reply.status, 422, "{consent}: {}", reply.body);
    }
}

#[test]
fn an_if_match_on_a_hidden_resource_answers_as_on_a_missing_one() {
    let s = spaces();
    s.app
        .create(&s.patient_token(), &permit_professional(&s.a, COLLEAGUE));
    let put = |id: &str| {
        let mut body = document(&s.a, "11488-4", "2024-01-01");
        body["id"] = json!(id);
        s.app
            .request("PUT", &format!("DocumentReference/{id}"))
            .as_(&doctor(COLLEAGUE))
            .fhir()
            .header("If-Match", "W/\"1\"")
            .send(Some(body.to_string()))
    };
    let hidden = put(&s.masked);
    let missing = put("no-such-document");
    assert_eq!(hidden.status, 412, "{}", hidden.body);
    assert_eq!(
        hidden.body.replace(&s.masked, "ID"),
        missing.body.replace("no-such-document", "ID")
    );
}

/// Default deny on chains: a chain evaluates its inner criterion on the rows it
/// reaches, in SQL, where their rules do not apply. A document pointing at a masked
/// one (`relatesTo`) or a message pointing at another (`partOf`) must not let anyone
/// query the target's label, type, date or existence (R-ACC-7, R-MSG-5, R-ACC-2):
/// every actor is refused such a chain, typed or not, and a plain search still
/// answers. Only `patient.` and `subject.` chain (into the space's Patient).
#[test]
fn r_acc_7_no_chain_reads_the_rows_it_reaches() {
    let s = spaces();
    let gp = As::doctor();
    let mut pointing = document(&s.a, "11488-4", "2024-02-01");
    pointing["relatesTo"] = json!([{
        "code": "appends",
        "target": {"reference": format!("DocumentReference/{}", s.masked)}
    }]);
    let pointer = s.app.create(&gp, &pointing);
    let message = s.app.create(
        &gp,
        &crate::support::fixtures::communication(&s.a, "2024-03-03T10:00:00+01:00"),
    );
    let mut answer = crate::support::fixtures::communication(&s.a, "2024-03-04T10:00:00+01:00");
    answer["partOf"] = json!([{"reference": format!("Communication/{message}")}]);
    s.app.create(&gp, &answer);
    let a = &s.a;
    for who in [gp.clone(), s.patient_token()] {
        for query in [
            format!("DocumentReference?patient={a}&relatesto.security-label=MASQUE_PS"),
            format!(
                "DocumentReference?patient={a}&relatesto:DocumentReference.security-label=MASQUE_PS"
            ),
            format!("DocumentReference?patient={a}&relatesto:DocumentReference.type=11488-4"),
            format!("DocumentReference?patient={a}&relatesto.status=current&_summary=count"),
            format!("Communication?patient={a}&part-of.sent=2024-03-03"),
            format!("Communication?patient={a}&part-of:Communication._id={message}"),
        ] {
            let reply = s.app.get(&query, &who);
            assert_eq!(reply.status, 400, "{query}: {}", reply.body);
            assert!(
                reply.body.contains("chains into"),
                "{query}: {}",
                reply.body
            );
        }
        // The plain search answers, the pointer among its results.
        let reply = s
            .app
            .get(&format!("DocumentReference?patient={a}&_count=50"), &who);
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.body.contains(&pointer), "{}", reply.body);
    }
}
