#!/usr/bin/env python3
"""The ANS PDSm / PDSm4DMP client requests (SPEC §10), sent as the guides publish them:
the JSON examples of conformance/pdsm/examples/ and the requests written in the
PDSm4DMP pages (TD0.2, TD3.1a/b, TD3.2, TD3.3a–d), the guides' placeholder INS
replaced by the run's and nothing else changed. Each outcome is checked (status, then
the stored result read back); the report lists every step. Exits non-zero if a step
does not behave.

Usage: pdsm.py BASE_URL EXAMPLES_DIR REPORT_FILE
Environment: TOKEN_DOCTOR (the médecin traitant of the space, IdNat_PS 810000000001),
TOKEN_PATIENT (its holder), TOKEN_STRANGER (a professional with no authorisation),
SPACE (the space's Patient id), NIR (its INS).
"""
import base64
import hashlib
import json
import os
import pathlib
import sys
import urllib.error
import urllib.parse
import urllib.request

PLACEHOLDER = "123456789012345"
INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
TRE_A07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ARCHIVED = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"
LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"

base, examples_dir, report_file = sys.argv[1:4]
examples = pathlib.Path(examples_dir)
doctor = os.environ["TOKEN_DOCTOR"]
holder = os.environ["TOKEN_PATIENT"]
stranger = os.environ["TOKEN_STRANGER"]
space = os.environ["SPACE"]
nir = os.environ["NIR"]
by_ins = f"patient.identifier={INS_SYSTEM}|{nir}"

results = []


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {name.lower(): value for name, value in headers.items()}
        self.body = body

    def json(self):
        return json.loads(self.body or b"null")


def call(method, path, token, body=None, content_type="application/fhir+json", accept="application/fhir+json"):
    url = path if path.startswith("http") else f"{base}/{path.lstrip('/')}"
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if accept:
        request.add_header("Accept", accept)
    if data is not None:
        request.add_header("Content-Type", content_type)
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read())


def example(name):
    """A published example with the run's INS for the placeholder."""
    return json.loads((examples / name).read_text().replace(PLACEHOLDER, nir))


def step(name, reply, expected, check=None):
    """Records one request: its status, then what `check` reads back."""
    problems = []
    if reply.status != expected:
        problems.append(f"status {reply.status}, expected {expected}: {reply.body[:300]!r}")
    elif check is not None:
        try:
            outcome = check(reply)
            if outcome:
                problems.append(outcome)
        except Exception as error:  # a failed read-back is the step's failure
            problems.append(f"read back failed: {error!r}")
    results.append((name, reply.status, problems))
    print(f"{'ok ' if not problems else 'FAIL'} {name} ({reply.status})" + (f": {problems}" if problems else ""))
    return reply


def ids(bundle_reply):
    return sorted(
        entry["resource"]["id"]
        for entry in bundle_reply.json().get("entry", [])
        if entry.get("search", {}).get("mode") == "match"
    )


def td31a(token=doctor):
    return call("GET", f"DocumentReference?{by_ins}&status=current", token)


def located(reply):
    return [entry["response"]["location"].split("/_history")[0] for entry in reply.json()["entry"]]


def require(condition, message):
    if not condition:
        raise AssertionError(message)


# TD0.2: does the person have a space, in which state.
def td02_check(reply):
    bundle = reply.json()
    require(bundle["total"] == 1, f"total {bundle['total']}")
    patient = bundle["entry"][0]["resource"]
    require(patient["id"] == space and patient.get("active") is True, "active space")


step("TD0.2 Patient?identifier=INS", call("GET", f"Patient?identifier={INS_SYSTEM}|{nir}", doctor), 200, td02_check)

# The documents the TD3.3 pages act on (uniqueIds …101 and …102), as the TD3.1a page
# shows them stored. As published they cannot be stored: their `subject` is a
# truncated conditional reference (`Patient?identifier=<system>` without the INS),
# which matches no Patient (422), and the prescription's `attachment.hash` is not
# base64 (400). The run stores them with the INS completed and a well-formed hash
# (their content is not on this server, so it is not compared), the only changes it
# makes to them.
stored = {}
for name, bad_hash in [
    ("DocumentReference-example-td3-1a-cr-consultation.json", False),
    ("DocumentReference-example-td3-1a-ordonnance.json", True),
]:
    document = example(name)
    document.pop("id", None)
    step(f"{name} as published: truncated conditional subject", call("POST", "DocumentReference", doctor, document), 422)
    document["subject"] = {"reference": f"Patient?identifier={INS_SYSTEM}|{nir}"}
    if bad_hash:
        step(f"{name}, INS completed: its hash is not base64", call("POST", "DocumentReference", doctor, document), 400)
        document["content"][0]["attachment"]["hash"] = "2jmj7l5rSw0yVb/vlWAYkK/YBwk="
    reply = step(f"{name}, stored for TD3.3", call("POST", "DocumentReference", doctor, document), 201)
    stored[document["masterIdentifier"]["value"]] = reply.json().get("id")

# TD2: ITI-65 Provide Document Bundle.
td2 = example("Bundle-example-td2-iti65-lot-soumission.json")
binary_bytes = base64.b64decode(td2["entry"][2]["resource"]["data"])
documents_before = None


def td2_check(reply):
    response = reply.json()
    require(response["type"] == "transaction-response", response["type"])
    statuses = [entry["response"]["status"] for entry in response["entry"]]
    require(all(status.startswith("201") for status in statuses), statuses)
    list_ref, document_ref, binary_ref = located(reply)
    require(list_ref.startswith("List/") and document_ref.startswith("DocumentReference/") and binary_ref.startswith("Binary/"), located(reply))
    document = call("GET", document_ref, doctor).json()
    require(document["subject"]["reference"] == f"Patient/{space}", document["subject"])
    require(document["content"][0]["attachment"]["url"] == binary_ref, document["content"][0]["attachment"]["url"])
    submission = call("GET", list_ref, doctor).json()
    require(submission["entry"][0]["item"]["reference"] == document_ref, submission.get("entry"))
    stored["td2"] = (list_ref, document_ref, binary_ref)


step("TD2 ITI-65 Provide Document Bundle", call("POST", "", doctor, td2), 200, td2_check)
count_before = len(ids(td31a()))
step("TD2 again: the same uniqueId (R-MHD-2)", call("POST", "", doctor, td2), 409,
     lambda reply: None if len(ids(td31a())) == count_before else "something was stored")

# ITI-105 Simplified Publish.
simplified = example("DocumentReference-example-td2-iti105-publication-simplifiee.json")
simplified.pop("id", None)
step("TD2 ITI-105 Simplified Publish", call("POST", "DocumentReference", doctor, simplified), 201,
     lambda reply: None if reply.json()["subject"]["reference"] == f"Patient/{space}" else reply.json()["subject"])

# TD2.1: replacement. doc-x-id is published as it is after TD2.1 (superseded); it is
# stored as it was before (current), the one change the run makes.
original = example("DocumentReference-doc-x-id.json")
original["status"] = "current"
step("TD2.1 the document to replace (PUT doc-x-id)", call("PUT", "DocumentReference/doc-x-id", doctor, original), 201)


def td21_check(reply):
    replaced = call("GET", "DocumentReference/doc-x-id", doctor).json()
    require(replaced["status"] == "superseded", replaced["status"])
    new = call("GET", located(reply)[1], doctor).json()
    require(new["relatesTo"][0]["target"]["reference"] == "DocumentReference/doc-x-id", new["relatesTo"])
    stored["td21"] = located(reply)[1]


step("TD2.1 ITI-65 replacement", call("POST", "", doctor, example("Bundle-example-td2-1-remplacement.json")), 200, td21_check)

# TD3.1a / TD3.1b: ITI-67.
expected_current = sorted(
    [stored["td2"][1].split("/")[1], stored["td21"].split("/")[1]]
    + [value for key, value in stored.items() if key.startswith("urn:oid")]
)


def td31a_check(reply):
    found = set(ids(reply))
    require(set(expected_current) <= found, f"{expected_current} not all in {found}")
    require("doc-x-id" not in found, "the superseded document is listed as current")


step("TD3.1a ITI-67 patient.identifier & status=current", td31a(), 200, td31a_check)
step("TD3.1b ITI-67 identifier (uniqueId)",
     call("GET", f"DocumentReference?{by_ins}&identifier=urn:ietf:rfc:3986|urn:oid:1.2.250.1.213.1.4.8.99999.0", doctor), 200,
     lambda reply: None if ids(reply) == ["doc-x-id"] else ids(reply))

# TD3.2: ITI-68, in the document's own type, then as a Binary resource.
binary_ref = stored["td2"][2]


def raw_check(reply):
    require(reply.headers.get("content-type", "").startswith("application/xml"), reply.headers.get("content-type"))
    require(reply.body == binary_bytes, "bytes differ")
    digest = base64.b64encode(hashlib.sha1(reply.body).digest()).decode()
    require(digest == td2["entry"][1]["resource"]["content"][0]["attachment"]["hash"], digest)
    require(reply.headers.get("x-content-type-options") == "nosniff", "nosniff")


step("TD3.2 ITI-68 Accept: application/xml", call("GET", binary_ref, doctor, accept="application/xml"), 200, raw_check)
step("TD3.2 ITI-68 Accept: application/fhir+json", call("GET", binary_ref, doctor), 200,
     lambda reply: None if reply.json()["resourceType"] == "Binary" else reply.json()["resourceType"])

# ITI-66: the SubmissionSets of the space.
step("ITI-66 List?patient.identifier & code=submissionset",
     call("GET", f"List?{by_ins}&code={LIST_TYPES}|submissionset", doctor), 200,
     lambda reply: None if len(ids(reply)) == 2 else ids(reply))

# TD3.3a–d: metadata updates by conditional PATCH, JSON Patch as published.
def conditional(unique_id):
    return "DocumentReference?identifier=" + urllib.parse.quote(f"urn:ietf:rfc:3986|{unique_id}", safe=":|")


def patch(unique_id, operations, token=doctor):
    return call("PATCH", conditional(unique_id), token, operations, content_type="application/json-patch+json")


def label_check(code):
    return lambda reply: None if reply.json()["securityLabel"][0]["coding"][0]["code"] == code else reply.json()["securityLabel"]


consultation = "urn:oid:1.2.250.1.213.1.4.8.99999.101"
prescription = "urn:oid:1.2.250.1.213.1.4.8.99999.102"
mask = [{"op": "replace", "path": "/securityLabel/0", "value": {"coding": [
    {"system": TRE_A07, "code": "MASQUE_PS", "display": "Masqué aux professionnels de santé"}]}}]
unmask = [{"op": "replace", "path": "/securityLabel/0", "value": {"coding": [
    {"system": CONFIDENTIALITY, "code": "N", "display": "normal"}]}}]
step("TD3.3a mask to professionals (MASQUE_PS)", patch(consultation, mask), 200, label_check("MASQUE_PS"))
step("TD3.3a unmask (N)", patch(consultation, unmask), 200, label_check("N"))
hide = [{"op": "replace", "path": "/securityLabel/0", "value": {"coding": [
    {"system": TRE_A07, "code": "INVISIBLE_PATIENT", "display": "Non visible par le patient"}]}}]


def hidden_from_holder(reply):
    require(stored[prescription] not in ids(td31a(holder)), "the holder still finds it")


step("TD3.3b hide from the patient (INVISIBLE_PATIENT)", patch(prescription, hide), 200, hidden_from_holder)
step("TD3.3b make visible to the patient (N)", patch(prescription, unmask), 200,
     lambda reply: None if stored[prescription] in ids(td31a(holder)) else "the holder does not find it")
archive = lambda value: [{"op": "replace", "path": f"/extension[url:'{ARCHIVED}']/valueBoolean", "value": value}]
step("TD3.3d archive (isArchived true)", patch(consultation, archive(True)), 200,
     lambda reply: None if stored[consultation] in ids(call("GET", f"DocumentReference?{by_ins}&isArchived=true", doctor)) else "not archived")
step("TD3.3d restore (isArchived false)", patch(consultation, archive(False)), 200,
     lambda reply: None if stored[consultation] in ids(call("GET", f"DocumentReference?{by_ins}&isArchived=false", doctor)) else "not restored")


def withdrawn(reply):
    require(reply.json()["status"] == "entered-in-error", reply.json()["status"])
    require(call("GET", f"DocumentReference/{stored[consultation]}", doctor).status == 410, "still readable")
    require(stored[consultation] not in ids(td31a()), "still found")


step("TD3.3c logical deletion (entered-in-error)",
     patch(consultation, [{"op": "replace", "path": "/status", "value": "entered-in-error"}]), 200, withdrawn)

# The rules hold on the new paths.
step("ITI-67 by a professional with no authorisation (R-ACC-3)", td31a(stranger), 403)
step("ITI-66 List by id, same professional (not known)", call("GET", stored["td2"][0], stranger), 404)
step("ITI-68 Binary, same professional (not known)", call("GET", binary_ref, stranger, accept="application/xml"), 404)
step("TD3.3 conditional PATCH of a document they may not see (not known)",
     patch("urn:oid:1.2.250.1.213.1.4.8.99999.2", archive(True), stranger), 404)

# Bad input: a clear OperationOutcome, nothing stored.
def nothing_stored(reply):
    body = reply.json()
    require(body["resourceType"] == "OperationOutcome", body["resourceType"])
    require(len(ids(td31a())) == count_now, "something was stored")


count_now = len(ids(td31a()))
two_sets = example("Bundle-example-td2-iti65-lot-soumission.json")
second = json.loads(json.dumps(two_sets["entry"][0]))
second["fullUrl"] = "urn:uuid:aaaaaaaa-0000-0000-0000-0000000000ff"
two_sets["entry"].append(second)
step("bad input: two SubmissionSets", call("POST", "", doctor, two_sets), 422, nothing_stored)
unknown = json.loads(json.dumps(td2).replace(nir, "299999999999999"))
step("bad input: a conditional reference matching no Patient", call("POST", "", doctor, unknown), 422, nothing_stored)
wrong_hash = example("Bundle-example-td2-iti65-lot-soumission.json")
wrong_hash["entry"][1]["resource"]["masterIdentifier"]["value"] += ".9"
wrong_hash["entry"][1]["resource"]["content"][0]["attachment"]["hash"] = "2jmj7l5rSw0yVb/vlWAYkK/YBwk="
step("bad input: a hash that does not match the bytes", call("POST", "", doctor, wrong_hash), 422, nothing_stored)
step("bad input: a PATCH of subject",
     patch(prescription, [{"op": "replace", "path": "/subject/reference", "value": "Patient/x"}]), 422, nothing_stored)

# The trace names the MHD transactions (R-MHD-8), for the holder to read.
for code in ["ITI-65", "ITI-66", "ITI-67", "ITI-68", "ITI-105"]:
    step(f"trace: {code} in the holder's AuditEvents",
         call("GET", f"AuditEvent?patient={space}&subtype=urn:ihe:event-type-code|{code}", holder), 200,
         lambda reply: None if ids(reply) else "no event")

step("CapabilityStatement instantiates PDSm and MHD", call("GET", "metadata", doctor), 200,
     lambda reply: None if any("PDSm" in url for url in reply.json().get("instantiates", [])) else reply.json().get("instantiates"))

failures = [result for result in results if result[2]]
lines = [
    "# PDSm / PDSm4DMP requests as published",
    "",
    f"{len(results) - len(failures)} of {len(results)} steps behaved.",
    "",
    "| step | status | outcome |",
    "|---|---|---|",
]
for name, status, problems in results:
    lines.append(f"| {name} | {status} | {'ok' if not problems else '; '.join(problems).replace('|', '/')} |")
pathlib.Path(report_file).write_text("\n".join(lines) + "\n")
print(f"{len(results) - len(failures)} of {len(results)} PDSm steps behaved")
sys.exit(1 if failures else 0)
