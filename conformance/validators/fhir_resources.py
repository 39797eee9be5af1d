#!/usr/bin/env python3
"""Validates FHIR JSON files with the PyPI package fhir.resources (pydantic models of
FHIR R4B, the nearest release it ships to R4 4.0.1): each file's resource, and each
Bundle entry's resource on its own. Prints one JSON line per resource checked:
{"file", "resource", "ok", "message"}.

Usage: fhir_resources.py DIR"""
import json
import pathlib
import sys

from fhir.resources.R4B import get_fhir_model_class


def check(resource):
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        return True, ""
    except Exception as error:  # the validator's own message is the finding
        return False, " ".join(str(error).split())[:500]


for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    try:
        document = json.loads(path.read_text())
    except ValueError:
        continue
    if not isinstance(document, dict) or "resourceType" not in document:
        continue
    resources = [(document["resourceType"], document)]
    for index, entry in enumerate(document.get("entry", []) if document["resourceType"] == "Bundle" else []):
        if isinstance(entry.get("resource"), dict):
            resources.append((f"Bundle.entry[{index}].{entry['resource'].get('resourceType')}", entry["resource"]))
    for where, resource in resources:
        ok, message = check(resource)
        print(json.dumps({"file": path.name, "resource": where, "ok": ok, "message": message}))
