#!/usr/bin/env python3
"""A minimal Kubernetes API peer for OpenBao's kubernetes auth method, on loopback.

OpenBao's kubernetes auth verifies a service-account JWT (signature against the configured
pem_keys, claims against the role) and then asks the Kubernetes API whether the token is still
valid: POST <kubernetes_host>/apis/authentication.k8s.io/v1/tokenreviews with a TokenReview
whose spec.token is the JWT, authorised by "Authorization: Bearer <token_reviewer_jwt>". The
answer's status.authenticated, status.user.username
("system:serviceaccount:<namespace>:<name>"), status.user.uid and status.audiences are checked
against the JWT's claims. That one endpoint is all this peer serves.

    fake-kube-api.py --port-file FILE --tokens FILE --reviewer-jwt FILE
                     [--tls-cert PEM --tls-key PEM] [--log FILE]

--tokens is a JSON file {"<jwt>": {"namespace": ..., "name": ..., "uid": ...}, ...}, read again
on every review, so a test can "delete" a service account token by rewriting it. A TokenReview
for a token not in it answers authenticated=false (what a real API server says for a deleted
or expired token). A request without the reviewer JWT as bearer gets 401, as the API server
would. The port (bound on 127.0.0.1, chosen by the OS) is written to --port-file once
listening. --log gets one line per request: path, HTTP status, outcome (never a token).
"""

import argparse
import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
MAX_BODY = 1 << 20


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_secret(path):
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-kube-api/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: our own log below
        pass

    def note(self, status, outcome):
        log = self.server.log_path
        if log:
            with self.server.log_lock, open(log, "a", encoding="utf-8") as f:
                f.write(f"{self.command} {self.path} -> {status} {outcome}\n")

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def status_error(self, code, reason, message):
        self.send_json(code, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Failure", "message": message, "reason": reason,
                              "code": code})
        self.note(code, reason)

    def do_GET(self):
        self.status_error(404, "NotFound", "the server could not find the requested resource")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            self.status_error(413, "RequestEntityTooLarge", "request body too large")
            return
        raw = self.rfile.read(length)
        if self.path.split("?")[0] != REVIEW_PATH:
            self.status_error(404, "NotFound", "the server could not find the requested resource")
            return
        if self.headers.get("Authorization", "") != "Bearer " + self.server.reviewer_jwt:
            self.status_error(401, "Unauthorized", "Unauthorized")
            return
        try:
            req = json.loads(raw)
            spec = req.get("spec") or {}
            token = spec.get("token") or ""
            audiences = spec.get("audiences") or []
        except (ValueError, AttributeError):
            self.status_error(400, "BadRequest", "invalid TokenReview")
            return
        try:
            known = load_json(self.server.tokens_path)
        except (OSError, ValueError) as e:
            self.status_error(500, "InternalError", f"token registry: {e}")
            return
        sa = known.get(token) if isinstance(known, dict) else None
        review = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                  "metadata": {"creationTimestamp": None},
                  "spec": {"token": "", "audiences": audiences}}
        if sa is None:
            review["status"] = {"authenticated": False, "user": {},
                                "error": "[invalid bearer token, service account token has been invalidated]"}
            outcome = "authenticated=false"
        else:
            review["status"] = {
                "authenticated": True,
                "user": {"username": f"system:serviceaccount:{sa['namespace']}:{sa['name']}",
                         "uid": sa["uid"],
                         "groups": ["system:serviceaccounts",
                                    f"system:serviceaccounts:{sa['namespace']}",
                                    "system:authenticated"]},
                "audiences": audiences,
            }
            outcome = f"authenticated=true {sa['namespace']}/{sa['name']}"
        # TokenReview create answers 201 Created
        self.send_json(201, review)
        self.note(201, outcome)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--reviewer-jwt", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--log")
    args = ap.parse_args()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.tokens_path = args.tokens
    srv.reviewer_jwt = read_secret(args.reviewer_jwt)
    srv.log_path = args.log
    srv.log_lock = threading.Lock()
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    with open(args.port_file + ".tmp", "w", encoding="utf-8") as f:
        f.write(f"{srv.server_address[1]}\n")
    os.replace(args.port_file + ".tmp", args.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
