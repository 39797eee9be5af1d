#!/usr/bin/env python3
"""Summarises sekmet-fhir results.json files as Markdown, and fails when a step
failed that expected-failures.txt does not explain (`<report>: <step>`, or
`<report>: *` for every step of a scenario built on resources this server does not
serve)."""
import json
import sys
from pathlib import Path


def expected(path: Path) -> dict:
    reasons = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, reason = line.partition(" | ")
            reasons[key.strip()] = reason.strip()
    return reasons


def main() -> int:
    reports, expected_file = Path(sys.argv[1]), Path(sys.argv[2])
    known = expected(expected_file)
    unexplained = []
    totals = {}
    print("# sekmet-fhir results\n")
    for report in sorted(reports.glob("*.json")):
        for scenario in json.loads(report.read_text()):
            counts = {}
            for step in scenario["steps"]:
                counts[step["status"]] = counts.get(step["status"], 0) + 1
                totals[step["status"]] = totals.get(step["status"], 0) + 1
            summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            print(f"## {scenario['name']} ({report.stem}): {scenario['status']}, {summary}\n")
            print("| # | step | result | reason |\n|---|---|---|---|")
            for step in scenario["steps"]:
                key = f"{report.stem}: {step['name']}"
                reason = ""
                if step["status"] in ("failed", "error"):
                    reason = known.get(key) or known.get(f"{report.stem}: *")
                    if reason is None:
                        unexplained.append(key)
                        reason = "UNEXPECTED: " + (step.get("message") or "")[:300].replace("|", "\\|").replace("\n", " ")
                elif step["status"] in ("skipped", "warning"):
                    reason = (step.get("message") or "")[:300].replace("|", "\\|").replace("\n", " ")
                print(f"| {step['index']} | {step['name']} | {step['status']} | {reason} |")
            print()
    print("Steps: " + ", ".join(f"{n} {status}" for status, n in sorted(totals.items())))
    if unexplained:
        print("Unexplained failures:\n" + "\n".join(f"- {key}" for key in unexplained))
        return 1
    print("Every failure is explained in expected-failures.txt.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
