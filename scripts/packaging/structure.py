"""Structural checks of the packaging files, where no runtime can run them here.

Usage: structure.py KIND FILE, KIND one of dockerignore, compose, helm-sqlite,
helm-postgres, systemd. Prints each problem and exits 1 when there is one.
"""

import sys

import yaml

problems = []


def need(cond, what):
    if not cond:
        problems.append(what)


def dockerignore(path):
    lines = {l.strip().rstrip("/") for l in open(path) if l.strip() and not l.startswith("#")}
    for entry in ["target", "fedkey-data", ".git", ".venv*"]:
        need(entry in lines, f".dockerignore: {entry} is not excluded")


def compose(path):
    doc = yaml.safe_load(open(path))
    services = doc.get("services", {})
    nodes = {n: s for n, s in services.items() if n.startswith("fedkey")}
    need(len(nodes) == 2, f"compose: {len(nodes)} fedkey services, want 2")
    need("postgres" in services, "compose: no postgres service")
    node_ids = set()
    for name, s in nodes.items():
        env = s.get("environment", {})
        need(s.get("read_only") is True, f"{name}: read_only is not true")
        need(str(s.get("user", "")).split(":")[0] not in ("", "0", "root"), f"{name}: runs as root")
        need("ALL" in s.get("cap_drop", []), f"{name}: capabilities are not dropped")
        need("healthcheck" in s and "health-probe" in s["healthcheck"]["test"], f"{name}: no health-probe check")
        need("postgres" in s.get("depends_on", {}), f"{name}: does not wait for postgres")
        need(env.get("FEDKEY_DATABASE_URL_FILE", "").startswith("/run/secrets/"), f"{name}: database URL not from a secret")
        need("FEDKEY_DATABASE_URL" not in env, f"{name}: a database URL in plain environment")
        need(env.get("FEDKEY_NODE_ID"), f"{name}: no stable FEDKEY_NODE_ID")
        node_ids.add(env.get("FEDKEY_NODE_ID"))
        for p in s.get("ports", []):
            need(str(p).startswith("127.0.0.1:"), f"{name}: port {p} published beyond loopback")
    need(len(node_ids) == len(nodes), "compose: node ids are not unique")
    mounts = [tuple(v.split(":")[:2]) for s in nodes.values() for v in s.get("volumes", [])]
    need(len({m for m in mounts if m[1] == "/var/lib/fedkey"}) == 1, "compose: the nodes do not share one master-key volume")


def helm(path, kind):
    objs = [o for o in yaml.safe_load_all(open(path)) if o]
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    for k in ["Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor"]:
        need(k in by_kind, f"helm: no {k}")
    need(("PersistentVolumeClaim" in by_kind) == (kind == "sqlite"), f"helm: a PVC only on SQLite ({kind})")
    if problems:
        return
    dep = by_kind["Deployment"][0]["spec"]
    pod = dep["template"]["spec"]
    need(pod["securityContext"].get("runAsNonRoot") is True, "helm: pod runAsNonRoot")
    need(pod["securityContext"].get("runAsUser", 0) != 0, "helm: pod runs as uid 0")
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c.get("securityContext", {})
        need(sc.get("readOnlyRootFilesystem") is True, f"helm: {c['name']} root filesystem is writable")
        need(sc.get("allowPrivilegeEscalation") is False, f"helm: {c['name']} may escalate privileges")
        need("ALL" in sc.get("capabilities", {}).get("drop", []), f"helm: {c['name']} keeps capabilities")
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    need(env["FEDKEY_MASTER_KEY_FILE"]["value"].startswith("/var/run/"), "helm: master key file not on its own volume")
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    need("fedkey-master-key" in secrets, "helm: the master key does not come from a Secret")
    if kind == "sqlite":
        need(dep["replicas"] == 1 and dep["strategy"]["type"] == "Recreate", "helm: SQLite must be one node, Recreate")
    else:
        need(dep["replicas"] == 3, "helm: PostgreSQL with replicaCount=3 renders 3 replicas")
        need("FEDKEY_DATABASE_URL_FILE" in env and "FEDKEY_DATABASE_URL" not in env, "helm: database URL not from a Secret")
        need("FEDKEY_TLS_CERT" in env and "FEDKEY_INSECURE_HTTP" not in env, "helm: TLS secret not used")
        sm = by_kind["ServiceMonitor"][0]["spec"]["endpoints"][0]
        need(sm.get("scheme") == "https" and "bearerTokenSecret" in sm, "helm: ServiceMonitor without TLS or token")


def systemd(path):
    settings = {}
    for line in open(path):
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            k, v = line.strip().split("=", 1)
            settings.setdefault(k, []).append(v)
    want = {
        "ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "yes",
        "CapabilityBoundingSet": "", "ReadWritePaths": "/var/lib/fedkey", "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes", "MemoryDenyWriteExecute": "yes",
    }
    for k, v in want.items():
        need(v in settings.get(k, []), f"systemd: {k}={v} missing")
    need(any(v.startswith("@system-service") for v in settings.get("SystemCallFilter", [])), "systemd: no SystemCallFilter")


def main():
    kind, path = sys.argv[1], sys.argv[2]
    if kind.startswith("helm-"):
        helm(path, kind[5:])
    else:
        {"dockerignore": dockerignore, "compose": compose, "systemd": systemd}[kind](path)
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
