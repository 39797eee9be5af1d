//! The holders' own accounts (SPEC §11, R-ACT-1 … R-ACT-4): each flow end to end
//! over HTTP, the codes read from the file notification channel as a gateway
//! would receive them.

use std::path::PathBuf;

use dmp_fhir_server::config::NotificationChannelSetting;
use serde_json::{Value, json};

use crate::support::fixtures::{document, nir, patient};
use crate::support::{As, Reply, TestApp, eventually, run_command, temp_dir};

pub const PASSWORD: &str = "Motdepasse1!";

pub struct Harness {
    pub app: TestApp,
    pub outbox: PathBuf,
}

pub fn harness() -> Harness {
    let outbox = temp_dir("codes").join("delivered.jsonl");
    let path = outbox.clone();
    let app = TestApp::with(move |config| {
        config.notification_channel = NotificationChannelSetting::File(path);
    });
    Harness { app, outbox }
}

/// A holder with an e-mail address and a mobile on file.
pub fn holder(app: &TestApp, nir: &str, serial: Option<&str>) -> String {
    let mut resource = patient(nir, "Durand", "Alice", "1985-06-15");
    resource["telecom"] = json!([
        { "system": "email", "value": format!("alice.{nir}@exemple.fr") },
        { "system": "phone", "use": "mobile", "value": "06 12 34 56 78" },
    ]);
    if let Some(serial) = serial {
        resource["identifier"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "system": "https://dmp-fhir-server.fr/fhir/sid/carte-vitale-serie", "value": serial }));
    }
    app.create(&As::System, &resource)
}

impl Harness {
    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_with(path, body, None)
    }

    fn post_with(&self, path: &str, body: &Value, cookie: Option<&str>) -> Reply {
        let mut call = self
            .app
            .request("POST", path)
            .header("Content-Type", "application/json");
        if let Some(cookie) = cookie {
            call = call.header("Cookie", cookie);
        }
        call.send(Some(body.to_string()))
    }

    /// The messages the gateway received.
    fn delivered(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.outbox)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    /// The `n`-th message of this kind (waiting for it), and the code it carries.
    pub fn code(&self, kind: &str, n: usize) -> (Value, String) {
        let message = eventually(|| {
            self.delivered()
                .into_iter()
                .filter(|message| message["kind"] == kind)
                .nth(n)
        });
        let text = message["text"].as_str().unwrap();
        let code = text
            .split("est ")
            .nth(1)
            .and_then(|rest| rest.split('.').next())
            .unwrap()
            .to_owned();
        (message, code)
    }

    fn ask_code(&self, nir: &str, born: &str, channel: &str) -> Reply {
        self.post(
            "/account/provisional-code",
            &json!({ "nir": nir, "birthDate": born, "channel": channel }),
        )
    }

    /// From a provisional code to a signed-in account: (token, cookie).
    pub fn enrol(&self, nir: &str, identifiant: &str) -> (String, String) {
        let sent_before = self
            .delivered()
            .iter()
            .filter(|message| message["kind"] == "provisional-code")
            .count();
        assert_eq!(self.ask_code(nir, "1985-06-15", "email").status, 202);
        let (_, code) = self.code("provisional-code", sent_before);
        let enrolment = self.post(
            "/account/first-sign-in",
            &json!({ "nir": nir, "birthDate": "1985-06-15", "code": code }),
        );
        assert_eq!(enrolment.status, 200, "{}", enrolment.body);
        let ticket = enrolment.json()["ticket"].as_str().unwrap().to_owned();
        let contacts = self.post(
            "/account/contacts",
            &json!({
                "ticket": ticket,
                "email": enrolment.json()["email"],
                "mobile": enrolment.json()["mobile"],
                "channel": "email",
            }),
        );
        assert_eq!(contacts.status, 200, "{}", contacts.body);
        let signed_in = self.post(
            "/account/credentials",
            &json!({
                "ticket": ticket, "identifiant": identifiant,
                "password": PASSWORD, "passwordConfirmation": PASSWORD,
            }),
        );
        assert_eq!(signed_in.status, 200, "{}", signed_in.body);
        (
            signed_in.json()["access_token"]
                .as_str()
                .unwrap()
                .to_owned(),
            cookie_of(&signed_in),
        )
    }

    /// Signs in with the password and the one-time code: (token, cookie).
    fn sign_in(&self, identifiant: &str, password: &str) -> (String, String) {
        let sent_before = self
            .delivered()
            .iter()
            .filter(|message| message["kind"] == "sign-in-code")
            .count();
        let challenge = self.post(
            "/account/sign-in",
            &json!({ "identifiant": identifiant, "password": password }),
        );
        assert_eq!(challenge.status, 200, "{}", challenge.body);
        let (_, code) = self.code("sign-in-code", sent_before);
        let signed_in = self.post(
            "/account/sign-in/code",
            &json!({ "challenge": challenge.json()["challenge"], "code": code }),
        );
        assert_eq!(signed_in.status, 200, "{}", signed_in.body);
        (
            signed_in.json()["access_token"]
                .as_str()
                .unwrap()
                .to_owned(),
            cookie_of(&signed_in),
        )
    }
}

/// The `Cookie` header that sends back the session a reply set.
fn cookie_of(reply: &Reply) -> String {
    let set = reply.header("set-cookie").expect("a session cookie");
    assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("SameSite=Lax"));
    set.split(';').next().unwrap().to_owned()
}

fn rule_codes(reply: &Reply) -> Vec<String> {
    reply.json()["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|issue| issue["details"]["coding"][0]["code"].as_str())
        .map(str::to_owned)
        .collect()
}

#[test]
fn r_act_1_a_code_goes_to_the_contact_chosen_and_the_answer_never_tells_whether_the_nir_exists() {
    let h = harness();
    let known = nir();
    holder(&h.app, &known, None);
    let unknown = nir();
    let wrong_birth = h.ask_code(&known, "1985-06-16", "email");
    let absent = h.ask_code(&unknown, "1985-06-15", "email");
    let by_sms = h.ask_code(&known, "1985-06-15", "sms");
    for reply in [&wrong_birth, &absent, &by_sms] {
        assert_eq!(reply.status, 202);
        assert_eq!(reply.body, by_sms.body);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
    let (message, code) = h.code("provisional-code", 0);
    assert_eq!(message["channel"], "sms");
    assert_eq!(message["to"], "+33612345678");
    assert_eq!(code.len(), 11);
    let by_email = h.ask_code(&known, "1985-06-15", "email");
    assert_eq!(by_email.body, by_sms.body);
    let (message, _) = h.code("provisional-code", 1);
    assert_eq!(message["channel"], "email");
    assert_eq!(message["to"], format!("alice.{known}@exemple.fr"));
    // The courier works in order: the asks that matched nothing sent nothing.
    assert_eq!(h.delivered().len(), 2);
    // Stored only as a hash.
    let rows = h
        .app
        .query_texts("SELECT code_hash AS text FROM account_code");
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|hash| hash.len() == 64 && !hash.contains(&code))
    );
}

#[test]
fn r_act_1_a_space_with_a_vitale_serial_sends_a_code_only_to_who_gives_it() {
    let h = harness();
    let known = nir();
    holder(&h.app, &known, Some("12345678"));
    let without = h.ask_code(&known, "1985-06-15", "email");
    let wrong = h.post(
        "/account/provisional-code",
        &json!({ "nir": known, "birthDate": "1985-06-15", "vitaleSerial": "87654321", "channel": "email" }),
    );
    let right = h.post(
        "/account/provisional-code",
        &json!({ "nir": known, "birthDate": "1985-06-15", "vitaleSerial": "12345678", "channel": "email" }),
    );
    assert!(
        [&without, &wrong, &right]
            .iter()
            .all(|reply| reply.status == 202 && reply.body == right.body)
    );
    h.code("provisional-code", 0);
    assert_eq!(h.delivered().len(), 1);
}

#[test]
fn r_act_1_asks_are_limited_per_address_and_codes_per_space() {
    let h = harness();
    let known = nir();
    holder(&h.app, &known, None);
    let replies: Vec<Reply> = (0..6)
        .map(|_| h.ask_code(&known, "1985-06-15", "email"))
        .collect();
    assert!(replies[..5].iter().all(|reply| reply.status == 202));
    assert_eq!(replies[5].status, 429);
    assert!(replies[5].header("retry-after").is_some());
    // Three codes a day per space: the other two asks sent nothing.
    h.code("provisional-code", 2);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(h.delivered().len(), 3);
}

#[test]
fn r_act_2_first_sign_in_then_activate_with_the_servers_own_token() {
    let h = harness();
    let known = nir();
    let patient_id = holder(&h.app, &known, None);
    assert_eq!(h.ask_code(&known, "1985-06-15", "email").status, 202);
    let (_, code) = h.code("provisional-code", 0);
    let enrolment = h.post(
        "/account/first-sign-in",
        &json!({ "nir": known, "birthDate": "1985-06-15", "code": code.to_lowercase() }),
    );
    assert_eq!(enrolment.status, 200, "{}", enrolment.body);
    let enrolment = enrolment.json();
    assert_eq!(enrolment["email"], format!("alice.{known}@exemple.fr"));
    assert_eq!(enrolment["mobile"], "+33612345678");
    assert_eq!(enrolment["identifiantRules"].as_array().unwrap().len(), 6);
    assert_eq!(enrolment["passwordRules"].as_array().unwrap().len(), 7);
    let ticket = enrolment["ticket"].as_str().unwrap();
    // The code is spent.
    let again = h.post(
        "/account/first-sign-in",
        &json!({ "nir": known, "birthDate": "1985-06-15", "code": code }),
    );
    assert_eq!(again.status, 401);
    // Credentials before the contacts are confirmed.
    let early = h.post(
        "/account/credentials",
        &json!({ "ticket": ticket, "identifiant": "alice.durand", "password": PASSWORD, "passwordConfirmation": PASSWORD }),
    );
    assert_eq!(early.status, 409);
    let contacts = h.post(
        "/account/contacts",
        &json!({ "ticket": ticket, "email": "alice@exemple.fr", "mobile": "", "channel": "sms" }),
    );
    assert_eq!(contacts.status, 400, "no mobile for the codes by SMS");
    let contacts = h.post(
        "/account/contacts",
        &json!({ "ticket": ticket, "email": "alice@exemple.fr", "mobile": "07 00 00 00 01", "channel": "sms" }),
    );
    assert_eq!(contacts.status, 200, "{}", contacts.body);
    // Each rule of the identifiant and the password, named.
    let long_password = format!("Aa1!{}", "x".repeat(125));
    for (identifiant, password, confirmation, expected) in [
        (
            "Alice D",
            PASSWORD,
            PASSWORD,
            vec![
                "identifiant-min-length",
                "identifiant-no-capital",
                "identifiant-no-space",
            ],
        ),
        (
            "alice@exemple.fr",
            PASSWORD,
            PASSWORD,
            vec!["identifiant-not-email"],
        ),
        (
            "alice.dürand",
            PASSWORD,
            PASSWORD,
            vec!["identifiant-characters"],
        ),
        (
            "alice.durand.avec.un.identifiant.beaucoup.trop.long.pour.etre.retenu",
            PASSWORD,
            PASSWORD,
            vec!["identifiant-max-length"],
        ),
        (
            "alice.durand",
            "MOTDEPASSE1!",
            "MOTDEPASSE1!",
            vec!["password-small-letter"],
        ),
        (
            "alice.durand",
            "court1!",
            "court1!",
            vec!["password-min-length", "password-capital"],
        ),
        (
            "alice.durand",
            "motdepasse",
            "motdepasse",
            vec!["password-capital", "password-digit", "password-special"],
        ),
        (
            "alice.durand",
            PASSWORD,
            "Motdepasse2!",
            vec!["password-confirmed"],
        ),
        (
            "alice.durand",
            &long_password,
            &long_password,
            vec!["password-max-length"],
        ),
    ] {
        let refused = h.post(
            "/account/credentials",
            &json!({ "ticket": ticket, "identifiant": identifiant, "password": password, "passwordConfirmation": confirmation }),
        );
        assert_eq!(refused.status, 422, "{identifiant} {password}");
        assert_eq!(rule_codes(&refused), expected);
    }
    assert_eq!(
        h.app
            .query_texts("SELECT COALESCE(identifiant, '') AS text FROM account"),
        [""]
    );
    let signed_in = h.post(
        "/account/credentials",
        &json!({ "ticket": ticket, "identifiant": "alice.durand", "password": PASSWORD, "passwordConfirmation": PASSWORD }),
    );
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    assert_eq!(signed_in.header("cache-control"), Some("no-store"));
    let token = signed_in.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(signed_in.json()["patient"], patient_id.as_str());
    // The ticket is spent with the credentials.
    let replay = h.post(
        "/account/credentials",
        &json!({ "ticket": ticket, "identifiant": "alice.durand2", "password": PASSWORD, "passwordConfirmation": PASSWORD }),
    );
    assert_eq!(replay.status, 401);
    // The password is stored as argon2id only.
    let hashes = h
        .app
        .query_texts("SELECT password_hash AS text FROM account");
    assert!(hashes[0].starts_with("$argon2id$") && !hashes[0].contains(PASSWORD));
    // The server's own token acts as the holder through the pipeline.
    let me = As::Token(token);
    let activated = h
        .app
        .request("POST", &format!("/Patient/{patient_id}/$activate"))
        .as_(&me)
        .send(None);
    assert!(
        activated.status < 300,
        "{} {}",
        activated.status,
        activated.body
    );
    assert_eq!(h.app.get(&format!("Patient/{patient_id}"), &me).status, 200);
}

#[test]
fn r_act_2_a_provisional_code_expires_and_wrong_codes_lock_the_nir_out_for_a_while() {
    let h = harness();
    let known = nir();
    holder(&h.app, &known, None);
    assert_eq!(h.ask_code(&known, "1985-06-15", "email").status, 202);
    let (_, code) = h.code("provisional-code", 0);
    let try_code = |code: &str| {
        h.post(
            "/account/first-sign-in",
            &json!({ "nir": known, "birthDate": "1985-06-15", "code": code }),
        )
    };
    // A wrong code, an unknown NIR and a wrong birth date: one answer.
    let wrong = try_code("AAAAA-AAAAA");
    let unknown = h.post(
        "/account/first-sign-in",
        &json!({ "nir": nir(), "birthDate": "1985-06-15", "code": code }),
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.json()["issue"], unknown.json()["issue"]);
    for _ in 0..3 {
        assert_eq!(try_code("AAAAA-AAAAA").status, 401);
    }
    // The fifth failure locks the NIR out: the right code waits too.
    let locked = try_code("AAAAA-AAAAA");
    assert_eq!(locked.status, 401);
    let waiting = try_code(&code);
    assert_eq!(waiting.status, 429);
    assert!(waiting.header("retry-after").is_some());
    h.app.advance(chrono::TimeDelta::minutes(16));
    assert_eq!(try_code(&code).status, 200);
    // A new code three days and more later: expired.
    assert_eq!(h.ask_code(&known, "1985-06-15", "email").status, 202);
    let (_, later) = h.code("provisional-code", 1);
    h.app
        .advance(chrono::TimeDelta::days(3) + chrono::TimeDelta::minutes(1));
    assert_eq!(try_code(&later).status, 401);
}

#[test]
fn r_act_3_sign_in_takes_the_password_then_a_one_time_code_and_sign_out_ends_the_tokens() {
    let h = harness();
    let known = nir();
    let patient_id = holder(&h.app, &known, None);
    let (first_token, _) = h.enrol(&known, "alice.durand");
    let challenge = h.post(
        "/account/sign-in",
        &json!({ "identifiant": "alice.durand", "password": PASSWORD }),
    );
    assert_eq!(challenge.status, 200, "{}", challenge.body);
    assert_eq!(challenge.json()["channel"], "email");
    assert_eq!(challenge.json()["sentTo"], "a•••@exemple.fr");
    let (message, code) = h.code("sign-in-code", 0);
    assert_eq!(message["to"], format!("alice.{known}@exemple.fr"));
    assert_eq!(code.len(), 6);
    // A wrong code, then the right one.
    let challenge_id = challenge.json()["challenge"].clone();
    let wrong_code = if code == "000000" { "111111" } else { "000000" };
    let wrong = h.post(
        "/account/sign-in/code",
        &json!({ "challenge": challenge_id, "code": wrong_code }),
    );
    assert_eq!(wrong.status, 401);
    let signed_in = h.post(
        "/account/sign-in/code",
        &json!({ "challenge": challenge_id, "code": code }),
    );
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let token = As::Token(
        signed_in.json()["access_token"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let cookie = cookie_of(&signed_in);
    // A code is used once.
    let reused = h.post(
        "/account/sign-in/code",
        &json!({ "challenge": challenge_id, "code": code }),
    );
    assert_eq!(reused.status, 401);
    assert_eq!(
        h.app.get(&format!("Patient/{patient_id}"), &token).status,
        200
    );
    // The session gives new tokens; the first session (from the enrolment) is apart.
    let fresh = h.post_with("/account/token", &json!({}), Some(&cookie));
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    let fresh = As::Token(fresh.json()["access_token"].as_str().unwrap().to_owned());
    assert_eq!(
        h.app.get(&format!("Patient/{patient_id}"), &fresh).status,
        200
    );
    // Sign-out ends the session's tokens at once, not the other session's.
    let out = h.post_with("/account/sign-out", &json!({}), Some(&cookie));
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(
        h.app.get(&format!("Patient/{patient_id}"), &token).status,
        401
    );
    assert_eq!(
        h.app.get(&format!("Patient/{patient_id}"), &fresh).status,
        401
    );
    assert_eq!(
        h.post_with("/account/token", &json!({}), Some(&cookie))
            .status,
        401
    );
    assert_eq!(
        h.app
            .get(&format!("Patient/{patient_id}"), &As::Token(first_token))
            .status,
        200
    );
}

#[test]
fn r_act_3_a_wrong_password_and_an_unknown_identifiant_get_one_answer_and_one_lock_out() {
    let h = harness();
    let known = nir();
    holder(&h.app, &known, None);
    h.enrol(&known, "alice.durand");
    let attempt = |identifiant: &str, password: &str| {
        h.post(
            "/account/sign-in",
            &json!({ "identifiant": identifiant, "password": password }),
        )
    };
    let wrong = attempt("alice.durand", "Mauvais1!");
    let unknown = attempt("personne.inconnue", "Mauvais1!");
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.json()["issue"], unknown.json()["issue"]);
    for _ in 0..4 {
        attempt("alice.durand", "Mauvais1!");
        attempt("personne.inconnue", "Mauvais1!");
    }
    // Locked out, both alike; the right password waits as well.
    let locked = attempt("alice.durand", PASSWORD);
    let locked_unknown = attempt("personne.inconnue", PASSWORD);
    assert_eq!(locked.status, 429);
    assert_eq!(locked_unknown.status, 429);
    assert_eq!(
        h.delivered()
            .iter()
            .filter(|m| m["kind"] == "sign-in-code")
            .count(),
        0
    );
    h.app.advance(chrono::TimeDelta::minutes(16));
    h.sign_in("alice.durand", PASSWORD);
}

#[test]
fn r_act_3_a_one_time_code_expires_and_five_wrong_codes_spend_it() {
    let h = harness();
    let known = nir();
    holder(&h.app, &known, None);
    h.enrol(&known, "alice.durand");
    let challenge = |n: usize| {
        let reply = h.post(
            "/account/sign-in",
            &json!({ "identifiant": "alice.durand", "password": PASSWORD }),
        );
        assert_eq!(reply.status, 200);
        (
            reply.json()["challenge"].clone(),
            h.code("sign-in-code", n).1,
        )
    };
    let (id, code) = challenge(0);
    let wrong_code = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let reply = h.post(
            "/account/sign-in/code",
            &json!({ "challenge": id, "code": wrong_code }),
        );
        assert_eq!(reply.status, 401);
    }
    let spent = h.post(
        "/account/sign-in/code",
        &json!({ "challenge": id, "code": code }),
    );
    assert_eq!(spent.status, 401);
    // Those five wrong codes count as failures of the identifiant: locked out,
    // even with the right password, for a while.
    let locked = h.post(
        "/account/sign-in",
        &json!({ "identifiant": "alice.durand", "password": PASSWORD }),
    );
    assert_eq!(locked.status, 429);
    h.app.advance(chrono::TimeDelta::minutes(16));
    let (id, code) = challenge(1);
    h.app.advance(chrono::TimeDelta::minutes(11));
    let expired = h.post(
        "/account/sign-in/code",
        &json!({ "challenge": id, "code": code }),
    );
    assert_eq!(expired.status, 401);
}

#[test]
fn r_act_3_a_new_password_needs_the_current_one_and_ends_the_other_sessions() {
    let h = harness();
    let known = nir();
    let patient_id = holder(&h.app, &known, None);
    let (enrolled_token, _) = h.enrol(&known, "alice.durand");
    let (_, cookie) = h.sign_in("alice.durand", PASSWORD);
    let change = |current: &str, new: &str| {
        h.post_with(
            "/account/password",
            &json!({ "currentPassword": current, "password": new, "passwordConfirmation": new }),
            Some(&cookie),
        )
    };
    assert_eq!(change("Mauvais1!", "Nouveau2?").status, 401);
    let weak = change(PASSWORD, "nouveau");
    assert_eq!(weak.status, 422);
    assert!(rule_codes(&weak).contains(&"password-capital".to_owned()));
    assert_eq!(change(PASSWORD, "Nouveau2?").status, 200);
    // The enrolment's session ended; this one stands.
    assert_eq!(
        h.app
            .get(&format!("Patient/{patient_id}"), &As::Token(enrolled_token))
            .status,
        401
    );
    assert_eq!(
        h.post_with("/account/token", &json!({}), Some(&cookie))
            .status,
        200
    );
    let old = h.post(
        "/account/sign-in",
        &json!({ "identifiant": "alice.durand", "password": PASSWORD }),
    );
    assert_eq!(old.status, 401);
    h.sign_in("alice.durand", "Nouveau2?");
}

#[test]
fn r_act_4_the_servers_tokens_verify_with_its_jwks_and_read_their_own_space_only() {
    let h = harness();
    let known = nir();
    let mine = holder(&h.app, &known, None);
    let (token, _) = h.enrol(&known, "alice.durand");
    let other = h
        .app
        .create(&As::System, &patient(&nir(), "Autre", "Bob", "1970-01-01"));
    h.app
        .create(&As::doctor(), &document(&other, "11488-4", "2024-01-02"));
    h.app
        .create(&As::doctor(), &document(&mine, "11488-4", "2024-01-02"));
    // The JWKS verifies the token; its claims are those of any other issuer's.
    let jwks = h.app.request("GET", "/.well-known/jwks.json").send(None);
    assert_eq!(jwks.status, 200);
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks.body).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let key = set
        .find(header.kid.as_deref().unwrap())
        .expect("the token's key is published");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["urn:dmp-fhir-server:fhir"]);
    validation.set_issuer(&["urn:dmp-fhir-server:account"]);
    let claims = jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(key).unwrap(),
        &validation,
    )
    .expect("the token verifies with the published key")
    .claims;
    assert_eq!(claims["actor"], "patient");
    assert_eq!(claims["patient"], mine.as_str());
    let me = As::Token(token);
    let own = h.app.get(&format!("DocumentReference?patient={mine}"), &me);
    assert_eq!(own.status, 200);
    assert_eq!(own.json()["total"], 1);
    assert!(matches!(
        h.app.get(&format!("Patient/{other}"), &me).status,
        403 | 404
    ));
    let theirs = h
        .app
        .get(&format!("DocumentReference?patient={other}"), &me);
    assert!(
        matches!(theirs.status, 403 | 404) || theirs.json()["total"] == 0,
        "{}",
        theirs.body
    );
    // The trace names the account's steps in the holder's space.
    let trace = h
        .app
        .get(&format!("AuditEvent?patient={mine}&_count=100"), &me);
    assert_eq!(trace.status, 200);
    let steps: Vec<String> = trace.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["resource"]["type"]["code"] == "110114")
        .map(|entry| {
            entry["resource"]["subtype"][0]["code"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for step in [
        "provisional-code-sent",
        "first-sign-in",
        "contacts-confirmed",
        "credentials-chosen",
    ] {
        assert!(steps.iter().any(|s| s == step), "{step} in {steps:?}");
    }
    // The events name the account beside the Patient.
    let by_the_account = trace.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["resource"]["agent"][0]["altId"] == claims["sub"])
        .count();
    assert!(by_the_account >= 2, "{}", trace.body);
    // A token forged with another key under the server's issuer name is refused.
    let forged = crate::support::sign(&crate::support::keys().ec, &claims);
    assert_eq!(
        h.app
            .get(&format!("Patient/{mine}"), &As::Token(forged))
            .status,
        401
    );
}

#[test]
fn r_act_bad_input_is_refused_clearly_and_stores_nothing() {
    let h = harness();
    let not_json = h
        .app
        .request("POST", "/account/sign-in")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(Some("identifiant=a&password=b".into()));
    assert_eq!(not_json.status, 415);
    for (path, body, status) in [
        (
            "/account/sign-in",
            json!({ "identifiant": "a", "password": "b", "admin": true }),
            400,
        ),
        ("/account/sign-in", json!({ "identifiant": "a" }), 400),
        (
            "/account/provisional-code",
            json!({ "nir": "123", "birthDate": "1985-06-15", "channel": "email" }),
            400,
        ),
        (
            "/account/provisional-code",
            json!({ "nir": nir(), "birthDate": "15/06/1985", "channel": "email" }),
            400,
        ),
        (
            "/account/provisional-code",
            json!({ "nir": nir(), "birthDate": "1985-06-15", "channel": "pigeon" }),
            400,
        ),
        (
            "/account/contacts",
            json!({ "ticket": "x.y", "email": "a@b.fr", "channel": "email" }),
            401,
        ),
        (
            "/account/sign-in/code",
            json!({ "challenge": "nope", "code": "123456" }),
            401,
        ),
        (
            "/account/sign-in",
            json!({ "identifiant": "a".repeat(9000), "password": "b" }),
            413,
        ),
    ] {
        let reply = h.post(path, &body);
        assert_eq!(reply.status, status, "{path} {body}");
        assert_eq!(reply.json()["resourceType"], "OperationOutcome");
    }
    assert_eq!(
        h.app.request("GET", "/account/sign-in").send(None).status,
        405
    );
    assert_eq!(h.post("/account/token", &json!({})).status, 401);
    assert_eq!(h.app.stored_rows("account"), 0);
    assert_eq!(h.app.stored_rows("account_code"), 0);
    assert_eq!(h.app.stored_rows("account_session"), 0);
}

#[test]
fn r_act_4_a_new_signing_key_signs_from_the_next_start_and_a_retired_one_is_refused() {
    use crate::support::ServerProcess;
    let mut h = harness();
    let known = nir();
    let patient_id = holder(&h.app, &known, None);
    let (first, cookie) = h.enrol(&known, "alice.durand");
    let first_kid = jsonwebtoken::decode_header(&first).unwrap().kid.unwrap();
    h.app.stop_server();
    let url = h.app.database_url.clone();
    let (rotated, printed) = run_command(&["--database-url", &url, "issuer-key", "rotate"]);
    assert!(rotated, "{printed}");
    let second_kid = printed.trim().lines().last().unwrap().to_owned();
    assert_ne!(second_kid, first_kid);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let read_patient = |base: &str, token: &str| {
        agent
            .get(&format!("{base}/Patient/{patient_id}"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    let new_token = |base: &str| {
        let mut reply = agent
            .post(&format!("{base}/account/token"))
            .header("Content-Type", "application/json")
            .header("Cookie", &cookie)
            .send("{}")
            .unwrap();
        assert_eq!(reply.status().as_u16(), 200);
        let body: Value =
            serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    };
    let server = ServerProcess::start(&url);
    let jwks: Value = serde_json::from_str(
        &agent
            .get(&format!("{}/.well-known/jwks.json", server.base))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [second_kid.as_str(), first_kid.as_str()]);
    let second = new_token(&server.base);
    assert_eq!(
        jsonwebtoken::decode_header(&second).unwrap().kid.unwrap(),
        second_kid
    );
    assert_eq!(read_patient(&server.base, &first), 200);
    assert_eq!(read_patient(&server.base, &second), 200);
    drop(server);
    let (retired, printed) =
        run_command(&["--database-url", &url, "issuer-key", "retire", &first_kid]);
    assert!(retired, "{printed}");
    let (last, _) = run_command(&["--database-url", &url, "issuer-key", "retire", &second_kid]);
    assert!(!last, "the last key in use is kept");
    let server = ServerProcess::start(&url);
    assert_eq!(read_patient(&server.base, &first), 401);
    assert_eq!(read_patient(&server.base, &second), 200);
}

/// A browser: cookies kept, redirections not followed (they are checked).
pub struct Browser {
    pub agent: ureq::Agent,
    pub base: String,
    pub cookies: std::collections::BTreeMap<String, String>,
}

/// A page as the browser got it.
pub struct Page {
    pub status: u16,
    pub location: String,
    pub csp: String,
    /// The `Retry-After` header, '' when absent.
    pub retry_after: String,
    pub body: String,
}

impl Page {
    /// The value of a field of the page's form.
    pub fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\"");
        let at = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body));
        let tag_end = at + self.body[at..].find('>').unwrap();
        let tag = &self.body[at..tag_end];
        let start = tag
            .find("value=\"")
            .unwrap_or_else(|| panic!("{name} has no value"))
            + 7;
        let value = &tag[start..];
        let value = &value[..value.find('"').unwrap()];
        unescape(value)
    }
}

/// HTML text with its character references read.
pub fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let Some(end) = after.find(';') else {
            out.push_str(&rest[at..]);
            return out;
        };
        let entity = &after[..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        out.push(decoded.expect("a character reference"));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        Browser {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .into(),
            base: app.base.clone(),
            cookies: Default::default(),
        }
    }

    fn keep(&mut self, response: &ureq::http::Response<ureq::Body>) {
        for set in response.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub fn page(&mut self, mut response: ureq::http::Response<ureq::Body>) -> Page {
        self.keep(&response);
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let (location, csp) = (header("location"), header("content-security-policy"));
        let retry_after = header("retry-after");
        Page {
            status: response.status().as_u16(),
            location,
            csp,
            retry_after,
            body: response.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    pub fn get(&mut self, path: &str) -> Page {
        let response = self
            .agent
            .get(&self.url(path))
            .header("Cookie", &self.cookie_header())
            .call()
            .unwrap();
        self.page(response)
    }

    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = self
            .agent
            .post(&self.url(path))
            .header("Cookie", &self.cookie_header())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(body)
            .unwrap();
        self.page(response)
    }
}

/// A harness whose catalogue holds one app, `carnet`.
fn with_app() -> Harness {
    let outbox = temp_dir("codes").join("delivered.jsonl");
    let catalogue = temp_dir("catalogue").join("apps.json");
    std::fs::write(
        &catalogue,
        json!({ "apps": [{
            "clientId": "carnet",
            "name": "Carnet <santé>",
            "redirectUris": ["http://127.0.0.1:9/cb"],
            "scopes": ["launch/patient", "offline_access", "patient/DocumentReference.rs", "patient/Patient.rs"],
        }] })
        .to_string(),
    )
    .unwrap();
    let path = outbox.clone();
    let app = TestApp::with(move |config| {
        config.notification_channel = NotificationChannelSetting::File(path);
        config.app_catalogue = Some(catalogue);
    });
    Harness { app, outbox }
}

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-0123456789";

fn challenge_of(verifier: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(openssl::sha::sha256(verifier.as_bytes()))
}

fn authorize_path(h: &Harness, scope: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", "carnet")
        .append_pair("redirect_uri", "http://127.0.0.1:9/cb")
        .append_pair("scope", scope)
        .append_pair("state", "st4te")
        .append_pair("aud", &h.app.base)
        .append_pair("code_challenge", &challenge_of(VERIFIER))
        .append_pair("code_challenge_method", "S256")
        .finish();
    format!("/oauth/authorize?{query}")
}

/// Signs in through the pages from an authorisation request, and returns the
/// consent page.
fn sign_in_through_pages(
    h: &Harness,
    browser: &mut Browser,
    authorize: &str,
    codes_before: usize,
) -> Page {
    let first = browser.get(authorize);
    assert_eq!(first.status, 303, "{}", first.body);
    assert!(first.location.starts_with("/connexion?next="));
    let form = browser.get(&first.location);
    assert_eq!(form.status, 200);
    assert!(form.csp.contains("default-src 'none'") && form.csp.contains("frame-ancestors 'none'"));
    let next = form.field("next");
    assert_eq!(next, authorize);
    let code_page = browser.post(
        "/connexion",
        &[
            ("csrf", &form.field("csrf")),
            ("next", &next),
            ("identifiant", "alice.durand"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(code_page.status, 200, "{}", code_page.body);
    let (_, code) = h.code("sign-in-code", codes_before);
    let signed_in = browser.post(
        "/connexion/code",
        &[
            ("csrf", &code_page.field("csrf")),
            ("next", &next),
            ("challenge", &code_page.field("challenge")),
            ("code", &code),
        ],
    );
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.location, authorize);
    browser.get(&signed_in.location)
}

fn token_request(h: &Harness, fields: &[(&str, &str)]) -> (u16, Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let reply = h
        .app
        .request("POST", "/oauth/token")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(Some(body));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    (reply.status, serde_json::from_str(&reply.body).unwrap())
}

#[test]
fn r_act_4_an_app_of_the_catalogue_gets_the_scopes_the_holder_ticks_and_no_more() {
    let h = with_app();
    let known = nir();
    let mine = holder(&h.app, &known, None);
    h.enrol(&known, "alice.durand");
    h.app
        .create(&As::doctor(), &document(&mine, "11488-4", "2024-01-02"));
    let other = h
        .app
        .create(&As::System, &patient(&nir(), "Autre", "Bob", "1970-01-01"));
    h.app
        .create(&As::doctor(), &document(&other, "11488-4", "2024-01-02"));
    let mut browser = Browser::new(&h.app);
    let authorize = authorize_path(
        &h,
        "launch/patient offline_access patient/DocumentReference.rs patient/Patient.rs patient/Consent.rs",
    );
    let consent = sign_in_through_pages(&h, &mut browser, &authorize, 0);
    assert_eq!(consent.status, 200, "{}", consent.body);
    // The app's name is escaped; the scopes are in French; a scope the catalogue
    // does not give the app is not offered.
    assert!(
        consent.body.contains("Carnet &#60;santé&#62;")
            || consent.body.contains("Carnet &lt;santé&gt;"),
        "{}",
        consent.body
    );
    assert!(consent.body.contains("Lire vos documents de santé"));
    assert_eq!(consent.body.matches("name=\"granted\"").count(), 4);
    assert!(
        consent
            .csp
            .contains("form-action 'self' http://127.0.0.1:9")
    );
    // The holder leaves patient/Patient.rs unticked.
    let mut fields: Vec<(String, String)> = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "aud",
        "code_challenge",
        "code_challenge_method",
    ]
    .iter()
    .map(|name| (name.to_string(), consent.field(name)))
    .collect();
    fields.push(("csrf".into(), consent.field("csrf")));
    fields.push(("decision".into(), "allow".into()));
    for scope in [
        "launch/patient",
        "offline_access",
        "patient/DocumentReference.rs",
        "patient/AuditEvent.rs",
    ] {
        fields.push(("granted".into(), scope.into()));
    }
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let without_csrf: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(name, _)| *name != "csrf")
        .collect();
    assert_eq!(browser.post("/oauth/authorize", &without_csrf).status, 403);
    let back = browser.post("/oauth/authorize", &pairs);
    assert_eq!(back.status, 303, "{}", back.body);
    assert!(
        back.location.starts_with("http://127.0.0.1:9/cb?code="),
        "{}",
        back.location
    );
    assert!(back.location.ends_with("&state=st4te"));
    let code = back
        .location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    // A wrong verifier, then the right one.
    let (status, refused) = token_request(
        &h,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("client_id", "carnet"),
            ("code_verifier", &format!("{VERIFIER}x")),
        ],
    );
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, issued) = token_request(
        &h,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("client_id", "carnet"),
            ("code_verifier", VERIFIER),
        ],
    );
    assert_eq!(status, 200, "{issued}");
    assert_eq!(
        issued["scope"],
        "launch/patient offline_access patient/DocumentReference.rs"
    );
    assert_eq!(issued["patient"], mine.as_str());
    let token = As::Token(issued["access_token"].as_str().unwrap().to_owned());
    // What was granted, in the holder's space only; nothing else.
    let documents = h
        .app
        .get(&format!("DocumentReference?patient={mine}"), &token);
    assert_eq!(documents.status, 200);
    assert_eq!(documents.json()["total"], 1);
    assert_eq!(h.app.get(&format!("Patient/{mine}"), &token).status, 403);
    // Nor through the other paths: an include, a reverse include, history, a batch.
    let included = h.app.get(
        &format!("DocumentReference?patient={mine}&_include=DocumentReference:subject&_revinclude=AuditEvent:entity"),
        &token,
    );
    if included.status == 200 {
        let types: Vec<String> = included.json()["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                entry["resource"]["resourceType"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert!(
            types.iter().all(|kind| kind == "DocumentReference"),
            "{types:?}"
        );
    } else {
        assert_eq!(included.status, 403, "{}", included.body);
    }
    assert_eq!(
        h.app
            .get(&format!("Patient/{mine}/_history"), &token)
            .status,
        403
    );
    let batch = h.app.request("POST", "/").as_(&token).fhir().send(Some(
        json!({ "resourceType": "Bundle", "type": "batch", "entry": [{ "request": { "method": "GET", "url": format!("Patient/{mine}") } }] })
            .to_string(),
    ));
    assert_eq!(batch.status, 200, "{}", batch.body);
    assert_eq!(
        batch.json()["entry"][0]["response"]["status"]
            .as_str()
            .unwrap_or("")[..3],
        *"403"
    );
    let theirs = h
        .app
        .get(&format!("DocumentReference?patient={other}"), &token);
    assert!(
        matches!(theirs.status, 403 | 404) || theirs.json()["total"] == 0,
        "{}",
        theirs.body
    );
    assert_eq!(
        h.app
            .get(&format!("AuditEvent?patient={mine}"), &token)
            .status,
        403
    );
    // The code is used once: a second exchange revokes the authorisation.
    let (status, again) = token_request(
        &h,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("client_id", "carnet"),
            ("code_verifier", VERIFIER),
        ],
    );
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        h.app
            .get(&format!("DocumentReference?patient={mine}"), &token)
            .status,
        401
    );
}

/// The carnet app's refresh: the token endpoint's status and answer.
fn refreshed_by_carnet(h: &Harness, refresh_token: &str) -> (u16, Value) {
    token_request(
        h,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "carnet"),
        ],
    )
}

/// A holder's app authorised through the pages for `launch/patient offline_access
/// patient/Patient.rs`, and the code exchanged: the harness, the holder's Patient id,
/// their signed-in browser and the token answer.
fn app_with_refresh() -> (Harness, String, Browser, Value) {
    let h = with_app();
    let known = nir();
    let mine = holder(&h.app, &known, None);
    h.enrol(&known, "alice.durand");
    let mut browser = Browser::new(&h.app);
    let authorize = authorize_path(&h, "launch/patient offline_access patient/Patient.rs");
    let consent = sign_in_through_pages(&h, &mut browser, &authorize, 0);
    let mut fields: Vec<(String, String)> = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "aud",
        "code_challenge",
        "code_challenge_method",
        "csrf",
    ]
    .iter()
    .map(|name| (name.to_string(), consent.field(name)))
    .collect();
    fields.push(("decision".into(), "allow".into()));
    for scope in ["launch/patient", "offline_access", "patient/Patient.rs"] {
        fields.push(("granted".into(), scope.into()));
    }
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let back = browser.post("/oauth/authorize", &pairs);
    let code = back
        .location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let (_, issued) = token_request(
        &h,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("client_id", "carnet"),
            ("code_verifier", VERIFIER),
        ],
    );
    (h, mine, browser, issued)
}

/// A refresh token presented twice revokes its authorisation, also when the two
/// presentations come at once (each read it unspent before either spent it).
#[test]
fn r_act_4_a_refresh_token_presented_twice_at_once_revokes_the_authorisation() {
    let (h, _, _, issued) = app_with_refresh();
    let refresh = issued["refresh_token"].as_str().unwrap().to_owned();
    let answers = crate::support::on_threads(6, |_| refreshed_by_carnet(&h, &refresh));
    let granted: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, answer)| answer)
        .collect();
    assert!(granted.len() <= 1, "{answers:?}");
    for (status, answer) in &answers {
        if *status != 200 {
            assert_eq!(answer["error"], "invalid_grant", "{answer}");
            assert!(
                answer["error_description"]
                    .as_str()
                    .is_some_and(|text| text.contains("revoked")),
                "{answer}"
            );
        }
    }
    // Whoever won holds nothing: the authorisation has ended.
    for answer in granted {
        let next = answer["refresh_token"].as_str().unwrap();
        let (status, ended) = refreshed_by_carnet(&h, next);
        assert_eq!(
            (status, ended["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
}

#[test]
fn r_act_4_refresh_tokens_change_at_each_use_and_the_holder_revokes_the_app() {
    let (h, mine, mut browser, issued) = app_with_refresh();
    let first_refresh = issued["refresh_token"].as_str().unwrap().to_owned();
    let (status, refreshed) = refreshed_by_carnet(&h, &first_refresh);
    assert_eq!(status, 200, "{refreshed}");
    let second_refresh = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first_refresh);
    let token = As::Token(refreshed["access_token"].as_str().unwrap().to_owned());
    assert_eq!(h.app.get(&format!("Patient/{mine}"), &token).status, 200);
    // Fewer scopes asked at a refresh (RFC 6749 §6): that access token carries
    // those only; asking only for scopes never granted is refused, and leaves the
    // refresh token good.
    let (status, narrowed) = token_request(
        &h,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &second_refresh),
            ("client_id", "carnet"),
            ("scope", "launch/patient"),
        ],
    );
    assert_eq!(status, 200, "{narrowed}");
    assert_eq!(narrowed["scope"], "launch/patient");
    let narrow = As::Token(narrowed["access_token"].as_str().unwrap().to_owned());
    assert_eq!(h.app.get(&format!("Patient/{mine}"), &narrow).status, 403);
    let latest_refresh = narrowed["refresh_token"].as_str().unwrap().to_owned();
    let (status, wider) = token_request(
        &h,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &latest_refresh),
            ("client_id", "carnet"),
            ("scope", "patient/DocumentReference.rs"),
        ],
    );
    assert_eq!(
        (status, wider["error"].as_str()),
        (400, Some("invalid_scope")),
        "{wider}"
    );
    // Another client cannot use it.
    let (status, _) = token_request(
        &h,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &latest_refresh),
            ("client_id", "autre"),
        ],
    );
    assert_eq!(status, 401);
    // The refused scope left the refresh token good. Asked again for more than
    // was granted (as client libraries ask for every scope they first asked):
    // what was granted, no more.
    let (status, again) = token_request(
        &h,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &latest_refresh),
            ("client_id", "carnet"),
            (
                "scope",
                "launch/patient offline_access patient/Patient.rs patient/DocumentReference.rs",
            ),
        ],
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["scope"], issued["scope"]);
    let latest_refresh = again["refresh_token"].as_str().unwrap().to_owned();
    // The holder's account lists the app, and revokes it: its tokens end at once.
    let account = browser.get("/compte");
    assert_eq!(account.status, 200);
    assert!(
        account.body.contains("Lire votre identité"),
        "{}",
        account.body
    );
    let revoked = browser.post(
        "/compte/applications/retirer",
        &[("csrf", &account.field("csrf")), ("client_id", "carnet")],
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert!(
        revoked
            .body
            .contains("Vous n'avez autorisé aucune application")
    );
    assert_eq!(h.app.get(&format!("Patient/{mine}"), &token).status, 401);
    // Still unspent, yet the authorisation it stood on has ended.
    let (status, ended) = refreshed_by_carnet(&h, &latest_refresh);
    assert_eq!(
        (status, ended["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[test]
fn r_act_4_authorisation_requests_are_checked_before_anything_is_shown_or_sent() {
    let h = with_app();
    let mut browser = Browser::new(&h.app);
    let good = authorize_path(&h, "launch/patient patient/Patient.rs");
    // An unknown app, or a redirect URI not its own: told on the page, sent nowhere.
    for bad in [
        good.replace("client_id=carnet", "client_id=pirate"),
        good.replace("127.0.0.1%3A9%2Fcb", "evil.example%2Fcb"),
    ] {
        let page = browser.get(&bad);
        assert_eq!(page.status, 400, "{bad}");
        assert!(page.location.is_empty());
    }
    // Anything else goes back to the app with an error.
    for (bad, error) in [
        (
            good.replace("code_challenge_method=S256", "code_challenge_method=plain"),
            "invalid_request",
        ),
        (
            good.replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            good.replace(
                "scope=launch%2Fpatient+patient%2FPatient.rs",
                "scope=user%2F*.*",
            ),
            "invalid_scope",
        ),
        (
            good.replace(
                &format!(
                    "aud={}",
                    form_urlencoded::byte_serialize(h.app.base.as_bytes()).collect::<String>()
                ),
                "aud=https%3A%2F%2Fother.example",
            ),
            "invalid_request",
        ),
    ] {
        let page = browser.get(&bad);
        assert_eq!(page.status, 302, "{bad}: {}", page.body);
        assert!(
            page.location.starts_with("http://127.0.0.1:9/cb?error="),
            "{}",
            page.location
        );
        assert!(page.location.contains(error), "{}", page.location);
    }
    // A form without its CSRF token is refused.
    let form = browser.get("/connexion");
    assert_eq!(form.status, 200);
    let refused = browser.post(
        "/connexion",
        &[("identifiant", "alice.durand"), ("password", PASSWORD)],
    );
    assert_eq!(refused.status, 403);
    let smart = h
        .app
        .request("GET", "/.well-known/smart-configuration")
        .send(None);
    assert_eq!(smart.status, 200);
    assert_eq!(
        smart.json()["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        smart.json()["token_endpoint"],
        format!("{}/oauth/token", h.app.base)
    );
    // The CapabilityStatement says the same (SMART's oauth-uris).
    let metadata = h.app.get("metadata", &As::Nobody).json();
    let uris = &metadata["rest"][0]["security"]["extension"][0];
    assert_eq!(
        uris["url"],
        "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    );
    assert_eq!(
        uris["extension"][0]["valueUri"],
        format!("{}/oauth/authorize", h.app.base)
    );
}

/// The first sign-in through the pages, up to the choice page.
fn first_sign_in_through_pages(h: &Harness, browser: &mut Browser, nir: &str) -> Page {
    let ask = browser.get("/code-provisoire");
    assert_eq!(ask.status, 200);
    let asked = browser.post(
        "/code-provisoire",
        &[
            ("csrf", &ask.field("csrf")),
            ("nir", nir),
            ("birth_date", "1985-06-15"),
            ("vitale_serial", ""),
            ("channel", "email"),
        ],
    );
    assert_eq!(asked.status, 200, "{}", asked.body);
    let (_, code) = h.code("provisional-code", 0);
    let form = browser.get("/premiere-connexion");
    let wrong = browser.post(
        "/premiere-connexion",
        &[
            ("csrf", &form.field("csrf")),
            ("nir", nir),
            ("birth_date", "1985-06-15"),
            ("code", "AAAAA-AAAAA"),
        ],
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("role=\"alert\""));
    let contacts = browser.post(
        "/premiere-connexion",
        &[
            ("csrf", &form.field("csrf")),
            ("nir", nir),
            ("birth_date", "1985-06-15"),
            ("code", &code),
        ],
    );
    assert_eq!(contacts.status, 200, "{}", contacts.body);
    assert_eq!(contacts.field("email"), format!("alice.{nir}@exemple.fr"));
    let credentials = browser.post(
        "/premiere-connexion/coordonnees",
        &[
            ("csrf", &contacts.field("csrf")),
            ("ticket", &contacts.field("ticket")),
            ("email", &contacts.field("email")),
            ("mobile", &contacts.field("mobile")),
            ("channel", "email"),
        ],
    );
    assert_eq!(credentials.status, 200, "{}", credentials.body);
    // The rules are on the page before anything is typed.
    for rule in [
        "au moins 8 caractères",
        "pas de majuscule",
        "au moins un caractère spécial",
    ] {
        assert!(credentials.body.contains(rule), "{rule}");
    }
    let refused = browser.post(
        "/premiere-connexion/identifiants",
        &[
            ("csrf", &credentials.field("csrf")),
            ("ticket", &credentials.field("ticket")),
            ("identifiant", "Alice"),
            ("password", PASSWORD),
            ("password_confirmation", PASSWORD),
        ],
    );
    assert_eq!(refused.status, 422);
    assert!(
        refused
            .body
            .contains("L&#39;identifiant ne contient pas de majuscule")
            || refused
                .body
                .contains("L&#x27;identifiant ne contient pas de majuscule"),
        "{}",
        refused.body
    );
    let choice = browser.post(
        "/premiere-connexion/identifiants",
        &[
            ("csrf", &credentials.field("csrf")),
            ("ticket", &credentials.field("ticket")),
            ("identifiant", "alice.durand"),
            ("password", PASSWORD),
            ("password_confirmation", PASSWORD),
        ],
    );
    assert_eq!(choice.status, 200, "{}", choice.body);
    assert!(browser.cookies.contains_key("__Host-dmp-session"));
    choice
}

fn space_state(h: &Harness, patient_id: &str) -> String {
    h.app.query_texts(&format!(
        "SELECT state AS text FROM space_lifecycle WHERE patient_id = '{patient_id}'"
    ))[0]
        .clone()
}

#[test]
fn r_act_2_the_first_sign_in_pages_end_with_the_space_activated_through_the_pipeline() {
    let h = harness();
    let known = nir();
    let patient_id = holder(&h.app, &known, None);
    let mut browser = Browser::new(&h.app);
    let choice = first_sign_in_through_pages(&h, &mut browser, &known);
    let done = browser.post(
        "/premiere-connexion/choix",
        &[("csrf", &choice.field("csrf")), ("decision", "activate")],
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("activé"));
    assert_eq!(space_state(&h, &patient_id), "active");
    // The activation is the holder's, in their trace, as any client's $activate.
    let trace = h.app.get(
        &format!("AuditEvent?patient={patient_id}&_count=100"),
        &As::Patient(patient_id.clone()),
    );
    let trace = trace.json();
    let operations: Vec<&Value> = trace["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["resource"])
        .filter(|event| event["subtype"][0]["code"] == "operation")
        .collect();
    assert_eq!(operations.len(), 1, "{trace}");
    assert_eq!(operations[0]["outcome"], "0");
}

#[test]
fn r_act_2_opposing_in_the_pages_asks_for_confirmation_and_gives_the_pdf_proof() {
    let h = harness();
    let known = nir();
    let patient_id = holder(&h.app, &known, None);
    let mut browser = Browser::new(&h.app);
    let choice = first_sign_in_through_pages(&h, &mut browser, &known);
    let confirm = browser.post(
        "/premiere-connexion/choix",
        &[("csrf", &choice.field("csrf")), ("decision", "oppose")],
    );
    assert_eq!(confirm.status, 200);
    assert!(
        confirm.body.contains("Je valide l'opposition"),
        "{}",
        confirm.body
    );
    assert_ne!(space_state(&h, &patient_id), "opposed");
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("csrf", confirm.field("csrf").as_str()),
            ("decision", "oppose"),
            ("confirmed", "yes"),
        ])
        .finish();
    let mut response = browser
        .agent
        .post(&browser.url("/premiere-connexion/choix"))
        .header("Cookie", &browser.cookie_header())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(body)
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/pdf"
    );
    assert!(
        response
            .headers()
            .get("content-disposition")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let pdf = response.body_mut().read_to_vec().unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let document = lopdf::Document::load_mem(&pdf).expect("the proof parses as a PDF");
    assert_eq!(document.get_pages().len(), 1);
    assert_eq!(space_state(&h, &patient_id), "opposed");
}

#[test]
fn r_act_1_once_contacts_are_confirmed_codes_go_there_and_choosing_credentials_again_ends_everything_and_tells_the_holder()
 {
    let h = with_app();
    let known = nir();
    let mine = holder(&h.app, &known, None);
    // Enrolled with a new e-mail address (the insurer's file keeps the old one).
    assert_eq!(h.ask_code(&known, "1985-06-15", "email").status, 202);
    let (_, code) = h.code("provisional-code", 0);
    let enrolment = h.post(
        "/account/first-sign-in",
        &json!({ "nir": known, "birthDate": "1985-06-15", "code": code }),
    );
    let ticket = enrolment.json()["ticket"].as_str().unwrap().to_owned();
    let confirmed = h.post(
        "/account/contacts",
        &json!({ "ticket": ticket, "email": "alice.nouvelle@exemple.fr", "mobile": "", "channel": "email" }),
    );
    assert_eq!(confirmed.status, 200);
    let signed_in = h.post(
        "/account/credentials",
        &json!({ "ticket": ticket, "identifiant": "alice.durand", "password": PASSWORD, "passwordConfirmation": PASSWORD }),
    );
    assert_eq!(signed_in.status, 200);
    let session_token = As::Token(
        signed_in.json()["access_token"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    // An app authorised meanwhile.
    let mut browser = Browser::new(&h.app);
    let consent = sign_in_through_pages(
        &h,
        &mut browser,
        &authorize_path(&h, "launch/patient patient/Patient.rs"),
        0,
    );
    let mut fields: Vec<(String, String)> = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "aud",
        "code_challenge",
        "code_challenge_method",
        "csrf",
    ]
    .iter()
    .map(|name| (name.to_string(), consent.field(name)))
    .collect();
    fields.push(("decision".into(), "allow".into()));
    fields.push(("granted".into(), "patient/Patient.rs".into()));
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let back = browser.post("/oauth/authorize", &pairs);
    let app_code = back
        .location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let (_, issued) = token_request(
        &h,
        &[
            ("grant_type", "authorization_code"),
            ("code", &app_code),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("client_id", "carnet"),
            ("code_verifier", VERIFIER),
        ],
    );
    let app_token = As::Token(issued["access_token"].as_str().unwrap().to_owned());
    assert_eq!(
        h.app.get(&format!("Patient/{mine}"), &app_token).status,
        200
    );
    // A lost password: the new provisional code goes to the confirmed address,
    // not to the insurer's old one.
    assert_eq!(h.ask_code(&known, "1985-06-15", "email").status, 202);
    let (message, code) = h.code("provisional-code", 1);
    assert_eq!(message["to"], "alice.nouvelle@exemple.fr");
    let again = h.post(
        "/account/first-sign-in",
        &json!({ "nir": known, "birthDate": "1985-06-15", "code": code }),
    );
    assert_eq!(again.status, 200);
    let ticket = again.json()["ticket"].as_str().unwrap().to_owned();
    h.post("/account/contacts", &json!({ "ticket": ticket, "email": "alice.nouvelle@exemple.fr", "mobile": "", "channel": "email" }));
    let chosen = h.post(
        "/account/credentials",
        &json!({ "ticket": ticket, "identifiant": "alice.durand2", "password": PASSWORD, "passwordConfirmation": PASSWORD }),
    );
    assert_eq!(chosen.status, 200, "{}", chosen.body);
    // Nothing of the earlier credentials stands, and the holder is told.
    assert_eq!(
        h.app.get(&format!("Patient/{mine}"), &session_token).status,
        401
    );
    assert_eq!(
        h.app.get(&format!("Patient/{mine}"), &app_token).status,
        401
    );
    let (notice, _) = eventually(|| {
        h.delivered()
            .into_iter()
            .find(|message| message["kind"] == "credentials-changed")
            .map(|message| (message, ()))
    });
    assert_eq!(notice["to"], "alice.nouvelle@exemple.fr");
}

#[test]
fn r_act_2_a_ticket_tells_a_few_taken_identifiants_then_is_spent() {
    let h = harness();
    let first = nir();
    holder(&h.app, &first, None);
    h.enrol(&first, "alice.durand");
    let second = nir();
    holder(&h.app, &second, None);
    assert_eq!(h.ask_code(&second, "1985-06-15", "email").status, 202);
    let (_, code) = h.code("provisional-code", 1);
    let enrolment = h.post(
        "/account/first-sign-in",
        &json!({ "nir": second, "birthDate": "1985-06-15", "code": code }),
    );
    let ticket = enrolment.json()["ticket"].as_str().unwrap().to_owned();
    h.post(
        "/account/contacts",
        &json!({ "ticket": ticket, "email": "b@exemple.fr", "mobile": "", "channel": "email" }),
    );
    let choose = |identifiant: &str| {
        h.post(
            "/account/credentials",
            &json!({ "ticket": ticket, "identifiant": identifiant, "password": PASSWORD, "passwordConfirmation": PASSWORD }),
        )
    };
    for _ in 0..5 {
        assert_eq!(choose("alice.durand").status, 409);
    }
    assert_eq!(choose("bob.martin").status, 401, "the ticket is spent");
    // Both rules at once, each named with its field.
    let both = h.post(
        "/account/credentials",
        &json!({ "ticket": "x.y", "identifiant": "Bob", "password": "court", "passwordConfirmation": "court" }),
    );
    assert_eq!(both.status, 422);
    let issues = both.json()["issue"].as_array().unwrap().clone();
    assert!(
        issues
            .iter()
            .any(|issue| issue["expression"][0] == "identifiant")
    );
    assert!(
        issues
            .iter()
            .any(|issue| issue["expression"][0] == "password")
    );
}

#[test]
fn r_act_3_one_time_codes_are_sent_ten_an_hour_at_most() {
    let h = harness();
    let known = nir();
    holder(&h.app, &known, None);
    h.enrol(&known, "alice.durand");
    for n in 0..10 {
        let reply = h.post(
            "/account/sign-in",
            &json!({ "identifiant": "alice.durand", "password": PASSWORD }),
        );
        assert_eq!(reply.status, 200, "sign-in {n}");
    }
    let eleventh = h.post(
        "/account/sign-in",
        &json!({ "identifiant": "alice.durand", "password": PASSWORD }),
    );
    assert_eq!(eleventh.status, 429);
    h.code("sign-in-code", 9);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        h.delivered()
            .iter()
            .filter(|m| m["kind"] == "sign-in-code")
            .count(),
        10
    );
}

#[test]
fn r_act_4_a_token_of_the_servers_own_saying_more_than_its_session_or_grant_is_refused() {
    let h = harness();
    let known = nir();
    let mine = holder(&h.app, &known, None);
    let other = h
        .app
        .create(&As::System, &patient(&nir(), "Autre", "Bob", "1970-01-01"));
    let (token, _) = h.enrol(&known, "alice.durand");
    // Whoever reads the database's signing key and a live session id…
    let pem = h
        .app
        .query_texts("SELECT private_pem AS text FROM issuer_key")[0]
        .clone();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let claims: Value = {
        use base64::Engine;
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    let forge = |change: &dyn Fn(&mut Value)| {
        let mut forged = claims.clone();
        change(&mut forged);
        let mut jwt_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        jwt_header.kid = header.kid.clone();
        As::Token(
            jsonwebtoken::encode(
                &jwt_header,
                &forged,
                &jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        )
    };
    // …signs the same claims: accepted (the check is of the claims, not of who signed).
    assert_eq!(
        h.app
            .get(&format!("Patient/{mine}"), &forge(&|_| {}))
            .status,
        200
    );
    // Another space, another actor, an app's client: refused.
    assert_eq!(
        h.app
            .get(
                &format!("Patient/{other}"),
                &forge(&|c: &mut Value| c["patient"] = json!(other))
            )
            .status,
        401
    );
    let professional = forge(&|c: &mut Value| {
        c["actor"] = json!("professional");
        c["profession"] = json!("10");
    });
    assert_eq!(
        h.app.get(&format!("Patient/{mine}"), &professional).status,
        401
    );
    assert_eq!(
        h.app
            .get(
                &format!("Patient/{mine}"),
                &forge(&|c: &mut Value| c["client_id"] = json!("carnet"))
            )
            .status,
        401
    );
    // The database file is its owner's only.
    if !h.app.is_postgres() {
        use std::os::unix::fs::PermissionsExt;
        let path = h
            .app
            .database_url
            .trim_start_matches("sqlite://")
            .to_owned();
        for file in [path.clone(), format!("{path}-wal")] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{file}: {mode:o}");
        }
    }
    // FHIR answers are never kept by a cache.
    let read = h.app.get(&format!("Patient/{mine}"), &As::Token(token));
    assert_eq!(read.header("cache-control"), Some("no-store"));
}

#[test]
fn r_act_2_codes_sent_before_the_contacts_were_confirmed_end_with_the_confirmation() {
    let h = harness();
    let known = nir();
    holder(&h.app, &known, None);
    assert_eq!(h.ask_code(&known, "1985-06-15", "email").status, 202);
    let (_, first) = h.code("provisional-code", 0);
    let enrolment = h.post(
        "/account/first-sign-in",
        &json!({ "nir": known, "birthDate": "1985-06-15", "code": first }),
    );
    let ticket = enrolment.json()["ticket"].as_str().unwrap().to_owned();
    // Someone who reads the insurer's old address asks for a code meanwhile…
    assert_eq!(h.ask_code(&known, "1985-06-15", "email").status, 202);
    let (_, second) = h.code("provisional-code", 1);
    // …and holds a second ticket, before the holder confirms new contacts.
    let early = h.post(
        "/account/first-sign-in",
        &json!({ "nir": known, "birthDate": "1985-06-15", "code": second }),
    );
    assert_eq!(early.status, 200);
    let other_ticket = early.json()["ticket"].as_str().unwrap().to_owned();
    assert_eq!(
        h.post("/account/contacts", &json!({ "ticket": ticket, "email": "alice.nouvelle@exemple.fr", "mobile": "", "channel": "email" })).status,
        200
    );
    // The other ticket, and any code sent before, end with the confirmation.
    let taken = h.post(
        "/account/contacts",
        &json!({ "ticket": other_ticket, "email": "autre@exemple.fr", "mobile": "", "channel": "email" }),
    );
    assert_eq!(taken.status, 401);
    assert_eq!(h.ask_code(&known, "1985-06-15", "email").status, 202);
    let (message, third) = h.code("provisional-code", 2);
    assert_eq!(message["to"], "alice.nouvelle@exemple.fr");
    h.post(
        "/account/credentials",
        &json!({ "ticket": ticket, "identifiant": "alice.durand", "password": PASSWORD, "passwordConfirmation": PASSWORD }),
    );
    // The credentials chosen, the code sent meanwhile ends too.
    let late = h.post(
        "/account/first-sign-in",
        &json!({ "nir": known, "birthDate": "1985-06-15", "code": third }),
    );
    assert_eq!(late.status, 401);
    // The codes file is its owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&h.outbox).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}

#[test]
fn r_act_3_a_locked_identifiant_signs_in_at_neither_step_and_changed_contacts_tell_the_old_ones() {
    let h = harness();
    let known = nir();
    holder(&h.app, &known, None);
    h.enrol(&known, "alice.durand");
    let challenge = h.post(
        "/account/sign-in",
        &json!({ "identifiant": "alice.durand", "password": PASSWORD }),
    );
    let (_, code) = h.code("sign-in-code", 0);
    for _ in 0..5 {
        h.post(
            "/account/sign-in",
            &json!({ "identifiant": "alice.durand", "password": "Mauvais1!" }),
        );
    }
    let locked = h.post(
        "/account/sign-in/code",
        &json!({ "challenge": challenge.json()["challenge"], "code": code }),
    );
    assert_eq!(locked.status, 429);
    // Contacts changed through a provisional code: the contacts as they were are told.
    h.app.advance(chrono::TimeDelta::minutes(16));
    assert_eq!(h.ask_code(&known, "1985-06-15", "email").status, 202);
    let (_, provisional) = h.code("provisional-code", 1);
    let enrolment = h.post(
        "/account/first-sign-in",
        &json!({ "nir": known, "birthDate": "1985-06-15", "code": provisional }),
    );
    let ticket = enrolment.json()["ticket"].as_str().unwrap().to_owned();
    h.post(
        "/account/contacts",
        &json!({ "ticket": ticket, "email": "intrus@exemple.fr", "mobile": "", "channel": "email" }),
    );
    let notice = eventually(|| {
        h.delivered()
            .into_iter()
            .find(|message| message["kind"] == "credentials-changed")
    });
    assert_eq!(notice["to"], format!("alice.{known}@exemple.fr"));
}

#[test]
fn r_act_pages_refuse_a_csrf_token_that_the_server_did_not_derive_from_the_cookie() {
    let h = harness();
    let mut browser = Browser::new(&h.app);
    let form = browser.get("/connexion");
    assert_eq!(form.status, 200);
    let planted = "a".repeat(43);
    browser
        .cookies
        .insert("__Host-dmp-csrf".into(), planted.clone());
    let refused = browser.post(
        "/connexion",
        &[
            ("csrf", planted.as_str()),
            ("identifiant", "alice.durand"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(refused.status, 403);
}

#[test]
fn r_act_3_a_sign_in_opened_with_the_old_password_ends_when_the_password_changes() {
    let h = harness();
    let known = nir();
    let patient_id = holder(&h.app, &known, None);
    h.enrol(&known, "alice.durand");
    let (_, cookie) = h.sign_in("alice.durand", PASSWORD);
    // Someone who knows the password opens a sign-in and keeps its code…
    let opened = h.post(
        "/account/sign-in",
        &json!({ "identifiant": "alice.durand", "password": PASSWORD }),
    );
    let (_, code) = h.code("sign-in-code", 1);
    // …the holder changes the password…
    let changed = h.post_with(
        "/account/password",
        &json!({ "currentPassword": PASSWORD, "password": "Nouveau2?", "passwordConfirmation": "Nouveau2?" }),
        Some(&cookie),
    );
    assert_eq!(changed.status, 200);
    // …and the code opened with the old password no longer signs in.
    let late = h.post(
        "/account/sign-in/code",
        &json!({ "challenge": opened.json()["challenge"], "code": code }),
    );
    assert_eq!(late.status, 401);
    let signed_in = h.sign_in("alice.durand", "Nouveau2?");
    assert_eq!(
        h.app
            .get(&format!("Patient/{patient_id}"), &As::Token(signed_in.0))
            .status,
        200
    );
}

#[test]
fn r_act_3_a_locked_sign_in_page_says_when_to_come_back() {
    let h = harness();
    let known = nir();
    holder(&h.app, &known, None);
    h.enrol(&known, "alice.durand");
    let mut browser = Browser::new(&h.app);
    let mut last = None;
    for _ in 0..6 {
        let form = browser.get("/connexion");
        last = Some(browser.post(
            "/connexion",
            &[
                ("csrf", &form.field("csrf")),
                ("next", "/espace"),
                ("identifiant", "alice.durand"),
                ("password", "Mauvais1!"),
            ],
        ));
    }
    let locked = last.unwrap();
    assert_eq!(locked.status, 429, "{}", locked.body);
    let seconds: u64 = locked
        .retry_after
        .parse()
        .expect("a Retry-After in seconds");
    assert!(seconds > 0 && seconds <= 15 * 60, "{seconds}");
}

/// The accounts' expired rows do not pile up: the lifecycle job removes codes,
/// failure counters, sessions, authorisation codes and refresh tokens a day after
/// they expired, and leaves the live ones, whose holder goes on.
#[test]
fn expired_account_rows_are_removed_and_live_ones_kept() {
    let h = harness();
    let known = nir();
    let patient_id = holder(&h.app, &known, None);
    let (token, _) = h.enrol(&known, "alice.durand");
    // A failure counter of now.
    let wrong = h.post(
        "/account/sign-in",
        &json!({ "identifiant": "alice.durand", "password": "not the password" }),
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let tables = [
        ("account_code", "id"),
        ("account_throttle", "key"),
        ("account_session", "id"),
        ("oauth_code", "code_hash"),
        ("refresh_token", "token_hash"),
    ];
    let live: Vec<i64> = tables
        .iter()
        .map(|(table, _)| h.app.stored_rows(table))
        .collect();
    assert!(live[0] > 0 && live[1] > 0 && live[2] > 0, "{live:?}");
    // Rows that expired two days ago, and a counter whose lock-out did.
    let old = (chrono::Utc::now() - chrono::TimeDelta::days(2))
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let recent = (chrono::Utc::now() - chrono::TimeDelta::hours(2))
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    for statement in [
        format!(
            "INSERT INTO account_code (id, patient_id, purpose, code_hash, expires_at, created_at) \
             VALUES ('old-code', '{patient_id}', 'sign-in', 'x', '{old}', '{old}')"
        ),
        format!(
            "INSERT INTO account_throttle (key, failures, window_start, locked_until) \
             VALUES ('old-counter', 5, '{old}', '{old}')"
        ),
        // Its window began long ago, its lock-out ends in a day: kept.
        format!(
            "INSERT INTO account_throttle (key, failures, window_start, locked_until) \
             VALUES ('locked-counter', 5, '{old}', '{}')",
            (chrono::Utc::now() + chrono::TimeDelta::days(1)).format("%Y-%m-%dT%H:%M:%S%.6fZ")
        ),
        // Expired two hours ago: kept for a day.
        format!(
            "INSERT INTO account_session (id, account_id, created_at, last_seen_at, expires_at) \
             SELECT 'recent-session', id, '{recent}', '{recent}', '{recent}' FROM account"
        ),
        format!(
            "INSERT INTO account_session (id, account_id, created_at, last_seen_at, expires_at) \
             SELECT 'old-session', id, '{old}', '{old}', '{old}' FROM account"
        ),
        format!(
            "INSERT INTO app_grant (id, account_id, client_id, scopes, created_at) \
             SELECT 'old-grant', id, 'an-app', 'launch/patient', '{old}' FROM account"
        ),
        format!(
            "INSERT INTO oauth_code (code_hash, grant_id, redirect_uri, code_challenge, expires_at) \
             VALUES ('old-oauth-code', 'old-grant', 'https://app.example/back', 'x', '{old}')"
        ),
        format!(
            "INSERT INTO refresh_token (token_hash, grant_id, expires_at, used_at) \
             VALUES ('old-refresh', 'old-grant', '{old}', '{old}')"
        ),
    ] {
        assert_eq!(h.app.execute_sql(&statement), 1, "{statement}");
    }
    let (succeeded, printed) = run_command(&["--database-url", &h.app.database_url, "lifecycle"]);
    assert!(succeeded, "{printed}");
    assert!(
        printed.contains(", 5 expired account rows removed"),
        "{printed}"
    );
    for ((table, key), live) in tables.iter().zip(&live) {
        assert_eq!(
            h.app
                .stored_rows(&format!("{table} WHERE {key} LIKE 'old-%'")),
            0,
            "{table}"
        );
        assert_eq!(
            h.app
                .stored_rows(&format!("{table} WHERE {key} NOT LIKE 'old-%'")),
            live + match *table {
                "account_throttle" | "account_session" => 1,
                _ => 0,
            },
            "{table}"
        );
    }
    // The live session still serves its token.
    assert_eq!(
        h.app
            .get(&format!("Patient/{patient_id}"), &As::Token(token))
            .status,
        200
    );
}
