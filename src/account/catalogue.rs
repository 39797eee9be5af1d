//! The catalogue of referenced apps (R-ACT-4): which OAuth clients may ask a
//! holder for access, where the holder's browser may be sent back to, and the
//! scopes each may ask for. Data, replaceable like the habilitation matrix
//! (`--app-catalogue`); the shipped one is empty. Every app is a public client
//! (no secret: a browser or phone app cannot keep one) and must use PKCE S256.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

const SHIPPED: &str = include_str!("../../fhir-profiles/app-catalogue.json");

/// One referenced app.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct App {
    pub client_id: String,
    /// Its name as the holder reads it on the consent page.
    pub name: String,
    /// Exact redirect URIs (compared as strings, RFC 6749 §3.1.2).
    pub redirect_uris: Vec<String>,
    /// The scopes it may ask for: `patient/…` resource scopes (SMART v1 or v2),
    /// `launch/patient`, `offline_access`, `openid`, `fhirUser` (not `online_access`:
    /// a refresh token here is not tied to a sign-in session).
    pub scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    #[serde(default, rename = "about")]
    _about: Option<String>,
    apps: Vec<App>,
}

#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    apps: HashMap<String, App>,
}

/// Whether a scope is one an app may be given: the holder's own space only
/// (`patient/…`), and the launch and refresh scopes.
pub fn is_patient_scope(scope: &str) -> bool {
    matches!(
        scope,
        "launch/patient" | "offline_access" | "openid" | "fhirUser"
    ) || scope
        .strip_prefix("patient/")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(resource, permissions)| {
            (resource == "*" || crate::fhir::definitions::resource(resource).is_some())
                && (matches!(permissions, "read" | "write" | "*")
                    || (!permissions.is_empty()
                        && permissions.len() <= 5
                        && permissions.chars().all(|c| "cruds".contains(c))))
        })
}

impl Catalogue {
    /// The catalogue at `path`, or the shipped (empty) one.
    pub fn load(path: Option<&Path>) -> Result<Catalogue, String> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    format!("cannot read the app catalogue {}: {error}", path.display())
                })?;
                Catalogue::parse(&text)
                    .map_err(|error| format!("invalid app catalogue {}: {error}", path.display()))
            }
            None => Catalogue::parse(SHIPPED)
                .map_err(|error| format!("invalid shipped app catalogue: {error}")),
        }
    }

    /// Parses and checks a catalogue: unique client ids, absolute redirect URIs
    /// without fragment (HTTPS, or HTTP to the loopback for native apps, RFC 8252),
    /// only patient scopes.
    pub fn parse(text: &str) -> Result<Catalogue, String> {
        let file: CatalogueFile = serde_json::from_str(text).map_err(|error| error.to_string())?;
        let mut apps = HashMap::new();
        for app in file.apps {
            let at = format!("app {:?}", app.client_id);
            if app.client_id.is_empty()
                || app.client_id.len() > 128
                || !app
                    .client_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(format!(
                    "{at}: a client id is 1 to 128 letters, digits, '-', '_' or '.'"
                ));
            }
            if app.name.trim().is_empty() {
                return Err(format!("{at}: it has no name"));
            }
            if app.redirect_uris.is_empty() {
                return Err(format!("{at}: it has no redirect URI"));
            }
            for uri in &app.redirect_uris {
                let loopback = [
                    "http://127.0.0.1:",
                    "http://127.0.0.1/",
                    "http://localhost:",
                    "http://localhost/",
                    "http://[::1]:",
                ]
                .iter()
                .any(|prefix| uri.starts_with(prefix));
                if !(uri.starts_with("https://") || loopback) || uri.contains('#') {
                    return Err(format!(
                        "{at}: redirect URI {uri:?} is not HTTPS (or HTTP to the loopback) without fragment"
                    ));
                }
            }
            for scope in &app.scopes {
                if !is_patient_scope(scope) {
                    return Err(format!(
                        "{at}: scope {scope:?} is not one an app may ask a holder for"
                    ));
                }
            }
            if apps.insert(app.client_id.clone(), app).is_some() {
                return Err(format!("{at}: a second app with this client id"));
            }
        }
        Ok(Catalogue { apps })
    }

    pub fn app(&self, client_id: &str) -> Option<&App> {
        self.apps.get(client_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalogue_is_empty_and_a_catalogue_is_checked() {
        assert!(Catalogue::load(None).unwrap().apps.is_empty());
        let app = |uri: &str, scope: &str| {
            format!(
                r#"{{"apps":[{{"clientId":"carnet","name":"Carnet","redirectUris":["{uri}"],"scopes":["{scope}"]}}]}}"#
            )
        };
        assert!(
            Catalogue::parse(&app(
                "https://carnet.example/cb",
                "patient/DocumentReference.rs"
            ))
            .is_ok()
        );
        assert!(Catalogue::parse(&app("http://127.0.0.1:8765/cb", "patient/*.read")).is_ok());
        assert!(Catalogue::parse(&app("http://carnet.example/cb", "patient/*.read")).is_err());
        assert!(Catalogue::parse(&app("https://carnet.example/cb#x", "patient/*.read")).is_err());
        assert!(Catalogue::parse(&app("https://carnet.example/cb", "user/*.read")).is_err());
        assert!(Catalogue::parse(&app("https://carnet.example/cb", "system/*.*")).is_err());
        assert!(Catalogue::parse(&app("https://carnet.example/cb", "patient/Nope.rs")).is_err());
        assert!(
            Catalogue::parse(&app("https://carnet.example/cb", "patient/Patient.xyz")).is_err()
        );
        // A refresh token here is not tied to a session: no `online_access`.
        assert!(Catalogue::parse(&app("https://carnet.example/cb", "online_access")).is_err());
    }
}
