//! Authentication (SPEC §2): no health data without a valid token, and the coarse
//! actor table (R-ACC-12) once authenticated.

use serde_json::json;

use crate::support::fixtures::{nir, patient};
use crate::support::{AUDIENCE, As, ISSUER, SECOND_ISSUER, TestApp, base_claims, keys, now, sign};

fn seeded() -> (TestApp, String) {
    let app = TestApp::new();
    let id = app.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    (app, id)
}

fn assert_unauthorized(app: &TestApp, token: &str, patient_id: &str, expected_detail: &str) {
    let reply = app.get(
        &format!("Patient/{patient_id}"),
        &As::Token(token.to_owned()),
    );
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.issue_code(), "login");
    assert!(
        reply.json()["issue"][0]["details"]["text"]
            .as_str()
            .unwrap()
            .contains(expected_detail),
        "expected {expected_detail:?} in {}",
        reply.body
    );
    assert!(
        !reply.body.contains("Martin"),
        "no data may leak: {}",
        reply.body
    );
}

#[test]
fn no_token_gets_401_with_an_operation_outcome() {
    let (app, id) = seeded();
    for path in [
        format!("Patient/{id}"),
        "Patient?family=Martin".to_owned(),
        format!("Patient/{id}/_history"),
    ] {
        let reply = app.get(&path, &As::Nobody);
        assert_eq!(reply.status, 401, "{path}: {}", reply.body);
        assert_eq!(reply.issue_code(), "login");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        assert!(!reply.body.contains("Martin"));
    }
}

#[test]
fn rs256_and_es256_tokens_of_the_trusted_issuer_are_accepted() {
    let (app, id) = seeded();
    let mut claims = base_claims("professional", "810000000001");
    claims["profession"] = json!("10");
    for key in [&keys().rsa, &keys().ec] {
        let reply = app.get(&format!("Patient/{id}"), &As::Token(sign(key, &claims)));
        assert_eq!(reply.status, 200, "{:?}: {}", key.algorithm, reply.body);
    }
}

#[test]
fn a_second_issuer_is_accepted_with_its_own_audience_only() {
    let (app, id) = seeded();
    let mut claims = base_claims("professional", "810000000002");
    claims["profession"] = json!("10");
    claims["iss"] = json!(SECOND_ISSUER);
    claims["aud"] = json!("hospital-dmp");
    let reply = app.get(
        &format!("Patient/{id}"),
        &As::Token(sign(&keys().second_issuer, &claims)),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    claims["aud"] = json!(AUDIENCE);
    assert_unauthorized(&app, &sign(&keys().second_issuer, &claims), &id, "aud");
    // The second issuer's key cannot sign for the first issuer.
    claims["iss"] = json!(ISSUER);
    assert_unauthorized(&app, &sign(&keys().second_issuer, &claims), &id, "key");
}

#[test]
fn expired_and_premature_tokens_are_refused() {
    let (app, id) = seeded();
    let mut claims = base_claims("system", "feed");
    claims["exp"] = json!(now() - 3600);
    assert_unauthorized(&app, &sign(&keys().rsa, &claims), &id, "expired");
    let mut claims = base_claims("system", "feed");
    claims["nbf"] = json!(now() + 3600);
    assert_unauthorized(&app, &sign(&keys().rsa, &claims), &id, "not valid yet");
}

#[test]
fn wrong_audience_untrusted_issuer_and_foreign_key_are_refused() {
    let (app, id) = seeded();
    let mut claims = base_claims("system", "feed");
    claims["aud"] = json!("another-server");
    assert_unauthorized(&app, &sign(&keys().rsa, &claims), &id, "aud");
    let mut claims = base_claims("system", "feed");
    claims["iss"] = json!("https://evil.test");
    assert_unauthorized(&app, &sign(&keys().rsa, &claims), &id, "not trusted");
    // Same kid as the trusted key, but a key the server does not know.
    assert_unauthorized(
        &app,
        &sign(&keys().untrusted, &base_claims("system", "feed")),
        &id,
        "signature",
    );
}

#[test]
fn alg_none_and_hs256_tokens_are_refused() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (app, id) = seeded();
    let claims = base_claims("system", "feed");
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        let reply = app.get(&format!("Patient/{id}"), &As::Token(token));
        assert_eq!(reply.status, 401, "{}", reply.body);
    }
    // Algorithm confusion: HS256 keyed with the public key's modulus.
    let secret = keys().rsa.jwk["n"].as_str().unwrap().as_bytes().to_vec();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    assert_unauthorized(&app, &token, &id, "algorithm");
    assert_unauthorized(&app, "not.a.jwt", &id, "well-formed");
}

#[test]
fn tokens_without_required_claims_are_refused() {
    let (app, id) = seeded();
    let mut claims = base_claims("system", "feed");
    claims.as_object_mut().unwrap().remove("actor");
    assert_unauthorized(&app, &sign(&keys().rsa, &claims), &id, "claims");
    let mut claims = base_claims("system", "feed");
    claims.as_object_mut().unwrap().remove("exp");
    assert_unauthorized(&app, &sign(&keys().rsa, &claims), &id, "required claim");
    // A patient token must say whose space it is for.
    assert_unauthorized(
        &app,
        &sign(&keys().rsa, &base_claims("patient", "u1")),
        &id,
        "patient claim",
    );
    let mut claims = base_claims("professional", "810000000001");
    claims["profession"] = json!("10");
    claims["purpose_of_use"] = json!("curiosity");
    assert_unauthorized(&app, &sign(&keys().rsa, &claims), &id, "purpose_of_use");
}

#[test]
fn a_refused_token_stores_nothing() {
    let app = TestApp::new();
    let before = app.data_rows();
    let mut claims = base_claims("system", "feed");
    claims["exp"] = json!(now() - 3600);
    let reply = app.post(
        "Patient",
        &As::Token(sign(&keys().rsa, &claims)),
        &patient(&nir(), "A", "B", "1990"),
    );
    assert_eq!(reply.status, 401);
    let reply = app.post("Patient", &As::Nobody, &patient(&nir(), "A", "B", "1990"));
    assert_eq!(reply.status, 401);
    assert_eq!(app.data_rows(), before);
    assert_eq!(
        app.get("metadata", &As::Nobody).status,
        200,
        "the server keeps serving"
    );
}

#[test]
fn actors_outside_the_spec_get_no_health_data_r_acc_12() {
    let (app, id) = seeded();
    for actor in ["insurer", "employer", "bank"] {
        let reply = app.get(&format!("Patient/{id}"), &As::Other(actor.into()));
        assert_eq!(reply.status, 403, "{actor}: {}", reply.body);
        assert_eq!(reply.issue_code(), "forbidden");
        assert!(reply.body.contains("R-ACC-12"), "{}", reply.body);
        let reply = app.get("DocumentReference?status=current", &As::Other(actor.into()));
        assert_eq!(reply.status, 403);
    }
}

#[test]
fn only_the_system_creates_and_updates_patients() {
    let app = TestApp::new();
    let body = patient(&nir(), "Durand", "Paul", "1975-01-02");
    for who in [
        As::doctor(),
        As::Patient("p1".into()),
        As::Representative("p1".into()),
    ] {
        let reply = app.post("Patient", &who, &body);
        assert_eq!(reply.status, 403, "{who:?}: {}", reply.body);
        assert!(reply.body.contains("R-ACC-12"));
    }
    assert_eq!(app.data_rows(), 0);
    let id = app.create(&As::System, &body);
    let mut updated = body.clone();
    updated["id"] = json!(id);
    updated["gender"] = json!("male");
    assert_eq!(
        app.put(&format!("Patient/{id}"), &As::doctor(), &updated)
            .status,
        403
    );
    assert_eq!(
        app.put(&format!("Patient/{id}"), &As::System, &updated)
            .status,
        200
    );
}

#[test]
fn the_system_reads_nothing_medical_r_acc_12() {
    let (app, patient_id) = seeded();
    let document = crate::support::fixtures::document(&patient_id, "11488-4", "2024-01-01");
    let document_id = app.create(&As::System, &document);
    let reply = app.get(&format!("DocumentReference/{document_id}"), &As::System);
    assert_eq!(reply.status, 403, "{}", reply.body);
    let reply = app.get(
        &format!("DocumentReference?patient={patient_id}"),
        &As::System,
    );
    assert_eq!(reply.status, 403);
    assert_eq!(
        app.get(&format!("DocumentReference/{document_id}"), &As::doctor())
            .status,
        200
    );
}
