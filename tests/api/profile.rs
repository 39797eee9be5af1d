//! The medical profile (R-UI-1): Observation, Condition, MedicationStatement and
//! AllergyIntolerance of a space, kept by its holder, read by the professionals the
//! space lets in (R-ACC-1 … 5), by no profession outside the matrix (R-ACC-12), under
//! the scopes an app was given (R-ACC-13), through every path.

use serde_json::{Value, json};

use crate::support::fixtures::{
    INS, block_professional, emergency_setting, nir, patient, permit_professional,
};
use crate::support::{As, Reply, TestApp, assert_refused, match_ids};

const COLLEAGUE: &str = "810000000002";
const STRANGER: &str = "810000000003";

/// One entry of each type of the profile, for `patient_id`.
fn entries(patient_id: &str) -> Vec<Value> {
    let subject = json!({ "reference": format!("Patient/{patient_id}") });
    vec![
        json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs" }] }],
            "code": { "coding": [{ "system": "http://loinc.org", "code": "8302-2" }], "text": "Taille" },
            "subject": subject,
            "effectiveDateTime": "2026-11-01",
            "valueQuantity": { "value": 1.72, "unit": "m", "system": "http://unitsofmeasure.org", "code": "m" }
        }),
        json!({
            "resourceType": "Condition",
            "code": { "text": "Asthme" },
            "subject": subject
        }),
        json!({
            "resourceType": "MedicationStatement",
            "status": "active",
            "medicationCodeableConcept": { "text": "Ventoline" },
            "subject": subject
        }),
        json!({
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active" }] },
            "code": { "text": "Pénicilline" },
            "patient": subject
        }),
    ]
}

/// A space whose médecin traitant is `As::doctor()`, with a colleague authorised by
/// a permit Consent and one profile entry of each type the holder wrote.
struct Profile {
    app: TestApp,
    patient: String,
    nir: String,
    /// (type, id) of each entry.
    entries: Vec<(String, String)>,
}

fn profile() -> Profile {
    let app = TestApp::new();
    let nir = nir();
    // A minor, so that a representative has the holder's rights (R-PAT-5).
    let patient_id = app.create(
        &As::System,
        &patient(&nir, "Martin", "Claire", "2012-05-01"),
    );
    let holder = As::Patient(patient_id.clone());
    app.create(&holder, &permit_professional(&patient_id, COLLEAGUE));
    let entries = entries(&patient_id)
        .into_iter()
        .map(|entry| {
            let kind = entry["resourceType"].as_str().unwrap().to_owned();
            let id = app.create(&holder, &entry);
            (kind, id)
        })
        .collect();
    Profile {
        app,
        patient: patient_id,
        nir,
        entries,
    }
}

fn doctor(id: &str) -> As {
    As::professional(id, "10", None, None, None)
}

impl Profile {
    fn holder(&self) -> As {
        As::Patient(self.patient.clone())
    }

    fn read(&self, who: &As, kind: &str, id: &str) -> Reply {
        self.app.get(&format!("{kind}/{id}"), who)
    }

    fn search(&self, who: &As, kind: &str) -> Reply {
        self.app
            .get(&format!("{kind}?patient={}", self.patient), who)
    }

    /// Every path a professional may take to an entry, each answering it.
    fn assert_reads_everything(&self, who: &As) {
        for (kind, id) in &self.entries {
            assert_eq!(self.read(who, kind, id).status, 200, "read {kind}");
            let reply = self.app.get(&format!("{kind}/{id}/_history/1"), who);
            assert_eq!(reply.status, 200, "vread {kind}: {}", reply.body);
            let reply = self.app.get(&format!("{kind}/{id}/_history"), who);
            assert_eq!(reply.status, 200, "history {kind}: {}", reply.body);
            assert_eq!(reply.json()["total"], 1);
            let reply = self.search(who, kind);
            assert_eq!(reply.status, 200, "search {kind}: {}", reply.body);
            assert_eq!(match_ids(&reply.json()), vec![id.clone()]);
        }
        let reply = self.app.get(
            &format!(
                "Patient?identifier={INS}|{}&_revinclude=Observation:patient&_revinclude=AllergyIntolerance:patient",
                self.nir
            ),
            who,
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(included(&reply.json()).len(), 2, "{}", reply.body);
    }

    /// Every path a professional may take to an entry, each refused with `rule`:
    /// reads and vreads answer 404, searches 403 with the rule, nothing included.
    fn assert_reads_nothing(&self, who: &As, rule: &str) {
        for (kind, id) in &self.entries {
            assert_refused(&self.read(who, kind, id), 404, rule);
            let reply = self.app.get(&format!("{kind}/{id}/_history/1"), who);
            assert_eq!(reply.status, 404, "vread {kind}: {}", reply.body);
            let reply = self.app.get(&format!("{kind}/{id}/_history"), who);
            assert!(
                !reply.body.contains(&self.patient) || reply.status >= 400,
                "history {kind}: {}",
                reply.body
            );
            assert_refused(&self.search(who, kind), 403, rule);
        }
        let reply = self.app.get(
            &format!(
                "Patient?identifier={INS}|{}&_revinclude=Observation:patient&_revinclude=Condition:subject&_revinclude=MedicationStatement:patient&_revinclude=AllergyIntolerance:patient",
                self.nir
            ),
            who,
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(included(&reply.json()).is_empty(), "{}", reply.body);
        let batch = json!({
            "resourceType": "Bundle",
            "type": "batch",
            "entry": self.entries.iter().map(|(kind, id)| json!({
                "request": { "method": "GET", "url": format!("{kind}/{id}") }
            })).collect::<Vec<_>>()
        });
        let reply = self.app.post("", who, &batch);
        assert_eq!(reply.status, 200, "{}", reply.body);
        for entry in reply.json()["entry"].as_array().unwrap() {
            assert!(
                entry
                    .get("resource")
                    .is_none_or(|r| r["resourceType"] == "OperationOutcome")
            );
            assert_eq!(
                entry["response"]["status"].as_str().unwrap()[..3].to_owned(),
                "404"
            );
        }
    }
}

/// The resources a searchset carries beside its matches.
fn included(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["search"]["mode"] == "include")
        .map(|entry| entry["resource"].clone())
        .collect()
}

#[test]
fn r_ui_1_the_holder_keeps_their_medical_profile_and_deletes_it_for_good() {
    let p = profile();
    let holder = p.holder();
    let (_, height) = &p.entries[0];
    let reply = p.app.get(
        &format!(
            "Observation?code=http://loinc.org|8302-2&patient={}",
            p.patient
        ),
        &holder,
    );
    assert_eq!(match_ids(&reply.json()), vec![height.clone()]);
    // A new measure replaces the old one; the history keeps both for the holder.
    let mut taller = p.read(&holder, "Observation", height).json();
    taller["valueQuantity"]["value"] = json!(1.73);
    let reply = p
        .app
        .put(&format!("Observation/{height}"), &holder, &taller);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = p
        .app
        .get(&format!("Observation/{height}/_history"), &holder);
    assert_eq!(reply.json()["total"], 2);
    // A representative has the holder's rights (R-PAT-5).
    let parent = As::Representative(p.patient.clone());
    assert_eq!(p.search(&parent, "Condition").json()["total"], 1);
    let by_parent = p.app.create(&parent, &entries(&p.patient)[2]);
    assert_eq!(
        p.app
            .delete(&format!("MedicationStatement/{by_parent}"), &parent)
            .status,
        204
    );
    // Deleted by the holder: gone at once, every version with it (seed 001).
    for (kind, id) in &p.entries {
        assert_eq!(p.app.delete(&format!("{kind}/{id}"), &holder).status, 204);
        assert_eq!(p.read(&holder, kind, id).status, 404);
        assert_eq!(
            p.app
                .get(&format!("{kind}/{id}/_history/1"), &holder)
                .status,
            404
        );
        assert_eq!(p.search(&As::doctor(), kind).json()["total"], 0);
    }
}

#[test]
fn r_acc_3_authorised_professionals_read_the_profile_and_no_one_else() {
    let p = profile();
    // The médecin traitant and a colleague the holder authorised.
    p.assert_reads_everything(&As::doctor());
    p.assert_reads_everything(&doctor(COLLEAGUE));
    // A professional without authorisation.
    p.assert_reads_nothing(&doctor(STRANGER), "R-ACC-3");
    // The trace tells the holder of the médecin traitant's reading.
    let (kind, id) = &p.entries[1];
    let reply = p
        .app
        .get(&format!("AuditEvent?entity={kind}/{id}"), &p.holder());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.body.contains(crate::support::fixtures::DOCTOR_IDNAT),
        "{}",
        reply.body
    );
}

#[test]
fn r_acc_2_a_blocked_professional_reads_no_profile_even_in_an_emergency() {
    let p = profile();
    p.app
        .create(&p.holder(), &block_professional(&p.patient, COLLEAGUE));
    p.assert_reads_nothing(&doctor(COLLEAGUE), "R-ACC-2");
    let emergency = As::professional(
        COLLEAGUE,
        "10",
        None,
        Some("bris_de_glace"),
        Some("urgence"),
    );
    p.assert_reads_nothing(&emergency, "R-ACC-2");
}

#[test]
fn r_acc_4_r_acc_5_emergencies_read_the_profile_unless_the_holder_opposed() {
    let p = profile();
    let emergency = As::professional(STRANGER, "10", None, Some("bris_de_glace"), Some("urgence"));
    let samu = As::professional(STRANGER, "10", None, Some("centre_15"), None);
    p.assert_reads_everything(&emergency);
    p.assert_reads_everything(&samu);
    p.app
        .create(&p.holder(), &emergency_setting(&p.patient, "deny", "BTG"));
    p.app.create(
        &p.holder(),
        &emergency_setting(&p.patient, "deny", "ETREAT"),
    );
    p.assert_reads_nothing(&emergency, "R-ACC-4");
    p.assert_reads_nothing(&samu, "R-ACC-5");
}

#[test]
fn r_acc_1_a_closed_space_shows_its_profile_to_no_professional() {
    let p = profile();
    let reply = p.app.post(
        &format!("Patient/{}/$close", p.patient),
        &p.holder(),
        &json!({ "resourceType": "Parameters" }),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    p.assert_reads_nothing(&As::doctor(), "R-ACC-1");
}

#[test]
fn r_acc_12_professions_outside_the_matrix_the_system_and_others_read_no_profile() {
    let p = profile();
    // Authorised on the space, but of a profession the matrix does not name.
    let outside = As::professional("810000000009", "99", None, None, None);
    p.app.create(
        &p.holder(),
        &permit_professional(&p.patient, "810000000009"),
    );
    p.assert_reads_nothing(&outside, "R-ACC-12");
    for who in [As::System, As::Other("insurer".into())] {
        for (kind, id) in &p.entries {
            let read = p.read(&who, kind, id);
            assert!(matches!(read.status, 403 | 404), "{kind}: {}", read.body);
            assert!(!read.body.contains("Asthme") && !read.body.contains("1.72"));
            assert_refused(&p.search(&who, kind), 403, "R-ACC-12");
        }
    }
}

#[test]
fn r_pat_1_another_holder_neither_reads_nor_writes_a_profile() {
    let p = profile();
    let other = p.app.create(
        &As::System,
        &patient(&nir(), "Durand", "Paul", "1970-01-01"),
    );
    let intruder = As::Patient(other.clone());
    for (kind, id) in &p.entries {
        assert_refused(&p.read(&intruder, kind, id), 404, "R-PAT-1");
        assert_eq!(
            p.app
                .get(&format!("{kind}/{id}/_history/1"), &intruder)
                .status,
            404
        );
        assert_eq!(p.app.delete(&format!("{kind}/{id}"), &intruder).status, 404);
        let reply = p.search(&intruder, kind);
        assert!(
            reply.status == 403 || reply.json()["total"] == 0,
            "{}",
            reply.body
        );
    }
    // Nor writes into it, nor moves an entry of their own into it.
    for entry in entries(&p.patient) {
        let kind = entry["resourceType"].as_str().unwrap();
        assert_refused(&p.app.post(kind, &intruder, &entry), 403, "R-PAT-1");
    }
    let own = p.app.create(&intruder, &entries(&other)[1]);
    let mut moved = p.read(&intruder, "Condition", &own).json();
    moved["subject"]["reference"] = json!(format!("Patient/{}", p.patient));
    assert_refused(
        &p.app.put(&format!("Condition/{own}"), &intruder, &moved),
        403,
        "R-PAT-1",
    );
}

#[test]
fn professionals_read_the_profile_but_do_not_write_it() {
    let p = profile();
    for entry in entries(&p.patient) {
        let kind = entry["resourceType"].as_str().unwrap();
        assert_refused(&p.app.post(kind, &As::doctor(), &entry), 403, "R-ACC-12");
    }
    let (kind, id) = &p.entries[1];
    let mut changed = p.read(&As::doctor(), kind, id).json();
    changed["code"]["text"] = json!("Autre chose");
    assert_refused(
        &p.app.put(&format!("{kind}/{id}"), &As::doctor(), &changed),
        403,
        "R-ACC-12",
    );
    assert_refused(
        &p.app.delete(&format!("{kind}/{id}"), &As::doctor()),
        403,
        "R-ACC-12",
    );
    assert_eq!(
        p.read(&p.holder(), kind, id).json()["code"]["text"],
        "Asthme"
    );
}

#[test]
fn r_acc_13_an_app_reads_only_the_profile_types_it_was_given() {
    let p = profile();
    let mut claims = crate::support::base_claims("patient", "app-user");
    claims["patient"] = json!(p.patient);
    claims["scope"] = json!("launch/patient patient/Observation.rs");
    let app = As::Token(crate::support::sign(&crate::support::keys().rsa, &claims));
    let (_, height) = &p.entries[0];
    assert_eq!(p.read(&app, "Observation", height).status, 200);
    for (kind, id) in &p.entries[1..] {
        assert_refused(&p.read(&app, kind, id), 403, "R-ACC-13");
        assert_refused(&p.search(&app, kind), 403, "R-ACC-13");
    }
    assert_refused(
        &p.app.post("Observation", &app, &entries(&p.patient)[0]),
        403,
        "R-ACC-13",
    );
    // Nor through an include from what it may read.
    let reply = p.app.get(
        &format!(
            "Observation?patient={}&_revinclude=Condition:subject",
            p.patient
        ),
        &app,
    );
    assert!(
        reply.status == 403 || included(&reply.json()).is_empty(),
        "{}",
        reply.body
    );
}

#[test]
fn a_profile_entry_names_one_space_and_what_it_is_about() {
    let p = profile();
    let holder = p.holder();
    let before = p.app.data_rows();
    // R4 requires a Condition's subject (400); this server an Observation's (422).
    let mut no_subject = entries(&p.patient)[1].clone();
    no_subject.as_object_mut().unwrap().remove("subject");
    let reply = p.app.post("Condition", &holder, &no_subject);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("Condition.subject"), "{}", reply.body);
    let mut no_subject = entries(&p.patient)[0].clone();
    no_subject.as_object_mut().unwrap().remove("subject");
    let reply = p.app.post("Observation", &holder, &no_subject);
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("Observation.subject"), "{}", reply.body);
    let mut no_code = entries(&p.patient)[3].clone();
    no_code.as_object_mut().unwrap().remove("code");
    let reply = p.app.post("AllergyIntolerance", &holder, &no_code);
    assert_eq!(reply.status, 422, "{}", reply.body);
    let mut not_a_patient = entries(&p.patient)[0].clone();
    not_a_patient["subject"] = json!({ "reference": "Group/g1" });
    assert_eq!(
        p.app.post("Observation", &holder, &not_a_patient).status,
        422
    );
    let mut unknown = entries(&p.patient)[2].clone();
    unknown["dosageText"] = json!("2 bouffées");
    assert_eq!(
        p.app.post("MedicationStatement", &holder, &unknown).status,
        400
    );
    assert_eq!(p.app.data_rows(), before, "nothing stored");
}

#[test]
fn the_capability_statement_serves_the_profile_types() {
    let app = TestApp::new();
    let statement = app.get("metadata", &As::Nobody).json();
    let resources = statement["rest"][0]["resource"].as_array().unwrap();
    for kind in [
        "Observation",
        "Condition",
        "MedicationStatement",
        "AllergyIntolerance",
    ] {
        let resource = resources
            .iter()
            .find(|resource| resource["type"] == kind)
            .unwrap_or_else(|| panic!("{kind} is not in the CapabilityStatement"));
        let params: Vec<&str> = resource["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|param| param["name"].as_str())
            .collect();
        assert!(params.contains(&"patient"), "{kind}: {params:?}");
        assert!(params.contains(&"code"), "{kind}: {params:?}");
    }
}

#[test]
fn r_acc_13_a_scope_claim_that_names_nothing_grants_nothing() {
    let p = profile();
    let (kind, id) = &p.entries[1];
    for blank in ["", " "] {
        let mut claims = crate::support::base_claims("patient", "app-user");
        claims["patient"] = json!(p.patient);
        claims["scope"] = json!(blank);
        let app = As::Token(crate::support::sign(&crate::support::keys().rsa, &claims));
        assert_refused(&p.read(&app, kind, id), 403, "R-ACC-13");
        assert_refused(
            &p.app.post("Condition", &app, &entries(&p.patient)[1]),
            403,
            "R-ACC-13",
        );
        let mut claims = crate::support::base_claims("professional", "810000000001");
        claims["profession"] = json!("10");
        claims["scope"] = json!(blank);
        let doctor = As::Token(crate::support::sign(&crate::support::keys().rsa, &claims));
        assert_refused(&p.search(&doctor, kind), 403, "R-ACC-13");
    }
    // Without a scope claim, a token is not narrowed.
    assert_eq!(p.read(&p.holder(), kind, id).status, 200);
}

#[test]
fn r_acc_12_r_acc_13_the_trace_does_not_tell_what_was_looked_for_in_a_profile_the_reader_may_not_read()
 {
    let p = profile();
    let searched = "http://snomed.info/sct|195967001";
    let reply = p.app.get(
        &format!("Condition?patient={}&code={searched}", p.patient),
        &As::doctor(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let queries = |who: &As| -> Vec<String> {
        use base64::Engine;
        let reply = p.app.get("AuditEvent?subtype=search-type&_count=100", who);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["entry"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|entry| entry["resource"]["entity"].as_array().unwrap().clone())
            .filter_map(|entity| entity["query"].as_str().map(str::to_owned))
            .map(|query| {
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(query)
                        .unwrap(),
                )
                .unwrap()
            })
            .collect()
    };
    let looked_for = |queries: &[String]| queries.iter().any(|query| query.contains("195967001"));
    // The holder, and the médecin traitant who searched, read what was searched…
    assert!(looked_for(&queries(&p.holder())));
    assert!(looked_for(&queries(&As::doctor())));
    // …an app given the trace but not the profile does not…
    let mut claims = crate::support::base_claims("patient", "app-user");
    claims["patient"] = json!(p.patient);
    claims["scope"] = json!("patient/AuditEvent.rs");
    let app = As::Token(crate::support::sign(&crate::support::keys().rsa, &claims));
    let seen = queries(&app);
    assert!(!seen.is_empty() && !looked_for(&seen), "{seen:?}");
    // …nor the médecin traitant's identifier under a profession outside the matrix.
    let outside = As::professional(
        crate::support::fixtures::DOCTOR_IDNAT,
        "99",
        None,
        None,
        None,
    );
    let seen = queries(&outside);
    assert!(!seen.is_empty() && !looked_for(&seen), "{seen:?}");
}

#[test]
fn a_profile_entry_carries_no_security_label() {
    let p = profile();
    let before = p.app.data_rows();
    for label in ["MASQUE_PS", "INVISIBLE_REPRESENTANTS_LEGAUX"] {
        let mut labelled = entries(&p.patient)[1].clone();
        labelled["meta"] = json!({ "security": [{
            "system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument",
            "code": label
        }] });
        let reply = p.app.post("Condition", &p.holder(), &labelled);
        assert_eq!(reply.status, 422, "{}", reply.body);
        assert!(
            reply.body.contains("Condition.meta.security"),
            "{}",
            reply.body
        );
    }
    assert_eq!(p.app.data_rows(), before, "nothing stored");
}

#[test]
fn a_profile_entry_meets_the_invariants_of_its_type() {
    let p = profile();
    let holder = p.holder();
    let before = p.app.data_rows();
    let mut no_status = entries(&p.patient)[3].clone();
    no_status.as_object_mut().unwrap().remove("clinicalStatus");
    let reply = p.app.post("AllergyIntolerance", &holder, &no_status);
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("ait-1"), "{}", reply.body);
    let mut in_error = entries(&p.patient)[3].clone();
    in_error["verificationStatus"] = json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "entered-in-error" }] });
    let reply = p.app.post("AllergyIntolerance", &holder, &in_error);
    assert!(reply.body.contains("ait-2"), "{}", reply.body);
    let mut absent_and_valued = entries(&p.patient)[0].clone();
    absent_and_valued["dataAbsentReason"] = json!({ "text": "non mesuré" });
    let reply = p.app.post("Observation", &holder, &absent_and_valued);
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert!(reply.body.contains("obs-6"), "{}", reply.body);
    let mut abated = entries(&p.patient)[1].clone();
    abated["abatementString"] = json!("guéri");
    abated["clinicalStatus"] = json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active" }] });
    let reply = p.app.post("Condition", &holder, &abated);
    assert!(reply.body.contains("con-4"), "{}", reply.body);
    // Abated without a clinical status, a status of another system, an empty
    // reference range.
    let mut abated = entries(&p.patient)[1].clone();
    abated["abatementDateTime"] = json!("2020-01-01");
    assert!(
        p.app
            .post("Condition", &holder, &abated)
            .body
            .contains("con-4")
    );
    let mut foreign = entries(&p.patient)[3].clone();
    foreign.as_object_mut().unwrap().remove("clinicalStatus");
    foreign["verificationStatus"] =
        json!({ "coding": [{ "system": "http://example.org/other", "code": "entered-in-error" }] });
    assert!(
        p.app
            .post("AllergyIntolerance", &holder, &foreign)
            .body
            .contains("ait-1")
    );
    let mut ranged = entries(&p.patient)[0].clone();
    ranged["referenceRange"] = json!([{ "type": { "text": "normal" } }]);
    assert!(
        p.app
            .post("Observation", &holder, &ranged)
            .body
            .contains("obs-3")
    );
    assert_eq!(p.app.data_rows(), before, "nothing stored");
    // Entered in error without a status is a valid allergy.
    in_error.as_object_mut().unwrap().remove("clinicalStatus");
    assert_eq!(
        p.app.post("AllergyIntolerance", &holder, &in_error).status,
        201
    );
}

#[test]
fn r_acc_13_every_form_of_a_scope_claim_narrows() {
    let p = profile();
    let (_, height) = &p.entries[0];
    let (kind, id) = &p.entries[1];
    let token = |claim: &str, value: Value| {
        let mut claims = crate::support::base_claims("patient", "app-user");
        claims["patient"] = json!(p.patient);
        claims[claim] = value;
        As::Token(crate::support::sign(&crate::support::keys().rsa, &claims))
    };
    // `scp`, as some identity providers write it, narrows like `scope`.
    for narrowed in [
        token("scp", json!("patient/Observation.rs")),
        token("scp", json!(["patient/Observation.rs"])),
        token("scope", json!("patient/Observation.rs")),
    ] {
        assert_eq!(p.read(&narrowed, "Observation", height).status, 200);
        assert_refused(&p.read(&narrowed, kind, id), 403, "R-ACC-13");
    }
    for nothing in [token("scp", json!("")), token("scp", json!([]))] {
        assert_refused(&p.read(&nothing, kind, id), 403, "R-ACC-13");
    }
    // A claim that is not a string of scopes is not read as "no scope": refused.
    for unreadable in [json!(null), json!(7), json!({ "a": 1 }), json!([1])] {
        let reply = p.read(&token("scope", unreadable.clone()), kind, id);
        assert_eq!(reply.status, 401, "{unreadable}: {}", reply.body);
    }
    // Both claims at once do not add up: the token is refused.
    let mut claims = crate::support::base_claims("patient", "app-user");
    claims["patient"] = json!(p.patient);
    claims["scope"] = json!("");
    claims["scp"] = json!("patient/*.rs");
    let both = As::Token(crate::support::sign(&crate::support::keys().rsa, &claims));
    assert_eq!(p.read(&both, kind, id).status, 401);
}

#[test]
fn r_ui_1_the_holder_states_their_profile_in_their_own_name() {
    let p = profile();
    let holder = p.holder();
    let before = p.app.data_rows();
    let me = json!({ "reference": format!("Patient/{}", p.patient) });
    let mut own = entries(&p.patient)[1].clone();
    own["asserter"] = me.clone();
    assert_eq!(p.app.post("Condition", &holder, &own).status, 201);
    let colleague = json!({ "identifier": { "system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810000000001" }, "display": "Dr Martin" });
    for (kind, index, element, value) in [
        ("Condition", 1, "asserter", colleague.clone()),
        ("Observation", 0, "performer", json!([colleague.clone()])),
        (
            "MedicationStatement",
            2,
            "informationSource",
            json!({ "reference": "Patient/someone-else" }),
        ),
        (
            "AllergyIntolerance",
            3,
            "recorder",
            json!({ "reference": format!("Patient/{}", p.patient), "display": "Dr Martin" }),
        ),
        (
            "Condition",
            1,
            "note",
            json!([{ "authorReference": colleague.clone(), "text": "Diagnostic posé par le Dr Dupont" }]),
        ),
        (
            "Observation",
            0,
            "note",
            json!([{ "authorString": "Dr Dupont", "text": "mesuré au cabinet" }]),
        ),
    ] {
        let mut entry = entries(&p.patient)[index].clone();
        entry[element] = value;
        assert_refused(&p.app.post(kind, &holder, &entry), 403, "R-UI-1");
    }
    // Nor a tag that looks like masking.
    let mut tagged = entries(&p.patient)[1].clone();
    tagged["meta"] = json!({ "tag": [{ "system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument", "code": "MASQUE_PS" }] });
    assert_eq!(p.app.post("Condition", &holder, &tagged).status, 422);
    assert_eq!(p.app.data_rows(), before + 1, "only the holder's own entry");
}

#[test]
fn r_life_2_a_space_with_a_medical_profile_is_in_use_and_closed_rather_than_opposed() {
    let app = TestApp::new();
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let holder = As::Patient(patient_id.clone());
    let parameters = json!({ "resourceType": "Parameters" });
    let activated = app.post(
        &format!("Patient/{patient_id}/$activate"),
        &holder,
        &parameters,
    );
    assert_eq!(activated.status, 200, "{}", activated.body);
    app.create(&holder, &entries(&patient_id)[1]);
    assert_refused(
        &app.post(
            &format!("Patient/{patient_id}/$oppose"),
            &holder,
            &parameters,
        ),
        409,
        "R-LIFE-2",
    );
    let closed = app.post(
        &format!("Patient/{patient_id}/$close"),
        &holder,
        &parameters,
    );
    assert_eq!(closed.status, 200, "{}", closed.body);
}
