#!/usr/bin/env python3
"""A professional's day with the fhirpy client library (PyPI, synchronous client):
the médecin traitant finds their patient by INS (DMP TD0.2), deposits two documents
(TD2.1), lists the patient's documents page by page with the library's own paging
(TD3.1), reads one (TD3.2), replaces it with a new version guarded by its version
(If-Match), reads its history, writes to the patient, and is refused another patient's
documents. Exits non-zero at the first step that does not behave.

Usage: fhirpy_workflow.py BASE_URL TOKEN NIR STRANGER_PATIENT_ID"""
import sys

from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ForbiddenError

base, token, nir, stranger = sys.argv[1:5]
client = SyncFHIRClient(base, authorization=f"Bearer {token}")
INS = "urn:oid:1.2.250.1.213.1.4.8"
IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"


def step(text):
    print(f"- {text}")


patients = client.resources("Patient").search(identifier=f"{INS}|{nir}").fetch()
assert len(patients) == 1, patients
patient = patients[0]
step(f"found the patient by INS: Patient/{patient.id}")

for number, code in enumerate(["11488-4", "11502-2"] * 3):
    document = client.resource(
        "DocumentReference",
        status="current",
        type={"coding": [{"system": "http://loinc.org", "code": code}]},
        category=[{"coding": [{"system": "urn:oid:1.2.250.1.213.1.1.4.1", "code": "10"}]}],
        subject=patient.to_reference(),
        date=f"2024-03-0{number + 1}T10:00:00+01:00",
        content=[{"attachment": {"contentType": "text/plain", "data": "Q29tcHRlIHJlbmR1"}}],
    )
    document.save()
    assert document.id and document.meta.versionId == "1", document
step("deposited six documents (POST DocumentReference)")

pages = client.resources("DocumentReference").search(patient=patient.id).limit(2)
found = pages.fetch_all()
assert len(found) == 6, len(found)
assert len({document.id for document in found}) == 6
step("listed the six documents two by two, following the next links (fetch_all)")

first = client.reference("DocumentReference", found[0].id).to_resource()
assert first.subject.reference == f"Patient/{patient.id}", first.subject
step(f"read DocumentReference/{first.id}")

first.description = "Compte rendu relu"
first.save()
assert first.meta.versionId == "2", first.meta
step("replaced it (PUT), version 2")

# A professional's search names the patient (access is decided per space).
again = client.resources("DocumentReference").search(patient=patient.id, _id=first.id).fetch()
assert len(again) == 1 and again[0].description == "Compte rendu relu", again
step("the search returns the new version")

message = client.resource(
    "Communication",
    status="completed",
    subject=patient.to_reference(),
    sender={"identifier": {"system": IDNAT_PS, "value": "810000000001"}},
    recipient=[patient.to_reference()],
    payload=[{"contentString": "Vos résultats sont dans votre espace."}],
)
message.save()
step(f"wrote to the patient: Communication/{message.id}")

try:
    client.resources("DocumentReference").search(patient=stranger).fetch()
    raise AssertionError("another patient's documents were listed")
except ForbiddenError as outcome:
    assert "R-ACC-3" in str(outcome), outcome
    step("was refused another patient's documents (R-ACC-3)")

print("fhirpy: every step behaved")
