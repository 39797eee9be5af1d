//! SMART App Launch, standalone patient launch (R-ACT-4): an app of the
//! catalogue sends the holder's browser to `authorize`; once signed in (R-ACT-3)
//! the holder sees the scopes asked in French and grants all or some of them; the
//! app exchanges the code, with its PKCE verifier, at `token` for an access token
//! (this server's own, `actor=patient`, the granted scopes, standing on the
//! authorisation) and, when it asked for `offline_access`, a refresh token, changed at each use. The holder revokes an app at any time; an
//! app revokes its own tokens at `revoke`. What the app may do is the intersection
//! of what the holder granted and the rules (R-ACC-13).

use chrono::TimeDelta;
use serde_json::{Value, json};

use super::catalogue::App;
use super::{AccountError, Accounts, Caller, Session, Traced, instant, issuer, secret};
use crate::audit::AccountStep;
use crate::error::ApiError;
use crate::store::accounts as stored;

/// An authorisation code lives one minute.
const CODE_LIFETIME: TimeDelta = TimeDelta::minutes(1);
/// An app's access token lives one hour (revocation ends it at once).
pub const APP_TOKEN_SECONDS: i64 = 3600;
/// A refresh token lives 30 days, and is replaced at each use.
const REFRESH_LIFETIME: TimeDelta = TimeDelta::days(30);

/// The query of an authorisation request.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeRequest {
    pub response_type: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: String,
    pub aud: String,
    pub code_challenge: String,
    pub code_challenge_method: String,
}

impl AuthorizeRequest {
    /// From the pairs of a query or form; a parameter given twice is refused
    /// (RFC 6749 §3.1), as is a value over 2,048 bytes.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<AuthorizeRequest, String> {
        let mut request = AuthorizeRequest::default();
        let mut seen = std::collections::HashSet::new();
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "response_type" => &mut request.response_type,
                "client_id" => &mut request.client_id,
                "redirect_uri" => &mut request.redirect_uri,
                "scope" => &mut request.scope,
                "state" => &mut request.state,
                "aud" => &mut request.aud,
                "code_challenge" => &mut request.code_challenge,
                "code_challenge_method" => &mut request.code_challenge_method,
                _ => continue,
            };
            if !seen.insert(name.clone()) {
                return Err(format!("the parameter {name} is given twice"));
            }
            if value.len() > 2048 {
                return Err(format!("the parameter {name} is too long"));
            }
            *slot = value.clone();
        }
        Ok(request)
    }

    /// The pairs again, to carry through the sign-in and consent forms.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("response_type", &self.response_type),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("scope", &self.scope),
            ("state", &self.state),
            ("aud", &self.aud),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
        ]
    }

    /// This request as the path and query of `authorize`.
    pub fn path(&self) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(
                self.pairs()
                    .into_iter()
                    .filter(|(_, value)| !value.is_empty()),
            )
            .finish();
        format!("/oauth/authorize?{query}")
    }
}

/// Why an authorisation request is refused.
#[derive(Debug, Clone)]
pub enum AuthorizeError {
    /// The client or its redirect URI is not known: the holder is told, the
    /// browser is sent nowhere (RFC 6749 §4.1.2.1).
    Shown(String),
    /// Anything else goes back to the app.
    Redirect(String),
}

/// An authorisation request checked: its app and the scopes it may be granted.
#[derive(Debug, Clone)]
pub struct Checked {
    pub request: AuthorizeRequest,
    pub app: App,
    /// The scopes asked that the app may be given, in the order asked.
    pub scopes: Vec<String>,
}

/// `redirect_uri` with these parameters added to its query.
pub fn redirect_to(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().filter(|(_, value)| !value.is_empty()))
        .finish();
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{separator}{query}")
}

fn error_redirect(request: &AuthorizeRequest, error: &str, description: &str) -> AuthorizeError {
    AuthorizeError::Redirect(redirect_to(
        &request.redirect_uri,
        &[
            ("error", error),
            ("error_description", description),
            ("state", &request.state),
        ],
    ))
}

/// The longest `scope` a refresh may carry (the catalogue's apps ask for a few
/// dozen characters).
const MAX_SCOPE_LENGTH: usize = 1024;

/// The scopes an access token of a refresh carries: those `granted` that were
/// `asked` (an empty request keeps every one granted), in the grant's order;
/// `None` when none asked was granted. Never more than the grant: client
/// libraries (Authlib) ask again for every scope they first asked, granted or
/// not, and get those granted.
fn narrowed_scopes(granted: &str, asked: &str) -> Option<String> {
    let asked: Vec<&str> = asked.split_whitespace().collect();
    if asked.is_empty() {
        return Some(granted.to_owned());
    }
    let kept: Vec<&str> = granted
        .split_whitespace()
        .filter(|held| asked.contains(held))
        .collect();
    (!kept.is_empty()).then(|| kept.join(" "))
}

/// What a scope lets an app do, in French, for the consent page.
pub fn scope_in_french(scope: &str) -> String {
    match scope {
        "launch/patient" => return "Savoir de quel espace santé il s'agit (le vôtre)".into(),
        "offline_access" => return "Garder l'accès quand vous n'êtes pas connecté(e), jusqu'à ce que vous le retiriez".into(),
        "openid" | "fhirUser" => return "Connaître votre identité dans Mon espace santé".into(),
        _ => {}
    }
    let Some((resource, permissions)) = scope
        .strip_prefix("patient/")
        .and_then(|rest| rest.split_once('.'))
    else {
        return scope.to_owned();
    };
    let what = match resource {
        "*" => "toutes les données de votre espace",
        "Patient" => "votre identité (nom, date de naissance, INS)",
        "DocumentReference" => "vos documents de santé (leur description)",
        "Binary" => "le contenu de vos documents",
        "Consent" => "vos paramètres de confidentialité",
        "Communication" => "vos messages",
        "AuditEvent" => "l'historique des accès à votre espace",
        "List" => "les lots de documents",
        "Observation" => "vos mesures (taille, poids…)",
        "Condition" => "vos maladies et sujets de santé",
        "MedicationStatement" => "vos traitements",
        "AllergyIntolerance" => "vos allergies",
        other => other,
    };
    let verbs: Vec<&str> = match permissions {
        "read" => vec!["lire"],
        "write" => vec!["créer", "modifier", "supprimer"],
        "*" => vec!["lire", "créer", "modifier", "supprimer"],
        letters => letters
            .chars()
            .filter_map(|letter| match letter {
                'c' => Some("créer"),
                'r' | 's' => Some("lire"),
                'u' => Some("modifier"),
                'd' => Some("supprimer"),
                _ => None,
            })
            .fold(Vec::new(), |mut verbs, verb| {
                if !verbs.contains(&verb) {
                    verbs.push(verb);
                }
                verbs
            }),
    };
    let verbs = match verbs.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} et {last}", rest.join(", ")),
    };
    let mut text = format!("{verbs} {what}");
    if let Some(first) = text.get(..1) {
        text = format!("{}{}", first.to_uppercase(), &text[1..]);
    }
    text
}

/// An OAuth error of the token and revocation endpoints (RFC 6749 §5.2).
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn new(error: &'static str, description: &str) -> OAuthError {
        OAuthError {
            status: if error == "invalid_client" { 401 } else { 400 },
            error,
            description: description.to_owned(),
        }
    }

    pub fn body(&self) -> Value {
        json!({ "error": self.error, "error_description": self.description })
    }
}

impl super::Refusal for OAuthError {
    fn status(&self) -> u16 {
        self.status
    }

    fn message(&self) -> String {
        format!("{}: {}", self.error, self.description)
    }

    fn failed(error: ApiError) -> Self {
        tracing::error!(%error, "a token step failed");
        OAuthError {
            status: 500,
            error: "server_error",
            description: "the server failed; try again".into(),
        }
    }
}

impl From<AccountError> for OAuthError {
    fn from(error: AccountError) -> OAuthError {
        OAuthError {
            status: error.status,
            error: if error.status == 429 {
                "slow_down"
            } else {
                "server_error"
            },
            description: error.message,
        }
    }
}

/// PKCE S256: BASE64URL(SHA-256(verifier)) (RFC 7636 §4.2).
fn s256(verifier: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(openssl::sha::sha256(verifier.as_bytes()))
}

/// A PKCE code verifier or challenge: 43 to 128 unreserved characters.
fn is_pkce_text(text: &str) -> bool {
    (43..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

impl Accounts {
    /// Checks an authorisation request (`fhir_base`: this server's FHIR base URL,
    /// which `aud` must name).
    pub fn check_authorize(
        &self,
        request: AuthorizeRequest,
        fhir_base: &str,
    ) -> Result<Checked, AuthorizeError> {
        let Some(app) = self.inner.catalogue.app(&request.client_id).cloned() else {
            return Err(AuthorizeError::Shown(
                "Cette application n'est pas référencée dans le catalogue de Mon espace santé."
                    .into(),
            ));
        };
        if !app.redirect_uris.contains(&request.redirect_uri) {
            return Err(AuthorizeError::Shown(
                "L'adresse de retour demandée n'est pas celle de cette application.".into(),
            ));
        }
        if request.response_type != "code" {
            return Err(error_redirect(
                &request,
                "unsupported_response_type",
                "response_type must be code",
            ));
        }
        if request.code_challenge_method != "S256" || !is_pkce_text(&request.code_challenge) {
            return Err(error_redirect(
                &request,
                "invalid_request",
                "PKCE is required: code_challenge with code_challenge_method S256",
            ));
        }
        if request.aud.trim_end_matches('/') != fhir_base.trim_end_matches('/') {
            return Err(error_redirect(
                &request,
                "invalid_request",
                "aud must be this server's FHIR base URL",
            ));
        }
        let scopes: Vec<String> = request
            .scope
            .split_whitespace()
            .filter(|scope| app.scopes.iter().any(|allowed| allowed == scope))
            .map(str::to_owned)
            .fold(Vec::new(), |mut scopes, scope| {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
                scopes
            });
        if scopes.is_empty() {
            return Err(error_redirect(
                &request,
                "invalid_scope",
                "no scope asked is one this app may be granted",
            ));
        }
        Ok(Checked {
            request,
            app,
            scopes,
        })
    }

    /// The holder's answer on the consent page: the scopes ticked (among those the
    /// request may be granted) give an authorisation and a code for the app; none
    /// ticked, or a refusal, sends `access_denied`. Returns where the browser goes.
    pub fn decide_authorize(
        &self,
        caller: &Caller,
        session: &Session,
        checked: &Checked,
        approved: Option<&[String]>,
    ) -> Result<String, AccountError> {
        let request = &checked.request;
        let granted: Vec<&String> = match approved {
            Some(approved) => checked
                .scopes
                .iter()
                .filter(|scope| approved.contains(scope))
                .collect(),
            None => Vec::new(),
        };
        if granted.is_empty() {
            return Ok(redirect_to(
                &request.redirect_uri,
                &[
                    ("error", "access_denied"),
                    ("error_description", "the holder did not authorise the app"),
                    ("state", &request.state),
                ],
            ));
        }
        let code = secret::token();
        let grant_id = uuid::Uuid::new_v4().to_string();
        let scopes = granted
            .iter()
            .map(|scope| scope.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let now = self.now();
        self.step::<(), AccountError>(
            caller,
            &AccountStep::APP_AUTHORISED,
            |conn, traced: &mut Traced| {
                traced.holder(&session.account, &session.patient);
                stored::insert_grant(
                    conn,
                    &grant_id,
                    &session.account,
                    &checked.app.client_id,
                    &scopes,
                    &instant(now),
                )?;
                stored::insert_oauth_code(
                    conn,
                    &secret::sha256_hex(&code),
                    &grant_id,
                    &request.redirect_uri,
                    &request.code_challenge,
                    &instant(now + CODE_LIFETIME),
                )?;
                Ok(Ok(()))
            },
        )?;
        Ok(redirect_to(
            &request.redirect_uri,
            &[("code", &code), ("state", &request.state)],
        ))
    }

    /// The token endpoint: `authorization_code` (with the PKCE verifier) or
    /// `refresh_token`. A code or refresh token presented twice revokes its
    /// authorisation (it was stolen, or the app is broken).
    pub fn token(&self, caller: &Caller, form: &[(String, String)]) -> Result<Value, OAuthError> {
        let mut fields = std::collections::HashMap::new();
        for (name, value) in form {
            if fields.insert(name.as_str(), value.as_str()).is_some() {
                return Err(OAuthError::new(
                    "invalid_request",
                    "a parameter is given twice",
                ));
            }
        }
        let field = |name: &str| fields.get(name).copied().unwrap_or("");
        let client_id = field("client_id");
        let Some(app) = self.inner.catalogue.app(client_id).cloned() else {
            return Err(OAuthError::new("invalid_client", "unknown client_id"));
        };
        self.limit(caller, "token", super::IDENTITY_TRIES)?;
        match field("grant_type") {
            "authorization_code" => self.exchange_code(
                caller,
                &app,
                field("code"),
                field("redirect_uri"),
                field("code_verifier"),
            ),
            "refresh_token" => {
                self.exchange_refresh(caller, &app, field("refresh_token"), field("scope"))
            }
            "" => Err(OAuthError::new("invalid_request", "grant_type is required")),
            _ => Err(OAuthError::new(
                "unsupported_grant_type",
                "authorization_code or refresh_token",
            )),
        }
    }

    fn exchange_code(
        &self,
        caller: &Caller,
        app: &App,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<Value, OAuthError> {
        if code.is_empty() || code.len() > 128 || !is_pkce_text(verifier) {
            return Err(OAuthError::new(
                "invalid_request",
                "code and a PKCE code_verifier are required",
            ));
        }
        let hash = secret::sha256_hex(code);
        let now = self.now();
        let invalid = |description: &str| Err(OAuthError::new("invalid_grant", description));
        self.step::<Value, OAuthError>(caller, &AccountStep::TOKEN_ISSUED, |conn, traced| {
            let Some(row) = stored::oauth_code(conn, &hash)? else {
                return Ok(invalid("unknown code"));
            };
            let Some(grant) = stored::grant(conn, &row.grant_id)? else {
                return Ok(invalid("unknown code"));
            };
            let Some(account) = stored::account_by_id(conn, &grant.account_id)? else {
                return Ok(invalid("unknown code"));
            };
            traced.holder(&account.id, &account.patient_id);
            if grant.client_id != app.client_id {
                return Ok(invalid("the code was not issued to this client"));
            }
            if row.used_at.is_some() {
                stored::revoke_grant(conn, &grant.id, &instant(now))?;
                return Ok(invalid(
                    "the code was used already: the authorisation is revoked",
                ));
            }
            if row.expires_at <= instant(now) || grant.revoked_at.is_some() {
                return Ok(invalid("the code has expired"));
            }
            if row.redirect_uri != redirect_uri {
                return Ok(invalid(
                    "redirect_uri differs from the authorisation request's",
                ));
            }
            if !secret::same(&s256(verifier), &row.code_challenge) {
                return Ok(invalid(
                    "the code_verifier does not match the code_challenge",
                ));
            }
            // Presented twice at once: the other presentation spent it between the
            // read and this write, and it is revoked as if presented after.
            if stored::use_oauth_code(conn, &hash, &instant(now))? != 1 {
                stored::revoke_grant(conn, &grant.id, &instant(now))?;
                return Ok(invalid(
                    "the code was used already: the authorisation is revoked",
                ));
            }
            let refresh = self.refresh_for(conn, &grant, now)?;
            Ok(Ok(self.app_token(&account, &grant, refresh)))
        })
    }

    /// RFC 6749 §6: a refresh may ask for fewer scopes than were granted (the
    /// access token then carries those only; the authorisation and its next
    /// refresh token keep every scope granted); it is never given one not
    /// granted ([`narrowed_scopes`]).
    fn exchange_refresh(
        &self,
        caller: &Caller,
        app: &App,
        refresh: &str,
        scope: &str,
    ) -> Result<Value, OAuthError> {
        if refresh.is_empty() || refresh.len() > 128 {
            return Err(OAuthError::new(
                "invalid_request",
                "refresh_token is required",
            ));
        }
        if scope.len() > MAX_SCOPE_LENGTH {
            return Err(OAuthError::new("invalid_request", "scope is too long"));
        }
        let hash = secret::sha256_hex(refresh);
        let now = self.now();
        let invalid = |description: &str| Err(OAuthError::new("invalid_grant", description));
        self.step::<Value, OAuthError>(caller, &AccountStep::TOKEN_ISSUED, |conn, traced| {
            let Some(row) = stored::refresh(conn, &hash)? else {
                return Ok(invalid("unknown refresh token"));
            };
            let Some(grant) = stored::grant(conn, &row.grant_id)? else {
                return Ok(invalid("unknown refresh token"));
            };
            let Some(account) = stored::account_by_id(conn, &grant.account_id)? else {
                return Ok(invalid("unknown refresh token"));
            };
            traced.holder(&account.id, &account.patient_id);
            if grant.client_id != app.client_id {
                return Ok(invalid("the refresh token was not issued to this client"));
            }
            if row.used_at.is_some() {
                stored::revoke_grant(conn, &grant.id, &instant(now))?;
                return Ok(invalid(
                    "the refresh token was used already: the authorisation is revoked",
                ));
            }
            if grant.revoked_at.is_some() || row.expires_at <= instant(now) {
                return Ok(invalid("the authorisation has ended"));
            }
            // Checked before the token is spent: a refused scope leaves it good.
            let scopes = match narrowed_scopes(&grant.scopes, scope) {
                Some(scopes) => scopes,
                None => {
                    return Ok(Err(OAuthError::new(
                        "invalid_scope",
                        "no scope asked was granted to this app",
                    )));
                }
            };
            // Presented twice at once: as above.
            if stored::use_refresh(conn, &hash, &instant(now))? != 1 {
                stored::revoke_grant(conn, &grant.id, &instant(now))?;
                return Ok(invalid(
                    "the refresh token was used already: the authorisation is revoked",
                ));
            }
            let next = self.refresh_for(conn, &grant, now)?;
            Ok(Ok(self.app_token_with(&account, &grant, &scopes, next)))
        })
    }

    /// A new refresh token of the grant, when it holds `offline_access`.
    fn refresh_for(
        &self,
        conn: &mut crate::store::Conn,
        grant: &stored::GrantRow,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<String>, ApiError> {
        let refreshes = grant
            .scopes
            .split_whitespace()
            .any(|scope| scope == "offline_access");
        if !refreshes {
            return Ok(None);
        }
        let token = secret::token();
        stored::insert_refresh(
            conn,
            &secret::sha256_hex(&token),
            &grant.id,
            &instant(now + REFRESH_LIFETIME),
        )?;
        Ok(Some(token))
    }

    /// The token response for an app, with every scope of its grant.
    fn app_token(
        &self,
        account: &stored::AccountRow,
        grant: &stored::GrantRow,
        refresh: Option<String>,
    ) -> Value {
        self.app_token_with(account, grant, &grant.scopes, refresh)
    }

    /// The token response for an app, its access token carrying `scopes` (those
    /// of its grant, or fewer).
    fn app_token_with(
        &self,
        account: &stored::AccountRow,
        grant: &stored::GrantRow,
        scopes: &str,
        refresh: Option<String>,
    ) -> Value {
        let issued = chrono::Utc::now().timestamp();
        let claims = json!({
            "iss": issuer::ISSUER,
            "aud": issuer::AUDIENCE,
            "sub": account.id,
            "actor": "patient",
            "patient": account.patient_id,
            "scope": scopes,
            "client_id": grant.client_id,
            "grant": grant.id,
            "iat": issued,
            "nbf": issued,
            "exp": issued + APP_TOKEN_SECONDS,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let mut answer = json!({
            "access_token": self.inner.issuer.sign(&claims),
            "token_type": "Bearer",
            "expires_in": APP_TOKEN_SECONDS,
            "scope": scopes,
            "patient": account.patient_id,
        });
        if let Some(refresh) = refresh {
            answer["refresh_token"] = json!(refresh);
        }
        answer
    }

    /// RFC 7009: an app revokes a token it holds (a refresh token, or an access
    /// token of this server's): its whole authorisation ends. Unknown tokens are
    /// answered alike.
    pub fn revoke_token(
        &self,
        caller: &Caller,
        form: &[(String, String)],
    ) -> Result<(), OAuthError> {
        let field = |name: &str| {
            form.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
                .unwrap_or("")
        };
        let Some(app) = self.inner.catalogue.app(field("client_id")).cloned() else {
            return Err(OAuthError::new("invalid_client", "unknown client_id"));
        };
        let token = field("token");
        if token.is_empty() || token.len() > 4096 {
            return Err(OAuthError::new("invalid_request", "token is required"));
        }
        self.limit(caller, "token", super::IDENTITY_TRIES)?;
        let grant_of_access = self.grant_of_access_token(token);
        let now = self.now();
        self.step::<(), OAuthError>(caller, &AccountStep::APP_REVOKED, |conn, traced| {
            let grant_id = match &grant_of_access {
                Some(grant) => Some(grant.clone()),
                None => stored::refresh(conn, &secret::sha256_hex(token))?.map(|row| row.grant_id),
            };
            let Some(grant) = grant_id
                .map(|id| stored::grant(conn, &id))
                .transpose()?
                .flatten()
            else {
                return Ok(Ok(()));
            };
            if grant.client_id != app.client_id {
                return Ok(Ok(()));
            }
            if let Some(account) = stored::account_by_id(conn, &grant.account_id)? {
                traced.holder(&account.id, &account.patient_id);
            }
            stored::revoke_grant(conn, &grant.id, &instant(now))?;
            Ok(Ok(()))
        })
    }

    /// The grant an access token of this server's stands on, if its signature
    /// verifies.
    fn grant_of_access_token(&self, token: &str) -> Option<String> {
        let jwks: jsonwebtoken::jwk::JwkSet =
            serde_json::from_value(self.inner.issuer.jwks()).ok()?;
        let header = jsonwebtoken::decode_header(token).ok()?;
        let jwk = jwks.find(header.kid.as_deref()?)?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).ok()?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&[issuer::AUDIENCE]);
        validation.set_issuer(&[issuer::ISSUER]);
        // A token past its expiry is still revocable.
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .ok()?
            .claims;
        claims["grant"].as_str().map(str::to_owned)
    }

    /// The apps the holder authorised, that still stand.
    pub fn apps(&self, session: &Session) -> Result<Vec<(stored::GrantRow, String)>, AccountError> {
        let grants = self
            .inner
            .db
            .read_blocking(|conn| Ok(stored::live_grants_of(conn, &session.account)?))?;
        Ok(grants
            .into_iter()
            .map(|grant| {
                let name = self
                    .inner
                    .catalogue
                    .app(&grant.client_id)
                    .map_or_else(|| grant.client_id.clone(), |app| app.name.clone());
                (grant, name)
            })
            .collect())
    }

    /// The holder revokes every authorisation they gave an app: its tokens are
    /// refused from now on.
    pub fn revoke_app(
        &self,
        caller: &Caller,
        session: &Session,
        client_id: &str,
    ) -> Result<usize, AccountError> {
        if client_id.len() > 128 {
            return Err(AccountError::invalid("clientId", "Application inconnue."));
        }
        let now = instant(self.now());
        self.step(caller, &AccountStep::APP_REVOKED, |conn, traced| {
            traced.holder(&session.account, &session.patient);
            Ok(Ok(stored::revoke_client_grants(
                conn,
                &session.account,
                client_id,
                &now,
            )?))
        })
    }
}
