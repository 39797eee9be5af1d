//! Access rules as tables (SPEC §5 and §6): for each rule, the actors it lets in and
//! those it keeps out, through every data path. A rule's tests carry its id in their
//! names (`r_acc_6_…`).

use serde_json::{Value, json};

use crate::support::fixtures::{
    DOCTOR_IDNAT, INS, block_organization, block_professional, document, emergency_setting,
    labelled_document, nir, patient, permit_professional,
};
use crate::support::{As, Reply, TestApp, assert_refused};

const COLLEAGUE: &str = "810000000002";
const STRANGER: &str = "810000000003";

/// A space whose médecin traitant is `As::doctor()`, holding a consultation report,
/// a psychiatric synthesis and a masked consultation report, all deposited by the
/// médecin traitant.
struct Space {
    app: TestApp,
    patient: String,
    nir: String,
    consultation: String,
    psychiatric: String,
    masked: String,
}

fn space() -> Space {
    let app = TestApp::new();
    let nir = nir();
    let patient = app.create(
        &As::System,
        // A minor, so that the representative tests have a representative.
        &patient(&nir, "Martin", "Claire", "2012-05-01"),
    );
    let gp = As::doctor();
    let consultation = app.create(&gp, &document(&patient, "11488-4", "2024-01-01"));
    let psychiatric = app.create(&gp, &document(&patient, "68599-0", "2024-01-02"));
    let mut masked = labelled_document(&patient, "11488-4", "2024-01-03", "MASQUE_PS");
    masked["masterIdentifier"] =
        json!({ "system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.42" });
    let masked = app.create(&gp, &masked);
    Space {
        app,
        patient,
        nir,
        consultation,
        psychiatric,
        masked,
    }
}

impl Space {
    fn as_patient(&self) -> As {
        As::Patient(self.patient.clone())
    }

    /// The patient stores a Consent.
    fn consent(&self, consent: &Value) {
        self.app.create(&self.as_patient(), consent);
    }

    fn read(&self, who: &As, id: &str) -> Reply {
        self.app.get(&format!("DocumentReference/{id}"), who)
    }

    /// Ids of the documents a search by patient returns, with its exact total.
    fn documents(&self, who: &As) -> (Vec<String>, i64) {
        let reply = self.app.get(
            &format!(
                "DocumentReference?patient={}&_total=accurate&_count=50",
                self.patient
            ),
            who,
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let bundle = reply.json();
        (match_ids(&bundle), bundle["total"].as_i64().unwrap())
    }
}

fn match_ids(bundle: &Value) -> Vec<String> {
    let mut ids = crate::support::match_ids(bundle);
    ids.sort();
    ids
}

fn sorted(ids: &[&String]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|id| (*id).clone()).collect();
    ids.sort();
    ids
}

/// A doctor outside the space, in bris de glace (R-ACC-4).
fn stranger_in_emergency() -> As {
    As::professional(
        STRANGER,
        "10",
        None,
        Some("bris_de_glace"),
        Some("urgence vitale"),
    )
}

fn doctor(id: &str) -> As {
    As::professional(id, "10", None, None, None)
}

// ---------------------------------------------------------------- R-ACC-1

#[test]
fn r_acc_1_a_closed_or_opposed_space_is_refused_in_every_mode() {
    let s = space();
    let emergency = As::professional(STRANGER, "10", None, Some("bris_de_glace"), Some("urgence"));
    let samu = As::professional(STRANGER, "10", None, Some("centre_15"), None);
    // The patient moves their space through its states (R-LIFE): pending at creation,
    // opposed, active again, closed.
    for (operation, state, open) in [
        (None, "pending", true),
        (Some("$oppose"), "opposed", false),
        (Some("$activate"), "active", true),
        (Some("$close"), "closed", false),
    ] {
        if let Some(operation) = operation {
            let reply = s.app.post(
                &format!("Patient/{}/{operation}", s.patient),
                &s.as_patient(),
                &json!({ "resourceType": "Parameters" }),
            );
            assert_eq!(reply.status, 200, "{operation}: {}", reply.body);
        }
        for who in [As::doctor(), emergency.clone(), samu.clone()] {
            let reply = s.read(&who, &s.consultation);
            if open {
                assert_eq!(reply.status, 200, "{state}: {}", reply.body);
            } else {
                assert_refused(&reply, 404, "R-ACC-1");
                assert_refused(
                    &s.app
                        .get(&format!("DocumentReference?patient={}", s.patient), &who),
                    403,
                    "R-ACC-1",
                );
            }
        }
        let deposit = s.app.post(
            "DocumentReference",
            &As::doctor(),
            &document(&s.patient, "11488-4", "2024-11-01"),
        );
        if open {
            assert_eq!(deposit.status, 201, "{state}: {}", deposit.body);
        } else {
            assert_refused(&deposit, 403, "R-ACC-1");
        }
        // The state is visible in the identity answer (R-LIFE-4).
        let found = s
            .app
            .get(
                &format!("Patient?identifier={INS}|{}", s.nir),
                &doctor(STRANGER),
            )
            .json();
        let extension = found["entry"][0]["resource"]["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|extension| {
                extension["url"]
                    == "https://dmp-fhir-server.fr/fhir/StructureDefinition/space-state"
            })
            .cloned()
            .expect("the space-state extension");
        assert_eq!(extension["valueCode"], state);
    }
}

// ---------------------------------------------------------------- R-ACC-3

#[test]
fn r_acc_3_an_unauthorised_professional_is_refused_on_every_path() {
    let s = space();
    let stranger = doctor(STRANGER);
    assert_refused(&s.read(&stranger, &s.consultation), 404, "R-ACC-3");
    // The search that names the space says why (and the professional may then
    // declare the patient's consent); a document by id tells nothing of its space.
    assert!(
        s.app
            .get(
                &format!("DocumentReference?patient={}", s.patient),
                &stranger
            )
            .body
            .contains("authorisation missing")
    );
    assert_refused(
        &s.app.get(
            &format!("DocumentReference/{}/_history/1", s.consultation),
            &stranger,
        ),
        404,
        "R-ACC-3",
    );
    assert_refused(
        &s.app.get(
            &format!("DocumentReference/{}/_history", s.consultation),
            &stranger,
        ),
        404,
        "R-ACC-3",
    );
    assert_refused(
        &s.app.get(
            &format!("DocumentReference?patient={}", s.patient),
            &stranger,
        ),
        403,
        "R-ACC-3",
    );
    assert_refused(
        &s.app.get(
            &format!("DocumentReference?patient={}&_summary=count", s.patient),
            &stranger,
        ),
        403,
        "R-ACC-3",
    );
    assert_refused(
        &s.app.get(
            &format!("DocumentReference?patient.identifier={INS}%7C{}", s.nir),
            &stranger,
        ),
        403,
        "R-ACC-3",
    );
    assert_refused(
        &s.app
            .get(&format!("Consent?patient={}", s.patient), &stranger),
        403,
        "R-ACC-3",
    );
    // Identity and state stay readable (R-ACC-10), but no document comes with them.
    let reply = s.app.get(
        &format!(
            "Patient?identifier={INS}|{}&_revinclude=DocumentReference:patient",
            s.nir
        ),
        &stranger,
    );
    assert_eq!(reply.status, 200);
    let bundle = reply.json();
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 1, "{bundle}");
    assert_eq!(bundle["entry"][0]["resource"]["resourceType"], "Patient");
    // Transactions and batches decide each entry with the same rules.
    let transaction = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "request": { "method": "GET", "url": format!("DocumentReference/{}", s.consultation) } } ] });
    assert_refused(&s.app.post("", &stranger, &transaction), 404, "R-ACC-3");
    let mut batch = transaction.clone();
    batch["type"] = json!("batch");
    batch["entry"].as_array_mut().unwrap().push(json!({ "request": { "method": "GET", "url": format!("DocumentReference?patient={}", s.patient) } }));
    let reply = s.app.post("", &stranger, &batch);
    assert_eq!(reply.status, 200);
    // By id, as if it did not exist; the search that names the space, refused.
    for (entry, status) in reply.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["404", "403"])
    {
        assert_eq!(entry["response"]["status"], status, "{entry}");
        assert!(entry.get("resource").is_none());
    }
    // A search that names no patient is refused: access is decided per space.
    assert_refused(
        &s.app.get("DocumentReference?status=current", &As::doctor()),
        403,
        "R-ACC-3",
    );
}

#[test]
fn r_acc_3_the_general_practitioner_and_a_permit_consent_authorise() {
    let s = space();
    assert_eq!(s.read(&As::doctor(), &s.consultation).status, 200);
    let colleague = doctor(COLLEAGUE);
    assert_refused(&s.read(&colleague, &s.consultation), 404, "R-ACC-3");
    s.consent(&permit_professional(&s.patient, COLLEAGUE));
    assert_eq!(s.read(&colleague, &s.consultation).status, 200);
    let (ids, total) = s.documents(&colleague);
    assert_eq!(ids, sorted(&[&s.consultation, &s.psychiatric]));
    assert_eq!(total, 2);
}

#[test]
fn r_acc_3_a_professional_declares_the_patients_consent_to_themselves_only() {
    let s = space();
    let stranger = doctor(STRANGER);
    assert_refused(
        &s.app.post(
            "Consent",
            &stranger,
            &permit_professional(&s.patient, COLLEAGUE),
        ),
        403,
        "R-ACC-3",
    );
    assert_refused(
        &s.app.post(
            "Consent",
            &stranger,
            &block_professional(&s.patient, STRANGER),
        ),
        403,
        "R-ACC-3",
    );
    assert_refused(
        &s.app.post(
            "Consent",
            &stranger,
            &emergency_setting(&s.patient, "permit", "MASKED"),
        ),
        403,
        "R-ACC-3",
    );
    assert_eq!(
        s.app
            .post(
                "Consent",
                &stranger,
                &permit_professional(&s.patient, STRANGER)
            )
            .status,
        201
    );
    assert_eq!(s.read(&stranger, &s.consultation).status, 200);
}

// ---------------------------------------------------------------- R-ACC-10

fn authorisation(reply: &Reply) -> Vec<String> {
    let resource = reply.json();
    let resource = if resource["resourceType"] == "Bundle" {
        resource["entry"][0]["resource"].clone()
    } else {
        resource
    };
    resource["extension"]
        .as_array()
        .map(|extensions| {
            extensions
                .iter()
                .filter(|extension| {
                    extension["url"]
                        == "https://dmp-fhir-server.fr/fhir/StructureDefinition/dmp-authorisation"
                })
                .map(|extension| extension["valueCode"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn r_acc_10_any_professional_reads_identity_and_is_told_their_authorisation() {
    let s = space();
    s.consent(&permit_professional(&s.patient, COLLEAGUE));
    s.consent(&block_professional(&s.patient, "810000000009"));
    let by_ins = format!("Patient?identifier={INS}|{}", s.nir);
    for (who, expected) in [
        (As::doctor(), "VALIDE"),
        (doctor(COLLEAGUE), "VALIDE"),
        (doctor(STRANGER), "NON_EXISTE"),
        (doctor("810000000009"), "INTERDIT"),
    ] {
        let search = s.app.get(&by_ins, &who);
        assert_eq!(search.status, 200);
        assert_eq!(authorisation(&search), vec![expected.to_owned()], "{who:?}");
        let read = s.app.get(&format!("Patient/{}", s.patient), &who);
        assert_eq!(authorisation(&read), vec![expected.to_owned()]);
    }
    // The stored Patient is unchanged, and other callers are not told anything.
    assert!(authorisation(&s.app.get(&format!("Patient/{}", s.patient), &As::System)).is_empty());
    assert!(
        authorisation(
            &s.app
                .get(&format!("Patient/{}", s.patient), &s.as_patient())
        )
        .is_empty()
    );
}

// ---------------------------------------------------------------- R-ACC-2

#[test]
fn r_acc_2_a_blocked_professional_is_refused_in_every_mode() {
    let s = space();
    s.consent(&permit_professional(&s.patient, COLLEAGUE));
    s.consent(&block_professional(&s.patient, COLLEAGUE));
    for colleague in [
        doctor(COLLEAGUE),
        As::professional(
            COLLEAGUE,
            "10",
            None,
            Some("bris_de_glace"),
            Some("arrêt cardiaque"),
        ),
        As::professional(COLLEAGUE, "10", None, Some("centre_15"), None),
    ] {
        assert_refused(&s.read(&colleague, &s.consultation), 404, "R-ACC-2");
        assert_refused(
            &s.app.get(
                &format!("DocumentReference?patient={}", s.patient),
                &colleague,
            ),
            403,
            "R-ACC-2",
        );
    }
    // Nor may they declare a consent to get round the block.
    assert_refused(
        &s.app.post(
            "Consent",
            &doctor(COLLEAGUE),
            &permit_professional(&s.patient, COLLEAGUE),
        ),
        403,
        "R-ACC-2",
    );
    // Others are not affected.
    assert_eq!(s.read(&As::doctor(), &s.consultation).status, 200);
}

#[test]
fn r_acc_2_the_general_practitioner_cannot_be_blocked() {
    let s = space();
    s.consent(&block_professional(&s.patient, DOCTOR_IDNAT));
    assert_eq!(s.read(&As::doctor(), &s.consultation).status, 200);
}

#[test]
fn r_acc_2_an_organisation_can_be_blocked() {
    let s = space();
    s.consent(&permit_professional(&s.patient, COLLEAGUE));
    s.consent(&block_organization(&s.patient, "330000001"));
    let in_blocked_clinic = As::professional(COLLEAGUE, "10", Some("330000001"), None, None);
    assert_refused(&s.read(&in_blocked_clinic, &s.consultation), 404, "R-ACC-2");
    let elsewhere = As::professional(COLLEAGUE, "10", Some("750000001"), None, None);
    assert_eq!(s.read(&elsewhere, &s.consultation).status, 200);
}

// ---------------------------------------------------------------- R-ACC-4, R-ACC-5

#[test]
fn r_acc_4_bris_de_glace_needs_a_reason_and_no_opposition() {
    let s = space();
    let emergency = As::professional(
        STRANGER,
        "10",
        None,
        Some("bris_de_glace"),
        Some("patient inconscient aux urgences"),
    );
    assert_eq!(s.read(&emergency, &s.consultation).status, 200);
    let (ids, total) = s.documents(&emergency);
    assert_eq!(
        ids,
        sorted(&[&s.consultation, &s.psychiatric]),
        "masked documents stay hidden in an emergency"
    );
    assert_eq!(total, 2);
    let no_reason = As::professional(STRANGER, "10", None, Some("bris_de_glace"), None);
    assert_refused(&s.read(&no_reason, &s.consultation), 404, "R-ACC-4");
    s.consent(&emergency_setting(&s.patient, "deny", "BTG"));
    assert_refused(&s.read(&emergency, &s.consultation), 404, "R-ACC-4");
    assert_refused(
        &s.app.get(
            &format!("DocumentReference?patient={}", s.patient),
            &emergency,
        ),
        403,
        "R-ACC-4",
    );
}

#[test]
fn r_acc_5_centre_15_unless_the_patient_opposed_it() {
    let s = space();
    let samu = As::professional(STRANGER, "10", None, Some("centre_15"), None);
    s.consent(&emergency_setting(&s.patient, "deny", "BTG"));
    assert_eq!(
        s.read(&samu, &s.consultation).status,
        200,
        "opposing bris de glace does not oppose centre 15"
    );
    s.consent(&emergency_setting(&s.patient, "deny", "ETREAT"));
    assert_refused(&s.read(&samu, &s.consultation), 404, "R-ACC-5");
}

// ---------------------------------------------------------------- R-ACC-6

#[test]
fn r_acc_6_the_matrix_filters_inside_the_query() {
    let s = space();
    let dentist = As::professional(COLLEAGUE, "40", None, None, None);
    s.consent(&permit_professional(&s.patient, COLLEAGUE));
    // Allowed type in, excluded type out, on every path.
    assert_eq!(s.read(&dentist, &s.consultation).status, 200);
    assert_refused(&s.read(&dentist, &s.psychiatric), 404, "R-ACC-6");
    assert_eq!(
        s.app
            .get(
                &format!("DocumentReference/{}/_history/1", s.psychiatric),
                &dentist
            )
            .status,
        404
    );
    assert_eq!(
        s.app
            .get(
                &format!("DocumentReference/{}/_history", s.psychiatric),
                &dentist
            )
            .status,
        404
    );
    let (ids, total) = s.documents(&dentist);
    assert_eq!(ids, vec![s.consultation.clone()]);
    assert_eq!(total, 1, "the total counts what the caller may see");
    let count = s
        .app
        .get(
            &format!("DocumentReference?patient={}&_summary=count", s.patient),
            &dentist,
        )
        .json();
    assert_eq!(count["total"], 1);
    let chained = s
        .app
        .get(
            &format!(
                "DocumentReference?patient.identifier={INS}%7C{}&_total=accurate",
                s.nir
            ),
            &dentist,
        )
        .json();
    assert_eq!(chained["total"], 1);
    let revinclude = s
        .app
        .get(
            &format!(
                "Patient?_id={}&_revinclude=DocumentReference:patient",
                s.patient
            ),
            &dentist,
        )
        .json();
    let included: Vec<&str> = revinclude["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["resource"]["id"].as_str())
        .collect();
    assert!(
        included.contains(&s.consultation.as_str()) && !included.contains(&s.psychiatric.as_str()),
        "{included:?}"
    );
    // The médecin reads the psychiatric synthesis.
    assert_eq!(s.read(&As::doctor(), &s.psychiatric).status, 200);
}

#[test]
fn r_acc_6_pages_are_full_under_the_matrix() {
    let s = space();
    let pharmacist = As::professional(COLLEAGUE, "21", None, None, None);
    s.consent(&permit_professional(&s.patient, COLLEAGUE));
    let mut biology = Vec::new();
    for day in 1..=3 {
        biology.push(s.app.create(
            &As::doctor(),
            &document(&s.patient, "11502-2", &format!("2024-02-0{day}")),
        ));
    }
    let mut seen = Vec::new();
    let mut url = format!(
        "DocumentReference?patient={}&_count=1&_total=accurate",
        s.patient
    );
    loop {
        let bundle = s.app.get(&url, &pharmacist).json();
        assert_eq!(bundle["total"], 3);
        let page = match_ids(&bundle);
        assert_eq!(page.len(), 1, "every page is full: {bundle}");
        seen.extend(page);
        match crate::support::next_link(&bundle) {
            Some(next) => url = next,
            None => break,
        }
    }
    seen.sort();
    biology.sort();
    assert_eq!(
        seen, biology,
        "the pharmacist sees biology, not the consultation or the psychiatric synthesis"
    );
}

#[test]
fn r_acc_6_a_profession_outside_the_matrix_reads_no_document() {
    let s = space();
    s.consent(&permit_professional(&s.patient, COLLEAGUE));
    let audioprosthetist = As::professional(COLLEAGUE, "26", None, None, None);
    assert_refused(
        &s.app.get(
            &format!("DocumentReference?patient={}", s.patient),
            &audioprosthetist,
        ),
        403,
        "R-ACC-6",
    );
    assert_refused(&s.read(&audioprosthetist, &s.consultation), 404, "R-ACC-6");
}

// ---------------------------------------------------------------- R-ACC-7

#[test]
fn r_acc_7_masked_documents_are_seen_by_their_author_and_the_general_practitioner_only() {
    let s = space();
    s.consent(&permit_professional(&s.patient, COLLEAGUE));
    let colleague = doctor(COLLEAGUE);
    assert_refused(&s.read(&colleague, &s.masked), 404, "R-ACC-7");
    let (ids, total) = s.documents(&colleague);
    assert!(!ids.contains(&s.masked));
    assert_eq!(total, 2);
    let revinclude = s.app.get(
        &format!(
            "Patient?_id={}&_revinclude=DocumentReference:patient",
            s.patient
        ),
        &colleague,
    );
    assert!(!revinclude.body.contains(&s.masked));
    // The médecin traitant (here also the author) sees it; so does the patient.
    assert_eq!(s.read(&As::doctor(), &s.masked).status, 200);
    assert_eq!(s.read(&s.as_patient(), &s.masked).status, 200);
    // The colleague sees a masked document they deposited themselves.
    let own = s.app.create(
        &colleague,
        &labelled_document(&s.patient, "11488-4", "2024-03-01", "MASQUE_PS"),
    );
    assert_eq!(s.read(&colleague, &own).status, 200);
    assert!(s.documents(&colleague).0.contains(&own));
}

#[test]
fn r_acc_7_masked_documents_in_an_emergency_only_when_the_patient_allows() {
    let s = space();
    let emergency = stranger_in_emergency();
    assert_eq!(s.read(&emergency, &s.masked).status, 404);
    s.consent(&emergency_setting(&s.patient, "permit", "MASKED"));
    assert_eq!(s.read(&emergency, &s.masked).status, 200);
    assert_eq!(s.documents(&emergency).1, 3);
}

/// A professional's search is first decided on the facts the server cached of the
/// space at an earlier request, and its page is kept only if it was read at that
/// version: a consent stored since changes the next search's answer, both ways.
#[test]
fn r_acc_2_r_acc_7_a_search_follows_the_consents_stored_since_the_last_one() {
    let s = space();
    let emergency = stranger_in_emergency();
    let (ids, total) = s.documents(&emergency);
    assert!(!ids.contains(&s.masked));
    assert_eq!(total, 2);
    s.consent(&emergency_setting(&s.patient, "permit", "MASKED"));
    let (ids, total) = s.documents(&emergency);
    assert!(ids.contains(&s.masked), "{ids:?}");
    assert_eq!(total, 3);
    s.consent(&permit_professional(&s.patient, COLLEAGUE));
    assert_eq!(s.documents(&doctor(COLLEAGUE)).1, 2);
    // A page of no row, and a count alone, carry no version: read after them.
    let none_found = format!("DocumentReference?patient={}&date=lt1900-01-01", s.patient);
    let count = format!("DocumentReference?patient={}&_summary=count", s.patient);
    assert_eq!(
        s.app.get(&none_found, &doctor(COLLEAGUE)).json()["total"],
        0
    );
    assert_eq!(s.app.get(&count, &doctor(COLLEAGUE)).json()["total"], 2);
    // Each search after its own consent: the first search after a consent finds
    // the facts cached before it.
    for search in [
        none_found,
        count,
        format!("DocumentReference?patient={}&_total=accurate", s.patient),
    ] {
        s.consent(&block_professional(&s.patient, COLLEAGUE));
        assert_refused(&s.app.get(&search, &doctor(COLLEAGUE)), 403, "R-ACC-2");
    }
    // The emergency search still sees what the consent of before lets it see.
    assert_eq!(s.documents(&emergency).1, 3);
}

#[test]
fn r_acc_7_conditional_create_does_not_reveal_a_masked_match() {
    let s = space();
    s.consent(&permit_professional(&s.patient, COLLEAGUE));
    let mut duplicate = document(&s.patient, "11488-4", "2024-01-03");
    duplicate["masterIdentifier"] =
        json!({ "system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.42" });
    let reply = s
        .app
        .request("POST", "DocumentReference")
        .as_(&doctor(COLLEAGUE))
        .fhir()
        .header(
            "If-None-Exist",
            &format!(
                "patient={}&identifier=urn:ietf:rfc:3986|urn:oid:1.2.250.1.999.42",
                s.patient
            ),
        )
        .send(Some(duplicate.to_string()));
    // The uniqueId names one document in the store (R-MHD-2): the second deposit is
    // refused, and the answer names nothing of the hidden match.
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(reply.json()["resourceType"], "OperationOutcome");
    assert!(!reply.body.contains(&s.masked), "{}", reply.body);
    // Under another uniqueId, the conditional create matches nothing it may see.
    duplicate["masterIdentifier"]["value"] = json!("urn:oid:1.2.250.1.999.43");
    let reply = s
        .app
        .request("POST", "DocumentReference")
        .as_(&doctor(COLLEAGUE))
        .fhir()
        .header(
            "If-None-Exist",
            &format!(
                "patient={}&identifier=urn:ietf:rfc:3986|urn:oid:1.2.250.1.999.42",
                s.patient
            ),
        )
        .send(Some(duplicate.to_string()));
    assert_eq!(
        reply.status, 201,
        "the hidden match is not returned: {}",
        reply.body
    );
    assert_ne!(reply.id(), s.masked);
}

// ---------------------------------------------------------------- R-ACC-8, R-ACC-9

#[test]
fn r_acc_8_deposit_when_authorised_in_an_emergency_or_blocked() {
    let s = space();
    let body = document(&s.patient, "11488-4", "2024-04-01");
    assert_refused(
        &s.app.post("DocumentReference", &doctor(STRANGER), &body),
        403,
        "R-ACC-3",
    );
    let emergency = As::professional(STRANGER, "10", None, Some("bris_de_glace"), Some("urgence"));
    assert_eq!(
        s.app.post("DocumentReference", &emergency, &body).status,
        201
    );
    s.consent(&block_professional(&s.patient, COLLEAGUE));
    let reply = s.app.post("DocumentReference", &doctor(COLLEAGUE), &body);
    assert_eq!(
        reply.status, 201,
        "a blocked professional may still deposit: {}",
        reply.body
    );
    assert_refused(&s.read(&doctor(COLLEAGUE), &reply.id()), 404, "R-ACC-2");
}

#[test]
fn r_acc_9_only_the_author_changes_or_deletes_a_document() {
    let s = space();
    s.consent(&permit_professional(&s.patient, COLLEAGUE));
    let colleague = doctor(COLLEAGUE);
    let mut body = s.read(&colleague, &s.consultation).json();
    body["status"] = json!("superseded");
    assert_refused(
        &s.app.put(
            &format!("DocumentReference/{}", s.consultation),
            &colleague,
            &body,
        ),
        403,
        "R-ACC-9",
    );
    assert_refused(
        &s.app
            .delete(&format!("DocumentReference/{}", s.consultation), &colleague),
        403,
        "R-ACC-9",
    );
    let patch = s
        .app
        .request("PATCH", &format!("DocumentReference/{}", s.consultation))
        .as_(&colleague)
        .header("Content-Type", "application/json-patch+json")
        .send(Some(
            json!([{ "op": "replace", "path": "/status", "value": "superseded" }]).to_string(),
        ));
    assert_refused(&patch, 403, "R-ACC-9");
    assert_eq!(
        s.read(&As::doctor(), &s.consultation).json()["status"],
        "current"
    );
    assert_eq!(
        s.app
            .put(
                &format!("DocumentReference/{}", s.consultation),
                &As::doctor(),
                &body
            )
            .status,
        200
    );
    assert_eq!(
        s.app
            .delete(
                &format!("DocumentReference/{}", s.consultation),
                &As::doctor()
            )
            .status,
        204
    );
}

#[test]
fn r_acc_9_a_system_changes_the_documents_of_its_organisation() {
    let s = space();
    let system = |organization: &str| {
        let mut claims = crate::support::base_claims("system", &format!("feed-{organization}"));
        claims["organization"] = json!(organization);
        As::Token(crate::support::sign(&crate::support::keys().rsa, &claims))
    };
    let id = s.app.create(
        &system("750000001"),
        &document(&s.patient, "11502-2", "2024-05-01"),
    );
    // The system reads nothing medical (R-ACC-12): a document it did not deposit is
    // not known to it, rather than refused.
    assert_refused(
        &s.app
            .delete(&format!("DocumentReference/{id}"), &system("330000001")),
        404,
        "R-ACC-9",
    );
    assert_eq!(
        s.app
            .delete(&format!("DocumentReference/{id}"), &system("750000001"))
            .status,
        204
    );
}

// ---------------------------------------------------------------- R-PAT-1, R-PAT-2, R-PAT-5

#[test]
fn r_pat_1_a_document_awaiting_its_announcement_is_hidden_from_the_patient() {
    let s = space();
    let pending = s.app.create(
        &As::doctor(),
        &labelled_document(&s.patient, "11502-2", "2024-06-01", "INVISIBLE_PATIENT"),
    );
    assert_refused(&s.read(&s.as_patient(), &pending), 404, "R-PAT-1");
    let (ids, total) = s.documents(&s.as_patient());
    assert!(!ids.contains(&pending));
    assert_eq!(total, 3);
    assert_eq!(
        s.read(&As::doctor(), &pending).status,
        200,
        "professionals see it"
    );
    assert_eq!(s.read(&s.as_patient(), &s.consultation).status, 200);
}

#[test]
fn r_pat_1_the_label_lapses_one_month_after_deposit() {
    let s = space();
    let pending = s.app.create(
        &As::doctor(),
        &labelled_document(&s.patient, "11502-2", "2024-06-01", "INVISIBLE_PATIENT"),
    );
    // The server's clock moves forward; nothing sleeps.
    s.app.advance(chrono::TimeDelta::days(20));
    assert_eq!(
        s.read(&s.as_patient(), &pending).status,
        404,
        "20 days after deposit"
    );
    assert!(!s.documents(&s.as_patient()).0.contains(&pending));
    s.app.advance(chrono::TimeDelta::days(12));
    assert_eq!(
        s.read(&s.as_patient(), &pending).status,
        200,
        "32 days after deposit"
    );
    assert!(s.documents(&s.as_patient()).0.contains(&pending));
}

#[test]
fn r_pat_2_the_patient_masks_but_never_deletes_a_professionals_document() {
    let s = space();
    let me = s.as_patient();
    assert_refused(
        &s.app
            .delete(&format!("DocumentReference/{}", s.consultation), &me),
        403,
        "R-PAT-2",
    );
    let body = s.read(&me, &s.consultation).json();
    assert_refused(
        &s.app
            .put(&format!("DocumentReference/{}", s.consultation), &me, &body),
        403,
        "R-PAT-2",
    );
    let mask = json!([{ "op": "add", "path": "/securityLabel", "value": [{ "coding": [{
        "system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument",
        "code": "MASQUE_PS" }] }] }]);
    let reply = s
        .app
        .request("PATCH", &format!("DocumentReference/{}", s.consultation))
        .as_(&me)
        .header("Content-Type", "application/json-patch+json")
        .send(Some(mask.to_string()));
    assert_eq!(reply.status, 200, "{}", reply.body);
    s.consent(&permit_professional(&s.patient, COLLEAGUE));
    assert_eq!(
        s.read(&doctor(COLLEAGUE), &s.consultation).status,
        404,
        "masked by the patient (R-ACC-7)"
    );
    // Their own documents, the patient deletes.
    let mut own = document(&s.patient, "11488-4", "2024-07-01");
    own["category"] =
        json!([{ "coding": [{ "system": "urn:oid:1.2.250.1.213.1.1.4.1", "code": "90" }] }]);
    let id = s.app.create(&me, &own);
    assert_eq!(
        s.app.delete(&format!("DocumentReference/{id}"), &me).status,
        204
    );
}

#[test]
fn r_pat_3_the_patient_declares_the_general_practitioner() {
    let s = space();
    let declare = |who: &As, patient: &str, operations: Value| {
        s.app
            .request("PATCH", &format!("Patient/{patient}"))
            .as_(who)
            .header("Content-Type", "application/json-patch+json")
            .send(Some(operations.to_string()))
    };
    let new_gp = json!([{ "op": "replace", "path": "/generalPractitioner", "value": [
        { "identifier": { "system": "urn:oid:1.2.250.1.71.4.2.1", "value": COLLEAGUE } }] }]);
    // Only the patient (or a representative) of this space, and only that element.
    assert_refused(
        &declare(&doctor(COLLEAGUE), &s.patient, new_gp.clone()),
        403,
        "R-ACC-12",
    );
    assert_eq!(
        declare(
            &As::Patient("another-space".into()),
            &s.patient,
            new_gp.clone()
        )
        .status,
        404
    );
    let rename = json!([{ "op": "replace", "path": "/name/0/family", "value": "Autre" }]);
    assert_eq!(declare(&s.as_patient(), &s.patient, rename).status, 422);
    let reply = declare(&s.as_patient(), &s.patient, new_gp);
    assert_eq!(reply.status, 200, "{}", reply.body);
    // The new médecin traitant sees the masked document; the former one, no longer
    // authorised, is refused.
    assert_eq!(s.read(&doctor(COLLEAGUE), &s.masked).status, 200);
    assert_refused(&s.read(&As::doctor(), &s.consultation), 404, "R-ACC-3");
}

#[test]
fn r_pat_5_documents_hidden_from_legal_representatives() {
    let s = space();
    let hidden = s.app.create(
        &As::doctor(),
        &labelled_document(
            &s.patient,
            "11488-4",
            "2024-08-01",
            "INVISIBLE_REPRESENTANTS_LEGAUX",
        ),
    );
    let parent = As::Representative(s.patient.clone());
    assert_refused(&s.read(&parent, &hidden), 404, "R-PAT-5");
    assert!(!s.documents(&parent).0.contains(&hidden));
    assert_eq!(s.read(&parent, &s.consultation).status, 200);
    assert_eq!(
        s.read(&s.as_patient(), &hidden).status,
        200,
        "the patient sees it"
    );
}

// ---------------------------------------------------------------- R-ACC-13

fn scoped(mut claims: Value, scope: &str) -> As {
    claims["scope"] = json!(scope);
    As::Token(crate::support::sign(&crate::support::keys().rsa, &claims))
}

#[test]
fn r_acc_13_scopes_narrow_an_app_the_patient_authorised() {
    let s = space();
    let mut claims = crate::support::base_claims("patient", "app-user");
    claims["patient"] = json!(s.patient);
    let app = scoped(
        claims.clone(),
        "launch/patient openid patient/DocumentReference.rs",
    );
    assert_eq!(s.read(&app, &s.consultation).status, 200);
    assert_eq!(s.documents(&app).1, 3);
    assert_refused(
        &s.app.post(
            "DocumentReference",
            &app,
            &document(&s.patient, "11488-4", "2024-09-01"),
        ),
        403,
        "R-ACC-13",
    );
    assert_refused(
        &s.app.get(&format!("Consent?patient={}", s.patient), &app),
        403,
        "R-ACC-13",
    );
    assert_refused(
        &s.app
            .delete(&format!("DocumentReference/{}", s.consultation), &app),
        403,
        "R-ACC-13",
    );
    // Scopes never widen: a patient app granted everything still cannot create a Patient.
    let everything = scoped(claims, "patient/*.cruds");
    assert_refused(
        &s.app
            .post("Patient", &everything, &patient(&nir(), "A", "B", "1990")),
        403,
        "R-ACC-12",
    );
}

#[test]
fn r_acc_13_scopes_narrow_a_professional_and_a_system() {
    let s = space();
    let mut claims = crate::support::base_claims("professional", DOCTOR_IDNAT);
    claims["profession"] = json!("10");
    let reader = scoped(claims.clone(), "user/DocumentReference.r");
    assert_eq!(s.read(&reader, &s.consultation).status, 200);
    // A conditional reference is a search of Patients: a token that may deposit
    // documents but not search people learns nothing of who has a space.
    let mut by_ins = document(&s.patient, "11488-4", "2024-09-03");
    by_ins["subject"] = json!({ "reference": format!("Patient?identifier={INS}|{}", s.nir) });
    let depositor = scoped(claims.clone(), "user/DocumentReference.c");
    assert_refused(
        &s.app.post("DocumentReference", &depositor, &by_ins),
        403,
        "R-ACC-13",
    );
    let finds_people = scoped(claims, "user/DocumentReference.c user/Patient.s");
    assert_eq!(
        s.app
            .post("DocumentReference", &finds_people, &by_ins)
            .status,
        201
    );
    assert_refused(
        &s.app
            .get(&format!("DocumentReference?patient={}", s.patient), &reader),
        403,
        "R-ACC-13",
    );
    let feed = scoped(
        crate::support::base_claims("system", "vaccination-feed"),
        "system/DocumentReference.c",
    );
    assert_eq!(
        s.app
            .post(
                "DocumentReference",
                &feed,
                &document(&s.patient, "11369-6", "2024-09-02")
            )
            .status,
        201
    );
    assert_refused(
        &s.app.post(
            "Binary",
            &feed,
            &json!({ "resourceType": "Binary", "contentType": "text/plain", "data": "eA==" }),
        ),
        403,
        "R-ACC-13",
    );
}

/// An operation reads and writes other types than its own and answers with a body:
/// each of these is under the caller's scopes, as if it were asked for alone.
#[test]
fn r_acc_13_an_operation_needs_a_scope_for_everything_it_reads_writes_and_answers() {
    use crate::support::fixtures::message_from;
    let s = space();
    let mut message = message_from(&s.patient, DOCTOR_IDNAT, "2024-12-05T09:00:00Z");
    message["payload"] = json!([
        { "contentAttachment": { "contentType": "application/pdf", "data": "U0VDUkVU", "title": "Ordonnance" } }
    ]);
    let message = s.app.create(&As::doctor(), &message);
    let save = format!("Communication/{message}/$save-attachment");
    let parameters = json!({ "resourceType": "Parameters" });
    let mut claims = crate::support::base_claims("patient", "app-user");
    claims["patient"] = json!(s.patient);
    // Saving an attachment reads the message and creates a document: an app that
    // may change messages, or only create documents, does neither.
    for scope in [
        "patient/Communication.u",
        "patient/Communication.cruds",
        "patient/DocumentReference.cruds",
        "patient/Communication.u patient/DocumentReference.c",
    ] {
        let before = s.app.data_rows();
        let reply = s
            .app
            .post(&save, &scoped(claims.clone(), scope), &parameters);
        assert_refused(&reply, 403, "R-ACC-13");
        assert!(!reply.body.contains("U0VDUkVU"), "{scope}: {}", reply.body);
        assert_eq!(s.app.data_rows(), before, "{scope}: nothing stored");
    }
    // Granted both, it saves the document; the answer carries the document only
    // to an app that may read documents (it holds the message's attachment).
    let saves = scoped(
        claims.clone(),
        "patient/Communication.r patient/DocumentReference.c",
    );
    let reply = s.app.post(&save, &saves, &parameters);
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert!(reply.body.is_empty(), "no body: {}", reply.body);
    let location = reply.header("location").expect("a Location");
    let saved = location
        .split_once("DocumentReference/")
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("the document's Location");
    let saved = s
        .app
        .get(&format!("DocumentReference/{saved}"), &s.as_patient());
    assert_eq!(saved.json()["content"][0]["attachment"]["data"], "U0VDUkVU");
    let reads_too = scoped(
        claims.clone(),
        "patient/Communication.r patient/DocumentReference.cr",
    );
    let reply = s.app.post(&save, &reads_too, &parameters);
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.json()["content"][0]["attachment"]["data"], "U0VDUkVU");
    // A plain create under a scope that does not read its type: stored, no body.
    let creates = scoped(claims.clone(), "patient/DocumentReference.c");
    let reply = s.app.post(
        "DocumentReference",
        &creates,
        &document(&s.patient, "11488-4", "2024-09-01"),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert!(reply.body.is_empty(), "no body: {}", reply.body);
    // A patch reads what it changes (its `test`, its `from` and its errors tell of
    // it), a conditional create searches, a replacement changes the document it
    // replaces: each needs the scope of what it performs, before anything is read.
    let changes_documents = scoped(claims.clone(), "patient/DocumentReference.u");
    for operations in [
        json!([{ "op": "copy", "from": "/content/0/attachment/data", "path": "/status" }]),
        json!([{ "op": "test", "path": "/status", "value": "current" }]),
    ] {
        let reply = s.app.json_patch(
            &format!("DocumentReference/{}", s.consultation),
            &changes_documents,
            &operations,
        );
        assert_refused(&reply, 403, "R-ACC-13");
        assert!(!reply.body.contains("JVBERi0xLjQK"), "{}", reply.body);
    }
    let creates_documents = scoped(claims.clone(), "patient/DocumentReference.c");
    let conditional = s
        .app
        .request("POST", "DocumentReference")
        .as_(&creates_documents)
        .fhir()
        .header("If-None-Exist", &format!("_id={}", s.consultation))
        .send(Some(
            document(&s.patient, "11488-4", "2024-09-01").to_string(),
        ));
    assert_refused(&conditional, 403, "R-ACC-13");
    let mut replacing = document(&s.patient, "11488-4", "2024-09-02");
    replacing["relatesTo"] = json!([{ "code": "replaces", "target": { "reference": format!("DocumentReference/{}", s.consultation) } }]);
    let before = s.app.data_rows();
    assert_refused(
        &s.app
            .post("DocumentReference", &creates_documents, &replacing),
        403,
        "R-ACC-13",
    );
    assert_eq!(s.app.data_rows(), before, "nothing replaced");
    // The opposition answers with a proof naming the person: an app that may only
    // change the Patient neither opposes nor gets it; one that reads it too does.
    let changes = scoped(claims.clone(), "patient/Patient.u");
    for operation in ["$oppose", "$close", "$activate"] {
        let reply = s.app.post(
            &format!("Patient/{}/{operation}", s.patient),
            &changes,
            &parameters,
        );
        assert_refused(&reply, 403, "R-ACC-13");
        assert!(
            !reply.body.contains("Binary"),
            "{operation}: {}",
            reply.body
        );
    }
    let holder = scoped(claims, "patient/Patient.ru");
    let reply = s.app.post(
        &format!("Patient/{}/$activate", s.patient),
        &holder,
        &parameters,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["id"], s.patient.as_str());
}

// ---------------------------------------------------------------- R-MSG-5

#[test]
fn r_msg_5_messages_are_read_by_their_participants_only() {
    use crate::support::fixtures::message_from;
    let s = space();
    s.consent(&permit_professional(&s.patient, COLLEAGUE));
    let from_gp = s.app.create(
        &As::doctor(),
        &message_from(&s.patient, DOCTOR_IDNAT, "2024-12-01T09:00:00Z"),
    );
    let from_colleague = s.app.create(
        &doctor(COLLEAGUE),
        &message_from(&s.patient, COLLEAGUE, "2024-12-02T09:00:00Z"),
    );
    let search = |who: &As| {
        let bundle = s
            .app
            .get(
                &format!("Communication?patient={}&_total=accurate", s.patient),
                who,
            )
            .json();
        (match_ids(&bundle), bundle["total"].as_i64().unwrap())
    };
    // Each professional sees their own conversation, not the other's, whatever their
    // authorisation (the médecin traitant included).
    assert_eq!(search(&As::doctor()), (vec![from_gp.clone()], 1));
    assert_eq!(
        search(&doctor(COLLEAGUE)),
        (vec![from_colleague.clone()], 1)
    );
    assert_refused(
        &s.app
            .get(&format!("Communication/{from_colleague}"), &As::doctor()),
        404,
        "R-MSG-5",
    );
    assert_refused(
        &s.app
            .get(&format!("Communication/{from_gp}"), &doctor(COLLEAGUE)),
        404,
        "R-MSG-5",
    );
    assert_eq!(
        s.app
            .get(&format!("Communication/{from_gp}"), &As::doctor())
            .status,
        200
    );
    // The patient reads both (beside the service's notifications of them).
    let messages = s
        .app
        .get(
            &format!(
                "Communication?patient={}&category:not=http://terminology.hl7.org/CodeSystem/communication-category|notification&_total=accurate",
                s.patient
            ),
            &s.as_patient(),
        )
        .json();
    assert_eq!(messages["total"], 2, "{messages}");
}

// ---------------------------------------------------------------- Binary (SPEC §3)

/// Deposits a document of `loinc` whose content is a Binary, as the médecin traitant.
fn document_with_binary(s: &Space, loinc: &str, label: Option<&str>) -> (String, String) {
    let binary = json!({ "resourceType": "Binary", "contentType": "application/pdf", "data": "JVBERi0xLjQK",
        "securityContext": { "reference": format!("Patient/{}", s.patient) } });
    let binary_id = s.app.create(&As::doctor(), &binary);
    let mut body = match label {
        Some(label) => labelled_document(&s.patient, loinc, "2024-10-01", label),
        None => document(&s.patient, loinc, "2024-10-01"),
    };
    body["content"] = json!([{ "attachment": { "contentType": "application/pdf", "url": format!("Binary/{binary_id}") } }]);
    (s.app.create(&As::doctor(), &body), binary_id)
}

#[test]
fn binary_content_follows_the_document_that_points_at_it() {
    let s = space();
    s.consent(&permit_professional(&s.patient, COLLEAGUE));
    let dentist = As::professional(COLLEAGUE, "40", None, None, None);
    let (_, consultation) = document_with_binary(&s, "11488-4", None);
    let (_, psychiatric) = document_with_binary(&s, "68599-0", None);
    let (_, masked) = document_with_binary(&s, "11488-4", Some("MASQUE_PS"));
    let read = |who: &As, id: &str| s.app.get(&format!("Binary/{id}"), who).status;
    assert_eq!(read(&dentist, &consultation), 200);
    assert_eq!(
        read(&dentist, &psychiatric),
        404,
        "R-ACC-6 through the document"
    );
    assert_eq!(read(&dentist, &masked), 404, "R-ACC-7 through the document");
    assert_eq!(read(&As::doctor(), &psychiatric), 200);
    assert_eq!(read(&As::doctor(), &masked), 200);
    assert_eq!(read(&s.as_patient(), &masked), 200);
    assert_eq!(
        read(&doctor(STRANGER), &consultation),
        404,
        "R-ACC-3 through the document"
    );
    assert_eq!(
        read(&As::Patient("another-space".into()), &consultation),
        404
    );
    assert_eq!(
        s.app
            .get(&format!("Binary/{psychiatric}/_history/1"), &dentist)
            .status,
        404,
        "vread too"
    );
}

#[test]
fn binary_content_not_yet_attached_is_read_by_its_depositor_only() {
    let s = space();
    s.consent(&permit_professional(&s.patient, COLLEAGUE));
    let binary = json!({ "resourceType": "Binary", "contentType": "text/plain", "data": "eA==",
        "securityContext": { "reference": format!("Patient/{}", s.patient) } });
    let id = s.app.create(&As::doctor(), &binary);
    assert_eq!(
        s.app.get(&format!("Binary/{id}"), &As::doctor()).status,
        200
    );
    assert_eq!(
        s.app
            .get(&format!("Binary/{id}"), &doctor(COLLEAGUE))
            .status,
        404
    );
    // Not the space's holder either: content no document points at may be a hidden
    // document's (R-PAT-1); a document pointing at it opens it.
    assert_eq!(
        s.app.get(&format!("Binary/{id}"), &s.as_patient()).status,
        404
    );
    let mut pointing = document(&s.patient, "11488-4", "2024-06-01");
    pointing["content"] =
        json!([{ "attachment": { "contentType": "text/plain", "url": format!("Binary/{id}") } }]);
    s.app.create(&As::doctor(), &pointing);
    assert_eq!(
        s.app.get(&format!("Binary/{id}"), &s.as_patient()).status,
        200
    );
}
