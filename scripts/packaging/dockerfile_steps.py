"""The Dockerfile's steps are the ones docs/packaging.md describes.

The docs list the steps in a table between `<!-- dockerfile-steps:begin -->` and
`<!-- dockerfile-steps:end -->`: one row per instruction, in order, the instruction in
backticks in the second column. A cell ending in `…` is a prefix of the instruction (for
long RUN lines); any other cell must equal the instruction (continuation lines joined).
Usage: dockerfile_steps.py Dockerfile docs/packaging.md; exit 1 with the first difference.
"""

import re
import sys


def instructions(text):
    steps, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].strip() + " "
            continue
        steps.append((current + stripped).strip())
        current = ""
    return steps


def documented(text):
    m = re.search(r"<!-- dockerfile-steps:begin -->(.*?)<!-- dockerfile-steps:end -->", text, re.S)
    if not m:
        sys.exit("docs: no <!-- dockerfile-steps:begin --> … <!-- dockerfile-steps:end --> table")
    rows = []
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[1].startswith("`") and cells[1].endswith("`"):
            rows.append(cells[1][1:-1].replace("\\|", "|"))
    return rows


def matches(doc, step):
    return step.startswith(doc[:-1]) if doc.endswith("…") else doc == step


def main():
    steps = instructions(open(sys.argv[1], encoding="utf-8").read())
    docs = documented(open(sys.argv[2], encoding="utf-8").read())
    for i, (d, s) in enumerate(zip(docs, steps), 1):
        if not matches(d, s):
            sys.exit(f"step {i} differs:\n  Dockerfile: {s}\n  docs:       {d}")
    if len(docs) != len(steps):
        sys.exit(f"the Dockerfile has {len(steps)} steps, the docs describe {len(docs)}")
    print(f"{len(steps)} steps match")


if __name__ == "__main__":
    main()
