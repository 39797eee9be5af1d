//! Notifications to the patient (R-AUD-4): a Communication from the service in the
//! space, and delivery through the configured channel, retried, never in the way of
//! the request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::support::fixtures::{
    DOCTOR_IDNAT, document, labelled_document, message_from, nir, patient, permit_professional,
};
use crate::support::{As, TestApp, eventually, temp_dir};
use dmp_fhir_server::config::NotificationChannelSetting;

const COLLEAGUE: &str = "810000000002";
const STRANGER: &str = "810000000003";
const AUTHORISED: &str = "810000000004";
const NOTIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/communication-category|notification";

/// The kinds of the notifications in the patient's space, oldest first.
fn notification_kinds(app: &TestApp, patient_id: &str) -> Vec<String> {
    let reply = app.get(
        &format!(
            "Communication?patient={patient_id}&category={NOTIFICATION}&_sort=sent&_count=100"
        ),
        &As::Patient(patient_id.to_owned()),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
        .resources()
        .iter()
        .map(|notice| {
            notice["topic"]["coding"][0]["code"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// The kinds of the notifications `who`'s two searches of the patient's documents
/// added.
fn told_after_two_searches(app: &TestApp, patient_id: &str, who: &As) -> Vec<String> {
    let before = notification_kinds(app, patient_id).len();
    for _ in 0..2 {
        let reply = app.get(&format!("DocumentReference?patient={patient_id}"), who);
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    notification_kinds(app, patient_id).split_off(before)
}

fn with_file_channel() -> (TestApp, PathBuf, String) {
    let outbox = temp_dir("notifications").join("delivered.jsonl");
    let path = outbox.clone();
    let app = TestApp::with(move |config| {
        config.notification_channel = NotificationChannelSetting::File(path);
        config.notification_retry_base_ms = 50;
    });
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    (app, outbox, patient_id)
}

fn delivered(file: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[test]
fn r_aud_4_the_patient_is_told_of_each_event_the_spec_lists_and_of_nothing_else() {
    let (app, file, patient_id) = with_file_channel();
    let me = As::Patient(patient_id.clone());
    let gp = As::doctor();
    // The médecin traitant deposits a document: a deposit, and a first access.
    app.create(&gp, &document(&patient_id, "11488-4", "2024-01-01"));
    assert_eq!(
        notification_kinds(&app, &patient_id),
        vec!["first-access", "document-deposited"]
    );
    // A second deposit: no second "first access".
    let second = app.create(&gp, &document(&patient_id, "11488-4", "2024-01-02"));
    assert_eq!(notification_kinds(&app, &patient_id).len(), 3);
    // A document pending its announcement consultation is not announced (R-PAT-1).
    app.create(
        &gp,
        &labelled_document(&patient_id, "11488-4", "2024-01-03", "INVISIBLE_PATIENT"),
    );
    assert_eq!(notification_kinds(&app, &patient_id).len(), 3);
    // A change by a professional.
    let patch = json!([{ "op": "replace", "path": "/status", "value": "superseded" }]);
    let reply = app
        .request("PATCH", &format!("DocumentReference/{second}"))
        .as_(&gp)
        .header("Content-Type", "application/json-patch+json")
        .send(Some(patch.to_string()));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        notification_kinds(&app, &patient_id).last().unwrap(),
        "document-changed"
    );
    // A message from a professional.
    app.create(
        &gp,
        &message_from(&patient_id, DOCTOR_IDNAT, "2024-12-01T09:00:00Z"),
    );
    assert_eq!(
        notification_kinds(&app, &patient_id).last().unwrap(),
        "new-message"
    );
    // A professional declares the patient's consent: told; it is no access to the
    // space's content, so their first reading is told when it comes.
    let colleague = As::Professional {
        id_nat_ps: COLLEAGUE.into(),
        profession: "10".into(),
    };
    app.create(&colleague, &permit_professional(&patient_id, COLLEAGUE));
    let kinds = notification_kinds(&app, &patient_id);
    assert_eq!(kinds.last().unwrap(), "consent-declared", "{kinds:?}");
    let before = kinds.len();
    let reply = app.get(
        &format!("DocumentReference?patient={patient_id}"),
        &colleague,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        notification_kinds(&app, &patient_id).split_off(before),
        vec!["first-access"]
    );
    // Each emergency access is told, with its mode and reason.
    let emergency = As::professional(
        STRANGER,
        "10",
        None,
        Some("bris_de_glace"),
        Some("malaise au cabinet"),
    );
    let kinds = told_after_two_searches(&app, &patient_id, &emergency);
    assert_eq!(
        kinds,
        ["emergency-access", "first-access", "emergency-access"]
    );
    // A professional the patient authorised reads the space: a first access, told
    // though the trace of this space was written just before (the patient's reads).
    let authorised = As::Professional {
        id_nat_ps: AUTHORISED.into(),
        profession: "10".into(),
    };
    app.create(&me, &permit_professional(&patient_id, AUTHORISED));
    let kinds = told_after_two_searches(&app, &patient_id, &authorised);
    assert_eq!(kinds, ["first-access"]);
    // The patient's own actions and identity lookups tell nothing.
    let before = notification_kinds(&app, &patient_id).len();
    app.get(&format!("DocumentReference?patient={patient_id}"), &me);
    app.get(&format!("Patient/{patient_id}"), &colleague);
    assert_eq!(notification_kinds(&app, &patient_id).len(), before);
    // Every notification reaches the channel, with the text the patient reads.
    let all = eventually(|| {
        let lines = delivered(&file);
        (lines.len() == before).then_some(lines)
    });
    let emergency_line = all
        .iter()
        .find(|line| line["kind"] == "emergency-access")
        .expect("an emergency notification");
    assert_eq!(emergency_line["patient"], format!("Patient/{patient_id}"));
    assert!(
        emergency_line["text"]
            .as_str()
            .unwrap()
            .contains("malaise au cabinet")
    );
    // Notifications are the patient's: professionals do not read them (R-MSG-5).
    let seen_by_gp = app
        .get(
            &format!("Communication?patient={patient_id}&category={NOTIFICATION}&_total=accurate"),
            &gp,
        )
        .json();
    assert_eq!(seen_by_gp["total"], 0);
    // And the notification is a valid R4 Communication from the service.
    let one = app
        .get(
            &format!("Communication?patient={patient_id}&category={NOTIFICATION}&_count=1"),
            &me,
        )
        .json();
    let resource = one["entry"][0]["resource"].to_string();
    fhir_check::check("Communication", &resource).expect("a valid R4 Communication");
    assert!(resource.contains("Mon espace santé"));
}

/// A gateway that answers 503 to the first `failures` requests, then 204, and keeps
/// what it received.
struct Gateway {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A request's headers (lower-case names) and body.
type Received = (Vec<(String, String)>, String);

fn gateway(failures: usize) -> Gateway {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    std::thread::spawn(move || {
        for (count, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut length = 0;
            let mut line = String::new();
            reader.read_line(&mut line).ok();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.trim_end().split_once(": ") {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.parse().unwrap_or(0);
                    }
                    headers.push((name.to_ascii_lowercase(), value.to_owned()));
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).ok();
            log.lock()
                .unwrap()
                .push((headers, String::from_utf8_lossy(&body).into_owned()));
            let status = if count < failures {
                "503 Service Unavailable"
            } else {
                "204 No Content"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    Gateway { url, received }
}

#[test]
fn r_aud_4_the_webhook_is_signed_and_retried_until_delivered() {
    let gateway = gateway(2);
    let secret_file = temp_dir("webhook").join("secret");
    std::fs::write(&secret_file, "a-shared-secret-of-32-bytes-long\n").unwrap();
    let (url, secret) = (gateway.url.clone(), secret_file.clone());
    let app = TestApp::with(move |config| {
        config.notification_channel = NotificationChannelSetting::Webhook(url);
        config.notification_webhook_secret_file = Some(secret);
        config.notification_retry_base_ms = 50;
    });
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let deposit = app.post(
        "DocumentReference",
        &As::System,
        &document(&patient_id, "11488-4", "2024-01-01"),
    );
    assert_eq!(deposit.status, 201, "{}", deposit.body);
    let received = eventually(|| {
        let received = gateway.received.lock().unwrap().clone();
        (received.len() >= 3).then_some(received)
    });
    // Two failures, then the same notification delivered.
    assert_eq!(received.len(), 3, "delivered once, after two retries");
    assert!(received.iter().all(|(_, body)| body == &received[0].1));
    let payload: Value = serde_json::from_str(&received[2].1).unwrap();
    assert_eq!(payload["kind"], "document-deposited");
    assert_eq!(payload["patient"], format!("Patient/{patient_id}"));
    // The signature is the HMAC-SHA256 of "timestamp.body" under the shared secret.
    for (headers, body) in &received {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
                .unwrap_or_default()
        };
        let timestamp = header("x-notification-timestamp");
        let key = openssl::pkey::PKey::hmac(b"a-shared-secret-of-32-bytes-long").unwrap();
        let mut signer =
            openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
        signer
            .update(format!("{timestamp}.{body}").as_bytes())
            .unwrap();
        let expected: String = signer
            .sign_to_vec()
            .unwrap()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(
            header("x-notification-signature"),
            format!("sha256={expected}")
        );
    }
    let state = eventually(|| {
        let rows = app.query_texts(
            "SELECT attempts || ' ' || COALESCE(delivered_at, '-') AS text FROM notification_outbox",
        );
        rows.first().filter(|row| !row.ends_with('-')).cloned()
    });
    assert!(state.starts_with("3 "), "{state}");
}

#[test]
fn r_aud_4_a_delivery_failure_never_fails_the_request() {
    // Nothing listens on this port.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let secret_file = temp_dir("webhook-down").join("secret");
    std::fs::write(&secret_file, "a-shared-secret-of-32-bytes-long").unwrap();
    let app = TestApp::with(move |config| {
        config.notification_channel =
            NotificationChannelSetting::Webhook(format!("http://{closed}/notify"));
        config.notification_webhook_secret_file = Some(secret_file);
        config.notification_retry_base_ms = 50;
    });
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let deposit = app.post(
        "DocumentReference",
        &As::doctor(),
        &document(&patient_id, "11488-4", "2024-01-01"),
    );
    assert_eq!(deposit.status, 201, "{}", deposit.body);
    // The notification stays queued with its error, and is tried again.
    let errors = eventually(|| {
        let rows = app.query_texts(
            "SELECT attempts || ' ' || last_error AS text FROM notification_outbox WHERE delivered_at IS NULL AND attempts >= 2",
        );
        (!rows.is_empty()).then_some(rows)
    });
    assert!(errors[0].contains("webhook"), "{errors:?}");
    // The server keeps serving.
    assert_eq!(
        app.get(&format!("Patient/{patient_id}"), &As::doctor())
            .status,
        200
    );
}

#[test]
fn r_aud_4_a_refused_attempt_is_no_access_and_each_refused_entry_is_traced() {
    let app = TestApp::new();
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let holder = As::Patient(patient_id.clone());
    app.create(
        &holder,
        &json!({ "resourceType": "Condition", "code": { "text": "Asthme" },
                 "subject": { "reference": format!("Patient/{patient_id}") } }),
    );
    app.create(
        &holder,
        &crate::support::fixtures::emergency_setting(&patient_id, "deny", "BTG"),
    );
    let before = notification_kinds(&app, &patient_id);
    let batch = |who: &As| {
        let reply = app.post(
            "",
            who,
            &json!({ "resourceType": "Bundle", "type": "batch", "entry": [
                { "request": { "method": "GET", "url": format!("Condition?patient={patient_id}") } },
                { "request": { "method": "GET", "url": format!("Patient/{patient_id}") } }
            ] }),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    };
    // Without authorisation, and in an emergency the patient opposed: refused
    // entries, no access, nothing told.
    let stranger = As::professional(STRANGER, "10", None, None, None);
    let answered = batch(&stranger);
    assert!(
        answered["entry"][0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("403")
    );
    let emergency = As::professional(STRANGER, "10", None, Some("bris_de_glace"), Some("urgence"));
    batch(&emergency);
    let own_trace = app.get("AuditEvent?_count=50", &stranger);
    assert_eq!(own_trace.status, 200, "{}", own_trace.body);
    assert_eq!(
        notification_kinds(&app, &patient_id),
        before,
        "nothing told"
    );
    // The space's trace names the refusals of the batch's entries.
    let trace = app
        .get("AuditEvent?subtype=batch&_count=50", &holder)
        .json();
    let events: Vec<&Value> = trace["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["resource"])
        .collect();
    assert_eq!(events.len(), 2, "{trace}");
    for event in &events {
        assert_eq!(event["outcome"], "4", "{event}");
        let rules: Vec<&str> = event["extension"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|extension| extension["valueString"].as_str())
            .collect();
        assert!(
            rules.contains(&"R-ACC-3") || rules.contains(&"R-ACC-4"),
            "{event}"
        );
    }
    // Authorised, their first access is told then, once.
    app.create(&holder, &permit_professional(&patient_id, STRANGER));
    let reply = app.get(&format!("Condition?patient={patient_id}"), &stranger);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let told = notification_kinds(&app, &patient_id).split_off(before.len());
    assert_eq!(told, vec!["first-access"], "{told:?}");
}

#[test]
fn r_aud_4_what_a_patient_search_includes_is_an_access_told_as_such() {
    let app = TestApp::new();
    let nir = nir();
    let patient_id = app.create(
        &As::System,
        &patient(&nir, "Martin", "Claire", "1980-05-01"),
    );
    app.create(
        &As::doctor(),
        &document(&patient_id, "11488-4", "2024-01-01"),
    );
    let before = notification_kinds(&app, &patient_id);
    // An identity lookup alone tells nothing…
    let emergency = As::professional(STRANGER, "10", None, Some("bris_de_glace"), Some("coma"));
    let lookup = app.get(
        &format!("Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{nir}"),
        &emergency,
    );
    assert_eq!(lookup.status, 200, "{}", lookup.body);
    assert_eq!(notification_kinds(&app, &patient_id), before);
    // …what it brings of the space's content is an emergency access, and a first one.
    let included = app.get(
        &format!(
            "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{nir}&_revinclude=DocumentReference:subject"
        ),
        &emergency,
    );
    assert_eq!(included.status, 200, "{}", included.body);
    assert!(included.body.contains("\"include\""), "{}", included.body);
    let mut told = notification_kinds(&app, &patient_id).split_off(before.len());
    told.sort();
    assert_eq!(told, vec!["emergency-access", "first-access"], "{told:?}");
}

#[test]
fn r_aud_1_each_refused_batch_entry_is_in_its_own_space_s_trace_for_those_who_read_it_whole() {
    let app = TestApp::new();
    let a = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let c = app.create(
        &As::System,
        &patient(&nir(), "Durand", "Paul", "1970-01-01"),
    );
    app.create(
        &As::Patient(c.clone()),
        &crate::support::fixtures::emergency_setting(&c, "deny", "BTG"),
    );
    let document_a = app.create(&As::doctor(), &document(&a, "11488-4", "2024-01-01"));
    let psychiatric_a = app.create(&As::doctor(), &document(&a, "68599-0", "2024-01-02"));
    let events = |patient: &str, who: &As| -> Vec<Value> {
        let reply = app.get(&format!("AuditEvent?patient={patient}&subtype=batch"), who);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.resources()
    };
    let rules = |event: &Value| -> Vec<String> {
        event["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|extension| extension["valueString"].as_str().map(str::to_owned))
            .collect()
    };
    // In an emergency: a search of C (opposed, R-ACC-4) beside a read of A's
    // document; then a pharmacist's read of A's psychiatric synthesis (hidden from
    // them, R-ACC-6: answered "not known") beside A's identity, which tells of A.
    let emergency = As::professional(STRANGER, "10", None, Some("bris_de_glace"), Some("coma"));
    let batch = |who: &As, urls: [String; 2]| {
        let reply = app.post(
            "",
            who,
            &json!({ "resourceType": "Bundle", "type": "batch", "entry": urls.iter().map(|url| json!({ "request": { "method": "GET", "url": url } })).collect::<Vec<_>>() }),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    };
    batch(
        &emergency,
        [
            format!("DocumentReference?patient={c}"),
            format!("DocumentReference/{document_a}"),
        ],
    );
    let pharmacist = As::professional(
        "810000000843",
        "21",
        None,
        Some("bris_de_glace"),
        Some("coma"),
    );
    let answered = batch(
        &pharmacist,
        [
            format!("DocumentReference/{psychiatric_a}"),
            format!("Patient/{a}"),
        ],
    );
    assert!(
        answered["entry"][0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("404")
    );
    let holder_c = events(&c, &As::Patient(c.clone()));
    assert_eq!(holder_c.len(), 1, "{holder_c:?}");
    assert_eq!(holder_c[0]["outcome"], "4");
    assert!(rules(&holder_c[0]).contains(&"R-ACC-4".to_owned()));
    // A's holder reads both batches: the emergency one's refusal was C's, not A's;
    // the pharmacist's refusal in A is there, though the batch also told of A.
    let holder_a = events(&a, &As::Patient(a.clone()));
    assert_eq!(holder_a.len(), 2, "{holder_a:?}");
    let all_rules: Vec<String> = holder_a.iter().flat_map(&rules).collect();
    assert!(!all_rules.contains(&"R-ACC-4".to_owned()), "{all_rules:?}");
    // A refusal answered "not known" is kept in the stored event of its space, and
    // read by no one through the API (its rule would tell what the space holds).
    assert!(!all_rules.contains(&"R-ACC-6".to_owned()), "{all_rules:?}");
    let stored = app.query_texts(
        "SELECT content AS text FROM resources WHERE res_type = 'AuditEvent' AND content LIKE '%audit-entry-refused-not-known%'",
    );
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(
        stored[0].contains("R-ACC-6") && stored[0].contains(&a),
        "{}",
        stored[0]
    );
    // The pharmacist reads their own batch as answered: no rule of the hidden read.
    let own = events(&a, &pharmacist);
    assert_eq!(own.len(), 1, "{own:?}");
    assert!(
        !rules(&own[0]).contains(&"R-ACC-6".to_owned()),
        "{}",
        own[0]
    );
    // An app given only the trace reads no entry's rule.
    let mut claims = crate::support::base_claims("patient", "app-user");
    claims["patient"] = json!(a);
    claims["scope"] = json!("patient/AuditEvent.rs");
    let app_token = As::Token(crate::support::sign(&crate::support::keys().rsa, &claims));
    for event in events(&a, &app_token) {
        assert!(
            rules(&event).iter().all(|rule| !rule.starts_with("R-")),
            "{event}"
        );
    }
}

#[test]
fn r_aud_4_writes_that_open_no_content_leave_the_first_access_to_be_told() {
    let app = TestApp::new();
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let holder = As::Patient(patient_id.clone());
    app.create(&holder, &permit_professional(&patient_id, AUTHORISED));
    app.create(
        &As::doctor(),
        &document(&patient_id, "11488-4", "2024-01-01"),
    );
    let before = notification_kinds(&app, &patient_id).len();
    let authorised = As::professional(AUTHORISED, "10", None, None, None);
    // A message is no access to the space's content.
    app.create(
        &authorised,
        &message_from(&patient_id, AUTHORISED, "2024-12-01T09:00:00Z"),
    );
    // A search its scopes empty is none either.
    let mut claims = crate::support::base_claims("professional", AUTHORISED);
    claims["profession"] = json!("10");
    claims["scope"] = json!("user/Patient.rs");
    let narrow = As::Token(crate::support::sign(&crate::support::keys().rsa, &claims));
    let reply = app.get(
        &format!("Patient?_id={patient_id}&_revinclude=DocumentReference:subject"),
        &narrow,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(!reply.body.contains("\"include\""), "{}", reply.body);
    assert_eq!(
        notification_kinds(&app, &patient_id).split_off(before),
        vec!["new-message"]
    );
    // Their first reading is told.
    let reply = app.get(
        &format!("DocumentReference?patient={patient_id}"),
        &authorised,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        notification_kinds(&app, &patient_id).split_off(before + 1),
        vec!["first-access"]
    );
    // Nobody writes a notification in the service's name.
    let mut forged = message_from(&patient_id, AUTHORISED, "2099-01-01T10:00:00Z");
    forged["category"] = json!([{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "notification" }] }]);
    crate::support::assert_refused(
        &app.post("Communication", &authorised, &forged),
        403,
        "R-AUD-4",
    );
    // In any spelling: a code alone, another system, another case.
    for coding in [
        json!({ "code": "notification" }),
        json!({ "system": "http://terminology.hl7.org/CodeSystem/communication-category/", "code": "notification" }),
        json!({ "system": "http://example.org", "code": " Notification" }),
    ] {
        forged["category"] = json!([{ "coding": [coding] }]);
        crate::support::assert_refused(
            &app.post("Communication", &authorised, &forged),
            403,
            "R-AUD-4",
        );
    }
}

#[test]
fn r_aud_4_a_professional_is_named_with_the_identifier_the_patient_can_block() {
    let app = TestApp::new();
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    app.create(
        &As::doctor(),
        &document(&patient_id, "11488-4", "2024-01-01"),
    );
    let mut claims = crate::support::base_claims("professional", STRANGER);
    claims["profession"] = json!("10");
    claims["name"] = json!("Dr Claire Martin");
    claims["purpose_of_use"] = json!("bris_de_glace");
    claims["access_reason"] = json!("coma");
    let named = As::Token(crate::support::sign(&crate::support::keys().rsa, &claims));
    let reply = app.get(&format!("DocumentReference?patient={patient_id}"), &named);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let told = app
        .get(
            &format!("Communication?patient={patient_id}&category={NOTIFICATION}&_count=50"),
            &As::Patient(patient_id.clone()),
        )
        .body;
    assert!(
        told.contains(&format!("Dr Claire Martin (identifiant {STRANGER})")),
        "{told}"
    );
}

#[test]
fn r_aud_4_documents_deposited_together_are_told_in_one_notification() {
    let app = TestApp::new();
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let before = notification_kinds(&app, &patient_id).len();
    let entries: Vec<Value> = ["2024-01-01", "2024-01-02"]
        .iter()
        .map(|day| {
            json!({
                "resource": document(&patient_id, "11488-4", day),
                "request": { "method": "POST", "url": "DocumentReference" }
            })
        })
        .collect();
    let reply = app.post(
        "",
        &As::doctor(),
        &json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries }),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let told = app
        .get(
            &format!("Communication?patient={patient_id}&category={NOTIFICATION}&_count=50"),
            &As::Patient(patient_id.clone()),
        )
        .json();
    let deposited: Vec<&Value> = told["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["resource"])
        .filter(|notice| notice["topic"]["coding"][0]["code"] == "document-deposited")
        .collect();
    assert_eq!(deposited.len(), 1, "{told}");
    assert_eq!(deposited[0]["about"].as_array().unwrap().len(), 2);
    assert!(
        deposited[0]["payload"][0]["contentString"]
            .as_str()
            .unwrap()
            .starts_with("2 nouveaux documents"),
        "{}",
        deposited[0]
    );
    assert_eq!(
        notification_kinds(&app, &patient_id).len(),
        before + 2,
        "and a first access"
    );
}

#[test]
fn r_aud_4_deposits_of_separate_requests_are_told_apart_even_when_committed_together() {
    let app = TestApp::new();
    let patient_id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let first = app.create(
        &As::doctor(),
        &document(&patient_id, "11488-4", "2024-01-01"),
    );
    let before = notification_kinds(&app, &patient_id).len();
    // Sent at once, these deposits commit in few groups (SQLite's group commit
    // stores a group's traces and notifications together); each request is still
    // its own notification.
    let deposited: Vec<String> = std::thread::scope(|scope| {
        let sent: Vec<_> = (0..12)
            .map(|day| {
                let (app, patient_id) = (&app, &patient_id);
                scope.spawn(move || {
                    app.create(
                        &As::doctor(),
                        &document(patient_id, "11488-4", &format!("2024-02-{:02}", day + 1)),
                    )
                })
            })
            .collect();
        sent.into_iter().map(|one| one.join().unwrap()).collect()
    });
    let told = app.get(
        &format!("Communication?patient={patient_id}&category={NOTIFICATION}&_count=100"),
        &As::Patient(patient_id.clone()),
    );
    assert_eq!(told.status, 200, "{}", told.body);
    let mut about: Vec<String> = told
        .resources()
        .iter()
        .filter(|notice| notice["topic"]["coding"][0]["code"] == "document-deposited")
        .map(|notice| {
            let about = notice["about"].as_array().unwrap();
            assert_eq!(about.len(), 1, "one document per request: {notice}");
            assert!(
                notice["payload"][0]["contentString"]
                    .as_str()
                    .unwrap()
                    .starts_with("Un nouveau document"),
                "{notice}"
            );
            about[0]["reference"].as_str().unwrap().to_owned()
        })
        .collect();
    about.sort();
    let mut expected: Vec<String> = deposited
        .iter()
        .chain([&first])
        .map(|id| format!("DocumentReference/{id}"))
        .collect();
    expected.sort();
    assert_eq!(about, expected);
    assert_eq!(notification_kinds(&app, &patient_id).len(), before + 12);
}
