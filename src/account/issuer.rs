//! The server as a token issuer of its own (R-ACT-4): ES256 keys made at first
//! start and kept in the database (so that every instance sharing it signs and
//! verifies alike), published as a JWKS, and trusted beside the configured
//! issuers. The newest key that is not retired signs; every key that is not
//! retired verifies. `dmp-fhir-server issuer-key rotate` adds a key (it signs from
//! the next start; tokens of the older keys stay valid), `… retire <kid>` ends a
//! key (its tokens fail from the next start).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use serde_json::{Value, json};

use crate::store::Conn;
use crate::store::accounts as stored;

/// `iss` of the tokens this server issues.
pub const ISSUER: &str = "urn:dmp-fhir-server:account";
/// `aud` of the tokens this server issues: its FHIR API.
pub const AUDIENCE: &str = "urn:dmp-fhir-server:fhir";

struct SigningKey {
    kid: String,
    key: EncodingKey,
    jwk: Value,
}

/// The server's signing keys, newest first.
pub struct OwnIssuer {
    keys: Vec<SigningKey>,
}

/// A new P-256 key: its PKCS#8 PEM and its key id (the start of the SHA-256 of
/// its public point, in hex).
fn generate() -> Result<(String, String), String> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(|e| e.to_string())?;
    let key = EcKey::generate(&group).map_err(|e| e.to_string())?;
    let pem = PKey::from_ec_key(key)
        .and_then(|key| key.private_key_to_pem_pkcs8())
        .map_err(|e| e.to_string())?;
    let pem = String::from_utf8(pem).map_err(|e| e.to_string())?;
    let (_, jwk) = public_jwk("", &pem)?;
    let point = format!(
        "{}{}",
        jwk["x"].as_str().unwrap_or(""),
        jwk["y"].as_str().unwrap_or("")
    );
    // Hex: a key id is typed on command lines (`issuer-key retire <kid>`), where a
    // leading `-` would read as an option.
    let kid: String = openssl::sha::sha256(point.as_bytes())[..12]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok((kid, pem))
}

/// The public JWK of a stored key, and its encoding key.
fn public_jwk(kid: &str, pem: &str) -> Result<(EncodingKey, Value), String> {
    let key = PKey::private_key_from_pem(pem.as_bytes())
        .and_then(|key| key.ec_key())
        .map_err(|e| format!("an issuer key is not an EC key: {e}"))?;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(|e| e.to_string())?;
    let mut ctx = BigNumContext::new().map_err(|e| e.to_string())?;
    let point = key
        .public_key()
        .to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut ctx)
        .map_err(|e| e.to_string())?;
    if point.len() != 65 {
        return Err("an issuer key is not on P-256".into());
    }
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });
    let encoding =
        EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| format!("an issuer key: {e}"))?;
    Ok((encoding, jwk))
}

impl OwnIssuer {
    /// The keys in the database, made first when there are none.
    pub fn load_or_create(conn: &mut Conn, now: &str) -> Result<OwnIssuer, String> {
        let failed = |e: diesel::result::Error| format!("cannot read the issuer keys: {e}");
        if stored::issuer_keys(conn).map_err(failed)?.is_empty() {
            let (kid, pem) = generate()?;
            stored::insert_issuer_key(conn, &kid, &pem, now).map_err(failed)?;
        }
        let mut keys = Vec::new();
        for row in stored::issuer_keys(conn).map_err(failed)? {
            let (key, jwk) = public_jwk(&row.kid, &row.private_pem)?;
            keys.push(SigningKey {
                kid: row.kid,
                key,
                jwk,
            });
        }
        Ok(OwnIssuer { keys })
    }

    /// Adds a key, which signs from the next start.
    pub fn rotate(conn: &mut Conn, now: &str) -> Result<String, String> {
        let (kid, pem) = generate()?;
        stored::insert_issuer_key(conn, &kid, &pem, now)
            .map_err(|e| format!("cannot store the key: {e}"))?;
        Ok(kid)
    }

    /// The public keys, as a JWKS.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>() })
    }

    /// A token with these claims, signed by the newest key.
    pub fn sign(&self, claims: &Value) -> String {
        let key = self.keys.first().expect("the issuer has a key");
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.key).expect("ES256 signs any claims")
    }
}
