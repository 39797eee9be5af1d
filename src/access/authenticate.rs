//! Bearer JWT authentication (SPEC §2, "Authentication contract"): RS256 or ES256
//! tokens, verified against the JWKS file of the issuer they name, with `iss`, `aud`,
//! `exp` and `nbf` checked, mapped to one [`Principal`].

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::directory::{ClientCertificate, Directory};
use super::principal::{ActorKind, Principal, PurposeOfUse, Standing};
use crate::config::TrustedIssuer;
use crate::error::ApiError;

struct VerificationKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

struct Issuer {
    audience: String,
    keys: Vec<VerificationKey>,
}

/// Verifies tokens of the configured issuers, and maps verified client certificates
/// to professionals through the directory.
pub struct Authenticator {
    issuers: HashMap<String, Issuer>,
    /// The server's own issuer, once trusted.
    own_issuer: Option<String>,
    directory: Option<Directory>,
    verified: VerifiedTokens,
}

/// Seconds of clock skew allowed on `exp` and `nbf`.
const LEEWAY: u64 = 30;

/// Tokens whose signature and claims were verified, by the SHA-256 of their text:
/// a client sends the same token with every request until it expires, and an RSA
/// verification costs more than the rest of a cached read. A hit still checks `exp`
/// and `nbf` against the clock; only the signature check is saved, and the same text
/// always carries the same signature.
struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], VerifiedToken>>,
}

#[derive(Clone)]
struct VerifiedToken {
    principal: Principal,
    exp: u64,
    nbf: Option<u64>,
}

/// Entries kept at most; the map is emptied when full (tokens are re-verified).
const VERIFIED_TOKENS_MAX: usize = 50_000;

impl VerifiedTokens {
    fn new() -> Self {
        VerifiedTokens {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], VerifiedToken>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The principal of a token verified before and still within its validity.
    fn get(&self, key: &[u8; 32], now: u64) -> Option<Principal> {
        let entry = self.lock().get(key).cloned()?;
        // `exp` comes from the token: it may be as large as u64::MAX.
        let current = now <= entry.exp.saturating_add(LEEWAY)
            && entry
                .nbf
                .is_none_or(|nbf| nbf <= now.saturating_add(LEEWAY));
        current.then_some(entry.principal)
    }

    fn put(&self, key: [u8; 32], token: VerifiedToken) {
        let mut entries = self.lock();
        if entries.len() >= VERIFIED_TOKENS_MAX {
            entries.clear();
        }
        entries.insert(key, token);
    }
}

/// A claim that is present, whatever its value (`null` included): `Some`.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// The scopes a token's `scope` and `scp` claims grant (R-ACC-13): `None` when it has
/// neither (not narrowed); a string of scopes or a list of strings each; anything
/// else (`null`, a number, an object) is a token this server cannot read, refused.
fn scopes_of(
    scope: Option<&serde_json::Value>,
    scp: Option<&serde_json::Value>,
) -> Result<Option<Vec<String>>, ApiError> {
    use serde_json::Value;
    if scope.is_none() && scp.is_none() {
        return Ok(None);
    }
    // Two claims would have to narrow together; a token says its scopes once.
    if scope.is_some() && scp.is_some() {
        return Err(ApiError::unauthorized(
            "the token carries both scope and scp: it says its scopes in one of them",
        ));
    }
    let unreadable = || {
        ApiError::unauthorized(
            "the token's scope (or scp) claim is neither a string of scopes nor a list of them",
        )
    };
    let mut scopes = Vec::new();
    for claim in [scope, scp].into_iter().flatten() {
        let texts: Vec<&str> = match claim {
            Value::String(text) => vec![text.as_str()],
            Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().ok_or_else(unreadable))
                .collect::<Result<_, _>>()?,
            _ => return Err(unreadable()),
        };
        for text in texts {
            if crate::fhir::has_forbidden_control(text) {
                return Err(unreadable());
            }
            scopes.extend(text.split_whitespace().map(str::to_owned));
        }
    }
    Ok(Some(scopes))
}

#[derive(Deserialize)]
struct Claims {
    /// Required (the validation refuses a token without it); optional here so that
    /// its absence is reported as such.
    exp: Option<f64>,
    nbf: Option<f64>,
    sub: String,
    iss: String,
    actor: String,
    patient: Option<String>,
    profession: Option<String>,
    specialty: Option<String>,
    organization: Option<String>,
    name: Option<String>,
    /// SMART's `scope` (a string), or `scp` (a string or a list, as some
    /// identity providers write it): present, even `null`, means narrowed.
    #[serde(default, deserialize_with = "present")]
    scope: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    scp: Option<serde_json::Value>,
    purpose_of_use: Option<String>,
    access_reason: Option<String>,
    client_id: Option<String>,
    azp: Option<String>,
    /// Tokens of the server's own issuer: the sign-in session.
    sid: Option<String>,
    /// Tokens of the server's own issuer: the app's authorisation.
    grant: Option<String>,
}

/// The RS256 and ES256 (P-256) keys of a JWKS; an error when it holds none, or
/// one of them cannot be used.
fn verification_keys(set: &JwkSet) -> Result<Vec<VerificationKey>, String> {
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let Some(algorithm) = key_algorithm(jwk) else {
            continue;
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|error| format!("unusable key: {error}"))?;
        keys.push(VerificationKey {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        });
    }
    if keys.is_empty() {
        return Err("it holds no RS256 or ES256 (P-256) key".into());
    }
    Ok(keys)
}

/// The algorithm a JWK is for: its `alg`, or what its key type implies.
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(KeyAlgorithm::RS256), AlgorithmParameters::RSA(_)) => Some(Algorithm::RS256),
        (Some(KeyAlgorithm::ES256), AlgorithmParameters::EllipticCurve(ec))
            if ec.curve == EllipticCurve::P256 =>
        {
            Some(Algorithm::ES256)
        }
        (None, AlgorithmParameters::RSA(_)) => Some(Algorithm::RS256),
        (None, AlgorithmParameters::EllipticCurve(ec)) if ec.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        _ => None,
    }
}

impl Authenticator {
    /// Loads every issuer's JWKS file. A missing or malformed file, or one with no
    /// usable RS256 / ES256 key, stops the start with a clear message.
    pub fn load(issuers: &[TrustedIssuer]) -> Result<Authenticator, String> {
        let mut loaded = HashMap::new();
        for issuer in issuers {
            let text = std::fs::read_to_string(&issuer.jwks).map_err(|error| {
                format!(
                    "cannot read JWKS file {} of issuer {}: {error}",
                    issuer.jwks.display(),
                    issuer.issuer
                )
            })?;
            let set: JwkSet = serde_json::from_str(&text).map_err(|error| {
                format!(
                    "invalid JWKS file {} of issuer {}: {error}",
                    issuer.jwks.display(),
                    issuer.issuer
                )
            })?;
            let keys = verification_keys(&set).map_err(|error| {
                format!(
                    "JWKS file {} of issuer {}: {error}",
                    issuer.jwks.display(),
                    issuer.issuer
                )
            })?;
            loaded.insert(
                issuer.issuer.clone(),
                Issuer {
                    audience: issuer.audience.clone(),
                    keys,
                },
            );
        }
        Ok(Authenticator {
            issuers: loaded,
            own_issuer: None,
            directory: None,
            verified: VerifiedTokens::new(),
        })
    }

    /// Trusts the server's own issuer (R-ACT-4) with its public keys. Its tokens
    /// stand on a sign-in session or an app's authorisation (`sid`, `grant`),
    /// which the pipeline checks is still current; one with neither is refused.
    pub fn trust_own_issuer(
        mut self,
        issuer: &str,
        audience: &str,
        jwks: &JwkSet,
    ) -> Result<Authenticator, String> {
        if self.issuers.contains_key(issuer) {
            return Err(format!(
                "the issuer {issuer} is the server's own: it cannot be configured"
            ));
        }
        let keys =
            verification_keys(jwks).map_err(|error| format!("the server's own keys: {error}"))?;
        self.issuers.insert(
            issuer.to_owned(),
            Issuer {
                audience: audience.to_owned(),
                keys,
            },
        );
        self.own_issuer = Some(issuer.to_owned());
        Ok(self)
    }

    /// Adds the professional directory that client certificates are looked up in.
    pub fn with_directory(mut self, directory: Directory) -> Authenticator {
        self.directory = Some(directory);
        self
    }

    /// Authenticates a request: its bearer token if it has one, else the client
    /// certificate the TLS layer verified (mutual TLS, SPEC §2).
    pub fn authenticate_request(
        &self,
        authorization: Option<&str>,
        certificate: Option<&ClientCertificate>,
    ) -> Result<Principal, ApiError> {
        match (authorization, certificate) {
            (None, Some(certificate)) => self.professional_of_certificate(certificate),
            _ => self.authenticate(authorization),
        }
    }

    fn professional_of_certificate(
        &self,
        certificate: &ClientCertificate,
    ) -> Result<Principal, ApiError> {
        let entry = self
            .directory
            .as_ref()
            .and_then(|directory| directory.find(&certificate.id_nat_ps))
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "the client certificate's holder is not in the professional directory",
                )
            })?;
        Ok(Principal {
            actor: ActorKind::Professional,
            subject: entry.id_nat_ps.clone(),
            issuer: "mutual-tls".to_owned(),
            patient: None,
            profession: Some(entry.profession.clone()),
            specialty: entry.specialty.clone(),
            organization: entry.organization.clone(),
            name: entry.name.clone(),
            scopes: None,
            purpose_of_use: PurposeOfUse::Normal,
            access_reason: None,
            client_id: None,
            standing: None,
        })
    }

    /// Authenticates the `Authorization` header's value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        let header = authorization.ok_or_else(|| {
            ApiError::unauthorized("authentication required: send Authorization: Bearer <token>")
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be a Bearer token")
            })?;
        let key = openssl::sha::sha256(token.as_bytes());
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(principal) = self.verified.get(&key, now) {
            return Ok(principal);
        }
        let token_header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::unauthorized("the bearer token is not a well-formed JWT"))?;
        if !matches!(token_header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(ApiError::unauthorized(
                "the token's algorithm is not accepted (RS256 or ES256)",
            ));
        }
        // The issuer is read before verification only to choose its keys; the
        // verification below pins `iss` to that issuer.
        let issuer_name = unverified_issuer(token)
            .ok_or_else(|| ApiError::unauthorized("the token names no issuer"))?;
        let issuer = self
            .issuers
            .get(&issuer_name)
            .ok_or_else(|| ApiError::unauthorized("the token's issuer is not trusted"))?;
        let mut validation = Validation::new(token_header.alg);
        validation.set_issuer(&[&issuer_name]);
        validation.set_audience(&[&issuer.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY;
        let candidates = issuer.keys.iter().filter(|key| {
            key.algorithm == token_header.alg
                && (token_header.kid.is_none() || key.kid.is_none() || key.kid == token_header.kid)
        });
        let mut last_error = None;
        for candidate in candidates {
            match jsonwebtoken::decode::<Claims>(token, &candidate.key, &validation) {
                Ok(data) => {
                    // NumericDate may be fractional; whole seconds are enough here.
                    let (exp, nbf) = (
                        data.claims.exp.unwrap_or(0.0) as u64,
                        data.claims.nbf.map(|nbf| nbf as u64),
                    );
                    let own = self.own_issuer.as_deref() == Some(issuer_name.as_str());
                    let principal = principal_from(data.claims, own)?;
                    self.verified.put(
                        key,
                        VerifiedToken {
                            principal: principal.clone(),
                            exp,
                            nbf,
                        },
                    );
                    return Ok(principal);
                }
                Err(error) => last_error = Some(error),
            }
        }
        let reason = match last_error.as_ref().map(|error| error.kind()) {
            Some(jsonwebtoken::errors::ErrorKind::ExpiredSignature) => "the token has expired",
            Some(jsonwebtoken::errors::ErrorKind::ImmatureSignature) => {
                "the token is not valid yet (nbf)"
            }
            Some(jsonwebtoken::errors::ErrorKind::InvalidAudience) => {
                "the token is not for this server (aud)"
            }
            Some(jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_)) => {
                "the token lacks a required claim (exp, iss, aud, sub)"
            }
            Some(jsonwebtoken::errors::ErrorKind::Json(_)) => {
                "the token's claims are malformed (actor and sub are required)"
            }
            None => "no key of the issuer matches the token",
            Some(_) => "the token's signature is invalid",
        };
        Err(ApiError::unauthorized(reason))
    }
}

fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct IssuerOnly {
        iss: String,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<IssuerOnly>(&bytes)
        .ok()
        .map(|claims| claims.iss)
}

/// The principal of verified claims; `own`: of the server's own issuer, whose
/// tokens stand on a session or an app's authorisation.
fn principal_from(claims: Claims, own: bool) -> Result<Principal, ApiError> {
    let scopes = scopes_of(claims.scope.as_ref(), claims.scp.as_ref())?;
    let texts = [
        Some(&claims.sub),
        Some(&claims.iss),
        Some(&claims.actor),
        claims.patient.as_ref(),
        claims.profession.as_ref(),
        claims.specialty.as_ref(),
        claims.organization.as_ref(),
        claims.name.as_ref(),
        claims.purpose_of_use.as_ref(),
        claims.access_reason.as_ref(),
        claims.client_id.as_ref(),
        claims.azp.as_ref(),
    ];
    if texts
        .into_iter()
        .flatten()
        .any(|text| crate::fhir::has_forbidden_control(text))
    {
        return Err(ApiError::unauthorized(
            "the token's claims carry control characters",
        ));
    }
    let actor = ActorKind::parse(&claims.actor);
    let purpose_of_use = match claims.purpose_of_use.as_deref() {
        None => PurposeOfUse::Normal,
        Some(code) => PurposeOfUse::parse(code).ok_or_else(|| {
            ApiError::unauthorized("purpose_of_use must be normal, bris_de_glace or centre_15")
        })?,
    };
    if matches!(actor, ActorKind::Patient | ActorKind::Representative) && claims.patient.is_none() {
        return Err(ApiError::unauthorized(
            "a patient or representative token must carry the patient claim",
        ));
    }
    if claims.sub.trim().is_empty() {
        return Err(ApiError::unauthorized("the token's sub claim is empty"));
    }
    let standing = match (own, claims.sid, claims.grant) {
        (false, _, _) => None,
        (true, Some(session), None) => Some(Standing::Session(session)),
        (true, None, Some(grant)) => Some(Standing::AppGrant(grant)),
        (true, _, _) => {
            return Err(ApiError::unauthorized(
                "the token stands on no session or authorisation",
            ));
        }
    };
    if actor == ActorKind::Professional && claims.profession.is_none() {
        return Err(ApiError::unauthorized(
            "a professional token must carry the profession claim",
        ));
    }
    Ok(Principal {
        actor,
        subject: claims.sub,
        issuer: claims.iss,
        patient: claims.patient,
        profession: claims.profession,
        specialty: claims.specialty,
        organization: claims.organization,
        name: claims.name,
        scopes,
        purpose_of_use,
        // A reason says something: at least one letter or digit (not only spaces,
        // zero-width or punctuation characters).
        access_reason: claims
            .access_reason
            .filter(|reason| reason.chars().any(char::is_alphanumeric)),
        client_id: claims.client_id.or(claims.azp),
        standing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        principal_from(
            Claims {
                exp: None,
                nbf: None,
                sub: "810000000001".into(),
                iss: "https://issuer.test".into(),
                actor: "professional".into(),
                patient: None,
                profession: Some("10".into()),
                specialty: None,
                organization: None,
                name: None,
                scope: None,
                scp: None,
                purpose_of_use: None,
                access_reason: None,
                client_id: None,
                azp: None,
                sid: None,
                grant: None,
            },
            false,
        )
        .unwrap()
    }

    #[test]
    fn a_cached_token_is_refused_once_expired_or_before_nbf() {
        let cache = VerifiedTokens::new();
        let key = [7u8; 32];
        cache.put(
            key,
            VerifiedToken {
                principal: principal(),
                exp: 1_000,
                nbf: Some(500),
            },
        );
        assert!(cache.get(&key, 900).is_some());
        assert!(cache.get(&key, 1_000 + LEEWAY).is_some());
        assert!(cache.get(&key, 1_001 + LEEWAY).is_none(), "expired");
        assert!(cache.get(&key, 400).is_none(), "not valid yet");
        assert!(cache.get(&[8u8; 32], 900).is_none(), "another token");
    }

    #[test]
    fn control_characters_in_claims_are_refused() {
        let claims = |patient: &str| Claims {
            exp: None,
            nbf: None,
            sub: "user-1".into(),
            iss: "https://issuer.test".into(),
            actor: "patient".into(),
            patient: Some(patient.into()),
            profession: None,
            specialty: None,
            organization: None,
            name: None,
            scope: None,
            scp: None,
            purpose_of_use: None,
            access_reason: None,
            client_id: None,
            azp: None,
            sid: None,
            grant: None,
        };
        let error = principal_from(claims("p\u{0}1"), false).expect_err("U+0000");
        assert_eq!(error.status.as_u16(), 401);
        assert!(principal_from(claims("p1"), false).is_ok());
    }

    /// R-ACT-4: a token of the server's own issuer stands on exactly one session
    /// or app authorisation; another issuer's `sid` means nothing here.
    #[test]
    fn the_servers_own_tokens_stand_on_a_session_or_a_grant() {
        let claims = |sid: Option<&str>, grant: Option<&str>| Claims {
            exp: None,
            nbf: None,
            sub: "account-1".into(),
            iss: "urn:dmp-fhir-server:account".into(),
            actor: "patient".into(),
            patient: Some("p1".into()),
            profession: None,
            specialty: None,
            organization: None,
            name: None,
            scope: None,
            scp: None,
            purpose_of_use: None,
            access_reason: None,
            client_id: None,
            azp: None,
            sid: sid.map(str::to_owned),
            grant: grant.map(str::to_owned),
        };
        assert_eq!(
            principal_from(claims(Some("s1"), None), true)
                .unwrap()
                .standing,
            Some(Standing::Session("s1".into()))
        );
        assert_eq!(
            principal_from(claims(None, Some("g1")), true)
                .unwrap()
                .standing,
            Some(Standing::AppGrant("g1".into()))
        );
        assert!(principal_from(claims(None, None), true).is_err());
        assert!(principal_from(claims(Some("s1"), Some("g1")), true).is_err());
        assert_eq!(
            principal_from(claims(Some("s1"), None), false)
                .unwrap()
                .standing,
            None
        );
    }

    #[test]
    fn a_cached_token_may_expire_at_the_end_of_time() {
        let cache = VerifiedTokens::new();
        let key = [9u8; 32];
        cache.put(
            key,
            VerifiedToken {
                principal: principal(),
                exp: u64::MAX,
                nbf: Some(u64::MAX),
            },
        );
        assert!(cache.get(&key, u64::MAX).is_some());
        assert!(cache.get(&key, 900).is_none(), "not valid yet");
    }
}
