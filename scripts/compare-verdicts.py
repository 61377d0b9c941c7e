#!/usr/bin/env python3
"""Compares `poolgrade grade --format json` output with the fixtures' expected verdicts.

usage: compare-verdicts.py EVENTS.jsonl [FIXTURES_DIR]
Prints one line per misgrade and a final `misgrades N checks M` line; exits 1 on a misgrade.
Only the stages a fixture's expected.toml lists are compared: a fixture of one exercise has
no file for the other's stages, which the default rubric grades (and fails) all the same.
"""
import json
import pathlib
import sys
import tomllib


def verdicts(path):
    got = {}
    for line in open(path, encoding="utf-8"):
        event = json.loads(line)
        if event.get("event") != "stage-finished":
            continue
        report = event["report"]
        got.setdefault(report["submission"], {})[report["stage"]] = {
            o["id"]: {"passed": "pass", "failed": "fail"}.get(o["status"], "error")
            for o in report["outcomes"]
        }
    return got


def main():
    events = sys.argv[1]
    fixtures = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/submissions")
    got = verdicts(events)
    misgrades, checks = 0, 0
    for sub in sorted(got):
        expected = tomllib.loads((fixtures / sub / "expected.toml").read_text())
        for stage, outcome in sorted(got[sub].items()):
            if stage not in expected:
                continue
            for check, verdict in sorted(outcome.items()):
                checks += 1
                want = expected.get(stage, {}).get(check, "missing")
                if want != verdict:
                    misgrades += 1
                    print(f"MISGRADE {sub} {stage} {check}: expected {want}, got {verdict}")
    print(f"misgrades {misgrades} checks {checks}")
    return 1 if misgrades else 0


if __name__ == "__main__":
    sys.exit(main())
