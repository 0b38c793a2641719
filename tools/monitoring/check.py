#!/usr/bin/env python3
"""Checks of fedkey's metrics and monitoring files (run by the e2e tests with the
.venv-conformance interpreter, which has prometheus-client and PyYAML):

  check.py parse PAGE            parse a /metrics page with the Prometheus client's parser;
                                 print {family: {type, help, samples}} as JSON
  check.py refs DOCS RULES DASH  check that the alert rules parse, are well formed, and that
                                 they and the dashboard reference only series listed in DOCS

Exit status 1 on any problem, with the problems on stderr.
"""
import json
import re
import sys


def documented(docs_path):
    """Series names from the first column of the tables in docs/metrics.md."""
    names = []
    with open(docs_path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\|\s*`(fedkey_[a-z0-9_]+)`\s*\|", line)
            if m:
                names.append(m.group(1))
    return names


def parse(page_path):
    from prometheus_client.parser import text_string_to_metric_families

    with open(page_path, encoding="utf-8") as f:
        text = f.read()
    out = {}
    for fam in text_string_to_metric_families(text):
        if fam.name in out:
            print(f"family {fam.name} appears twice", file=sys.stderr)
            return 1
        out[fam.name] = {"type": fam.type, "help": fam.documentation, "samples": len(fam.samples)}
    print(json.dumps(out, sort_keys=True))
    return 0


def unknown_refs(expr, known):
    bad = set()
    for name in re.findall(r"\bfedkey_[a-z0-9_]+", expr):
        if name in known:
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if base != name and base in known:
            continue
        bad.add(name)
    return bad


def refs(docs_path, rules_path, dashboard_path):
    import yaml

    known = set(documented(docs_path))
    problems = []
    with open(rules_path, encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    groups = rules.get("groups") if isinstance(rules, dict) else None
    if not isinstance(groups, list) or not groups:
        problems.append("the rules file has no groups")
        groups = []
    n_rules = 0
    for g in groups:
        if not isinstance(g.get("name"), str) or not isinstance(g.get("rules"), list):
            problems.append(f"group {g!r}: needs a name and a rules list")
            continue
        for r in g["rules"]:
            n_rules += 1
            name = r.get("alert") or r.get("record")
            if not isinstance(name, str) or not isinstance(r.get("expr"), str):
                problems.append(f"rule {r!r}: needs alert (or record) and expr")
                continue
            if "alert" in r and r.get("labels", {}).get("severity") not in ("warning", "critical", "info"):
                problems.append(f"alert {name}: labels.severity must be info, warning or critical")
            if "for" in r and not re.fullmatch(r"\d+[smhd]", str(r["for"])):
                problems.append(f"alert {name}: bad duration {r['for']!r}")
            if r["expr"].count("(") != r["expr"].count(")"):
                problems.append(f"alert {name}: unbalanced parentheses")
            for bad in sorted(unknown_refs(r["expr"], known)):
                problems.append(f"alert {name}: {bad} is not a documented series")
    with open(dashboard_path, encoding="utf-8") as f:
        dash = json.load(f)
    n_panels = 0
    for p in dash.get("panels", []):
        n_panels += 1
        for t in p.get("targets", []):
            for bad in sorted(unknown_refs(t.get("expr", ""), known)):
                problems.append(f"panel {p.get('title')!r}: {bad} is not a documented series")
    if n_rules == 0 or n_panels == 0:
        problems.append("no rules or no panels")
    for p in problems:
        print(p, file=sys.stderr)
    print(json.dumps({"rules": n_rules, "panels": n_panels, "documented": len(known), "problems": len(problems)}))
    return 1 if problems else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "parse":
        return parse(argv[2])
    if len(argv) == 5 and argv[1] == "refs":
        return refs(argv[2], argv[3], argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
