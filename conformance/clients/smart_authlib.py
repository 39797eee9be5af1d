"""SMART App Launch, standalone patient launch, with Authlib (PyPI) as the app's
OAuth client against the server (R-ACT-4): discovery, authorisation with PKCE S256
(the holder's side played by a plain HTTP session: sign-in, one-time code from the
file notification channel, consent with one scope left unticked), the code
exchanged, the space read through the granted scopes and refused beyond them, a
refresh (rotation; the old refresh token refused), revocation (the tokens refused).

Usage: smart_authlib.py BASE OUTBOX PATIENT_ID NIR
Exits 1 at the first step that does not behave."""

import html
import json
import re
import sys
import time
import urllib.parse

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

base, outbox, patient, nir = sys.argv[1:5]
CLIENT = "conformance-authlib"
REDIRECT = "http://127.0.0.1:8765/callback"
PASSWORD = "Conformite1!"
steps = 0


def check(condition, what):
    global steps
    if not condition:
        print(f"FAILED: {what}")
        sys.exit(1)
    steps += 1
    print(f"ok: {what}")


def code(kind, n):
    """The n-th code of this kind the gateway received."""
    for _ in range(500):
        try:
            with open(outbox) as lines:
                messages = [json.loads(line) for line in lines if line.strip()]
        except FileNotFoundError:
            messages = []
        found = [m for m in messages if m["kind"] == kind]
        if len(found) > n:
            return re.search(r"est ([A-Z0-9-]+)\.", found[n]["text"]).group(1)
        time.sleep(0.02)
    sys.exit(f"FAILED: no {kind} message")


def field(page, name):
    tag = re.search(r'<input[^>]*name="%s"[^>]*>' % re.escape(name), page).group(0)
    return html.unescape(re.search(r'value="([^"]*)"', tag).group(1))


# The holder's account, through the JSON API (R-ACT-1, R-ACT-2).
api = requests.Session()
asked = api.post(f"{base}/account/provisional-code", json={"nir": nir, "birthDate": "1980-04-02", "channel": "email"})
check(asked.status_code == 202, "a provisional code is asked for")
enrolment = api.post(f"{base}/account/first-sign-in", json={"nir": nir, "birthDate": "1980-04-02", "code": code("provisional-code", 0)})
check(enrolment.status_code == 200, "first sign-in with the provisional code")
ticket = enrolment.json()["ticket"]
contacts = api.post(f"{base}/account/contacts", json={"ticket": ticket, "email": enrolment.json()["email"], "mobile": "", "channel": "email"})
check(contacts.status_code == 200, "contacts confirmed")
credentials = api.post(f"{base}/account/credentials", json={"ticket": ticket, "identifiant": "authlib.holder", "password": PASSWORD, "passwordConfirmation": PASSWORD})
check(credentials.status_code == 200, "identifiant and password chosen")

# Discovery.
smart = requests.get(f"{base}/.well-known/smart-configuration").json()
check("S256" in smart["code_challenge_methods_supported"], "smart-configuration offers PKCE S256")

# The app: Authlib's OAuth 2.0 client, public, PKCE S256.
app = OAuth2Session(
    CLIENT,
    redirect_uri=REDIRECT,
    scope="launch/patient offline_access patient/DocumentReference.rs patient/Patient.rs",
    code_challenge_method="S256",
    token_endpoint_auth_method="none",
)
verifier = generate_token(64)
uri, state = app.create_authorization_url(smart["authorization_endpoint"], code_verifier=verifier, aud=base)

# The holder's browser. Browsers send `Secure` cookies to http://127.0.0.1 (a
# secure context); requests does not, so its jar is told the same after each answer.
class Browser(requests.Session):
    def request(self, *args, **kwargs):
        for cookie in self.cookies:
            cookie.secure = False
        return super().request(*args, **kwargs)


browser = Browser()
first = browser.get(uri, allow_redirects=False)
check(first.status_code == 303 and first.headers["Location"].startswith("/connexion?next="), "authorize sends the holder to sign in")
form = browser.get(base + first.headers["Location"])
check(form.status_code == 200 and "Content-Security-Policy" in form.headers, "the sign-in page, with its CSP")
challenge_page = browser.post(f"{base}/connexion", data={"csrf": field(form.text, "csrf"), "next": field(form.text, "next"), "identifiant": "authlib.holder", "password": PASSWORD}, allow_redirects=False)
check(challenge_page.status_code == 200, "the password is accepted")
signed_in = browser.post(
    f"{base}/connexion/code",
    data={"csrf": field(challenge_page.text, "csrf"), "next": field(challenge_page.text, "next"), "challenge": field(challenge_page.text, "challenge"), "code": code("sign-in-code", 0)},
    allow_redirects=False,
)
check(signed_in.status_code == 303, "the one-time code signs in")
consent = browser.get(base + signed_in.headers["Location"], allow_redirects=False)
check(consent.status_code == 200 and "Lire vos documents de santé" in consent.text, "the consent page lists the scopes in French")
decision = {name: field(consent.text, name) for name in ["csrf", "response_type", "client_id", "redirect_uri", "scope", "state", "aud", "code_challenge", "code_challenge_method"]}
decision["decision"] = "allow"
decision["granted"] = ["launch/patient", "offline_access", "patient/DocumentReference.rs"]
back = browser.post(f"{base}/oauth/authorize", data=decision, allow_redirects=False)
callback = back.headers.get("Location", "")
check(back.status_code == 303 and callback.startswith(REDIRECT + "?code="), "the holder's consent sends the browser back with a code")

# The app exchanges the code (Authlib checks the state and sends the verifier).
token = app.fetch_token(smart["token_endpoint"], authorization_response=callback, code_verifier=verifier)
check(token.get("patient") == patient and "refresh_token" in token, "the token names the patient and comes with a refresh token")
check(token["scope"].split() == ["launch/patient", "offline_access", "patient/DocumentReference.rs"], "the token carries the scopes ticked, no more")
documents = app.get(f"{base}/DocumentReference", params={"patient": patient}, headers={"Accept": "application/fhir+json"})
check(documents.status_code == 200 and documents.json()["resourceType"] == "Bundle", "a granted scope reads the space")
identity = app.get(f"{base}/Patient/{patient}", headers={"Accept": "application/fhir+json"})
check(identity.status_code == 403, "an unticked scope is refused (403)")
trace = app.get(f"{base}/AuditEvent", params={"patient": patient}, headers={"Accept": "application/fhir+json"})
check(trace.status_code == 403, "a scope never asked is refused (403)")

# Refresh: the refresh token changes; the old one is refused and ends the authorisation.
old_refresh = token["refresh_token"]
refreshed = app.refresh_token(smart["token_endpoint"])
check(refreshed["refresh_token"] != old_refresh, "a refresh gives a new refresh token")
check(app.get(f"{base}/DocumentReference", params={"patient": patient}).status_code == 200, "the refreshed token reads")

# Revocation (RFC 7009) of the refresh token ends the authorisation and its tokens.
revoked = app.revoke_token(smart["revocation_endpoint"], token=refreshed["refresh_token"], token_type_hint="refresh_token")
check(revoked.status_code == 200, "the app revokes its refresh token")
check(app.get(f"{base}/DocumentReference", params={"patient": patient}).status_code == 401, "its access token is refused at once")
try:
    app.refresh_token(smart["token_endpoint"], refresh_token=refreshed["refresh_token"])
    check(False, "a revoked refresh token is refused")
except Exception as error:  # Authlib raises the server's OAuth error
    check("invalid_grant" in str(error), "a revoked refresh token is refused (invalid_grant)")

print(f"{steps} steps: every SMART step behaved")
