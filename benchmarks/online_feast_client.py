"""Feast's own HTTP client against a feature server, for bench_online.py; runs under Feast's Python.

    python online_feast_client.py CONFIG.json RESULT.json

CONFIG: {"repo": a Feast repo whose online store is `type: remote` with path
http://127.0.0.1:PROXY_PORT, "proxy_port", "target": the server's URL, "refs", "ids"}.

A small recording proxy listens on PROXY_PORT and forwards every request to the target unchanged,
keeping each exchange (method, path, content type, request body, response status and body). Then
`FeatureStore(repo).get_online_features(features=refs, entity_rows=[{"driver_id": id}, ...])
.to_dict()` runs through Feast's RemoteOnlineStore, the client Feast users have.
RESULT: {"feast_version", "values" (to_dict, or null), "error" (or ""), "exchanges": [...]}.

Direct (opt-in, e.g. over TLS): CONFIG without "proxy_port" runs no proxy; the repo's remote store
then names the server itself, e.g. `path: https://127.0.0.1:PORT` with `cert: CA.pem` (Feast
passes it to requests as `verify=`), and `auth: {type: oidc, token_env_var: NAME}` sends
`Authorization: Bearer $NAME` (Feast 0.5x+). "exchanges" is then empty. tests/e2e/test_tls.py
runs it this way when benchmarks/.feast-venv exists.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def recording_proxy(port: int, target: str, exchanges: list[dict[str, Any]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            request = urllib.request.Request(
                target + self.path, data=body, method=self.command, headers=dict(self.headers)
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    status, payload = answer.status, answer.read()
                    kind = answer.headers.get("Content-Type", "")
            except urllib.error.HTTPError as error:
                status, payload = error.code, error.read()
                kind = error.headers.get("Content-Type", "")
            exchanges.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "request": _decoded(body) if body else None,
                    "status": status,
                    "response": _decoded(payload),
                }
            )
            self.send_response(status)
            self.send_header("Content-Type", kind or "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _forward

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[0]).read_text())
    exchanges: list[dict[str, Any]] = []
    proxy = None
    if "proxy_port" in config:
        proxy = recording_proxy(config["proxy_port"], config["target"], exchanges)
    out: dict[str, Any] = {"values": None, "error": "", "exchanges": exchanges}
    try:
        import feast

        out["feast_version"] = feast.__version__
        store = feast.FeatureStore(repo_path=config["repo"])
        response = store.get_online_features(
            features=config["refs"], entity_rows=[{"driver_id": i} for i in config["ids"]]
        )
        out["values"] = response.to_dict()
    except Exception:
        out["error"] = traceback.format_exc(limit=4)
    finally:
        if proxy is not None:
            proxy.shutdown()
    with open(argv[1], "w") as result:
        json.dump(out, result, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
