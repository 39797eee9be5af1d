//! `GET /metadata` says exactly what the server does.

use crate::support::{As, TestApp};

#[test]
fn the_capability_statement_is_r4_and_lists_what_is_served() {
    let app = TestApp::new();
    let reply = app.get("metadata", &As::Nobody);
    assert_eq!(reply.status, 200);
    fhir_check::check("CapabilityStatement", &reply.body).expect("a valid R4 CapabilityStatement");
    let statement = reply.json();
    assert_eq!(statement["fhirVersion"], "4.0.1");
    assert_eq!(statement["format"], serde_json::json!(["json"]));
    let resources = statement["rest"][0]["resource"].as_array().unwrap();
    let types: Vec<&str> = resources
        .iter()
        .map(|resource| resource["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec![
            "Patient",
            "DocumentReference",
            "List",
            "Binary",
            "Consent",
            "Communication",
            "Observation",
            "Condition",
            "MedicationStatement",
            "AllergyIntolerance",
            "AuditEvent"
        ]
    );
    let audit = resources
        .iter()
        .find(|resource| resource["type"] == "AuditEvent")
        .unwrap();
    let codes: Vec<&str> = audit["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["read", "search-type"]);
    let document = resources
        .iter()
        .find(|resource| resource["type"] == "DocumentReference")
        .unwrap();
    let params: Vec<&str> = document["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for expected in [
        "_id",
        "_lastUpdated",
        "patient",
        "type",
        "category",
        "date",
        "author",
        "status",
        "security-label",
        "identifier",
    ] {
        assert!(
            params.contains(&expected),
            "{expected} missing from {params:?}"
        );
    }
    assert!(
        document["searchInclude"]
            .as_array()
            .unwrap()
            .iter()
            .any(|include| include == "DocumentReference:patient")
    );
}

#[test]
fn what_the_capability_statement_omits_is_refused() {
    let app = TestApp::new();
    let statement = app.get("metadata", &As::Nobody).json();
    let binary = statement["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Binary")
        .unwrap()
        .clone();
    let codes: Vec<&str> = binary["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert!(!codes.contains(&"delete"));
    assert_eq!(app.delete("Binary/x", &As::doctor()).status, 405);
    assert!(!codes.contains(&"search-type"));
    assert_eq!(app.get("Binary", &As::doctor()).status, 405);
}

#[test]
fn search_and_error_outputs_are_valid_r4() {
    use crate::support::fixtures::{document, nir, patient};
    let app = TestApp::new();
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    app.create(
        &As::doctor(),
        &document(&patient_id, "11488-4", "2024-01-01"),
    );
    for path in [
        format!(
            "DocumentReference?patient={patient_id}&_include=DocumentReference:patient&_total=accurate"
        ),
        format!("Patient/{patient_id}/_history"),
        "Patient?_summary=count".to_owned(),
    ] {
        let reply = app.get(&path, &As::doctor());
        assert_eq!(reply.status, 200);
        fhir_check::check("Bundle", &reply.body)
            .unwrap_or_else(|issue| panic!("{path}: {issue:?}"));
    }
}

#[test]
fn every_operation_is_declared_with_its_served_definition() {
    let app = TestApp::new();
    let statement = app.get("metadata", &As::Nobody).json();
    let mut declared = Vec::new();
    for resource in statement["rest"][0]["resource"].as_array().unwrap() {
        for operation in resource["operation"].as_array().into_iter().flatten() {
            let name = operation["name"].as_str().unwrap();
            let url = operation["definition"].as_str().unwrap();
            let id = url.rsplit('/').next().unwrap();
            let reply = app.get(&format!("OperationDefinition/{id}"), &As::Nobody);
            assert_eq!(reply.status, 200, "{id}");
            fhir_check::check("OperationDefinition", &reply.body)
                .unwrap_or_else(|issue| panic!("{id}: {issue:?}"));
            let definition = reply.json();
            assert_eq!(definition["url"], url);
            assert_eq!(definition["code"], name);
            assert_eq!(definition["resource"][0], resource["type"]);
            declared.push(format!("{}/${name}", resource["type"].as_str().unwrap()));
        }
    }
    assert_eq!(
        declared,
        [
            "Patient/$activate",
            "Patient/$oppose",
            "Patient/$close",
            "Patient/$reopen",
            "Communication/$save-attachment"
        ]
    );
    assert_eq!(
        app.get("OperationDefinition/nothing", &As::Nobody).status,
        404
    );
}

#[test]
fn the_capability_statement_follows_each_requests_base_url() {
    // Built once per base URL and kept: two hosts get each their own.
    let app = TestApp::new();
    for host in ["dmp-a.example", "dmp-b.example", "dmp-a.example"] {
        let statement = app
            .request("GET", "metadata")
            .header("Host", host)
            .send(None)
            .json();
        assert_eq!(
            statement["implementation"]["url"],
            format!("http://{host}"),
            "{statement}"
        );
    }
}

#[test]
fn healthz_answers_without_a_token_and_traces_nothing() {
    let app = TestApp::new();
    let events = app.stored_rows("audit_chain");
    let reply = app.get("healthz", &As::Nobody);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "ok");
    assert_eq!(app.request("POST", "healthz").send(None).status, 405);
    assert_eq!(app.stored_rows("audit_chain"), events);
}
