#!/usr/bin/env python3
"""Summarises the validators' JSON lines as Markdown and fails when a rejection is not
explained in the expected file (lines `<validator name prefix> | <text the message
contains> | reason`).

Usage: summarise.py EXPECTED_FILE "NAME=results.jsonl"..."""
import json
import sys
from collections import Counter


def explanations(path):
    rules = []
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            validator, needle, reason = (part.strip() for part in line.split(" | ", 2))
            rules.append((validator, needle, reason))
    return rules


def main():
    rules = explanations(sys.argv[1])
    unexplained = []
    print("# Validators over the suite's answers\n")
    for argument in sys.argv[2:]:
        name, _, path = argument.partition("=")
        results = [json.loads(line) for line in open(path) if line.strip()]
        files = {result["file"] for result in results}
        types = Counter(result["resource"].split(".")[-1] for result in results)
        rejected = [result for result in results if not result["ok"]]
        print(f"## {name}\n")
        print(f"{len(results)} resources checked in {len(files)} answers "
              f"({', '.join(f'{n} {kind}' for kind, n in types.most_common())}); "
              f"{len(results) - len(rejected)} accepted, {len(rejected)} rejected.\n")
        if rejected:
            by_reason = Counter()
            for result in rejected:
                reason = next((why for validator, needle, why in rules
                               if name.startswith(validator) and needle in result["message"]), None)
                if reason is None:
                    unexplained.append(f"{name}: {result['file']} {result['resource']}: {result['message']}")
                    reason = "UNEXPLAINED: " + result["message"][:200]
                by_reason[reason] += 1
            print("| rejected | why |\n|---|---|")
            for reason, n in by_reason.most_common():
                print(f"| {n} | {reason.replace('|', '/')} |")
            print()
    if unexplained:
        print("Unexplained rejections:\n" + "\n".join(f"- {item}" for item in unexplained[:50]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
