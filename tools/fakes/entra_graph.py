#!/usr/bin/env python3
"""A local stand-in for Microsoft Entra ID in fedkey's rotation demo.

Entra cannot run here, so this follows the documented shapes of the three Graph calls
fedkey's `entra` connector makes, and then behaves like Entra's provisioning service:

  POST /{tenant}/oauth2/v2.0/token                        client credentials -> access token
  PUT  /v1.0/servicePrincipals/{id}/synchronization/secrets
       {"value": [{"key": "BaseAddress", ...}, {"key": "SecretToken", ...}]}  -> 204
  POST /v1.0/servicePrincipals/{id}/synchronization/jobs/{job}/validateCredentials
       -> 204 when a SCIM call with the credentials succeeds, else 400 with a Graph error

From the moment a SecretToken is stored, worker threads send SCIM requests to BaseAddress
continuously with the *current* token (as Entra does once an admin saves new credentials).
GET /stats reports requests, failures (with the first few reasons) and how many distinct
tokens were used. Standard library only; loopback only.

Usage: entra_graph.py --port-file FILE [--client-id ID --client-secret SECRET] [--workers N]
"""

import argparse
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

STATE = {
    "lock": threading.Lock(),
    "base": None,
    "token": None,
    "tokens_seen": set(),
    "requests": 0,
    "failed": 0,
    "failures": [],
    "access_tokens": set(),
    "secret_puts": 0,
    "validations": 0,
}


def scim_call(base, token, path="/Users?count=1"):
    req = urllib.request.Request(base.rstrip("/") + path, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, ""
    except urllib.error.HTTPError as e:
        return e.code, e.read(300).decode("utf-8", "replace")
    except Exception as e:  # connection refused, timeout
        return 0, type(e).__name__


def worker(stop):
    while not stop.is_set():
        with STATE["lock"]:
            base, token = STATE["base"], STATE["token"]
        if not token:
            time.sleep(0.01)
            continue
        status, why = scim_call(base, token)
        with STATE["lock"]:
            STATE["requests"] += 1
            STATE["tokens_seen"].add(token)
            if status != 200:
                STATE["failed"] += 1
                if len(STATE["failures"]) < 10:
                    STATE["failures"].append({"status": status, "why": why[:200], "at": time.time()})


def graph_error(handler, status, code, message):
    handler.reply(status, {"error": {"code": code, "message": message, "innerError": {"request-id": secrets.token_hex(8)}}})


class Handler(BaseHTTPRequestHandler):
    client_id = None
    client_secret = None

    def log_message(self, *args):  # quiet
        pass

    def reply(self, status, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def authorized(self):
        auth = self.headers.get("Authorization", "")
        with STATE["lock"]:
            ok = auth.startswith("Bearer ") and auth[7:] in STATE["access_tokens"]
        if not ok:
            graph_error(self, 401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        return ok

    def do_GET(self):
        if self.path == "/stats":
            with STATE["lock"]:
                self.reply(200, {
                    "requests": STATE["requests"], "failed": STATE["failed"], "failures": STATE["failures"],
                    "tokens_seen": len(STATE["tokens_seen"]), "secret_puts": STATE["secret_puts"],
                    "validations": STATE["validations"],
                })
            return
        graph_error(self, 404, "Request_ResourceNotFound", "Resource not found.")

    def do_POST(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            form = {k: v[0] for k, v in parse_qs(self.body().decode()).items()}
            if form.get("grant_type") != "client_credentials" or not form.get("scope", "").endswith("/.default"):
                self.reply(400, {"error": "invalid_request", "error_description": "AADSTS900144: bad request"})
                return
            if (self.client_id and form.get("client_id") != self.client_id) or (
                self.client_secret and form.get("client_secret") != self.client_secret
            ):
                self.reply(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
                return
            tok = secrets.token_urlsafe(24)
            with STATE["lock"]:
                STATE["access_tokens"].add(tok)
            self.reply(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok})
            return
        if len(parts) == 7 and parts[:2] == ["v1.0", "servicePrincipals"] and parts[6] == "validateCredentials":
            if not self.authorized():
                return
            try:
                req = json.loads(self.body() or b"{}")
            except ValueError:
                graph_error(self, 400, "BadRequest", "Invalid JSON")
                return
            with STATE["lock"]:
                STATE["validations"] += 1
                base, token = STATE["base"], STATE["token"]
            if not req.get("useSavedCredentials", False):
                creds = {c.get("key"): c.get("value") for c in req.get("credentials", [])}
                base, token = creds.get("BaseAddress", base), creds.get("SecretToken", token)
            if not base or not token:
                graph_error(self, 400, "BadRequest", "No credentials to validate.")
                return
            status, why = scim_call(base, token)
            if status == 200:
                self.reply(204)
            else:
                graph_error(self, 400, "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable",
                            f"The SCIM endpoint answered {status}")
            return
        graph_error(self, 404, "Request_ResourceNotFound", "Resource not found.")

    def do_PUT(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) == 5 and parts[:2] == ["v1.0", "servicePrincipals"] and parts[3:] == ["synchronization", "secrets"]:
            if not self.authorized():
                return
            try:
                values = {v["key"]: v["value"] for v in json.loads(self.body())["value"]}
            except (ValueError, KeyError, TypeError):
                graph_error(self, 400, "BadRequest", "Invalid synchronization secrets payload.")
                return
            if "SecretToken" not in values or "BaseAddress" not in values:
                graph_error(self, 400, "BadRequest", "BaseAddress and SecretToken are required.")
                return
            with STATE["lock"]:
                STATE["base"], STATE["token"] = values["BaseAddress"], values["SecretToken"]
                STATE["secret_puts"] += 1
            self.reply(204)
            return
        graph_error(self, 404, "Request_ResourceNotFound", "Resource not found.")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--client-id")
    ap.add_argument("--client-secret")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    Handler.client_id, Handler.client_secret = a.client_id, a.client_secret
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stop = threading.Event()
    for _ in range(a.workers):
        threading.Thread(target=worker, args=(stop,), daemon=True).start()
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.replace(a.port_file + ".tmp", a.port_file)
    try:
        srv.serve_forever()
    finally:
        stop.set()


if __name__ == "__main__":
    main()
