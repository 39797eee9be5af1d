#!/usr/bin/env python3
"""A practice application's PDSm day with the fhirpy client library (PyPI,
synchronous client), each step the library's own way of making the request: the
médecin traitant finds the patient by INS (TD0.2), posts the published ITI-65 Bundle
(TD2), finds the documents (TD3.1a, ITI-67) and the SubmissionSets (ITI-66), fetches
the document as a Binary (TD3.2), masks, unmasks, archives and withdraws it by
conditional PATCH (TD3.3a/d/c, fhirpy's search-set patch), and is told 403 for a space
they are not authorised on. Exits non-zero at the first step that does not behave.

Usage: fhirpy_pdsm.py BASE_URL TOKEN NIR EXAMPLES_DIR OTHER_NIR
(OTHER_NIR: a space whose médecin traitant is someone else)"""
import base64
import hashlib
import json
import pathlib
import sys

from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ForbiddenError

base, token, nir, examples, other_nir = sys.argv[1:6]
client = SyncFHIRClient(base, authorization=f"Bearer {token}")
INS = "urn:oid:1.2.250.1.213.1.4.8"
TRE_A07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
ARCHIVED = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"


def step(text):
    print(f"- {text}")


patient = client.resources("Patient").search(identifier=f"{INS}|{nir}").get()
assert patient.get("active") is True, patient
step(f"TD0.2: found the space by INS, Patient/{patient.id}, active")

text = (pathlib.Path(examples) / "Bundle-example-td2-iti65-lot-soumission.json").read_text()
bundle = json.loads(text.replace("123456789012345", nir))
# A practice application makes its own uniqueIds: the published one is already stored
# by the run of the published requests on this server (R-MHD-2).
bundle["entry"][1]["resource"]["masterIdentifier"]["value"] += f".{nir}"
response = client.execute("", method="post", data=bundle)
assert response["type"] == "transaction-response", response
locations = [entry["response"]["location"].split("/_history")[0] for entry in response["entry"]]
assert [location.split("/")[0] for location in locations] == ["List", "DocumentReference", "Binary"], locations
step(f"TD2: posted the published Provide Document Bundle: {', '.join(locations)}")

by_ins = {"patient.identifier": f"{INS}|{nir}"}
documents = client.resources("DocumentReference").search(**by_ins, status="current").fetch_all()
assert [document.id for document in documents] == [locations[1].split("/")[1]], documents
document = documents[0]
assert document.subject.reference == f"Patient/{patient.id}", document.subject
step("TD3.1a: found the document by the patient's INS (ITI-67)")

lists = client.resources("List").search(
    **by_ins, code="https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes|submissionset"
).fetch()
assert [item.id for item in lists] == [locations[0].split("/")[1]], lists
assert lists[0].entry[0].item.reference == locations[1]
step("ITI-66: found the SubmissionSet, naming the document")

binary = client.reference(reference=document.content[0].attachment.url).to_resource()
content = base64.b64decode(binary.data)
digest = base64.b64encode(hashlib.sha1(content).digest()).decode()
assert digest == document.content[0].attachment.hash, digest
step("TD3.2: fetched the Binary; its SHA-1 is the attachment's hash (ITI-68)")

unique_id = f"{document.masterIdentifier.system}|{document.masterIdentifier.value}"
by_unique_id = client.resources("DocumentReference").search(identifier=unique_id)
masked = by_unique_id.patch(securityLabel=[{"coding": [{"system": TRE_A07, "code": "MASQUE_PS"}]}])
assert masked.securityLabel[0].coding[0].code == "MASQUE_PS", masked.securityLabel
unmasked = by_unique_id.patch(
    securityLabel=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]}]
)
assert unmasked.securityLabel[0].coding[0].code == "N", unmasked.securityLabel
step("TD3.3a: masked then unmasked by conditional PATCH on the uniqueId")

archived = by_unique_id.patch(extension=[{"url": ARCHIVED, "valueBoolean": True}])
assert archived.extension[0].valueBoolean is True, archived
found = client.resources("DocumentReference").search(**by_ins, isArchived="true").fetch()
assert [item.id for item in found] == [document.id], found
step("TD3.3d: archived, and found among the archived documents")

withdrawn = by_unique_id.patch(status="entered-in-error")
assert withdrawn.status == "entered-in-error", withdrawn.status
try:
    client.reference("DocumentReference", document.id).to_resource()
    raise SystemExit("a withdrawn document is still read")
except Exception as error:  # fhirpy raises its OperationOutcome for a 410
    assert "was deleted" in str(error), error
assert client.resources("DocumentReference").search(**by_ins, status="current").fetch() == []
step("TD3.3c: withdrawn (entered-in-error): gone from reads (410) and searches")

try:
    client.resources("DocumentReference").search(
        **{"patient.identifier": f"{INS}|{other_nir}"}, status="current"
    ).fetch()
    raise SystemExit("a space the professional is not authorised on answered")
except ForbiddenError as error:
    assert "R-ACC-3" in str(error) or "authoris" in str(error), error
step("TD3.1a on a space they are not authorised on: 403 (R-ACC-3)")
print("every fhirpy PDSm step behaved")
