//! The portal (R-UI-1): the holder's pages under `/espace`, each acting through the
//! FHIR pipeline as the holder, so that the rules and the trace apply to them.

use serde_json::Value;

use crate::accounts::{Browser, Harness, PASSWORD, harness, holder, unescape};
use crate::support::fixtures::{document, message_from, nir, patient, permit_professional};
use crate::support::{As, match_ids};

/// A holder enrolled, signed in through the pages: (harness, browser, Patient id).
fn signed_in_holder() -> (Harness, Browser, String) {
    let h = harness();
    let known = nir();
    let patient_id = holder(&h.app, &known, None);
    h.enrol(&known, "alice.durand");
    let mut browser = Browser::new(&h.app);
    let first = browser.get("/espace");
    assert_eq!(first.status, 303);
    assert_eq!(first.location, "/connexion?next=%2Fespace");
    let form = browser.get(&first.location);
    let code_page = browser.post(
        "/connexion",
        &[
            ("csrf", &form.field("csrf")),
            ("next", &form.field("next")),
            ("identifiant", "alice.durand"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(code_page.status, 200, "{}", code_page.body);
    let (_, code) = h.code("sign-in-code", 0);
    let signed_in = browser.post(
        "/connexion/code",
        &[
            ("csrf", &code_page.field("csrf")),
            ("next", &code_page.field("next")),
            ("challenge", &code_page.field("challenge")),
            ("code", &code),
        ],
    );
    assert_eq!(signed_in.status, 303);
    assert_eq!(signed_in.location, "/espace");
    (h, browser, patient_id)
}

fn multipart(fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> (String, Vec<u8>) {
    let boundary = "----portal-test-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    let (name, kind, bytes) = file;
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"fichier\"; filename=\"{name}\"\r\nContent-Type: {kind}\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn r_ui_1_the_holder_reads_masks_and_adds_documents_and_a_professional_sees_the_masking() {
    let (h, mut browser, me) = signed_in_holder();
    let report = h
        .app
        .create(&As::doctor(), &document(&me, "11488-4", "2024-03-02"));
    let other_report = h
        .app
        .create(&As::doctor(), &document(&me, "11502-2", "2024-02-01"));
    // Another professional the holder authorised reads both.
    h.app.create(
        &As::Patient(me.clone()),
        &permit_professional(&me, "810000000077"),
    );
    let colleague = As::Professional {
        id_nat_ps: "810000000077".into(),
        profession: "10".into(),
    };
    let seen = h
        .app
        .get(&format!("DocumentReference?patient={me}"), &colleague);
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(match_ids(&seen.json()).len(), 2);
    // Home: the holder's name, the latest documents.
    let home = browser.get("/espace");
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("Bonjour Alice Durand"), "{}", home.body);
    assert!(home.body.contains(&format!("/espace/documents/{report}")));
    assert!(home.csp.contains("default-src 'none'"));
    // The list, newest first; masking one.
    let list = browser.get("/espace/documents");
    assert_eq!(list.status, 200);
    let newer = list.body.find(&report).unwrap();
    let older = list.body.find(&other_report).unwrap();
    assert!(newer < older);
    let masked = browser.post(
        &format!("/espace/documents/{report}/masquer"),
        &[("csrf", &list.field("csrf"))],
    );
    assert_eq!(
        masked.status,
        303,
        "{}",
        unescape(&masked.body)
            .split("role=\"alert\">")
            .nth(1)
            .unwrap_or("")
    );
    let after = browser.get(&masked.location);
    assert!(
        after
            .body
            .contains("Le document est masqué aux professionnels de santé.")
    );
    assert!(after.body.contains("Masqué aux professionnels"));
    // The colleague no longer finds it; the médecin traitant still does (R-ACC-7).
    let seen = h
        .app
        .get(&format!("DocumentReference?patient={me}"), &colleague);
    assert_eq!(match_ids(&seen.json()), vec![other_report.clone()]);
    let gp = h
        .app
        .get(&format!("DocumentReference?patient={me}"), &As::doctor());
    assert_eq!(match_ids(&gp.json()).len(), 2);
    // Unmasked again.
    let list = browser.get("/espace/documents");
    let unmasked = browser.post(
        &format!("/espace/documents/{report}/demasquer"),
        &[("csrf", &list.field("csrf"))],
    );
    assert_eq!(
        unmasked.status,
        303,
        "{}",
        unescape(&unmasked.body)
            .split("role=\"alert\">")
            .nth(1)
            .unwrap_or("")
    );
    assert_eq!(
        match_ids(
            &h.app
                .get(&format!("DocumentReference?patient={me}"), &colleague)
                .json()
        )
        .len(),
        2
    );
    // A form without its token changes nothing.
    let forged = browser.post(
        &format!("/espace/documents/{report}/masquer"),
        &[("csrf", "x")],
    );
    assert_eq!(forged.status, 403);
    // The document opens in the browser, sandboxed.
    let content = browser
        .agent
        .get(&browser.url(&format!("/espace/documents/{report}/contenu")))
        .header("Cookie", &browser.cookie_header())
        .call()
        .unwrap();
    assert_eq!(content.status().as_u16(), 200);
    assert_eq!(
        content.headers().get("content-type").unwrap(),
        "application/pdf"
    );
    assert!(
        content
            .headers()
            .get("content-disposition")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("inline")
    );
    assert!(
        content
            .headers()
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    // Adding a PDF of their own, then deleting it.
    let form = browser.get("/espace/documents/ajouter");
    assert_eq!(form.status, 200);
    let (kind, body) = multipart(
        &[
            ("csrf", &form.field("csrf")),
            ("titre", "Mon bilan <sanguin>"),
            ("type", "DOCPAT02"),
        ],
        ("bilan.pdf", "application/pdf", b"%PDF-1.4\n%test\n"),
    );
    let added = browser
        .agent
        .post(&browser.url("/espace/documents/ajouter"))
        .header("Cookie", &browser.cookie_header())
        .header("Content-Type", &kind)
        .send(&body[..])
        .unwrap();
    assert_eq!(added.status().as_u16(), 303);
    let list = browser.get("/espace/documents?categorie=90");
    assert!(
        list.body.contains("Mon bilan &#60;sanguin&#62;")
            || list.body.contains("Mon bilan &lt;sanguin&gt;"),
        "{}",
        list.body
    );
    let own: Vec<Value> = h
        .app
        .get(
            &format!("DocumentReference?patient={me}&category=urn:oid:1.2.250.1.213.1.1.4.1|90"),
            &As::Patient(me.clone()),
        )
        .json()["entry"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(own.len(), 1);
    let own_id = own[0]["resource"]["id"].as_str().unwrap().to_owned();
    let deleted = browser.post(
        &format!("/espace/documents/{own_id}/supprimer"),
        &[("csrf", &list.field("csrf"))],
    );
    assert_eq!(deleted.status, 303);
    assert_eq!(
        h.app
            .get(
                &format!("DocumentReference/{own_id}"),
                &As::Patient(me.clone())
            )
            .status,
        404
    );
    // A professional's document cannot be deleted by the holder (R-PAT-2).
    let refused = browser.post(
        &format!("/espace/documents/{report}/supprimer"),
        &[("csrf", &list.field("csrf"))],
    );
    assert_eq!(refused.status, 200);
    assert!(refused.body.contains("role=\"alert\""));
    // A file that is not a PDF or an image is refused, nothing stored.
    let (kind, body) = multipart(
        &[("csrf", &form.field("csrf")), ("titre", "Script")],
        ("x.html", "text/html", b"<script>alert(1)</script>"),
    );
    let refused = browser
        .agent
        .post(&browser.url("/espace/documents/ajouter"))
        .header("Cookie", &browser.cookie_header())
        .header("Content-Type", &kind)
        .send(&body[..])
        .unwrap();
    assert_eq!(refused.status().as_u16(), 415);
    // Each action is in the trace, as the holder's.
    let trace = h.app.get(
        &format!("AuditEvent?patient={me}&subtype=patch&_count=50"),
        &As::Patient(me.clone()),
    );
    assert_eq!(trace.status, 200, "{}", trace.body);
    assert_eq!(trace.json()["total"], 2, "mask and unmask");
}

#[test]
fn r_ui_1_the_history_tells_a_professionals_access_and_another_space_stays_closed() {
    let (h, mut browser, me) = signed_in_holder();
    let report = h
        .app
        .create(&As::doctor(), &document(&me, "11488-4", "2024-03-02"));
    assert_eq!(
        h.app
            .get(&format!("DocumentReference/{report}"), &As::doctor())
            .status,
        200
    );
    let history = browser.get("/espace/historique?tous=1");
    assert_eq!(history.status, 200);
    assert!(
        history
            .body
            .contains("Le professionnel 810000000001, médecin, a consulté un document le "),
        "{}",
        history.body
    );
    assert!(unescape(&history.body).contains("Vous vous êtes connecté(e) à Mon espace santé"));
    // By default, what others did only.
    let others = unescape(&browser.get("/espace/historique").body);
    assert!(others.contains("Le professionnel 810000000001, médecin, a consulté un document le "));
    assert!(!others.contains("Vous vous êtes connecté(e)"));
    let filtered = browser.get("/espace/historique?professionnel=810000000099");
    assert!(filtered.body.contains("Aucun accès sur cette période."));
    // Another holder's document: refused through the pipeline, as to any client.
    let other = h
        .app
        .create(&As::System, &patient(&nir(), "Autre", "Bob", "1970-01-01"));
    let theirs = h
        .app
        .create(&As::doctor(), &document(&other, "11488-4", "2024-01-02"));
    assert_eq!(
        browser.get(&format!("/espace/documents/{theirs}")).status,
        404
    );
    let content = browser
        .agent
        .get(&browser.url(&format!("/espace/documents/{theirs}/contenu")))
        .header("Cookie", &browser.cookie_header())
        .call()
        .unwrap();
    assert_eq!(content.status().as_u16(), 404);
    let csrf = browser.get("/espace/documents").field("csrf");
    let masking = browser.post(
        &format!("/espace/documents/{theirs}/masquer"),
        &[("csrf", &csrf)],
    );
    assert!(masking.body.contains("role=\"alert\""));
    // Signed out, the portal sends to the sign-in.
    let account = browser.get("/compte");
    browser.post("/deconnexion", &[("csrf", &account.field("csrf"))]);
    assert_eq!(browser.get("/espace/documents").status, 303);
}

#[test]
fn r_ui_1_messages_are_read_answered_saved_and_deleted_from_the_portal() {
    let (h, mut browser, me) = signed_in_holder();
    let mut message =
        crate::support::fixtures::message_from(&me, "810000000001", "2024-05-02T10:00:00Z");
    message["payload"] = serde_json::json!([
        { "contentString": "Voici vos résultats <b>importants</b>" },
        { "contentAttachment": { "contentType": "application/pdf", "data": "JVBERi0xLjQK", "title": "resultats.pdf" } },
    ]);
    let sent = h.app.create(&As::doctor(), &message);
    let page = browser.get("/espace/messages");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Voici vos résultats &#60;b&#62;")
            || page.body.contains("Voici vos résultats &lt;b&gt;"),
        "{}",
        page.body
    );
    // Answer: a Communication in response, that the doctor reads.
    let answered = browser.post(
        &format!("/espace/messages/{sent}/repondre"),
        &[("csrf", &page.field("csrf")), ("texte", "Merci docteur")],
    );
    assert_eq!(answered.status, 303, "{}", unescape(&answered.body));
    let thread = h
        .app
        .get(&format!("Communication?patient={me}"), &As::doctor())
        .json();
    let answer = thread["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["resource"])
        .find(|message| message["payload"][0]["contentString"] == "Merci docteur")
        .expect("the answer")
        .clone();
    assert_eq!(
        answer["inResponseTo"][0]["reference"],
        format!("Communication/{sent}")
    );
    // One conversation: the doctor's message, then the answer.
    let threads = unescape(&browser.get("/espace/messages").body);
    assert_eq!(threads.matches("Conversation avec").count(), 1, "{threads}");
    let asked = threads.find("Voici vos résultats").unwrap();
    let answered_at = threads.find("Merci docteur").unwrap();
    assert!(asked < answered_at);
    // Save the attachment into the documents (R-MSG-4).
    let saved = browser.post(
        &format!("/espace/messages/{sent}/enregistrer"),
        &[("csrf", &page.field("csrf")), ("index", "0")],
    );
    assert_eq!(saved.status, 303, "{}", unescape(&saved.body));
    let own = h.app.get(
        &format!("DocumentReference?patient={me}&category=urn:oid:1.2.250.1.213.1.1.4.1|90"),
        &As::Patient(me.clone()),
    );
    assert_eq!(own.json()["total"], 1);
    // Delete it (R-MSG-3).
    let deleted = browser.post(
        &format!("/espace/messages/{sent}/supprimer"),
        &[("csrf", &page.field("csrf"))],
    );
    assert_eq!(deleted.status, 303);
    assert_eq!(
        h.app
            .get(&format!("Communication/{sent}"), &As::Patient(me.clone()))
            .status,
        404
    );
}

#[test]
fn r_ui_1_privacy_settings_block_authorise_and_set_emergencies_through_consents() {
    let (h, mut browser, me) = signed_in_holder();
    h.app
        .create(&As::doctor(), &document(&me, "11488-4", "2024-03-02"));
    let colleague = As::Professional {
        id_nat_ps: "810000000077".into(),
        profession: "10".into(),
    };
    let reads = |who: &As| {
        h.app
            .get(&format!("DocumentReference?patient={me}"), who)
            .status
    };
    assert_eq!(reads(&colleague), 403);
    // Authorise, then block: the professional's access follows.
    let page = browser.get("/espace/confidentialite");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        unescape(&page.body).contains("Il ne peut pas être bloqué"),
        "{}",
        page.body
    );
    let done = browser.post(
        "/espace/confidentialite/autoriser",
        &[("csrf", &page.field("csrf")), ("idnat", "810000000077")],
    );
    assert_eq!(done.status, 303, "{}", unescape(&done.body));
    assert_eq!(reads(&colleague), 200);
    let page = browser.get("/espace/confidentialite");
    assert!(page.body.contains("810000000077"));
    // The professionals who accessed the space, each with a way to block them.
    assert!(
        unescape(&page.body).contains("identifiant 810000000077, dernier accès le"),
        "{}",
        page.body
    );
    let consent_id = page.field("consent");
    let withdrawn = browser.post(
        "/espace/confidentialite/retirer",
        &[("csrf", &page.field("csrf")), ("consent", &consent_id)],
    );
    assert_eq!(withdrawn.status, 303);
    assert_eq!(reads(&colleague), 403);
    let blocked = browser.post(
        "/espace/confidentialite/bloquer",
        &[("csrf", &page.field("csrf")), ("idnat", "810000000077")],
    );
    assert_eq!(blocked.status, 303);
    let emergency = As::professional(
        "810000000077",
        "10",
        None,
        Some("bris_de_glace"),
        Some("malaise"),
    );
    assert_eq!(
        reads(&emergency),
        403,
        "a blocked professional, even in an emergency"
    );
    // Blocking the médecin traitant is refused, and said.
    let refused = browser.post(
        "/espace/confidentialite/bloquer",
        &[("csrf", &page.field("csrf")), ("idnat", "810000000001")],
    );
    assert_eq!(refused.status, 200);
    assert!(refused.body.contains("role=\"alert\""));
    assert_eq!(reads(&As::doctor()), 200);
    // Opposing emergency access: another professional's bris de glace is refused.
    let stranger = As::professional(
        "810000000088",
        "10",
        None,
        Some("bris_de_glace"),
        Some("malaise"),
    );
    assert_eq!(reads(&stranger), 200);
    let set = browser.post(
        "/espace/confidentialite/urgence",
        &[
            ("csrf", &page.field("csrf")),
            ("BTG", "deny"),
            ("ETREAT", "permit"),
            ("MASKED", "deny"),
        ],
    );
    assert_eq!(set.status, 303, "{}", unescape(&set.body));
    assert_eq!(reads(&stranger), 403);
    // Declaring the médecin traitant (R-PAT-3).
    let declared = browser.post(
        "/espace/confidentialite/medecin-traitant",
        &[("csrf", &page.field("csrf")), ("idnat", "810000000055")],
    );
    assert_eq!(declared.status, 303, "{}", unescape(&declared.body));
    let patient = h
        .app
        .get(&format!("Patient/{me}"), &As::Patient(me.clone()))
        .json();
    assert_eq!(
        patient["generalPractitioner"][0]["identifier"]["value"],
        "810000000055"
    );
}

#[test]
fn r_ui_1_the_space_is_closed_reopened_and_opposed_with_a_confirmation_each() {
    let (h, mut browser, me) = signed_in_holder();
    let state = || {
        h.app
            .query_texts(&format!(
                "SELECT state AS text FROM space_lifecycle WHERE patient_id = '{me}'"
            ))
            .pop()
            .unwrap_or_default()
    };
    let page = browser.get("/espace/mon-espace");
    assert_eq!(page.status, 200, "{}", page.body);
    let asked = browser.post(
        "/espace/mon-espace",
        &[("csrf", &page.field("csrf")), ("action", "close")],
    );
    assert_eq!(asked.status, 200);
    assert!(asked.body.contains("Je confirme"));
    assert_ne!(state(), "closed");
    let closed = browser.post(
        "/espace/mon-espace",
        &[
            ("csrf", &page.field("csrf")),
            ("action", "close"),
            ("confirmed", "yes"),
        ],
    );
    assert_eq!(closed.status, 303, "{}", unescape(&closed.body));
    assert_eq!(state(), "closed");
    let reopened = browser.post(
        "/espace/mon-espace",
        &[
            ("csrf", &page.field("csrf")),
            ("action", "reopen"),
            ("confirmed", "yes"),
        ],
    );
    assert_eq!(reopened.status, 303, "{}", unescape(&reopened.body));
    assert_ne!(state(), "closed");
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("csrf", page.field("csrf").as_str()),
            ("action", "oppose"),
            ("confirmed", "yes"),
        ])
        .finish();
    let mut opposed = browser
        .agent
        .post(&browser.url("/espace/mon-espace"))
        .header("Cookie", &browser.cookie_header())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(body)
        .unwrap();
    let status = opposed.status().as_u16();
    let pdf = opposed.body_mut().read_to_vec().unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&pdf));
    assert!(lopdf::Document::load_mem(&pdf).is_ok());
}

#[test]
fn r_ui_1_mends_emergency_choices_hold_history_reaches_past_a_flood_senders_are_verified() {
    let (h, mut browser, me) = signed_in_holder();
    let page = browser.get("/espace/confidentialite");
    let csrf = page.field("csrf");
    let oppose = [
        ("csrf", csrf.as_str()),
        ("BTG", "deny"),
        ("ETREAT", "permit"),
        ("MASKED", "deny"),
    ];
    assert_eq!(
        browser
            .post("/espace/confidentialite/urgence", &oppose)
            .status,
        303
    );
    let consents = || {
        h.app.query_texts(&format!("SELECT res_id AS text FROM resources WHERE res_type = 'Consent' AND deleted = false AND content LIKE '%{me}%' ORDER BY res_id"))
    };
    let before = consents();
    // Saving the same choices again changes nothing (no moment without the opposition).
    assert_eq!(
        browser
            .post("/espace/confidentialite/urgence", &oppose)
            .status,
        303
    );
    assert_eq!(consents(), before);
    // A flood of identity lookups does not push a professional's access out of reach.
    let report = h
        .app
        .create(&As::doctor(), &document(&me, "11488-4", "2024-03-02"));
    assert_eq!(
        h.app
            .get(&format!("DocumentReference/{report}"), &As::doctor())
            .status,
        200
    );
    let ins = h
        .app
        .get(&format!("Patient/{me}"), &As::Patient(me.clone()))
        .json()["identifier"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let snoop = As::Professional {
        id_nat_ps: "810000000099".into(),
        profession: "10".into(),
    };
    for _ in 0..110 {
        h.app.get(
            &format!("Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{ins}"),
            &snoop,
        );
    }
    let found = unescape(
        &browser
            .get("/espace/historique?professionnel=810000000001")
            .body,
    );
    assert!(found.contains("a consulté un document"), "{found}");
    // The sender's name a professional gives is shown with their verified identifier.
    let mut message =
        crate::support::fixtures::message_from(&me, "810000000001", "2024-05-02T10:00:00Z");
    message["sender"]["display"] = serde_json::json!("Mon espace santé (service officiel)");
    h.app.create(&As::doctor(), &message);
    let messages = unescape(&browser.get("/espace/messages").body);
    assert!(
        messages.contains(
            "Mon espace santé (service officiel) (professionnel de santé, identifiant 810000000001)"
        ),
        "{messages}"
    );
    // Ids that make no URI are not known, and the server keeps serving.
    assert_eq!(browser.get("/espace/documents/x%20y").status, 404);
    assert_eq!(browser.get("/espace").status, 200);
    // An upload whose bytes are not what its type says is refused.
    let form = browser.get("/espace/documents/ajouter");
    let (kind, body) = multipart(
        &[("csrf", &form.field("csrf")), ("titre", "Faux")],
        (
            "x.pdf",
            "application/pdf",
            b"<html><script>alert(1)</script>",
        ),
    );
    let refused = browser
        .agent
        .post(&browser.url("/espace/documents/ajouter"))
        .header("Cookie", &browser.cookie_header())
        .header("Content-Type", &kind)
        .send(&body[..])
        .unwrap();
    assert_eq!(refused.status().as_u16(), 415);
}

#[test]
fn r_ui_1_a_cda_document_reads_as_text_and_the_professionals_who_accessed_are_listed() {
    use base64::Engine;
    let (h, mut browser, me) = signed_in_holder();
    let cda = r#"<?xml version="1.0" encoding="UTF-8"?><ClinicalDocument xmlns="urn:hl7-org:v3"><title>Compte rendu de consultation</title><component><structuredBody><component><section><title>Conclusion</title><text><paragraph>Tension normale &lt;script&gt;alert(1)&lt;/script&gt;</paragraph></text></section></component></structuredBody></component></ClinicalDocument>"#;
    let mut deposit = document(&me, "11488-4", "2024-03-02");
    deposit["content"][0]["attachment"] = serde_json::json!({
        "contentType": "text/xml",
        "data": base64::engine::general_purpose::STANDARD.encode(cda),
    });
    let id = h.app.create(&As::doctor(), &deposit);
    let details = browser.get(&format!("/espace/documents/{id}"));
    assert!(
        details
            .body
            .contains(&format!("/espace/documents/{id}/lecture")),
        "{}",
        details.body
    );
    let reading = browser.get(&format!("/espace/documents/{id}/lecture"));
    assert_eq!(reading.status, 200, "{}", reading.body);
    let text = unescape(&reading.body);
    assert!(
        text.contains("<h1>Compte rendu de consultation</h1>"),
        "{text}"
    );
    assert!(text.contains("<h2 id=\"section-1\">Conclusion</h2>"));
    // The narrative's markup is text, escaped, never run.
    assert!(!reading.body.contains("<script>"));
    assert!(text.contains("Tension normale <script>alert(1)</script>"));
    // The XML itself downloads, never shown as a page.
    let raw = browser
        .agent
        .get(&browser.url(&format!("/espace/documents/{id}/contenu")))
        .header("Cookie", &browser.cookie_header())
        .call()
        .unwrap();
    assert_eq!(
        raw.headers().get("content-type").unwrap(),
        "application/octet-stream"
    );
    // The médecin traitant's deposit was an access: listed on the privacy page.
    let privacy = unescape(&browser.get("/espace/confidentialite").body);
    assert!(
        privacy.contains("identifiant 810000000001, dernier accès le"),
        "{privacy}"
    );
}

/// The values of one profile type in the space, as the médecin traitant reads them
/// over FHIR.
fn profile_as_doctor(h: &Harness, me: &str, kind: &str) -> Vec<Value> {
    let reply = h.app.get(&format!("{kind}?patient={me}"), &As::doctor());
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.resources()
}

#[test]
fn r_ui_1_the_first_sign_in_questions_fill_the_medical_profile_that_professionals_read() {
    let (h, mut browser, me) = signed_in_holder();
    let activated = h.app.post(
        &format!("Patient/{me}/$activate"),
        &As::Patient(me.clone()),
        &serde_json::json!({ "resourceType": "Parameters" }),
    );
    assert_eq!(activated.status, 200, "{}", activated.body);
    let answer = |browser: &mut Browser, step: &str, fields: &[(&str, &str)]| {
        let path = format!("/espace/profil/questions/{step}");
        let form = browser.get(&path);
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = form.field("csrf");
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        browser.post(&path, &all)
    };
    let first = browser.get("/espace/profil/questions/taille");
    assert!(first.body.contains("Question 1 sur 5"), "{}", first.body);
    // Height in metres with a comma; weight skipped; two conditions; no treatment.
    let next = answer(&mut browser, "taille", &[("valeur", "1,72")]);
    assert_eq!(
        (next.status, next.location.as_str()),
        (303, "/espace/profil/questions/poids")
    );
    let next = answer(&mut browser, "poids", &[("valeur", ""), ("passer", "oui")]);
    assert_eq!(next.location, "/espace/profil/questions/maladies");
    let next = answer(
        &mut browser,
        "maladies",
        &[
            ("reponse", "oui"),
            ("texte", "Asthme\r\n\r\n<b>Opération</b> du genou"),
        ],
    );
    assert_eq!(next.location, "/espace/profil/questions/traitements");
    let next = answer(
        &mut browser,
        "traitements",
        &[("reponse", "non"), ("texte", "")],
    );
    assert_eq!(next.location, "/espace/profil/questions/allergies");
    // A wrong answer is said, and stores nothing.
    let wrong = answer(
        &mut browser,
        "allergies",
        &[("reponse", "oui"), ("texte", "")],
    );
    assert_eq!(wrong.status, 422);
    assert!(wrong.body.contains("Décrivez-les"), "{}", wrong.body);
    let wrong = answer(&mut browser, "taille", &[("valeur", "172")]);
    assert_eq!(wrong.status, 422);
    assert!(
        unescape(&wrong.body).contains("en mètres"),
        "{}",
        wrong.body
    );
    let next = answer(
        &mut browser,
        "allergies",
        &[("reponse", "oui"), ("texte", "Pénicilline")],
    );
    assert_eq!(next.location, "/espace/profil/questions/merci");
    assert!(browser.get(&next.location).body.contains("Merci"));

    // The médecin traitant reads what was answered, and only that.
    let heights = profile_as_doctor(&h, &me, "Observation");
    assert_eq!(heights.len(), 1, "{heights:?}");
    assert_eq!(heights[0]["code"]["coding"][0]["code"], "8302-2");
    assert_eq!(heights[0]["valueQuantity"]["value"], 172.0);
    assert_eq!(heights[0]["valueQuantity"]["code"], "cm");
    let conditions = profile_as_doctor(&h, &me, "Condition");
    let mut said: Vec<&str> = conditions
        .iter()
        .filter_map(|c| c["code"]["text"].as_str())
        .collect();
    said.sort();
    assert_eq!(said, vec!["<b>Opération</b> du genou", "Asthme"]);
    assert!(profile_as_doctor(&h, &me, "MedicationStatement").is_empty());
    assert_eq!(profile_as_doctor(&h, &me, "AllergyIntolerance").len(), 1);
    // A professional the holder did not authorise reads none of it.
    let stranger = As::Professional {
        id_nat_ps: "810000000066".into(),
        profession: "10".into(),
    };
    assert_eq!(
        h.app
            .get(&format!("Condition?patient={me}"), &stranger)
            .status,
        403
    );

    // The profile page shows it, escaped, and edits it later.
    let profile = browser.get("/espace/profil");
    assert_eq!(profile.status, 200);
    assert!(profile.body.contains("1,72 m"), "{}", profile.body);
    assert!(unescape(&profile.body).contains("<b>Opération</b> du genou"));
    assert!(!profile.body.contains("<b>Opération"));
    let csrf = profile.field("csrf");
    let asthma = conditions
        .iter()
        .find(|c| c["code"]["text"] == "Asthme")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deleted = browser.post(
        "/espace/profil/supprimer",
        &[("csrf", &csrf), ("liste", "maladies"), ("id", &asthma)],
    );
    assert_eq!(deleted.status, 303);
    assert_eq!(profile_as_doctor(&h, &me, "Condition").len(), 1);
    let measured = browser.post(
        "/espace/profil/mesure",
        &[("csrf", &csrf), ("mesure", "poids"), ("valeur", "68,5")],
    );
    assert_eq!(measured.status, 303);
    let added = browser.post(
        "/espace/profil/ajouter",
        &[
            ("csrf", &csrf),
            ("liste", "traitements"),
            ("texte", "Ventoline"),
        ],
    );
    assert_eq!(added.status, 303);
    let profile = browser.get("/espace/profil");
    assert!(profile.body.contains("68,5 kg"), "{}", profile.body);
    assert!(profile.body.contains("Ventoline"));
    assert_eq!(profile_as_doctor(&h, &me, "MedicationStatement").len(), 1);
    // Without the form's CSRF token, nothing happens.
    let forged = browser.post(
        "/espace/profil/ajouter",
        &[
            ("csrf", "forged"),
            ("liste", "allergies"),
            ("texte", "Arachide"),
        ],
    );
    assert_eq!(forged.status, 403);
    assert_eq!(profile_as_doctor(&h, &me, "AllergyIntolerance").len(), 1);
    // The holder's deletion is in their trace.
    let trace = h
        .app
        .get("AuditEvent?_count=100", &As::Patient(me.clone()))
        .json();
    // (The event no longer names the entry: it is gone, and the holder's trace
    // names only what they may still read.)
    let deletions = trace["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["resource"]["subtype"][0]["code"] == "delete")
        .count();
    assert_eq!(deletions, 1, "the deletion is traced");
}

#[test]
fn r_ui_1_a_profile_page_cannot_reach_another_holders_profile() {
    let (h, mut browser, me) = signed_in_holder();
    let other = h
        .app
        .create(&As::System, &patient(&nir(), "Autre", "Paul", "1970-01-01"));
    let theirs = h.app.create(
        &As::Patient(other.clone()),
        &serde_json::json!({
            "resourceType": "Condition",
            "code": { "text": "Diabète" },
            "subject": { "reference": format!("Patient/{other}") }
        }),
    );
    let profile = browser.get("/espace/profil");
    assert!(!profile.body.contains("Diabète"));
    let csrf = profile.field("csrf");
    let refused = browser.post(
        "/espace/profil/supprimer",
        &[("csrf", &csrf), ("liste", "maladies"), ("id", &theirs)],
    );
    assert_eq!(refused.status, 422);
    assert!(
        unescape(&refused.body).contains("n'existe pas"),
        "{}",
        refused.body
    );
    assert_eq!(
        h.app
            .get(&format!("Condition/{theirs}"), &As::Patient(other))
            .status,
        200,
        "still there"
    );
    let _ = me;
}

#[test]
fn r_ui_1_new_messages_are_marked_until_the_holder_reads_them() {
    let (h, mut browser, me) = signed_in_holder();
    for sent in ["2026-11-01T09:00:00Z", "2026-11-02T09:00:00Z"] {
        h.app
            .create(&As::doctor(), &message_from(&me, "810000000001", sent));
    }
    let home = browser.get("/espace");
    assert!(home.body.contains("2 nouveaux messages"), "{}", home.body);
    let messages = browser.get("/espace/messages");
    assert!(
        messages.body.contains("2 nouveaux messages"),
        "{}",
        messages.body
    );
    assert_eq!(messages.body.matches("Nouveau :").count(), 2);
    // Shown once, they are read.
    let again = browser.get("/espace/messages");
    assert!(!again.body.contains("Nouveau :"), "{}", again.body);
    let home = browser.get("/espace");
    assert!(
        !home.body.contains("Nouveau :") && !home.body.contains("nouveau message</a>"),
        "{}",
        home.body
    );
    // A later message is new; the holder's own answer is not.
    let csrf = again.field("csrf");
    let latest = h.app.create(
        &As::doctor(),
        &message_from(&me, "810000000001", "2026-10-01T09:00:00Z"),
    );
    let answered = browser.post(
        &format!("/espace/messages/{latest}/repondre"),
        &[("csrf", &csrf), ("texte", "Merci")],
    );
    assert_eq!(answered.status, 303, "{}", answered.body);
    let home = browser.get("/espace");
    assert!(home.body.contains("1 nouveau message</a>"), "{}", home.body);
    assert_eq!(home.body.matches("Nouveau :").count(), 1, "{}", home.body);
}

#[test]
fn r_ui_1_a_refusal_is_told_in_french_with_what_to_do() {
    let (h, mut browser, me) = signed_in_holder();
    let activated = h.app.post(
        &format!("Patient/{me}/$activate"),
        &As::Patient(me.clone()),
        &serde_json::json!({ "resourceType": "Parameters" }),
    );
    assert_eq!(activated.status, 200, "{}", activated.body);
    let report = h
        .app
        .create(&As::doctor(), &document(&me, "11488-4", "2024-03-02"));
    // Deleting what a professional deposited (R-PAT-2).
    let documents = browser.get("/espace/documents");
    let csrf = documents.field("csrf");
    let refused = browser.post(
        &format!("/espace/documents/{report}/supprimer"),
        &[("csrf", &csrf)],
    );
    let text = unescape(&refused.body);
    assert!(
        text.contains("ne peut être ni modifié ni supprimé par vous"),
        "{text}"
    );
    assert!(
        !text.contains("rule") && !text.contains("patient cannot"),
        "{text}"
    );
    // Opposing a space that holds documents (R-LIFE-2): close it instead.
    let refused = browser.post(
        "/espace/mon-espace",
        &[("csrf", &csrf), ("action", "oppose"), ("confirmed", "yes")],
    );
    let text = unescape(&refused.body);
    assert!(text.contains("vous pouvez le clôturer"), "{text}");
    assert!(!text.contains("holds documents"), "{text}");
}

#[test]
fn r_ui_1_notifications_never_push_a_message_off_the_pages() {
    let (h, mut browser, me) = signed_in_holder();
    h.app.create(
        &As::doctor(),
        &message_from(&me, "810000000001", "2026-11-01T09:00:00Z"),
    );
    // Each deposit is a notification (R-AUD-4), more than the home page shows.
    for day in 1..=25 {
        h.app.create(
            &As::doctor(),
            &document(&me, "11488-4", &format!("2024-01-{day:02}")),
        );
    }
    let home = browser.get("/espace");
    assert!(home.body.contains("1 nouveau message</a>"), "{}", home.body);
    let messages = browser.get("/espace/messages");
    assert!(messages.body.contains("Nouveau :"), "{}", messages.body);
    assert!(
        !messages.body.contains("Aucun message"),
        "{}",
        messages.body
    );
}

#[test]
fn r_ui_1_a_page_that_does_not_exist_says_so_in_french() {
    let (_h, mut browser, _me) = signed_in_holder();
    for path in ["/espace/inexistant", "/espace/profil/questions/zzz"] {
        let page = browser.get(path);
        assert_eq!(page.status, 404, "{path}");
        assert!(
            page.body.contains("Page introuvable"),
            "{path}: {}",
            page.body
        );
    }
}
