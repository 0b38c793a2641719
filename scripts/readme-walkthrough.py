"""The README walkthrough, run for real (see scripts/readme-walkthrough.sh).

Each README output block is preceded by a marker line `<!-- walkthrough:NAME -->` and is a
fenced block whose content this script produces: for a `console` block, `$ command` lines
followed by what the command printed (stdout and stderr, as a terminal shows them).
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import difflib

README = "README.md"
SHOWN_URL = "http://127.0.0.1:8080"

# The blocks, in README order: (name, [command | ("shown", line)]).
BLOCKS = [
    ("directory", ["fedkey directory create acme"]),
    ("trust", ["fedkey trust create --directory acme --name entra --direction inbound --peer-kind entra"]),
    (
        "use",
        [
            ("shown", "K1=fkp_…   # the key from step 2"),
            'curl -s -H "Authorization: Bearer $K1" http://127.0.0.1:8080/scim/v2/acme/ServiceProviderConfig | jq -c .patch',
            "curl -s -o /dev/null -w '%{http_code}\\n' http://127.0.0.1:8080/scim/v2/acme/ServiceProviderConfig",
        ],
    ),
    ("rotate", ["fedkey key rotate acme/entra --overlap 2h"]),
    ("list", ["fedkey key list acme/entra"]),
    (
        "revoke",
        [
            "fedkey key revoke acme/entra --version 1",
            "curl -s -o /dev/null -w '%{http_code}\\n' -H \"Authorization: Bearer $K1\" \\\n"
            "    http://127.0.0.1:8080/scim/v2/acme/ServiceProviderConfig",
        ],
    ),
    ("audit", ["fedkey audit verify", "fedkey audit verify --offline --data-dir ./fedkey-data"]),
]


NORMALISE = [
    # Tokens and keys: prefix kept, secret elided.
    (re.compile(r"\b(fka|fkp)_[A-Za-z0-9_-]+"), lambda m: f"{m.group(1)}_…"),
    # RFC 3339 timestamps (their fraction has 0 to 9 digits: trailing zeros are dropped).
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"), lambda m: "YYYY-MM-DDThh:mm:ss.ffffffZ"),
    # Tables show minutes only (`2026-12-07 21:34`).
    (re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d\b"), lambda m: "YYYY-MM-DD hh:mm"),
    (re.compile(r"bootstrap-[0-9a-f]{8}"), lambda m: "bootstrap-XXXXXXXX"),
    # Install ids, then hashes and public keys (hex runs of 8 or more).
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), lambda m: "<uuid>"),
    (re.compile(r"\b[0-9a-f]{8,}\b"), lambda m: "<hex>"),
    # A checkpoint is signed at start-up when the chain has grown, which races with the
    # bootstrap records of a first start: how many exist yet is timing, not behaviour.
    (re.compile(r"\b\d+ checkpoints verified"), lambda m: "N checkpoints verified"),
]


def normalise(text, url):
    text = text.replace(url, SHOWN_URL)
    for pattern, repl in NORMALISE:
        text = pattern.sub(repl, text)
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def comparable(text):
    """What the drift check compares: table padding and border lengths follow the widths of
    values that change between runs (a timestamp's fraction), so runs of spaces and of
    border characters count as one."""
    text = re.sub(r" {2,}", " ", text)
    return re.sub(r"([─═┄]+)", "─", text)


# A log line (`serve` logs to stderr, which a terminal shows beside stdout): left out of the
# README, which shows what the operator is told, not the log.
LOG_LINE = re.compile(r"^\S*\d{4}-\d\d-\d\dT\S+\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s")


def start_server(binary, cwd, env):
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    shown, logs = [], []
    for line in proc.stdout:
        line = line.rstrip("\n")
        (logs if LOG_LINE.match(line) else shown).append(line)
        if line.startswith("fedkey listening on "):
            # Keep reading what the server prints, so that a full pipe never blocks it.
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            url = line.split()[-1]
            token = next(re.search(r"fka_\S+", l).group(0) for l in shown if "admin_token:" in l)
            return proc, url, token, "\n".join(shown)
    sys.exit("fedkey serve exited before listening:\n" + "\n".join(shown + logs))


def run_blocks(binary):
    work = tempfile.mkdtemp(prefix="fedkey-walkthrough-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDKEY_")}
    env.update(
        PATH=os.path.dirname(binary) + os.pathsep + env.get("PATH", ""),
        COLUMNS="100",
        NO_COLOR="1",
    )
    proc, url, token, serve_out = start_server(binary, work, env)
    try:
        env.update(FEDKEY_URL=url, FEDKEY_TOKEN=token)
        blocks = {"serve": normalise(serve_out, url)}
        for name, commands in BLOCKS:
            lines = []
            for c in commands:
                if isinstance(c, tuple):
                    lines.append("$ " + c[1])
                    continue
                lines.append("$ " + c)
                out = subprocess.run(
                    ["bash", "-c", c.replace(SHOWN_URL, url)],
                    cwd=work,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=120,
                ).stdout
                key = re.search(r"^key: (fkp_\S+)", out, re.M)
                if key and "K1" not in env:
                    env["K1"] = key.group(1)
                lines.append(out.rstrip("\n"))
            blocks[name] = normalise("\n".join(lines), url)
        return blocks
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


MARKER = re.compile(r"^<!-- walkthrough:([a-z]+) -->\n(```[a-z]*\n)(.*?)(^```$)", re.M | re.S)


def main():
    update = "--update" in sys.argv[1:]
    blocks = run_blocks(os.environ["FEDKEY_BIN"])
    readme = open(README, encoding="utf-8").read()
    seen, passed, failed = set(), 0, 0

    def replace(m):
        nonlocal passed, failed
        name, shown = m.group(1), m.group(3).rstrip("\n")
        seen.add(name)
        if name not in blocks:
            print(f"FAILED: README block {name!r} is not produced by the walkthrough", file=sys.stderr)
            failed += 1
            return m.group(0)
        if comparable(shown) == comparable(blocks[name]):
            passed += 1
            print(f"ok: README block {name!r} matches")
            return m.group(0)
        if update:
            passed += 1
            print(f"updated: README block {name!r}")
        else:
            failed += 1
            diff = difflib.unified_diff(
                shown.splitlines(), blocks[name].splitlines(), "README.md", "walkthrough", lineterm=""
            )
            print(f"FAILED: README block {name!r} drifted:\n" + "\n".join(diff), file=sys.stderr)
        return f"<!-- walkthrough:{name} -->\n{m.group(2)}{blocks[name]}\n{m.group(4)}"

    new = MARKER.sub(replace, readme)
    for name in sorted(set(blocks) - seen):
        failed += 1
        print(f"FAILED: the README has no block <!-- walkthrough:{name} -->", file=sys.stderr)
    if update and new != readme:
        open(README, "w", encoding="utf-8").write(new)
    if failed and not update:
        print("the README's shown output differs: run scripts/readme-walkthrough.sh --update", file=sys.stderr)
    print(f"readme-walkthrough: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
