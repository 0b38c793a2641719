#!/usr/bin/env python3
"""Runs the pinned scim2-tester suite against a SCIM base URL and prints one line per
failed check and a closing `N passed, N failed`.

A check counts as passed when its status is SUCCESS, COMPLIANT, ACCEPTABLE or DEVIATION;
ERROR, CRITICAL and SKIPPED count as failed (a skipped check means an endpoint or
feature the suite needed was missing). Exit status 0 only when nothing failed.

    run.py --url http://127.0.0.1:PORT/scim/v2/acme --token fkp_...
"""

import argparse
import json
import sys

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

FAILING = {Status.ERROR, Status.CRITICAL, Status.SKIPPED}


def without_rfc9967_members(response):
    """The pinned scim2-models predates RFC 9967 (May 2026), which adds `securityEvents` to
    ServiceProviderConfig, and its model refuses members it does not know. Only that member is
    removed before the suite validates the document; everything else is checked as served
    (the e2e test `events::` checks `securityEvents` itself)."""
    if response.status_code != 200 or not response.request.url.path.endswith("/ServiceProviderConfig"):
        return
    response.read()
    body = json.loads(response.content)
    if body.pop("securityEvents", None) is not None:
        response._content = json.dumps(body).encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="SCIM base URL")
    ap.add_argument("--token", help="bearer token")
    ap.add_argument("--tag", action="append", dest="tags", help="run only checks with these tags")
    ap.add_argument("--verbose", action="store_true", help="print every check, not only failures")
    args = ap.parse_args()

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    http = httpx2.Client(
        base_url=args.url, headers=headers, timeout=30, event_hooks={"response": [without_rfc9967_members]}
    )
    client = SyncSCIMClient(http)
    results = check_server(client, include_tags=set(args.tags) if args.tags else None)

    failed = [r for r in results if r.status in FAILING]
    for r in results:
        if args.verbose or r.status in FAILING:
            print(f"{r.status.name:<10} {r.title}: {r.reason or ''}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
