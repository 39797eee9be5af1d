//! The ANS PDSm / PDSm4DMP transactions (SPEC §10, R-MHD-1 … R-MHD-8), sent as the
//! guides publish them (`conformance/pdsm/examples/`, a valid INS substituted for
//! their placeholder and nothing else changed), and every access rule through the
//! new paths. Test names carry the rule they check.

use serde_json::{Value, json};

use crate::support::fixtures::{INS, block_professional, nir, patient, permit_professional};
use crate::support::{As, Reply, TestApp, assert_refused, match_ids};

/// The guides' placeholder INS.
const PLACEHOLDER_INS: &str = "123456789012345";
const ARCHIVED: &str =
    "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived";
const TRE_A07: &str = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";

/// A published example with `ins` for the placeholder.
fn example(name: &str, ins: &str) -> Value {
    let path = format!(
        "{}/conformance/pdsm/examples/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    serde_json::from_str(&text.replace(PLACEHOLDER_INS, ins)).expect("an example is JSON")
}

/// A space whose médecin traitant is `As::doctor()`; its id and INS.
fn space(app: &TestApp) -> (String, String) {
    let ins = nir();
    let id = app.create(
        &As::System,
        &patient(&ins, "Martin", "Claire", "1980-05-01"),
    );
    (id, ins)
}

fn doctor(id_nat_ps: &str) -> As {
    As::professional(id_nat_ps, "10", None, None, None)
}

fn json_patch(app: &TestApp, path: &str, who: &As, operations: &Value) -> Reply {
    app.request("PATCH", path)
        .as_(who)
        .header("Content-Type", "application/json-patch+json")
        .send(Some(operations.to_string()))
}

/// The ids of a transaction-response's locations, in order.
fn locations(reply: &Reply) -> Vec<String> {
    reply.json()["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| {
            entry["response"]["location"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn id_of(location: &str) -> String {
    location.split('/').nth(1).expect("Type/id/…").to_owned()
}

/// The search queries (decoded) of a trace searchset's events.
fn trace_queries(trace: &Value) -> Vec<String> {
    crate::support::event_entities(trace)
        .into_iter()
        .filter_map(|entity| entity["query"].as_str().map(str::to_owned))
        .map(|query| {
            String::from_utf8(
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, query).unwrap(),
            )
            .unwrap()
        })
        .collect()
}

/// TD2 as published: the SubmissionSet, the DocumentReference and its Binary.
fn provide(app: &TestApp, who: &As, ins: &str) -> Reply {
    app.post(
        "/",
        who,
        &example("Bundle-example-td2-iti65-lot-soumission.json", ins),
    )
}

/// The TD2 Bundle with a second DocumentReference (its own uniqueId, `label` on it
/// if any) in the SubmissionSet, pointing at the same Binary.
fn two_documents(ins: &str, label: Option<&str>) -> Value {
    let mut bundle = example("Bundle-example-td2-iti65-lot-soumission.json", ins);
    let mut second = bundle["entry"][1].clone();
    second["fullUrl"] = json!("urn:uuid:aaaaaaaa-0000-0000-0000-0000000000d2");
    second["resource"]["masterIdentifier"]["value"] = json!("urn:oid:1.2.250.1.213.1.4.8.99999.22");
    if let Some(label) = label {
        second["resource"]["securityLabel"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "coding": [{ "system": TRE_A07, "code": label }] }));
    }
    bundle["entry"].as_array_mut().unwrap().insert(2, second);
    bundle["entry"][0]["resource"]["entry"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "item": { "reference": "urn:uuid:aaaaaaaa-0000-0000-0000-0000000000d2" } }));
    bundle
}

#[test]
fn r_mhd_1_the_published_td2_bundle_is_stored_whole() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let reply = provide(&app, &As::doctor(), &ins);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let response = reply.json();
    assert_eq!(response["type"], "transaction-response");
    let entries = response["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for entry in entries {
        assert!(
            entry["response"]["status"]
                .as_str()
                .unwrap()
                .starts_with("201"),
            "{entry}"
        );
        assert!(entry["response"]["etag"].as_str().is_some());
    }
    let located = locations(&reply);
    assert!(located[0].starts_with("List/"), "{located:?}");
    assert!(located[1].starts_with("DocumentReference/"));
    assert!(located[2].starts_with("Binary/"));
    let (list, document, binary) = (id_of(&located[0]), id_of(&located[1]), id_of(&located[2]));

    // The conditional references point at the space; the List names the document.
    let stored = app.get(&format!("/DocumentReference/{document}"), &As::doctor());
    assert_eq!(stored.status, 200, "{}", stored.body);
    assert_eq!(
        stored.json()["subject"]["reference"],
        format!("Patient/{space_id}")
    );
    assert_eq!(
        stored.json()["content"][0]["attachment"]["url"],
        format!("Binary/{binary}")
    );
    let submission = app.get(&format!("/List/{list}"), &As::doctor()).json();
    assert_eq!(
        submission["subject"]["reference"],
        format!("Patient/{space_id}")
    );
    assert_eq!(
        submission["entry"][0]["item"]["reference"],
        format!("DocumentReference/{document}")
    );
    // The Binary took the document's space: its holder reads it, in its own type.
    let bytes = app
        .request("GET", &format!("/Binary/{binary}"))
        .as_(&As::Patient(space_id.clone()))
        .header("Accept", "application/xml")
        .send(None);
    assert_eq!(bytes.status, 200, "{}", bytes.body);
    assert!(
        bytes
            .header("content-type")
            .unwrap()
            .starts_with("application/xml")
    );
    assert!(bytes.body.starts_with("<?xml"), "{}", bytes.body);
    assert_eq!(bytes.header("x-content-type-options"), Some("nosniff"));
}

#[test]
fn r_mhd_1_nothing_is_stored_when_an_entry_fails() {
    let app = TestApp::new();
    let (_, ins) = space(&app);
    let before = app.data_rows();
    let mut bundle = example("Bundle-example-td2-iti65-lot-soumission.json", &ins);
    // A hash that does not match the Binary's bytes (R-MHD-2): the whole Bundle fails.
    bundle["entry"][1]["resource"]["content"][0]["attachment"]["hash"] =
        json!("2jmj7l5rSw0yVb/vlWAYkK/YBwk=");
    let reply = app.post("/", &As::doctor(), &bundle);
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("hash"), "{}", reply.body);
    assert_eq!(app.data_rows(), before);
}

#[test]
fn r_mhd_1_a_conditional_reference_must_match_one_patient() {
    let app = TestApp::new();
    let _ = space(&app);
    let before = app.data_rows();
    // An INS no space holds.
    let reply = provide(&app, &As::doctor(), &nir());
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("matches no Patient"), "{}", reply.body);
    assert_eq!(app.data_rows(), before);
    // The server keeps serving.
    assert_eq!(app.get("/metadata", &As::Nobody).status, 200);
}

#[test]
fn r_mhd_1_a_bundle_carries_one_submission_set() {
    let app = TestApp::new();
    let (_, ins) = space(&app);
    let before = app.data_rows();
    let mut bundle = example("Bundle-example-td2-iti65-lot-soumission.json", &ins);
    let mut second = bundle["entry"][0].clone();
    second["fullUrl"] = json!("urn:uuid:aaaaaaaa-0000-0000-0000-0000000000ff");
    bundle["entry"].as_array_mut().unwrap().push(second);
    let reply = app.post("/", &As::doctor(), &bundle);
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("one SubmissionSet"), "{}", reply.body);
    assert_eq!(app.data_rows(), before);
}

#[test]
fn r_mhd_2_the_same_unique_id_is_stored_once() {
    let app = TestApp::new();
    let (_, ins) = space(&app);
    assert_eq!(provide(&app, &As::doctor(), &ins).status, 200);
    let before = app.data_rows();
    let again = provide(&app, &As::doctor(), &ins);
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("masterIdentifier"), "{}", again.body);
    assert_eq!(app.data_rows(), before);
    // A single create of the same uniqueId too.
    let mut single = example(
        "DocumentReference-example-td2-iti105-publication-simplifiee.json",
        &ins,
    );
    single["masterIdentifier"]["value"] = json!("urn:oid:1.2.250.1.213.1.4.8.99999.2");
    let reply = app.post("/DocumentReference", &As::doctor(), &single);
    assert_eq!(reply.status, 409, "{}", reply.body);
}

#[test]
fn r_mhd_2_a_pdsm_profile_names_its_missing_element() {
    let app = TestApp::new();
    let (_, ins) = space(&app);
    let mut document = example(
        "DocumentReference-example-td2-iti105-publication-simplifiee.json",
        &ins,
    );
    document.as_object_mut().unwrap().remove("masterIdentifier");
    let reply = app.post("/DocumentReference", &As::doctor(), &document);
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("masterIdentifier"), "{}", reply.body);
    // The same document without the profile claim is plain FHIR: accepted.
    document.as_object_mut().unwrap().remove("meta");
    let plain = app.post("/DocumentReference", &As::doctor(), &document);
    assert_eq!(plain.status, 201, "{}", plain.body);
}

#[test]
fn r_mhd_1_the_simplified_publish_is_stored() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let document = example(
        "DocumentReference-example-td2-iti105-publication-simplifiee.json",
        &ins,
    );
    let reply = app.post("/DocumentReference", &As::doctor(), &document);
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(
        reply.json()["subject"]["reference"],
        format!("Patient/{space_id}")
    );
}

/// TD2.1 after the document it replaces (PUT as published, by its author).
fn replace(app: &TestApp, author: &As, replacer: &As, ins: &str) -> Reply {
    let original = example("DocumentReference-doc-x-id.json", ins);
    let mut original = original;
    original["status"] = json!("current");
    let put = app.put("/DocumentReference/doc-x-id", author, &original);
    assert_eq!(put.status, 201, "{}", put.body);
    app.post(
        "/",
        replacer,
        &example("Bundle-example-td2-1-remplacement.json", ins),
    )
}

#[test]
fn r_mhd_3_the_author_replaces_a_document() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let reply = replace(&app, &As::doctor(), &As::doctor(), &ins);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let replaced = app.get("/DocumentReference/doc-x-id", &As::doctor()).json();
    assert_eq!(replaced["status"], "superseded");
    let current = app.get(
        &format!("/DocumentReference?patient={space_id}&status=current"),
        &As::doctor(),
    );
    let ids = match_ids(&current.json());
    assert_eq!(ids.len(), 1, "{}", current.body);
    assert_ne!(ids[0], "doc-x-id");
}

#[test]
fn r_mhd_3_only_the_author_replaces() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    // Authorised on the space, but not the author of doc-x-id.
    let colleague = doctor("810000000002");
    app.create(
        &As::Patient(space_id.clone()),
        &permit_professional(&space_id, "810000000002"),
    );
    let before_rows = {
        let original = {
            let mut original = example("DocumentReference-doc-x-id.json", &ins);
            original["status"] = json!("current");
            original
        };
        assert_eq!(
            app.put("/DocumentReference/doc-x-id", &As::doctor(), &original)
                .status,
            201
        );
        app.data_rows()
    };
    let reply = app.post(
        "/",
        &colleague,
        &example("Bundle-example-td2-1-remplacement.json", &ins),
    );
    assert_refused(&reply, 403, "R-ACC-9");
    assert_eq!(app.data_rows(), before_rows);
    assert_eq!(
        app.get("/DocumentReference/doc-x-id", &As::doctor()).json()["status"],
        "current"
    );
}

#[test]
fn r_mhd_4_iti67_parameters_are_honoured() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    assert_eq!(provide(&app, &As::doctor(), &ins).status, 200);
    let search = |query: &str| -> usize {
        let reply = app.get(&format!("/DocumentReference?{query}"), &As::doctor());
        assert_eq!(reply.status, 200, "{query}: {}", reply.body);
        match_ids(&reply.json()).len()
    };
    let by_ins = format!("patient.identifier={INS}|{ins}");
    for (query, expected) in [
        ("status=current", 1),
        ("creation=2026-06-12", 1),
        ("creation=2026-06-13", 0),
        ("period=ge2026-06-01", 1),
        ("period=lt2026-06-01", 0),
        ("period-start=2026-06-12", 1),
        ("setting=http://snomed.info/sct|394802001", 1),
        ("setting=http://snomed.info/sct|0", 0),
        ("facility=http://snomed.info/sct|22232009", 1),
        ("facility=x", 0),
        (
            "format=http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode|urn:ihe:iti:xds:2017:mimeTypeSufficient",
            1,
        ),
        ("format=other", 0),
        (
            "identifier=urn:ietf:rfc:3986|urn:oid:1.2.250.1.213.1.4.8.99999.2",
            1,
        ),
        ("isArchived=true", 0),
        ("security-label=N", 1),
    ] {
        assert_eq!(search(&format!("{by_ins}&{query}")), expected, "{query}");
    }
    assert_eq!(search(&format!("patient={space_id}&event=x")), 0);
    // Unknown to the index but declared: the contained author's identifier is not a
    // name, so a name search finds nothing; the IdNat_PS is not searched as a name.
    assert_eq!(
        search(&format!("patient={space_id}&author.family=Nobody")),
        0
    );
}

#[test]
fn r_mhd_4_contained_author_names_are_searched() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let mut document = example(
        "DocumentReference-example-td2-iti105-publication-simplifiee.json",
        &ins,
    );
    document["contained"][0]["name"] = json!([{ "family": "Lévêque", "given": ["Anne"] }]);
    assert_eq!(
        app.post("/DocumentReference", &As::doctor(), &document)
            .status,
        201
    );
    let count = |query: &str| {
        match_ids(
            &app.get(
                &format!("/DocumentReference?patient={space_id}&{query}"),
                &As::doctor(),
            )
            .json(),
        )
        .len()
    };
    assert_eq!(count("author.family=leveque"), 1);
    assert_eq!(count("author.given=Anne"), 1);
    assert_eq!(count("author.given=Paul"), 0);
}

#[test]
fn r_mhd_5_lists_are_searched_and_never_name_a_hidden_document() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let reply = app.post("/", &As::doctor(), &two_documents(&ins, None));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let located = locations(&reply);
    let (list, document, other) = (id_of(&located[0]), id_of(&located[1]), id_of(&located[2]));
    let query = format!(
        "/List?patient.identifier={INS}|{ins}&code=https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes|submissionset"
    );
    let found = app.get(&query, &As::doctor());
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(match_ids(&found.json()), vec![list.clone()]);
    // The patient masks one document (R-ACC-7): a professional authorised on the
    // space still reads the SubmissionSet, without the masked entry.
    let colleague = doctor("810000000002");
    app.create(
        &As::Patient(space_id.clone()),
        &permit_professional(&space_id, "810000000002"),
    );
    let seen = app.get(&format!("/List/{list}"), &colleague).json();
    assert_eq!(
        seen["entry"][0]["item"]["reference"],
        format!("DocumentReference/{document}")
    );
    let mask = |id: &str| {
        let reply = json_patch(
            &app,
            &format!("/DocumentReference/{id}"),
            &As::Patient(space_id.clone()),
            &json!([{ "op": "replace", "path": "/securityLabel/0", "value":
                { "coding": [{ "system": TRE_A07, "code": "MASQUE_PS" }] } }]),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    };
    mask(&document);
    for path in [format!("/List/{list}"), format!("/List/{list}/_history/1")] {
        let seen = app.get(&path, &colleague);
        assert_eq!(seen.status, 200, "{}", seen.body);
        let seen = seen.json();
        assert_eq!(seen["entry"].as_array().unwrap().len(), 1, "{path}: {seen}");
        assert!(seen.to_string().contains("SUBSETTED"));
        assert!(!seen.to_string().contains(&document));
        assert!(seen.to_string().contains(&other));
    }
    let searched = app.get(&query, &colleague).json();
    assert_eq!(match_ids(&searched), vec![list.clone()]);
    assert!(!searched.to_string().contains(&document), "{searched}");
    // Both masked: the SubmissionSet itself is hidden from the colleague (its date,
    // source and class would tell of them), by id as in searches, totals included.
    mask(&other);
    assert_refused(
        &app.get(&format!("/List/{list}"), &colleague),
        404,
        "R-MHD-5",
    );
    let searched = app
        .get(&format!("{query}&_total=accurate"), &colleague)
        .json();
    assert!(match_ids(&searched).is_empty(), "{searched}");
    assert_eq!(searched["total"], 0);
    // The author (R-ACC-7) and the holder still see it whole.
    let author_view = app.get(&format!("/List/{list}"), &As::doctor()).json();
    assert!(author_view.to_string().contains(&document));
    let holder_view = app
        .get(&format!("/List/{list}"), &As::Patient(space_id.clone()))
        .json();
    assert!(holder_view.to_string().contains(&document));
}

#[test]
fn r_mhd_5_lists_follow_the_space_rules() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let located = locations(&provide(&app, &As::doctor(), &ins));
    let list = id_of(&located[0]);
    let stranger = doctor("810000000003");
    // Not authorised: the List by id is not known, the search names the rule.
    let read = app.get(&format!("/List/{list}"), &stranger);
    assert_refused(&read, 404, "R-ACC-3");
    let search = app.get(&format!("/List?patient={space_id}"), &stranger);
    assert_refused(&search, 403, "R-ACC-3");
    // Blocked by the patient: refused, even in an emergency.
    let blocked = "810000000004";
    app.create(
        &As::Patient(space_id.clone()),
        &block_professional(&space_id, blocked),
    );
    let emergency = As::professional(
        blocked,
        "10",
        None,
        Some("bris_de_glace"),
        Some("inconscient"),
    );
    assert_refused(
        &app.get(&format!("/List?patient={space_id}"), &emergency),
        403,
        "R-ACC-2",
    );
    // Emergency access by another professional opens it (R-ACC-4).
    let rescuer = As::professional(
        "810000000005",
        "10",
        None,
        Some("bris_de_glace"),
        Some("inconscient"),
    );
    let opened = app.get(&format!("/List?patient={space_id}"), &rescuer);
    assert_eq!(match_ids(&opened.json()), vec![list.clone()]);
    // The holder and a representative read it; another holder does not.
    assert_eq!(
        app.get(&format!("/List/{list}"), &As::Patient(space_id.clone()))
            .status,
        200
    );
    let (other, _) = space(&app);
    assert_refused(
        &app.get(&format!("/List/{list}"), &As::Patient(other)),
        404,
        "R-PAT-1",
    );
    // The system reads nothing medical (R-ACC-12).
    assert_refused(
        &app.get(&format!("/List/{list}"), &As::System),
        403,
        "R-ACC-12",
    );
}

#[test]
fn r_mhd_7_conditional_patch_masks_archives_and_withdraws() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let located = locations(&provide(&app, &As::doctor(), &ins));
    let document = id_of(&located[1]);
    let by_id =
        "/DocumentReference?identifier=urn:ietf:rfc:3986|urn:oid:1.2.250.1.213.1.4.8.99999.2";
    // TD3.3d: archive, then restore, with the ANS selector path.
    let archive = |value: bool| {
        json!([{ "op": "replace",
            "path": format!("/extension[url:'{ARCHIVED}']/valueBoolean"), "value": value }])
    };
    let archived = json_patch(&app, by_id, &As::doctor(), &archive(true));
    assert_eq!(archived.status, 200, "{}", archived.body);
    let count = |query: &str| {
        match_ids(
            &app.get(
                &format!("/DocumentReference?patient={space_id}&{query}"),
                &As::doctor(),
            )
            .json(),
        )
        .len()
    };
    assert_eq!(count("isArchived=true"), 1);
    assert_eq!(
        json_patch(&app, by_id, &As::doctor(), &archive(false)).status,
        200
    );
    assert_eq!(count("isArchived=false"), 1);
    // TD3.3a in FHIRPath Patch: the author masks with the other spelling of TRE_A07.
    let variant = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument";
    let masked = app
        .request("PATCH", by_id)
        .as_(&As::doctor())
        .fhir()
        .send(Some(
            json!({ "resourceType": "Parameters", "parameter": [{ "name": "operation", "part": [
                { "name": "type", "valueCode": "replace" },
                { "name": "path", "valueString": "DocumentReference.securityLabel[0]" },
                { "name": "value", "valueCodeableConcept": { "coding": [{ "system": variant, "code": "MASQUE_PS" }] } }
            ]}]})
            .to_string(),
        ));
    assert_eq!(masked.status, 200, "{}", masked.body);
    let colleague = doctor("810000000002");
    app.create(
        &As::Patient(space_id.clone()),
        &permit_professional(&space_id, "810000000002"),
    );
    // The colleague's conditional PATCH matches nothing they may see: 404, as for
    // an identifier nobody holds.
    let hidden = json_patch(&app, by_id, &colleague, &archive(true));
    let missing = json_patch(
        &app,
        "/DocumentReference?identifier=urn:ietf:rfc:3986|urn:oid:9.9.9",
        &colleague,
        &archive(true),
    );
    assert_eq!(hidden.status, 404, "{}", hidden.body);
    assert_eq!(hidden.json()["issue"], missing.json()["issue"]);
    // Only status, securityLabel and isArchived change (R-MHD-7).
    let subject = json_patch(
        &app,
        by_id,
        &As::doctor(),
        &json!([{ "op": "replace", "path": "/subject/reference", "value": "Patient/x" }]),
    );
    assert_eq!(subject.status, 422, "{}", subject.body);
    // TD3.3c: entered-in-error withdraws it from reads and searches, history kept.
    let withdrawn = json_patch(
        &app,
        by_id,
        &As::doctor(),
        &json!([{ "op": "replace", "path": "/status", "value": "entered-in-error" }]),
    );
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.body);
    assert_eq!(withdrawn.json()["status"], "entered-in-error");
    assert_eq!(
        app.get(&format!("/DocumentReference/{document}"), &As::doctor())
            .status,
        410
    );
    assert_eq!(count(&format!("_id={document}")), 0);
    let history = app.get(
        &format!("/DocumentReference/{document}/_history"),
        &As::doctor(),
    );
    assert!(
        history.body.contains("entered-in-error"),
        "{}",
        history.body
    );
}

#[test]
fn r_mhd_7_a_colleague_does_not_withdraw_and_the_holder_only_masks() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let located = locations(&provide(&app, &As::doctor(), &ins));
    let document = id_of(&located[1]);
    let path = format!("/DocumentReference/{document}");
    let colleague = doctor("810000000002");
    app.create(
        &As::Patient(space_id.clone()),
        &permit_professional(&space_id, "810000000002"),
    );
    let withdraw = json!([{ "op": "replace", "path": "/status", "value": "entered-in-error" }]);
    assert_refused(
        &json_patch(&app, &path, &colleague, &withdraw),
        403,
        "R-ACC-9",
    );
    let holder = As::Patient(space_id.clone());
    assert_refused(&json_patch(&app, &path, &holder, &withdraw), 403, "R-PAT-2");
    let unmask = json!([{ "op": "replace", "path": "/securityLabel/0", "value":
        { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N" }] } }]);
    assert_eq!(json_patch(&app, &path, &holder, &unmask).status, 200);
    assert_eq!(app.get(&path, &As::doctor()).json()["status"], "current");
}

/// TD3.1a as published: the documents of a patient by INS, `status=current`.
fn td31a(app: &TestApp, who: &As, ins: &str) -> Reply {
    app.get(
        &format!("/DocumentReference?patient.identifier={INS}|{ins}&status=current"),
        who,
    )
}

#[test]
fn r_mhd_4_td31a_for_every_actor() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let located = locations(&provide(&app, &As::doctor(), &ins));
    let document = id_of(&located[1]);
    // The médecin traitant, the holder and an emergency professional find it.
    let rescuer = As::professional(
        "810000000005",
        "10",
        None,
        Some("bris_de_glace"),
        Some("patient inconscient"),
    );
    for who in [As::doctor(), As::Patient(space_id.clone()), rescuer] {
        let reply = td31a(&app, &who, &ins);
        assert_eq!(reply.status, 200, "{who:?}: {}", reply.body);
        assert_eq!(match_ids(&reply.json()), vec![document.clone()], "{who:?}");
    }
    // A professional without authorisation, one the patient blocked, the system and
    // another holder do not.
    assert_refused(&td31a(&app, &doctor("810000000003"), &ins), 403, "R-ACC-3");
    app.create(
        &As::Patient(space_id.clone()),
        &block_professional(&space_id, "810000000004"),
    );
    assert_refused(&td31a(&app, &doctor("810000000004"), &ins), 403, "R-ACC-2");
    let system = td31a(&app, &As::System, &ins);
    assert_refused(&system, 403, "R-ACC-12");
    let (other, _) = space(&app);
    let elsewhere = td31a(&app, &As::Patient(other), &ins);
    assert_eq!(elsewhere.status, 200);
    assert!(match_ids(&elsewhere.json()).is_empty());
    // A pharmacist's matrix keeps a consultation note from them (R-ACC-6), even
    // authorised: not found, and not named by the SubmissionSet they read.
    app.create(
        &As::Patient(space_id.clone()),
        &permit_professional(&space_id, "810000000006"),
    );
    let pharmacist = As::professional("810000000006", "21", None, None, None);
    let reply = td31a(&app, &pharmacist, &ins);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(match_ids(&reply.json()).is_empty(), "{}", reply.body);
    // The SubmissionSet naming only that document is hidden from them too.
    let list = app.get(&format!("/List/{}", id_of(&located[0])), &pharmacist);
    assert_refused(&list, 404, "R-MHD-5");
    assert!(!list.body.contains(&document), "{}", list.body);
    let binary = app.get(
        &format!("/{}", located[2].split("/_history").next().unwrap()),
        &pharmacist,
    );
    assert_eq!(binary.status, 404, "{}", binary.body);
}

#[test]
fn r_mhd_4_a_parameter_not_applied_is_said() {
    let app = TestApp::new();
    let (space_id, _) = space(&app);
    let reply = app.get(
        &format!("/DocumentReference?patient={space_id}&unknown-thing=1"),
        &As::doctor(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let bundle = reply.json();
    let outcome = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["search"]["mode"] == "outcome")
        .expect("an outcome entry");
    assert_eq!(outcome["resource"]["issue"][0]["severity"], "warning");
    assert!(outcome.to_string().contains("unknown-thing"));
    // Strict handling refuses it.
    let strict = app
        .request(
            "GET",
            &format!("/DocumentReference?patient={space_id}&unknown-thing=1"),
        )
        .as_(&As::doctor())
        .header("Prefer", "handling=strict")
        .send(None);
    assert_eq!(strict.status, 400);
}

#[test]
fn r_mhd_8_the_capability_statement_and_the_trace_say_mhd() {
    let app = TestApp::new();
    let statement = app.get("/metadata", &As::Nobody).json();
    let instantiates = statement["instantiates"].to_string();
    assert!(instantiates.contains("PDSm-GestionnaireDePartageDeDocuments"));
    assert!(instantiates.contains("IHE.MHD.DocumentRecipient"));
    assert!(
        statement["patchFormat"]
            .to_string()
            .contains("application/fhir+json")
    );
    let resources = statement["rest"][0]["resource"].as_array().unwrap();
    let of = |kind: &str| {
        resources
            .iter()
            .find(|resource| resource["type"] == kind)
            .unwrap_or_else(|| panic!("{kind} listed"))
            .clone()
    };
    let names = |resource: &Value| -> Vec<String> {
        resource["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .map(|param| param["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let documents = names(&of("DocumentReference"));
    for expected in [
        "patient",
        "status",
        "identifier",
        "type",
        "category",
        "date",
        "creation",
        "author.given",
        "author.family",
        "event",
        "facility",
        "setting",
        "period",
        "period-start",
        "period-end",
        "format",
        "related",
        "security-label",
        "isArchived",
        "_id",
        "_lastUpdated",
    ] {
        assert!(documents.iter().any(|name| name == expected), "{expected}");
    }
    let lists = names(&of("List"));
    for expected in [
        "patient",
        "code",
        "status",
        "date",
        "identifier",
        "designationType",
        "source.given",
        "source.family",
        "sourceId",
        "authorOrg",
    ] {
        assert!(lists.iter().any(|name| name == expected), "{expected}");
    }
    assert!(
        of("DocumentReference")["documentation"]
            .as_str()
            .unwrap()
            .contains("conditional PATCH")
    );

    // The trace of an ITI-65 carries its IHE code; so does an ITI-67.
    let (space_id, ins) = space(&app);
    assert_eq!(provide(&app, &As::doctor(), &ins).status, 200);
    assert_eq!(td31a(&app, &As::doctor(), &ins).status, 200);
    let holder = As::Patient(space_id.clone());
    for code in ["ITI-65", "ITI-67"] {
        let trace = app.get(
            &format!("/AuditEvent?patient={space_id}&subtype=urn:ihe:event-type-code|{code}"),
            &holder,
        );
        assert_eq!(trace.status, 200, "{}", trace.body);
        assert!(
            !match_ids(&trace.json()).is_empty(),
            "{code}: {}",
            trace.body
        );
    }
}

#[test]
fn r_mhd_8_patient_active_mirrors_the_space() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let lookup = |who: &As| {
        app.get(&format!("/Patient?identifier={INS}|{ins}"), who)
            .json()["entry"][0]["resource"]["active"]
            .clone()
    };
    assert_eq!(lookup(&As::doctor()), json!(true));
    let opposed = app.post(
        &format!("/Patient/{space_id}/$oppose"),
        &As::Patient(space_id.clone()),
        &json!({ "resourceType": "Parameters" }),
    );
    assert_eq!(opposed.status, 200, "{}", opposed.body);
    assert_eq!(lookup(&As::doctor()), json!(false));
    assert_eq!(
        app.get(
            &format!("/Patient/{space_id}"),
            &As::Patient(space_id.clone())
        )
        .json()["active"],
        json!(false)
    );
}

#[test]
fn r_mhd_5_a_representative_reads_lists_without_what_is_hidden_from_them() {
    let app = TestApp::new();
    let ins = nir();
    let minor = app.create(&As::System, &patient(&ins, "Martin", "Léo", "2015-03-04"));
    let bundle = two_documents(&ins, Some("INVISIBLE_REPRESENTANTS_LEGAUX"));
    let reply = app.post("/", &As::doctor(), &bundle);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let located = locations(&reply);
    let (list, shown, hidden) = (id_of(&located[0]), id_of(&located[1]), id_of(&located[2]));
    let parent = As::Representative(minor.clone());
    let lists = app.get(&format!("/List?patient={minor}"), &parent);
    assert_eq!(match_ids(&lists.json()), vec![list.clone()]);
    assert!(!lists.body.contains(&hidden), "{}", lists.body);
    assert!(lists.body.contains(&shown));
    assert_eq!(
        match_ids(&td31a(&app, &parent, &ins).json()),
        vec![shown.clone()]
    );
    // The holder sees both.
    let holder = As::Patient(minor.clone());
    assert!(
        app.get(&format!("/List/{list}"), &holder)
            .body
            .contains(&hidden)
    );
    let mut found = match_ids(&td31a(&app, &holder, &ins).json());
    found.sort();
    let mut both = vec![shown, hidden];
    both.sort();
    assert_eq!(found, both);
    // A SubmissionSet of only a document hidden from representatives is hidden from
    // them whole: its metadata would tell of it.
    let mut alone = example("Bundle-example-td2-iti65-lot-soumission.json", &ins);
    alone["entry"][1]["resource"]["masterIdentifier"]["value"] =
        json!("urn:oid:1.2.250.1.213.1.4.8.99999.23");
    alone["entry"][1]["resource"]["securityLabel"]
        .as_array_mut()
        .unwrap()
        .push(
            json!({ "coding": [{ "system": TRE_A07, "code": "INVISIBLE_REPRESENTANTS_LEGAUX" }] }),
        );
    let reply = app.post("/", &As::doctor(), &alone);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let secret = id_of(&locations(&reply)[0]);
    assert_refused(
        &app.get(&format!("/List/{secret}"), &parent),
        404,
        "R-MHD-5",
    );
    let lists = app
        .get(&format!("/List?patient={minor}&_total=accurate"), &parent)
        .json();
    assert_eq!(match_ids(&lists), vec![list]);
    assert_eq!(lists["total"], 1);
    assert_eq!(app.get(&format!("/List/{secret}"), &holder).status, 200);
}

#[test]
fn r_mhd_7_whoever_masked_unmasks_and_the_patients_masking_is_theirs() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let located = locations(&provide(&app, &As::doctor(), &ins));
    let path = format!("/DocumentReference/{}", id_of(&located[1]));
    let label = |system: &str, code: &str| {
        json!([{ "op": "replace", "path": "/securityLabel/0",
            "value": { "coding": [{ "system": system, "code": code }] } }])
    };
    let confidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
    // TD3.3a as published: the author masks, then unmasks.
    assert_eq!(
        json_patch(&app, &path, &As::doctor(), &label(TRE_A07, "MASQUE_PS")).status,
        200
    );
    let unmasked = json_patch(&app, &path, &As::doctor(), &label(confidentiality, "N"));
    assert_eq!(unmasked.status, 200, "{}", unmasked.body);
    // The patient masks it: the author no longer lifts that masking; the patient does.
    let holder = As::Patient(space_id.clone());
    assert_eq!(
        json_patch(&app, &path, &holder, &label(TRE_A07, "MASQUE_PS")).status,
        200
    );
    assert_refused(
        &json_patch(&app, &path, &As::doctor(), &label(confidentiality, "N")),
        403,
        "R-PAT-2",
    );
    assert_eq!(
        json_patch(&app, &path, &holder, &label(confidentiality, "N")).status,
        200
    );
}

/// A PDSm IG example pointed at `space_id` (they name the IG's own patient).
fn ig_example(name: &str, space_id: &str) -> Value {
    let mut resource = example(name, "");
    resource["subject"] = json!({ "reference": format!("Patient/{space_id}") });
    resource.as_object_mut().unwrap().remove("id");
    resource
}

#[test]
fn r_mhd_2_the_ig_lists_meet_their_profiles_and_a_missing_element_is_named() {
    let app = TestApp::new();
    let (space_id, _) = space(&app);
    let folder = app.post(
        "/List",
        &As::doctor(),
        &ig_example("List-ExampleFolder.json", &space_id),
    );
    assert_eq!(folder.status, 201, "{}", folder.body);
    // The IG's SubmissionSet contains directory resources copied with their
    // meta.versionId: FHIR's dom-4 refuses it as published.
    let mut list = ig_example("List-ExampleSubmissionSet.json", &space_id);
    let reply = app.post("/List", &As::doctor(), &list);
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(
        reply.json()["issue"][0]["expression"][0],
        "List.contained[0].meta.versionId"
    );
    for contained in list["contained"].as_array_mut().unwrap() {
        contained.as_object_mut().unwrap().remove("meta");
    }
    let reply = app.post("/List", &As::doctor(), &list);
    assert_eq!(reply.status, 201, "{}", reply.body);
    list.as_object_mut().unwrap().remove("source");
    let reply = app.post("/List", &As::doctor(), &list);
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.json()["issue"][0]["expression"][0], "List.source");
    let mut folder = ig_example("List-ExampleFolder.json", &space_id);
    folder.as_object_mut().unwrap().remove("title");
    let reply = app.post("/List", &As::doctor(), &folder);
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.json()["issue"][0]["expression"][0], "List.title");
}

#[test]
fn r_mhd_2_size_and_hash_are_checked_against_the_bytes() {
    let app = TestApp::new();
    let (space_id, _) = space(&app);
    let before = app.data_rows();
    // The IG's simplified-publish example gives a size and hash its own bytes do not
    // have: refused, nothing stored.
    let published = ig_example("DocumentReference-PDSmSimplifiedExample.json", &space_id);
    let reply = app.post("/DocumentReference", &As::doctor(), &published);
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("attachment.size"), "{}", reply.body);
    assert_eq!(app.data_rows(), before);
    // With the true size and SHA-1 it is stored.
    let mut corrected = published.clone();
    let data = corrected["content"][0]["attachment"]["data"]
        .as_str()
        .unwrap()
        .to_owned();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &data).unwrap();
    corrected["content"][0]["attachment"]["size"] = json!(bytes.len());
    corrected["content"][0]["attachment"]["hash"] = json!(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        openssl::sha::sha1(&bytes)
    ));
    let reply = app.post("/DocumentReference", &As::doctor(), &corrected);
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[test]
fn r_mhd_7_a_client_librarys_merge_patch_is_judged_like_the_others() {
    let app = TestApp::new();
    let (_, ins) = space(&app);
    let located = locations(&provide(&app, &As::doctor(), &ins));
    let by_id =
        "/DocumentReference?identifier=urn:ietf:rfc:3986|urn:oid:1.2.250.1.213.1.4.8.99999.2";
    let merge = |body: Value| {
        app.request("PATCH", by_id)
            .as_(&As::doctor())
            .header("Content-Type", "application/json")
            .send(Some(body.to_string()))
    };
    let archived = merge(json!({ "extension": [{ "url": ARCHIVED, "valueBoolean": true }] }));
    assert_eq!(archived.status, 200, "{}", archived.body);
    assert_eq!(archived.json()["extension"][0]["valueBoolean"], true);
    // Only status, securityLabel and isArchived: a merge patch of anything else is
    // refused and changes nothing.
    let before = app.get(located[1].split("/_history").next().unwrap(), &As::doctor());
    let refused = merge(json!({ "description": "autre", "subject": { "reference": "Patient/x" } }));
    assert_eq!(refused.status, 422, "{}", refused.body);
    let after = app.get(located[1].split("/_history").next().unwrap(), &As::doctor());
    assert_eq!(
        before.json()["meta"]["versionId"],
        after.json()["meta"]["versionId"]
    );
}

#[test]
fn r_mhd_6_retrieve_answers_the_bytes_in_their_own_type() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let located = locations(&provide(&app, &As::doctor(), &ins));
    let path = format!("/{}", located[2].split("/_history").next().unwrap());
    let holder = As::Patient(space_id);
    let fetch = |accept: Option<&str>| {
        let call = app.request("GET", &path).as_(&holder);
        match accept {
            Some(accept) => call.header("Accept", accept).send(None),
            None => call.send(None),
        }
    };
    for accept in [Some("application/xml"), Some("application/*"), Some("*/*")] {
        let raw = fetch(accept);
        assert_eq!(raw.status, 200, "{accept:?}: {}", raw.body);
        assert_eq!(
            raw.header("content-type"),
            Some("application/xml"),
            "{accept:?}"
        );
        assert!(raw.body.starts_with("<?xml"));
        assert_eq!(raw.header("x-content-type-options"), Some("nosniff"));
        // XML is a type a browser would run: sent as an attachment.
        assert_eq!(raw.header("content-disposition"), Some("attachment"));
    }
    let resource = fetch(Some("application/fhir+json"));
    assert_eq!(resource.json()["resourceType"], "Binary");
    assert_eq!(fetch(Some("application/pdf")).status, 406);
    // FHIR's own XML is not spoken.
    assert_eq!(fetch(Some("application/fhir+xml")).status, 406);
}

#[test]
fn r_mhd_1_a_conditional_reference_matching_several_patients_is_412() {
    let app = TestApp::new();
    let (_, ins) = space(&app);
    let _second = space(&app);
    let before = app.data_rows();
    let mut document = example(
        "DocumentReference-example-td2-iti105-publication-simplifiee.json",
        &ins,
    );
    document["subject"] = json!({ "reference": "Patient?family=Martin" });
    let reply = app.post("/DocumentReference", &As::doctor(), &document);
    assert_eq!(reply.status, 412, "{}", reply.body);
    assert_eq!(app.data_rows(), before);
    // Another type's conditional reference is not resolved.
    document["subject"] = json!({ "reference": "Group?identifier=x" });
    let reply = app.post("/DocumentReference", &As::doctor(), &document);
    assert_eq!(reply.status, 422, "{}", reply.body);
}

#[test]
fn r_mhd_5_a_list_is_not_found_by_an_item_the_caller_may_not_see() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let located = locations(&provide(&app, &As::doctor(), &ins));
    let (list, document) = (id_of(&located[0]), id_of(&located[1]));
    let colleague = doctor("810000000002");
    app.create(
        &As::Patient(space_id.clone()),
        &permit_professional(&space_id, "810000000002"),
    );
    let by_item = |item: &str| {
        let reply = app.get(&format!("/List?patient={space_id}&item={item}"), &colleague);
        assert_eq!(reply.status, 200, "{}", reply.body);
        match_ids(&reply.json())
    };
    assert_eq!(
        by_item(&format!("DocumentReference/{document}")),
        vec![list.clone()]
    );
    assert_eq!(by_item(&document), vec![list.clone()]);
    // The colleague's own List naming the document and an id nobody holds: found by
    // the document, not by the id (its body leaves that entry out, as it leaves out
    // a hidden one; a match would tell hidden from missing).
    let own = app.create(
        &colleague,
        &json!({ "resourceType": "List", "status": "current", "mode": "working",
                 "subject": { "reference": format!("Patient/{space_id}") },
                 "entry": [
                     { "item": { "reference": format!("DocumentReference/{document}") } },
                     { "item": { "reference": "DocumentReference/nobody-holds-this" } }
                 ] }),
    );
    let mut found = by_item(&document);
    found.sort();
    let mut expected = vec![list.clone(), own.clone()];
    expected.sort();
    assert_eq!(found, expected);
    assert!(by_item("DocumentReference/nobody-holds-this").is_empty());
    // Masked by the patient: the colleague's search by that item finds nothing, as
    // for an id nobody holds.
    let mask = json_patch(
        &app,
        &format!("/DocumentReference/{document}"),
        &As::Patient(space_id.clone()),
        &json!([{ "op": "replace", "path": "/securityLabel/0", "value":
            { "coding": [{ "system": TRE_A07, "code": "MASQUE_PS" }] } }]),
    );
    assert_eq!(mask.status, 200);
    assert!(by_item(&format!("DocumentReference/{document}")).is_empty());
    assert!(by_item(&document).is_empty());
    assert!(by_item("DocumentReference/nobody-holds-this").is_empty());
    // The author still finds it; a chain through item is refused.
    let author = app.get(
        &format!("/List?patient={space_id}&item=DocumentReference/{document}"),
        &As::doctor(),
    );
    let mut found = match_ids(&author.json());
    found.sort();
    assert_eq!(found, expected, "the author finds both Lists naming it");
    let chained = app.get(
        &format!("/List?patient={space_id}&item:DocumentReference.status=current"),
        &colleague,
    );
    assert_eq!(chained.status, 400, "{}", chained.body);
}

#[test]
fn r_mhd_1_a_bundle_may_read_its_patient_and_a_folder_is_updated_by_its_author_only() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let mut bundle = example("Bundle-example-td2-iti65-lot-soumission.json", &ins);
    bundle["entry"].as_array_mut().unwrap().push(json!({
        "request": { "method": "GET", "url": format!("Patient?identifier={INS}|{ins}") }
    }));
    let reply = app.post("/", &As::doctor(), &bundle);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let found = &reply.json()["entry"][3]["resource"];
    assert_eq!(found["entry"][0]["resource"]["id"], json!(space_id));

    // A Folder naming the document just deposited (an entry naming nothing readable
    // would be left out of every answer).
    let mut folder = ig_example("List-ExampleFolder.json", &space_id);
    folder["entry"][0]["item"]["reference"] =
        json!(locations(&reply)[1].split("/_history").next().unwrap());
    let folder = app.post("/List", &As::doctor(), &folder);
    assert_eq!(folder.status, 201, "{}", folder.body);
    let mut changed = folder.json();
    changed["title"] = json!("Dossier renommé");
    let path = format!("/List/{}", changed["id"].as_str().unwrap());
    let colleague = doctor("810000000002");
    app.create(
        &As::Patient(space_id.clone()),
        &permit_professional(&space_id, "810000000002"),
    );
    assert_refused(&app.put(&path, &colleague, &changed), 403, "R-ACC-9");
    let updated = app.put(&path, &As::doctor(), &changed);
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.json()["title"], "Dossier renommé");
}

// ------------------------------------------------ from the attacker round (R-MHD)

#[test]
fn r_mhd_7_a_conditional_patch_is_not_cut_before_the_rules_decide() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    assert_eq!(provide(&app, &As::doctor(), &ins).status, 200);
    // A psychiatric synthesis the pharmacist's matrix hides, and a prescription.
    let synthesis = crate::support::fixtures::document(&space_id, "68599-0", "2024-02-01");
    let prescription = crate::support::fixtures::document(&space_id, "57833-6", "2024-02-02");
    app.create(&As::doctor(), &synthesis);
    app.create(&As::doctor(), &prescription);
    app.create(
        &As::Patient(space_id.clone()),
        &permit_professional(&space_id, "810000000006"),
    );
    let pharmacist = As::professional("810000000006", "21", None, None, None);
    let test_only = json!([{ "op": "test", "path": "/status", "value": "nothing" }]);
    // Result parameters are refused: nothing cuts the matches before the rules.
    for extra in ["_count=1", "_sort=-_id", "_offset=1"] {
        let reply = json_patch(
            &app,
            &format!("/DocumentReference?patient={space_id}&type=http://loinc.org|57833-6&{extra}"),
            &pharmacist,
            &test_only,
        );
        assert_eq!(reply.status, 400, "{extra}: {}", reply.body);
    }
    // With or without the hidden type among the values, the same answer.
    let answer = |types: &str| {
        let reply = json_patch(
            &app,
            &format!("/DocumentReference?patient={space_id}&type={types}"),
            &pharmacist,
            &test_only,
        );
        (reply.status, reply.json()["issue"][0]["code"].clone())
    };
    assert_eq!(
        answer("http://loinc.org|68599-0,http://loinc.org|57833-6"),
        answer("http://loinc.org|99999-9,http://loinc.org|57833-6")
    );
    assert_eq!(
        answer("http://loinc.org|68599-0"),
        answer("http://loinc.org|99999-9")
    );
}

#[test]
fn r_pat_1_the_trace_does_not_name_hidden_documents_in_queries() {
    let app = TestApp::new();
    let (space_id, _) = space(&app);
    let hidden = app.create(
        &As::doctor(),
        &crate::support::fixtures::labelled_document(
            &space_id,
            "11502-2",
            "2024-03-01",
            "INVISIBLE_PATIENT",
        ),
    );
    let shown = app.create(
        &As::doctor(),
        &crate::support::fixtures::document(&space_id, "11488-4", "2024-03-02"),
    );
    for id in [hidden.as_str(), shown.as_str(), "nobody-holds-this"] {
        let reply = app.get(
            &format!("/DocumentReference?patient={space_id}&_id={id}"),
            &As::doctor(),
        );
        assert_eq!(reply.status, 200);
    }
    let trace = app.get(
        &format!("/AuditEvent?patient={space_id}&subtype=search-type&_count=100"),
        &As::Patient(space_id.clone()),
    );
    let all = trace_queries(&trace.json()).join("\n");
    assert!(!all.contains(&hidden), "{all}");
    assert!(
        !all.contains("nobody-holds-this"),
        "missing and hidden look alike: {all}"
    );
    assert!(all.contains(&shown), "{all}");
    assert!(all.contains("_id=%28masqu%C3%A9%29"), "{all}");
}

#[test]
fn r_pat_2_a_holder_does_not_rewrite_a_professionals_list_nor_anyone_a_list_they_see_in_part() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let located = locations(&provide(&app, &As::doctor(), &ins));
    let (list, document) = (id_of(&located[0]), id_of(&located[1]));
    let path = format!("/List/{list}");
    let holder = As::Patient(space_id.clone());
    let mut changed = app.get(&path, &holder).json();
    changed["title"] = json!("Mon lot");
    assert_refused(&app.put(&path, &holder, &changed), 403, "R-PAT-2");
    // The patient masks the document: the author of the List sees it still (R-ACC-7),
    // but a List naming what its writer may not see is not replaced by them.
    let visible = app.create(
        &As::doctor(),
        &crate::support::fixtures::document(&space_id, "11488-4", "2024-05-01"),
    );
    let colleague_list = {
        let mut folder = ig_example("List-ExampleFolder.json", &space_id);
        folder["entry"][0]["item"]["reference"] = json!(format!("DocumentReference/{document}"));
        folder["entry"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "item": { "reference": format!("DocumentReference/{visible}") } }));
        app.create(
            &As::Patient(space_id.clone()),
            &permit_professional(&space_id, "810000000002"),
        );
        let reply = app.post("/List", &doctor("810000000002"), &folder);
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.json()
    };
    let mask = json_patch(
        &app,
        &format!("/DocumentReference/{document}"),
        &holder,
        &json!([{ "op": "replace", "path": "/securityLabel/0", "value":
            { "coding": [{ "system": TRE_A07, "code": "MASQUE_PS" }] } }]),
    );
    assert_eq!(mask.status, 200);
    let folder_path = format!("/List/{}", colleague_list["id"].as_str().unwrap());
    let mut seen = app.get(&folder_path, &doctor("810000000002")).json();
    assert_eq!(seen["entry"].as_array().unwrap().len(), 1, "{seen}");
    seen["title"] = json!("Renommé");
    let reply = app.put(&folder_path, &doctor("810000000002"), &seen);
    assert_eq!(reply.status, 409, "{}", reply.body);
    // The entry is still there for whoever may see it.
    assert!(app.get(&folder_path, &holder).body.contains(&document));
}

#[test]
fn r_mhd_7_a_patch_cannot_grow_a_document_beyond_what_it_carries() {
    let app = TestApp::new();
    let (_, ins) = space(&app);
    let located = locations(&provide(&app, &As::doctor(), &ins));
    let path = located[1].split("/_history").next().unwrap().to_owned();
    let before = app.data_rows();
    let mut operations = vec![json!({ "op": "add", "path": "/extension",
        "value": [{ "url": ARCHIVED, "valueBoolean": true }] })];
    for i in 0..24 {
        operations.push(
            json!({ "op": "copy", "from": "/extension/0", "path": format!("/extension/0/k{i}") }),
        );
    }
    let reply = json_patch(&app, &path, &As::doctor(), &Value::Array(operations));
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(app.data_rows(), before);
    // The isArchived extension holds a boolean and nothing else.
    let odd = json_patch(
        &app,
        &path,
        &As::doctor(),
        &json!([{ "op": "add", "path": "/extension",
            "value": [{ "url": ARCHIVED, "valueBoolean": true, "valueString": "x" }] }]),
    );
    assert!(matches!(odd.status, 400 | 422), "{}", odd.body);
    let extra = json_patch(
        &app,
        &path,
        &As::doctor(),
        &json!([{ "op": "add", "path": "/extension",
            "value": [{ "url": ARCHIVED, "valueBoolean": true, "k": { "url": "x" } }] }]),
    );
    assert!(matches!(extra.status, 400 | 422), "{}", extra.body);
    let not_boolean = json_patch(
        &app,
        &path,
        &As::doctor(),
        &json!([{ "op": "add", "path": "/extension",
            "value": [{ "url": ARCHIVED, "valueBoolean": "yes" }] }]),
    );
    assert!(
        matches!(not_boolean.status, 400 | 422),
        "{}",
        not_boolean.body
    );
    let twice = json_patch(
        &app,
        &path,
        &As::doctor(),
        &json!([{ "op": "add", "path": "/extension",
            "value": [{ "url": ARCHIVED, "valueBoolean": true }, { "url": ARCHIVED, "valueBoolean": false }] }]),
    );
    assert_eq!(twice.status, 422, "{}", twice.body);
    assert_eq!(app.data_rows(), before);
}

#[test]
fn r_acc_7_the_patients_masking_over_a_professionals_is_the_patients() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let located = locations(&provide(&app, &As::doctor(), &ins));
    let path = located[1].split("/_history").next().unwrap().to_owned();
    let masque = json!({ "coding": [{ "system": TRE_A07, "code": "MASQUE_PS" }] });
    assert_eq!(
        json_patch(
            &app,
            &path,
            &As::doctor(),
            &json!([{ "op": "replace", "path": "/securityLabel/0", "value": masque }])
        )
        .status,
        200
    );
    // The patient masks it too (a second label): the masking is now theirs.
    assert_eq!(
        json_patch(
            &app,
            &path,
            &As::Patient(space_id),
            &json!([{ "op": "add", "path": "/securityLabel/-", "value": masque }])
        )
        .status,
        200
    );
    let normal = json!([{ "op": "replace", "path": "/securityLabel",
        "value": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N" }] }] }]);
    assert_refused(
        &json_patch(&app, &path, &As::doctor(), &normal),
        403,
        "R-PAT-2",
    );
}

#[test]
fn r_mhd_5_a_list_and_a_content_type_have_bounds() {
    let app = TestApp::new();
    let (space_id, _) = space(&app);
    let mut folder = ig_example("List-ExampleFolder.json", &space_id);
    let entry = folder["entry"][0].clone();
    folder["entry"] = Value::Array(vec![entry; 1001]);
    let reply = app.post("/List", &As::doctor(), &folder);
    assert_eq!(reply.status, 413, "{}", reply.body);
    let binary = json!({ "resourceType": "Binary", "contentType": "*/*", "data": "AA==",
        "securityContext": { "reference": format!("Patient/{space_id}") } });
    let reply = app.post("/Binary", &As::doctor(), &binary);
    assert_eq!(reply.status, 422, "{}", reply.body);
}

#[test]
fn r_pat_1_and_r_acc_6_no_trace_query_names_a_hidden_document_whatever_its_parameter() {
    let app = TestApp::new();
    let (space_id, _) = space(&app);
    let hidden = app.create(
        &As::doctor(),
        &crate::support::fixtures::labelled_document(
            &space_id,
            "11502-2",
            "2024-03-01",
            "INVISIBLE_PATIENT",
        ),
    );
    for query in [
        format!("List?patient={space_id}&item={hidden}"),
        format!("DocumentReference?patient={space_id}&relatesto={hidden}"),
        format!("DocumentReference?patient={space_id}&foo={hidden}"),
        format!("Communication?patient={space_id}&part-of={hidden}"),
        format!("DocumentReference?patient={space_id}&related=DocumentReference/{hidden}"),
    ] {
        let reply = app.get(&query, &As::doctor());
        assert!(matches!(reply.status, 200 | 400), "{query}: {}", reply.body);
    }
    let trace = app.get(
        &format!("/AuditEvent?patient={space_id}&_count=200"),
        &As::Patient(space_id.clone()),
    );
    assert!(!trace.body.contains(&hidden), "{}", trace.body);
    for query in trace_queries(&trace.json()) {
        assert!(!query.contains(&hidden), "{query}");
    }
    // A document the matrix keeps from médecins (an attestation de résidence the
    // patient deposits): the médecin traitant's reading of the whole trace does not
    // name it either.
    let attestation = json!({
        "resourceType": "DocumentReference", "status": "current",
        "type": { "coding": [{ "system": "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire", "code": "ATTEST-RESID" }] },
        "category": [{ "coding": [{ "system": "urn:oid:1.2.250.1.213.1.1.4.1", "code": "90" }] }],
        "subject": { "reference": format!("Patient/{space_id}") },
        "content": [{ "attachment": { "contentType": "application/pdf", "data": "JVBERi0xLjQK" } }],
    });
    let kept = app.create(&As::Patient(space_id.clone()), &attestation);
    assert_eq!(
        app.get(&format!("/DocumentReference/{kept}"), &As::doctor())
            .status,
        404
    );
    let _ = app.get(
        &format!("/DocumentReference?patient={space_id}&_id={kept}"),
        &As::Patient(space_id.clone()),
    );
    let whole = app.get(
        &format!("/AuditEvent?patient={space_id}&_count=200"),
        &As::doctor(),
    );
    assert_eq!(whole.status, 200, "{}", whole.body);
    assert!(!whole.body.contains(&kept), "{}", whole.body);
    for query in trace_queries(&whole.json()) {
        assert!(!query.contains(&kept), "{query}");
    }
}

#[test]
fn r_mhd_7_patches_cannot_build_what_a_request_could_not_send() {
    let app = TestApp::with(|config| config.max_body_bytes = 1024 * 1024);
    let (space_id, ins) = space(&app);
    let located = locations(&provide(&app, &As::doctor(), &ins));
    let path = located[1].split("/_history").next().unwrap().to_owned();
    let holder = As::Patient(space_id);
    let label = json!([{ "op": "add", "path": "/securityLabel/-",
        "value": { "text": "q".repeat(600 * 1024) } }]);
    assert_eq!(json_patch(&app, &path, &holder, &label).status, 200);
    let second = json_patch(&app, &path, &holder, &label);
    assert_eq!(second.status, 413, "{}", second.body);
}

#[test]
fn r_mhd_5_naming_a_hidden_document_in_ones_own_list_answers_as_naming_a_missing_one() {
    let app = TestApp::new();
    let (space_id, _) = space(&app);
    let masked = app.create(
        &As::doctor(),
        &crate::support::fixtures::labelled_document(
            &space_id,
            "11488-4",
            "2024-01-03",
            "MASQUE_PS",
        ),
    );
    let visible = app.create(
        &As::doctor(),
        &crate::support::fixtures::document(&space_id, "11488-4", "2024-01-04"),
    );
    app.create(
        &As::Patient(space_id.clone()),
        &permit_professional(&space_id, "810000000002"),
    );
    let colleague = doctor("810000000002");
    let answers = |named: &str| {
        let list = json!({
            "resourceType": "List", "status": "current", "mode": "working",
            "subject": { "reference": format!("Patient/{space_id}") },
            "entry": [{ "item": { "reference": format!("DocumentReference/{visible}") } }],
        });
        let created = app.post("/List", &colleague, &list);
        assert_eq!(created.status, 201, "{}", created.body);
        let mut changed = created.json();
        changed["entry"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "item": { "reference": format!("DocumentReference/{named}") } }));
        let path = format!("/List/{}", changed["id"].as_str().unwrap());
        let first = app.put(&path, &colleague, &changed);
        let read = app.get(&path, &colleague);
        let second = app.put(&path, &colleague, &read.json());
        (
            first.status,
            first.json()["entry"].as_array().map(Vec::len),
            read.json()["entry"].as_array().map(Vec::len),
            second.status,
        )
    };
    assert_eq!(answers(&masked), answers("nobody-holds-this"));
}

#[test]
fn r_mhd_7_entered_in_error_by_put_withdraws_too() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let located = locations(&provide(&app, &As::doctor(), &ins));
    let path = located[1].split("/_history").next().unwrap().to_owned();
    let mut withdrawn = app.get(&path, &As::doctor()).json();
    withdrawn["status"] = json!("entered-in-error");
    withdrawn.as_object_mut().unwrap().remove("meta");
    // Not by a colleague (R-ACC-9)…
    app.create(
        &As::Patient(space_id.clone()),
        &permit_professional(&space_id, "810000000002"),
    );
    assert_refused(
        &app.put(&path, &doctor("810000000002"), &withdrawn),
        403,
        "R-ACC-9",
    );
    // …by the author: gone from reads and searches, kept in history.
    let reply = app.put(&path, &As::doctor(), &withdrawn);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(app.get(&path, &As::doctor()).status, 410);
    assert!(match_ids(&td31a(&app, &As::doctor(), &ins).json()).is_empty());
    assert!(
        app.get(&format!("{path}/_history"), &As::doctor())
            .body
            .contains("entered-in-error")
    );
}

// ------------------------------------------------ third attacker round

#[test]
fn r_pat_1_a_hidden_documents_content_stays_hidden_once_nothing_points_at_it() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let holder = As::Patient(space_id.clone());
    // An announcement pending, deposited through ITI-65.
    let mut bundle = example("Bundle-example-td2-iti65-lot-soumission.json", &ins);
    bundle["entry"][1]["resource"]["securityLabel"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "coding": [{ "system": TRE_A07, "code": "INVISIBLE_PATIENT" }] }));
    let reply = app.post("/", &As::doctor(), &bundle);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let located = locations(&reply);
    let binary = format!("/{}", located[2].split("/_history").next().unwrap());
    let document = located[1].split("/_history").next().unwrap().to_owned();
    assert_eq!(app.get(&binary, &holder).status, 404);
    // Withdrawn by its author: the content is read by nobody but its depositor.
    let withdrawn = json_patch(
        &app,
        &document,
        &As::doctor(),
        &json!([{ "op": "replace", "path": "/status", "value": "entered-in-error" }]),
    );
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.body);
    assert_eq!(app.get(&binary, &holder).status, 404);
    assert_eq!(app.get(&binary, &As::doctor()).status, 200);
    // A hidden document pointing at its content in a form not recognised as a
    // reference: the holder does not read it either.
    let raw = app.create(
        &As::doctor(),
        &json!({ "resourceType": "Binary", "contentType": "text/plain", "data": "c2VjcmV0",
                 "securityContext": { "reference": format!("Patient/{space_id}") } }),
    );
    let mut odd = crate::support::fixtures::labelled_document(
        &space_id,
        "11502-2",
        "2024-03-01",
        "INVISIBLE_PATIENT",
    );
    odd["content"] = json!([{ "attachment": { "contentType": "text/plain",
        "url": format!("Binary/{raw}#page") } }]);
    app.create(&As::doctor(), &odd);
    assert_eq!(app.get(&format!("/Binary/{raw}"), &holder).status, 404);
}

#[test]
fn r_acc_3_a_list_search_by_item_is_refused_first_for_whoever_may_not_enter() {
    let app = TestApp::new();
    let (a, _) = space(&app);
    let (c, _) = space(&app);
    let in_c = app.create(
        &As::doctor(),
        &crate::support::fixtures::document(&c, "11488-4", "2024-01-01"),
    );
    let stranger = doctor("810000000003");
    let existing = app.get(&format!("/List?patient={a}&item={in_c}"), &stranger);
    let missing = app.get(
        &format!("/List?patient={a}&item=nobody-holds-this"),
        &stranger,
    );
    assert_refused(&existing, 403, "R-ACC-3");
    assert_eq!(existing.json()["issue"], missing.json()["issue"]);
}

#[test]
fn r_acc_11_a_professionals_own_trace_does_not_tell_whose_hidden_document_it_was() {
    let app = TestApp::new();
    let (c, ins) = space(&app);
    let located = locations(&provide(&app, &As::doctor(), &ins));
    let document = id_of(&located[1]);
    let stranger = doctor("810000000003");
    let probe = json!([{ "op": "test", "path": "/status", "value": "current" }]);
    let hidden = json_patch(
        &app,
        "/DocumentReference?identifier=urn:ietf:rfc:3986|urn:oid:1.2.250.1.213.1.4.8.99999.2",
        &stranger,
        &probe,
    );
    assert_eq!(hidden.status, 404);
    assert_eq!(
        app.get(&format!("/DocumentReference/{document}"), &stranger)
            .status,
        404
    );
    let own = app.get("/AuditEvent?_count=100", &stranger);
    assert!(!own.body.contains(&format!("Patient/{c}")), "{}", own.body);
    // By the space they may not enter: nothing, as for any other space.
    let by_space = app.get(
        &format!("/AuditEvent?patient={c}&entity=DocumentReference/{document}&_total=accurate"),
        &stranger,
    );
    assert_eq!(by_space.status, 200, "{}", by_space.body);
    assert_eq!(by_space.json()["total"], 0);
}

#[test]
fn r_acc_6_the_whole_trace_of_the_medecin_traitant_does_not_count_what_is_hidden_from_them() {
    let app = TestApp::new();
    let (a, _) = space(&app);
    let holder = As::Patient(a.clone());
    let attestation = json!({
        "resourceType": "DocumentReference", "status": "current",
        "type": { "coding": [{ "system": "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire", "code": "ATTEST-RESID" }] },
        "category": [{ "coding": [{ "system": "urn:oid:1.2.250.1.213.1.1.4.1", "code": "90" }] }],
        "subject": { "reference": format!("Patient/{a}") },
        "content": [{ "attachment": { "contentType": "application/pdf", "data": "JVBERi0xLjQK" } }],
    });
    let kept = app.create(&holder, &attestation);
    assert_eq!(
        app.get(&format!("/DocumentReference/{kept}"), &holder)
            .status,
        200
    );
    assert_eq!(
        app.get(&format!("/DocumentReference/{kept}"), &As::doctor())
            .status,
        404
    );
    let count = |entity: &str| {
        app.get(
            &format!("/AuditEvent?patient={a}&entity={entity}&_total=accurate"),
            &As::doctor(),
        )
        .json()["total"]
            .clone()
    };
    assert_eq!(count(&format!("DocumentReference/{kept}")), json!(0));
    assert_eq!(count("DocumentReference/nobody-holds-this"), json!(0));
    let whole = app.get(
        &format!("/AuditEvent?patient={a}&_count=200"),
        &As::doctor(),
    );
    assert!(!whole.body.contains("R-ACC-6"), "{}", whole.body);
    assert!(!whole.body.contains(&kept), "{}", whole.body);
    // Deleted by the patient, it is not named either.
    assert_eq!(
        app.delete(&format!("/DocumentReference/{kept}"), &holder)
            .status,
        204
    );
    let whole = app.get(
        &format!("/AuditEvent?patient={a}&_count=200"),
        &As::doctor(),
    );
    assert!(!whole.body.contains(&kept), "{}", whole.body);
    // The patient's OR-list by entity: a hidden name and a missing one alike.
    let mixed = |other: &str| {
        app.get(
            &format!("/AuditEvent?patient={a}&entity=DocumentReference/{other},Patient/{a}&_total=accurate"),
            &holder,
        )
        .json()["total"]
            .clone()
    };
    assert_eq!(mixed(&kept), mixed("nobody-holds-this"));
}

#[test]
fn r_pat_4_others_outcomes_are_read_as_their_status() {
    let app = TestApp::new();
    let (a, ins) = space(&app);
    assert_eq!(provide(&app, &As::doctor(), &ins).status, 200);
    // A second deposit of the same uniqueId: 409, its detail names the uniqueId.
    assert_eq!(provide(&app, &As::doctor(), &ins).status, 409);
    let trace = app.get(
        &format!("/AuditEvent?patient={a}&_count=200"),
        &As::Patient(a.clone()),
    );
    assert!(
        trace.body.contains("\"outcomeDesc\":\"409\""),
        "{}",
        trace.body
    );
    assert!(!trace.body.contains("99999.2"), "{}", trace.body);
}

#[test]
fn r_acc_11_a_stale_if_match_on_a_hidden_document_reads_as_answered_in_ones_own_trace() {
    let app = TestApp::new();
    let (a, _) = space(&app);
    let synthesis = app.create(
        &As::doctor(),
        &crate::support::fixtures::document(&a, "68599-0", "2024-02-01"),
    );
    app.create(
        &As::Patient(a.clone()),
        &permit_professional(&a, "810000000006"),
    );
    let pharmacist = As::professional("810000000006", "21", None, None, None);
    let mut body = crate::support::fixtures::document(&a, "68599-0", "2024-02-01");
    body["id"] = json!(synthesis);
    let reply = app
        .request("PUT", &format!("/DocumentReference/{synthesis}"))
        .as_(&pharmacist)
        .fhir()
        .header("If-Match", "W/\"5\"")
        .header("X-Request-Id", "stale-on-hidden")
        .send(Some(body.to_string()));
    assert_eq!(reply.status, 412, "{}", reply.body);
    let own = app.get("/AuditEvent?_count=100", &pharmacist);
    assert!(!own.body.contains("R-ACC-6"), "{}", own.body);
    let event = own.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["resource"].clone())
        .find(|event| event.to_string().contains("stale-on-hidden"))
        .expect("the attempt is in the pharmacist's own trace");
    assert!(
        !event.to_string().contains(&format!("Patient/{a}")),
        "the space: {event}"
    );
    assert!(
        event["outcomeDesc"].as_str().unwrap().starts_with("412"),
        "{event}"
    );
}

#[test]
fn r_acc_11_ones_own_attempts_at_hidden_documents_are_not_found_by_their_space() {
    let app = TestApp::new();
    let (a, _) = space(&app);
    let synthesis = app.create(
        &As::doctor(),
        &crate::support::fixtures::document(&a, "68599-0", "2024-02-01"),
    );
    app.create(
        &As::Patient(a.clone()),
        &permit_professional(&a, "810000000006"),
    );
    let pharmacist = As::professional("810000000006", "21", None, None, None);
    for (request_id, id) in [
        ("probe-hidden", synthesis.as_str()),
        ("probe-missing", "nobody-holds-this"),
    ] {
        let reply = app
            .request("GET", &format!("/DocumentReference/{id}"))
            .as_(&pharmacist)
            .header("X-Request-Id", request_id)
            .send(None);
        assert_eq!(reply.status, 404);
    }
    let by_space = app.get(&format!("/AuditEvent?patient={a}&_count=200"), &pharmacist);
    assert!(!by_space.body.contains("probe-hidden"), "{}", by_space.body);
    assert!(
        !by_space.body.contains("probe-missing"),
        "{}",
        by_space.body
    );
    let own = app.get("/AuditEvent?_count=200", &pharmacist);
    assert!(own.body.contains("probe-hidden") && own.body.contains("probe-missing"));
    assert!(!own.body.contains("audit-concealed"), "{}", own.body);
    // The holder still sees the attempt in their space's trace (R-PAT-4).
    let holder_view = app.get(
        &format!("/AuditEvent?patient={a}&_count=200"),
        &As::Patient(a.clone()),
    );
    assert!(
        holder_view.body.contains("probe-hidden"),
        "{}",
        holder_view.body
    );
    assert!(!holder_view.body.contains("audit-concealed"));
}

#[test]
fn r_mhd_5_lists_and_their_items_through_includes_history_and_bundles() {
    let app = TestApp::new();
    let (space_id, ins) = space(&app);
    let reply = app.post("/", &As::doctor(), &two_documents(&ins, None));
    let located = locations(&reply);
    let (list, shown, masked) = (id_of(&located[0]), id_of(&located[1]), id_of(&located[2]));
    let mask = json_patch(
        &app,
        &format!("/DocumentReference/{masked}"),
        &As::Patient(space_id.clone()),
        &json!([{ "op": "replace", "path": "/securityLabel/0", "value":
            { "coding": [{ "system": TRE_A07, "code": "MASQUE_PS" }] } }]),
    );
    assert_eq!(mask.status, 200);
    app.create(
        &As::Patient(space_id.clone()),
        &permit_professional(&space_id, "810000000002"),
    );
    let colleague = doctor("810000000002");
    // _include from the List: the shown document only.
    let included = app.get(
        &format!("/List?patient={space_id}&_include=List:item"),
        &colleague,
    );
    assert_eq!(included.status, 200, "{}", included.body);
    assert!(
        included
            .body
            .contains(&format!("DocumentReference/{shown}"))
    );
    assert!(!included.body.contains(&masked), "{}", included.body);
    // _revinclude from the documents: the List, without the masked entry.
    let revincluded = app.get(
        &format!("/DocumentReference?patient={space_id}&_revinclude=List:item"),
        &colleague,
    );
    assert_eq!(revincluded.status, 200, "{}", revincluded.body);
    assert!(revincluded.body.contains(&format!("List/{list}")));
    assert!(!revincluded.body.contains(&masked), "{}", revincluded.body);
    // History and a batch: the same view.
    let history = app.get(&format!("/List/{list}/_history"), &colleague);
    assert_eq!(history.status, 200, "{}", history.body);
    assert!(!history.body.contains(&masked));
    let batch = app.post(
        "/",
        &colleague,
        &json!({ "resourceType": "Bundle", "type": "batch", "entry": [
            { "request": { "method": "GET", "url": format!("List/{list}") } },
            { "request": { "method": "GET", "url": format!("List?patient={space_id}") } }
        ]}),
    );
    assert_eq!(batch.status, 200, "{}", batch.body);
    assert!(batch.body.contains(&shown));
    assert!(!batch.body.contains(&masked), "{}", batch.body);
    // The author sees both everywhere.
    let author = app.get(
        &format!("/List?patient={space_id}&_include=List:item"),
        &As::doctor(),
    );
    assert!(author.body.contains(&masked) && author.body.contains(&shown));
}

/// R-MHD-7, R-ACC-9: a professional's conditional PATCH by identifier alone matches
/// among their own deposits, so that documents hidden from them (of a space they may
/// not enter, masked) never count against the bound of 50 candidates: the answer is
/// the same whether many hidden documents share the identifier or none does.
#[test]
fn r_mhd_7_a_conditional_patch_by_identifier_counts_no_hidden_document() {
    let app = TestApp::new();
    let (space_id, _) = space(&app);
    let shared = "urn:x|SHARED-1";
    let mut bundle = Vec::new();
    for day in 0..51 {
        let mut document = crate::support::fixtures::document(
            &space_id,
            "11488-4",
            &format!("2024-01-{:02}", day % 28 + 1),
        );
        document["identifier"] = json!([{ "system": "urn:x", "value": "SHARED-1" }]);
        bundle.push(json!({ "resource": document,
            "request": { "method": "POST", "url": "DocumentReference" } }));
    }
    let reply = app.post(
        "",
        &As::doctor(),
        &json!({ "resourceType": "Bundle", "type": "transaction", "entry": bundle }),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let stranger = As::professional("810000000003", "10", None, None, None);
    let test_only = json!([{ "op": "test", "path": "/status", "value": "current" }]);
    let answer = |who: &As, identifier: &str| {
        let reply = json_patch(
            &app,
            &format!("/DocumentReference?identifier={identifier}"),
            who,
            &test_only,
        );
        (
            reply.status,
            reply.json()["issue"][0]["diagnostics"].clone(),
        )
    };
    let unknown = answer(&stranger, "urn:x|NOBODY");
    assert_eq!(unknown.0, 404, "{unknown:?}");
    assert_eq!(answer(&stranger, shared), unknown);
    // Their author is told the search is too wide.
    let reply = json_patch(
        &app,
        &format!("/DocumentReference?identifier={shared}"),
        &As::doctor(),
        &test_only,
    );
    assert_eq!(reply.status, 412, "{}", reply.body);
    assert!(reply.body.contains("more than 50"), "{}", reply.body);
}
