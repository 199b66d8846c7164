#!/usr/bin/env python3
"""Enroll, collect and (optionally) revoke one certificate through the commercial manager's REST API
with its Python client `cert-manager` (pip install cert-manager), the way customers' scripts do. It runs
unchanged against ca-manager: only the base URL differs.

    CM_PASSWORD=... python3 cert_manager_enroll.py -base-url https://manager.example.com:8443/api \\
        -login-uri ca-manager -username scripts -csr web.csr -out certs/ -formats x509CO,x509IO,pem

Prints one JSON document: the sslId, renewId and the files written. The password comes from the
environment (CM_PASSWORD), never from the command line. Set REQUESTS_CA_BUNDLE to trust a private CA.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from cert_manager import SSL, Client, Organization, PendingError


def main() -> int:
    parser = argparse.ArgumentParser(prefix_chars="-", description=__doc__.split("\n\n")[0])
    parser.add_argument("-base-url", required=True)
    parser.add_argument("-login-uri", required=True)
    parser.add_argument("-username", required=True)
    parser.add_argument("-csr", required=True, type=Path)
    parser.add_argument("-out", required=True, type=Path)
    parser.add_argument("-type", help="the certificate type's name (default: the first listed)")
    parser.add_argument("-organization", help="the organization's name (default: the first listed)")
    parser.add_argument("-formats", default="x509CO,x509IO,pem")
    parser.add_argument("-revoke", metavar="REASON", help="revoke the certificate once collected")
    parser.add_argument("-timeout", type=float, default=120)
    args = parser.parse_args()

    client = Client(
        base_url=args.base_url,
        login_uri=args.login_uri,
        username=args.username,
        password=os.environ["CM_PASSWORD"],
    )
    organizations = Organization(client)
    found = organizations.find(org_name=args.organization) if args.organization else organizations.all()
    if not found:
        print(f"no organization {args.organization!r}", file=sys.stderr)
        return 1
    ssl = SSL(client)
    type_name = args.type or next(iter(ssl.types))
    enrolled = ssl.enroll(
        cert_type_name=type_name,
        csr=args.csr.read_text(),
        term=ssl.types[type_name]["terms"][0],
        org_id=found[0]["id"],
        subject_alt_names=None,
        external_requester="scripts@example.com",
    )
    ssl_id = enrolled["sslId"]

    deadline = time.monotonic() + args.timeout
    formats = args.formats.split(",")
    while True:
        try:
            collected = {fmt: ssl.collect(ssl_id, fmt) for fmt in formats}
            break
        except PendingError:
            if time.monotonic() > deadline:
                print(f"certificate {ssl_id} still pending after {args.timeout:g} s", file=sys.stderr)
                return 1
            time.sleep(1)

    args.out.mkdir(parents=True, exist_ok=True)
    files = {}
    for fmt, body in collected.items():
        path = args.out / f"{ssl_id}.{fmt}"
        # `bin` (DER PKCS#7) arrives as text, one character per byte.
        path.write_bytes(body.encode("latin-1") if fmt == "bin" else body.encode())
        files[fmt] = str(path)
    if args.revoke:
        ssl.revoke(ssl_id, reason=args.revoke)
    print(json.dumps({"sslId": ssl_id, "renewId": enrolled["renewId"], "files": files}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
