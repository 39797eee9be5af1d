//! Secure messaging (SPEC §7, R-MSG-1…4; R-MSG-5 is in `access.rs`).

use serde_json::{Value, json};

use crate::support::fixtures::{DOCTOR_IDNAT, message_from, nir, patient};
use crate::support::{As, TestApp, assert_refused};

/// A space (médecin traitant `As::doctor()`) and a message the médecin traitant sent.
fn conversation() -> (TestApp, String, String) {
    let app = TestApp::new();
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let message = app.create(
        &As::doctor(),
        &message_from(&patient_id, DOCTOR_IDNAT, "2024-12-01T09:00:00Z"),
    );
    (app, patient_id, message)
}

/// The patient's message, answering `answered` when given.
fn from_patient(patient_id: &str, answered: Option<&str>, link: &str) -> Value {
    let mut message = json!({
        "resourceType": "Communication",
        "status": "completed",
        "subject": { "reference": format!("Patient/{patient_id}") },
        "sender": { "reference": format!("Patient/{patient_id}") },
        "recipient": [{ "identifier": { "system": "urn:oid:1.2.250.1.71.4.2.1", "value": DOCTOR_IDNAT } }],
        "sent": "2024-12-02T09:00:00Z",
        "payload": [{ "contentString": "Merci docteur" }]
    });
    if let Some(answered) = answered {
        message[link] = json!([{ "reference": format!("Communication/{answered}") }]);
    }
    message
}

#[test]
fn r_msg_1_only_a_professional_starts_a_conversation() {
    let (app, patient_id, doctors) = conversation();
    let me = As::Patient(patient_id.clone());
    // The patient cannot start one…
    assert_refused(
        &app.post(
            "Communication",
            &me,
            &from_patient(&patient_id, None, "inResponseTo"),
        ),
        403,
        "R-MSG-1",
    );
    // …but answers within one a professional started, by inResponseTo or partOf,
    // and the answer can itself be answered.
    let reply = app.post(
        "Communication",
        &me,
        &from_patient(&patient_id, Some(&doctors), "inResponseTo"),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let answer = reply.id();
    let reply = app.post(
        "Communication",
        &me,
        &from_patient(&patient_id, Some(&answer), "partOf"),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    // A message of another space, or one that does not exist, opens nothing.
    let other = app.create(&As::System, &patient(&nir(), "Autre", "Paul", "1970-01-01"));
    let elsewhere = app.create(
        &As::doctor(),
        &message_from(&other, DOCTOR_IDNAT, "2024-12-01T09:00:00Z"),
    );
    assert_refused(
        &app.post(
            "Communication",
            &me,
            &from_patient(&patient_id, Some(&elsewhere), "inResponseTo"),
        ),
        403,
        "R-MSG-1",
    );
    assert_refused(
        &app.post(
            "Communication",
            &me,
            &from_patient(&patient_id, Some("no-such-message"), "inResponseTo"),
        ),
        403,
        "R-MSG-1",
    );
    // The service's welcome message (R-MSG-2) starts a conversation too.
    let welcome = app.post(
        &format!("Patient/{patient_id}/$activate"),
        &me,
        &json!({ "resourceType": "Parameters" }),
    );
    assert_eq!(welcome.status, 200, "{}", welcome.body);
    let listing = app
        .get(
            &format!("Communication?patient={patient_id}&_count=100"),
            &me,
        )
        .json();
    let welcome_id = listing["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["resource"]["topic"]["coding"][0]["code"] == "welcome")
        .and_then(|entry| entry["resource"]["id"].as_str())
        .expect("the welcome message")
        .to_owned();
    let reply = app.post(
        "Communication",
        &me,
        &from_patient(&patient_id, Some(&welcome_id), "inResponseTo"),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    // A professional starts conversations.
    assert_eq!(
        app.post(
            "Communication",
            &As::doctor(),
            &message_from(&patient_id, DOCTOR_IDNAT, "2024-12-03T09:00:00Z"),
        )
        .status,
        201
    );
}

#[test]
fn r_msg_3_the_patient_deletes_a_message_at_once_and_for_good() {
    let (app, patient_id, doctors) = conversation();
    let me = As::Patient(patient_id.clone());
    // A professional cannot delete it (actor table).
    assert_eq!(
        app.delete(&format!("Communication/{doctors}"), &As::doctor())
            .status,
        403
    );
    assert_eq!(
        app.delete(&format!("Communication/{doctors}"), &me).status,
        204
    );
    for path in [
        format!("Communication/{doctors}"),
        format!("Communication/{doctors}/_history"),
        format!("Communication/{doctors}/_history/1"),
    ] {
        assert_eq!(app.get(&path, &me).status, 404, "{path}");
        assert_eq!(app.get(&path, &As::doctor()).status, 404, "{path}");
    }
    assert_eq!(
        app.stored_rows(&format!("resources WHERE res_id = '{doctors}'")),
        0
    );
    assert_eq!(
        app.stored_rows(&format!("resource_versions WHERE res_id = '{doctors}'")),
        0
    );
}

#[test]
fn r_msg_4_an_attachment_is_saved_as_a_patient_document() {
    let (app, patient_id, _) = conversation();
    let me = As::Patient(patient_id.clone());
    let mut message = message_from(&patient_id, DOCTOR_IDNAT, "2024-12-05T09:00:00Z");
    message["payload"] = json!([
        { "contentString": "Voici votre ordonnance" },
        { "contentAttachment": { "contentType": "application/pdf", "data": "JVBERi0xLjQK", "title": "Ordonnance" } }
    ]);
    let with_attachment = app.create(&As::doctor(), &message);
    let reply = app.post(
        &format!("Communication/{with_attachment}/$save-attachment"),
        &me,
        &json!({ "resourceType": "Parameters" }),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let document = reply.json();
    fhir_check::check("DocumentReference", &reply.body).expect("a valid R4 DocumentReference");
    assert_eq!(document["category"][0]["coding"][0]["code"], "90");
    assert_eq!(document["content"][0]["attachment"]["data"], "JVBERi0xLjQK");
    assert_eq!(
        document["subject"]["reference"],
        format!("Patient/{patient_id}")
    );
    let id = document["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("DocumentReference/{id}"), &me).status, 200);
    // Only the holder saves, and only a message with that attachment.
    assert_eq!(
        app.post(
            &format!("Communication/{with_attachment}/$save-attachment"),
            &As::doctor(),
            &json!({ "resourceType": "Parameters" }),
        )
        .status,
        403
    );
    assert_eq!(
        app.post(
            &format!("Communication/{with_attachment}/$save-attachment"),
            &As::Patient("someone-else".into()),
            &json!({ "resourceType": "Parameters" }),
        )
        .status,
        404
    );
    let reply = app.post(
        &format!("Communication/{with_attachment}/$save-attachment?index=5"),
        &me,
        &json!({ "resourceType": "Parameters" }),
    );
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(
        app.post(
            &format!("Communication/{with_attachment}/$unknown"),
            &me,
            &json!({ "resourceType": "Parameters" }),
        )
        .status,
        404
    );
}

#[test]
fn r_msg_5_a_professional_writes_only_as_themselves() {
    let (app, patient_id, _) = conversation();
    let before = app.data_rows();
    // In the name of a colleague, or in no one's name: refused, nothing stored.
    assert_refused(
        &app.post(
            "Communication",
            &As::doctor(),
            &message_from(&patient_id, "810000000002", "2024-12-03T09:00:00Z"),
        ),
        403,
        "R-MSG-5",
    );
    let mut anonymous = message_from(&patient_id, DOCTOR_IDNAT, "2024-12-03T09:00:00Z");
    anonymous["sender"] = json!({ "reference": "Practitioner/example" });
    assert_refused(
        &app.post("Communication", &As::doctor(), &anonymous),
        403,
        "R-MSG-5",
    );
    // Their own IdNat_PS beside a reference to the holder: the portal would show
    // the message as the holder's own (« Vous »).
    for reference in [
        format!("Patient/{patient_id}"),
        "RelatedPerson/parent".to_owned(),
    ] {
        let mut posing = message_from(&patient_id, DOCTOR_IDNAT, "2024-12-03T09:00:00Z");
        posing["sender"]["reference"] = json!(reference);
        assert_refused(
            &app.post("Communication", &As::doctor(), &posing),
            403,
            "R-MSG-5",
        );
    }
    assert_eq!(app.data_rows(), before);
    // In their own name: stored, and the sender reads it back.
    let own = app.create(
        &As::doctor(),
        &message_from(&patient_id, DOCTOR_IDNAT, "2024-12-03T09:00:00Z"),
    );
    assert_eq!(
        app.get(&format!("Communication/{own}"), &As::doctor())
            .status,
        200
    );
}
