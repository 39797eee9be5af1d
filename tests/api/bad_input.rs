//! Bad input (SPEC §9): a clear OperationOutcome with the right status, nothing
//! stored, and the server still serving.

use serde_json::json;

use crate::support::fixtures::{document, nir, patient, permit_professional};
use crate::support::{As, Reply, TestApp};

/// Sends a bad request and checks the answer, that nothing was stored and that the
/// server still answers.
fn refused(app: &TestApp, reply: Reply, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.issue_code(), code, "{}", reply.body);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/fhir+json")
    );
    let outcome = reply.json();
    if let Err(issue) = fhir_check::check("OperationOutcome", &reply.body) {
        panic!("the OperationOutcome is not valid R4: {issue:?}");
    }
    assert_eq!(
        app.get("metadata", &As::Nobody).status,
        200,
        "the server keeps serving"
    );
    outcome
}

#[test]
fn malformed_json_is_a_400() {
    let app = TestApp::new();
    for body in ["{\"resourceType\": \"Patient\",", "[]", "", "null"] {
        let reply = app
            .request("POST", "Patient")
            .as_(&As::System)
            .fhir()
            .send(Some(body.to_owned()));
        refused(&app, reply, 400, "structure");
    }
    assert_eq!(app.data_rows(), 0);
}

#[test]
fn a_wrong_resource_type_is_a_400() {
    let app = TestApp::new();
    let mut body = patient(&nir(), "Martin", "Claire", "1980-05-01");
    body["resourceType"] = json!("Practitioner");
    let outcome = refused(
        &app,
        app.post("Patient", &As::System, &body),
        400,
        "invalid",
    );
    assert_eq!(outcome["issue"][0]["expression"][0], "resourceType");
    assert_eq!(app.data_rows(), 0);
}

#[test]
fn an_invalid_date_names_its_element() {
    let app = TestApp::new();
    let body = patient(&nir(), "Martin", "Claire", "1980-02-30");
    let outcome = refused(
        &app,
        app.post("Patient", &As::System, &body),
        400,
        "structure",
    );
    assert_eq!(outcome["issue"][0]["expression"][0], "Patient.birthDate");
    let mut doc_patient = patient(&nir(), "Martin", "Claire", "1980-02-03");
    doc_patient["gender"] = json!("unknown-value");
    let outcome = refused(
        &app,
        app.post("Patient", &As::System, &doc_patient),
        400,
        "structure",
    );
    assert_eq!(outcome["issue"][0]["expression"][0], "Patient.gender");
    assert_eq!(app.data_rows(), 0);
}

#[test]
fn elements_r4_does_not_define_are_a_400_with_the_path() {
    let app = TestApp::new();
    let mut body = patient(&nir(), "Martin", "Claire", "1980-05-01");
    body["notAnElement"] = json!(true);
    let outcome = refused(
        &app,
        app.post("Patient", &As::System, &body),
        400,
        "structure",
    );
    assert_eq!(outcome["issue"][0]["expression"][0], "Patient.notAnElement");
    let mut body = patient(&nir(), "Martin", "Claire", "1980-05-01");
    body["name"][0]["nickname"] = json!("Clo");
    let outcome = refused(
        &app,
        app.post("Patient", &As::System, &body),
        400,
        "structure",
    );
    assert_eq!(
        outcome["issue"][0]["expression"][0],
        "Patient.name.0.nickname"
    );
    assert_eq!(app.data_rows(), 0);
}

#[test]
fn profile_rules_are_a_422_with_the_path() {
    let app = TestApp::new();
    let outcome = refused(
        &app,
        app.post(
            "Patient",
            &As::System,
            &patient("180057512345600", "Martin", "Claire", "1980-05-01"),
        ),
        422,
        "value",
    );
    assert_eq!(
        outcome["issue"][0]["expression"][0],
        "Patient.identifier[0].value"
    );
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    // Required by base R4 (400), then by SPEC §3 / ANS PDSm (422).
    for (missing, status) in [
        ("status", 400),
        ("content", 400),
        ("type", 422),
        ("subject", 422),
    ] {
        let mut body = document(&patient_id, "11488-4", "2024-01-01");
        body.as_object_mut().unwrap().remove(missing);
        let outcome = refused(
            &app,
            app.post("DocumentReference", &As::doctor(), &body),
            status,
            "required",
        );
        assert_eq!(
            outcome["issue"][0]["expression"][0],
            format!("DocumentReference.{missing}")
        );
    }
    let mut body = document(&patient_id, "11488-4", "2024-01-01");
    body["subject"] = json!({ "reference": "Group/g1" });
    refused(
        &app,
        app.post("DocumentReference", &As::doctor(), &body),
        422,
        "value",
    );
    // FHIR invariant ppc-1: a Consent names its policy or policy rule.
    let mut consent = permit_professional(&patient_id, "810000000001");
    consent.as_object_mut().unwrap().remove("policyRule");
    let outcome = refused(
        &app,
        app.post("Consent", &As::Patient(patient_id.clone()), &consent),
        422,
        "invariant",
    );
    assert_eq!(outcome["issue"][0]["expression"][0], "Consent.policyRule");
    assert_eq!(app.data_rows(), 1);
}

#[test]
fn an_id_mismatch_on_put_is_a_400() {
    let app = TestApp::new();
    let id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let mut body = app.get(&format!("Patient/{id}"), &As::System).json();
    body["id"] = json!("another");
    refused(
        &app,
        app.put(&format!("Patient/{id}"), &As::System, &body),
        400,
        "invalid",
    );
    assert_eq!(app.stored_rows("resource_versions"), 1);
}

#[test]
fn a_body_over_the_limit_is_a_413() {
    let app = TestApp::with(|config| config.max_body_bytes = 2048);
    let mut body = patient(&nir(), "Martin", "Claire", "1980-05-01");
    body["name"][0]["text"] = json!("x".repeat(4096));
    refused(
        &app,
        app.post("Patient", &As::System, &body),
        413,
        "too-long",
    );
    assert_eq!(app.data_rows(), 0);
    app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
}

#[test]
fn a_wrong_media_type_is_a_415() {
    let app = TestApp::new();
    let body = patient(&nir(), "Martin", "Claire", "1980-05-01").to_string();
    for media_type in [
        "application/fhir+xml",
        "text/plain",
        "application/x-www-form-urlencoded",
    ] {
        let reply = app
            .request("POST", "Patient")
            .as_(&As::System)
            .header("Content-Type", media_type)
            .send(Some(body.clone()));
        refused(&app, reply, 415, "not-supported");
    }
    let reply = app
        .request("POST", "Patient")
        .as_(&As::System)
        .send(Some(body));
    refused(&app, reply, 415, "not-supported");
    assert_eq!(app.data_rows(), 0);
}

#[test]
fn xml_is_not_acceptable() {
    let app = TestApp::new();
    let id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    for accept in ["application/fhir+xml", "application/xml", "text/xml"] {
        let reply = app
            .request("GET", &format!("Patient/{id}"))
            .as_(&As::System)
            .header("Accept", accept)
            .send(None);
        refused(&app, reply, 406, "not-supported");
    }
    refused(
        &app,
        app.get(&format!("Patient/{id}?_format=xml"), &As::System),
        406,
        "not-supported",
    );
    let reply = app
        .request("GET", "metadata")
        .header("Accept", "application/fhir+xml")
        .send(None);
    assert_eq!(reply.status, 406);
    let fine = app
        .request("GET", &format!("Patient/{id}"))
        .as_(&As::System)
        .header(
            "Accept",
            "application/fhir+json, application/fhir+xml;q=0.5",
        )
        .send(None);
    assert_eq!(fine.status, 200);
    assert_eq!(
        app.get(&format!("Patient/{id}?_format=json"), &As::System)
            .status,
        200
    );
}

#[test]
fn unknown_types_and_methods() {
    let app = TestApp::new();
    refused(
        &app,
        app.get("Encounter/1", &As::doctor()),
        404,
        "not-found",
    );
    refused(
        &app,
        app.get("Encounter?code=x", &As::doctor()),
        404,
        "not-found",
    );
    refused(
        &app,
        app.get("Binary?_id=1", &As::doctor()),
        405,
        "not-supported",
    );
    refused(
        &app,
        app.request("PATCH", "Patient")
            .as_(&As::System)
            .send(Some("[]".into())),
        405,
        "not-supported",
    );
    refused(
        &app,
        app.get("no/such/path/here/at/all", &As::doctor()),
        404,
        "not-found",
    );
}

#[test]
fn bad_bundles_are_refused_whole() {
    let app = TestApp::new();
    refused(
        &app,
        app.post(
            "",
            &As::System,
            &json!({ "resourceType": "Bundle", "type": "collection" }),
        ),
        400,
        "invalid",
    );
    refused(
        &app,
        app.post("", &As::System, &json!({ "resourceType": "Patient" })),
        400,
        "invalid",
    );
    let bad_method = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [{ "request": { "method": "HEAD", "url": "Patient" } }] });
    refused(&app, app.post("", &As::System, &bad_method), 400, "invalid");
    assert_eq!(app.data_rows(), 0);
}

#[test]
fn an_extension_of_the_wrong_shape_is_refused() {
    let app = TestApp::new();
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    for (extension, code) in [
        (
            json!({ "url": "http://example.org/x", "valueString": "a", "foo": 1 }),
            "structure",
        ),
        (
            json!({ "url": "http://example.org/x", "valueString": "a", "valueBoolean": true }),
            "structure",
        ),
        (
            json!({ "url": "http://example.org/x", "valueString": "a", "extension": [{ "url": "y", "valueString": "b" }] }),
            "structure",
        ),
        (json!({ "valueString": "a" }), "required"),
        (
            json!({ "url": "http://example.org/x", "extension": [{ "url": "y", "valueString": "b", "bar": [1] }] }),
            "structure",
        ),
    ] {
        let mut body = document(&patient_id, "11488-4", "2024-01-01");
        body["extension"] = json!([extension]);
        let reply = app.post("DocumentReference", &As::doctor(), &body);
        refused(&app, reply, 400, code);
    }
    let mut body = document(&patient_id, "11488-4", "2024-01-01");
    body["extension"] = json!([{ "url": "http://example.org/x", "extension": [{ "url": "y", "valueString": "b" }] }]);
    assert_eq!(
        app.post("DocumentReference", &As::doctor(), &body).status,
        201
    );
}

#[test]
fn a_visibility_code_in_a_document_s_meta_security_is_refused_where_it_would_not_apply() {
    let app = TestApp::new();
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let mut masked = document(&patient_id, "11488-4", "2024-01-01");
    masked["meta"] = json!({ "security": [{
        "system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument",
        "code": "MASQUE_PS"
    }] });
    let outcome = refused(
        &app,
        app.post("DocumentReference", &As::doctor(), &masked),
        422,
        "value",
    );
    assert!(outcome.to_string().contains("securityLabel"), "{outcome}");
}
