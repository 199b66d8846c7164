"""The tests' dns-01 hook: sets and clears TXT records in pebble-challtestsrv through its management API.

Usage (the -hook contract, with challtestsrv's URL first): `challtestsrv_hook.py URL set|clear NAME VALUE`.
"""

from __future__ import annotations

import json
import sys
import urllib.request


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] not in ("set", "clear"):
        print("usage: challtestsrv_hook.py URL set|clear NAME VALUE", file=sys.stderr)
        return 2
    url, verb, name, value = argv
    # challtestsrv keys records by fully qualified name, with the final dot.
    body = {"host": f"{name}.", "value": value} if verb == "set" else {"host": f"{name}."}
    path = "/set-txt" if verb == "set" else "/clear-txt"
    if not url.startswith("http://"):
        print("challtestsrv_hook.py: URL must be http://...", file=sys.stderr)
        return 2
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST")  # noqa: S310  (http:// checked above)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  (http:// checked above)
        return 0 if response.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
