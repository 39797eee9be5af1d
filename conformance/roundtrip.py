#!/usr/bin/env python3
"""Round trip of the official FHIR R4 examples (npm package hl7.fhir.r4.examples) of
every resource type this server serves: create each one as the actor who may create
it, read it back, compare. Every difference and every refusal must be explained in
roundtrip-expected.txt, or the run fails.

Usage: roundtrip.py BASE_URL EXAMPLES_DIR EXPECTED_FILE REPORT_FILE
Environment: TOKEN_SYSTEM, TOKEN_DOCTOR, TOKEN_PATIENT (bearer tokens), SPACE (the id
of the space the patient token holds, whose médecin traitant the doctor is).

References to patients in the examples (`Patient/example`, `Patient/f001`…) point at
spaces that do not exist here; they are rewritten to SPACE before the example is sent,
and the comparison is made against the rewritten example.
"""
import json
import pathlib
import re
import sys
import urllib.error
import urllib.request

SERVED = ["Patient", "DocumentReference", "Binary", "Consent", "Communication", "AuditEvent"]
# Who creates each type (SPEC §3): the feed creates Patients, professionals deposit
# documents and Binaries and write to patients, patients decide their consents
# (blocks, emergency settings); AuditEvents are
# written by the server only.
CREATOR = {
    "Patient": "TOKEN_SYSTEM",
    "DocumentReference": "TOKEN_DOCTOR",
    "Binary": "TOKEN_DOCTOR",
    "Consent": "TOKEN_PATIENT",
    "Communication": "TOKEN_DOCTOR",
    "AuditEvent": "TOKEN_DOCTOR",
}
# Elements the server sets itself, never compared.
SERVER_SET = {"id", "meta"}
PATIENT_REFERENCE = re.compile(r"^Patient/[^/]+$")


def call(method, url, token, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/fhir+json")
    if data is not None:
        request.add_header("Content-Type", "application/fhir+json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text.decode(errors="replace")


def rewrite_patients(value, space):
    """Every reference to a Patient becomes a reference to the run's space."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and PATIENT_REFERENCE.match(item):
                out[key] = f"Patient/{space}"
            else:
                out[key] = rewrite_patients(item, space)
        return out
    if isinstance(value, list):
        return [rewrite_patients(item, space) for item in value]
    return value


def differences(sent, got, path=""):
    """Paths where what was read back differs from what was sent."""
    found = []
    if isinstance(sent, dict) and isinstance(got, dict):
        for key in sorted(set(sent) | set(got)):
            if not path and key in SERVER_SET:
                continue
            where = f"{path}.{key}" if path else key
            if key not in got:
                found.append(f"{where}: dropped")
            elif key not in sent:
                found.append(f"{where}: added")
            else:
                found.extend(differences(sent[key], got[key], where))
    elif isinstance(sent, list) and isinstance(got, list):
        if len(sent) != len(got):
            found.append(f"{path}: {len(sent)} items sent, {len(got)} read back")
        for index, (a, b) in enumerate(zip(sent, got)):
            found.extend(differences(a, b, f"{path}[{index}]"))
    elif sent != got:
        found.append(f"{path}: changed")
    return found


def expected(path):
    reasons = {}
    for line in pathlib.Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, reason = line.partition(" | ")
            reasons[key.strip()] = reason.strip()
    return reasons


def main():
    base, examples, expected_file, report_file = sys.argv[1:5]
    import os

    tokens = {name: os.environ[name] for name in ("TOKEN_SYSTEM", "TOKEN_DOCTOR", "TOKEN_PATIENT")}
    space = os.environ["SPACE"]
    known = expected(expected_file)
    rows, unexplained, counts = [], [], {}
    files = sorted(
        path
        for path in pathlib.Path(examples).glob("*.json")
        if path.name.split("-")[0] in SERVED
    )
    for path in files:
        example = json.loads(path.read_text())
        if example.get("resourceType") not in SERVED:
            continue
        name = path.stem
        sent = rewrite_patients(example, space)
        sent.pop("id", None)
        sent.pop("meta", None)
        token = tokens[CREATOR[example["resourceType"]]]
        status, body = call("POST", f"{base}/{example['resourceType']}", token, sent)
        if status != 201:
            detail = ""
            if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
                detail = "; ".join(issue.get("diagnostics", issue.get("code", "")) for issue in body.get("issue", []))
            outcome = f"refused {status}"
            findings = [f"{outcome}: {detail}"[:300]]
        else:
            read_status, got = call("GET", f"{base}/{example['resourceType']}/{body['id']}", token)
            if read_status != 200:
                findings = [f"read back {read_status}"]
                outcome = "not read back"
            else:
                findings = differences(sent, got)
                outcome = "identical" if not findings else "differs"
        counts[outcome.split(" ")[0]] = counts.get(outcome.split(" ")[0], 0) + 1
        reasons = []
        for finding in findings:
            key = f"{name}: {finding.split(':')[0]}"
            reason = known.get(key) or known.get(f"{example['resourceType']}: {finding.split(':')[0]}") or known.get(f"{name}: *")
            if reason is None:
                unexplained.append(f"{name}: {finding}")
                reason = "UNEXPLAINED"
            reasons.append(f"{finding} ({reason})")
        rows.append((name, outcome, reasons))
    with open(report_file, "w") as report:
        report.write("# Round trip of the R4 examples of the served types\n\n")
        report.write(", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) + f" (of {len(rows)})\n\n")
        report.write("| example | result | differences and why |\n|---|---|---|\n")
        for name, outcome, reasons in rows:
            cell = "<br>".join(reason.replace("|", "\\|") for reason in reasons)
            report.write(f"| {name} | {outcome} | {cell} |\n")
    print(open(report_file).read())
    if unexplained:
        print("Unexplained:\n" + "\n".join(f"- {item}" for item in unexplained))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
