"""fakeapi.server: a small fake Kubernetes API server for mcpgate's e2e tests and demo.

  python3 -m fakeapi --listen ADDR:PORT [--listen [V6]:PORT ...] [--cert F --key F] --state state.json
             --log requests.jsonl --token TOK[=USER] ... [--version 1.33] [--ready-file F]
             [--control-token TOK] [--discovery aggregated|legacy] [--bookmark-interval S]
             [--log-tick S] [--gzip-min BYTES] [--split-head-ms MS]
             [--max-requests-per-conn N] [--drop-request-every N] [--eks-cluster ID --eks-sts-host H ...]

Real, unmodified clients (kubectl 1.27..1.33, the Python and JavaScript clients,
mcp-server-kubernetes) talk to it, so it follows the API server's wire behaviour: HTTP/1.1
keep-alive (ALPN http/1.1), discovery (legacy, and aggregated v2beta1 from 1.26 / v2 from 1.30
as --version says), OpenAPI v3 (and v2 in protobuf) enough for kubectl's server-side field
validation, lists with one global resourceVersion (limit/continue), watches (chunked, one event
per chunk, resourceVersion replay, 410 Expired, bookmarks, sendInitialEvents, timeoutSeconds),
field/label selectors, Tables (columns on the first watch event only), PartialObjectMetadata,
create/update/patch (merge, strategic, JSON, apply)/delete/deletecollection, Status errors
whose code is the HTTP status, Audit-Id (echoes Audit-ID), gzip of bodies >= --gzip-min,
protobuf request bodies for the kinds kubectl 1.33's typed clients send (fakeapi.proto),
pods/log (follow: the lines, then "tick N" every --log-tick s), pods/exec and attach over
WebSocket (v5/v4/... channel.k8s.io) and SPDY/3.1 with a builtin command interpreter
(fakeapi.exec), TokenReview, TokenRequest (the token is then accepted), self-subject
reviews (everything is allowed), CRDs (served once created). Responses are JSON even when
protobuf is acceptable (clients fall back). Impersonate-* headers are ignored.

Auth: "Authorization: Bearer TOK" (any case of the scheme) with a --token, a TokenRequest
token (until it expires) or, with --eks-cluster, a valid EKS token; /version, /healthz, /livez,
/readyz answer without credentials; anything else, or a credential that does not verify
(on any path), is a 401 Status.

Every request is logged to --log as one JSON line (flushed) when its response starts: ts,
method, path (raw target), headers ([name, value] as received, names lowercased), user,
authorization (the raw header), body (first 4 KiB, UTF-8 with replacement; body_base64 too
when it is binary), status (101 for upgrades, 499 when the client left before an answer),
remote. --ready-file is written once listening: {"pid", "listen": ["ADDR:PORT"...]} (port 0
picks a free port).

State (JSON; every list optional): {"nodeName": "node1", "namespaces": [...], "nodes": [...],
"pods": [...], "secrets": [...], "configmaps": [...], "services": [...],
"serviceaccounts": [...], "events": [...], "endpoints": [...], "endpointslices": [...],
"deployments": [...], "replicasets": [...], "leases": [...], "customresourcedefinitions": [...],
"logs": {"ns/pod" or "ns/pod/container": ["line", ...]},
"exec": {"files": {PATH: TEXT}, "pods": {"ns/pod": {PATH: TEXT}}},
"subjectAccessRules": [{"user": U, "verbs": [...], "resources": ["secrets", "pods/exec", "*"],
"groups": ["", "*"], "namespaces": [...]}]}: with the key, a SubjectAccessReview is allowed
when a rule matches its user (or one of its groups) and attributes (lists default to "*"), else
denied; without it, every review is allowed. POST /_fake/access-rules replaces the list. Objects get what the API
server fills (kind, apiVersion, uid, creationTimestamp 5 minutes ago, resourceVersion, pod
status...); the uids and timestamps given are kept. Namespaces the objects use, default and
kube-* namespaces, a node per nodeName, a "default" ServiceAccount per namespace, the pods'
ServiceAccounts and the default/kubernetes Service are created when missing.

Control endpoint for tests (only with "Authorization: Bearer <--control-token>"):
  POST /_fake/pods or /_fake/objects   an object, a list, or {"items": [...]} (kind defaults to
                                       Pod; uids kept) -> 201 {"items": [created...]}
  POST /_fake/logs       {"ns/pod": ["line", ...]}: appended, followers get them at once
  POST /_fake/logs/end   {"pods": ["ns/pod"]}: ends the followers of those pods' logs
  POST /_fake/tokens     {"TOKEN": "user"}: one more accepted token
  GET  /_fake/log        the request log;  GET /_fake/state  every object and the current RV

Python 3 standard library only; one thread per connection."""
import argparse
import base64
import copy
import datetime
import gzip
import json
import os
import socket
import ssl
import sys
import threading
import time
import traceback
import uuid


from . import store as fs
from .handler import Handler
from .wire import (FLOWSCHEMA_UID, PRIORITY_UID, REASONS, HTTPError, ClientGone, Reader,
                   Request, read_request, jdump, status_obj, http_date)


# ---- the server ----

class Server:
    def __init__(self, args):
        self.args = args
        self.store = fs.Store()
        self.tokens = {}            # token -> {"user", "groups", "uid", "exp"}
        self.log_lock = threading.Lock()
        self.logf = open(args.log, "a", buffering=1) if args.log else None
        self.started = time.time()
        self.logs = {}              # "ns/pod[/container]" -> [lines]
        self.log_cond = threading.Condition()
        self.exec_files = {}
        self.exec_pod_files = {}
        self.access_rules = None
        self.follow_stop = set()     # "ns/pod" whose log followers end
        self.minor = args.version.split(".")[1] if "." in args.version else args.version
        self.git_version = "v1.%s.1" % self.minor if args.version.count(".") == 1 else \
            "v" + args.version.lstrip("v")
        fs.KIND_DEFAULTS_NODE[1] = self.git_version
        for t in args.token:
            tok, _, user = t.partition("=")
            self.add_token(tok, user or "admin", None)
        self.listen_addrs = []
        self.load_state(args.state)

    def add_token(self, tok, user, exp, uid=None, extra=None):
        groups = ["system:authenticated"]
        if user.startswith("system:serviceaccount:"):
            ns = user.split(":")[2]
            groups = ["system:serviceaccounts", "system:serviceaccounts:" + ns,
                      "system:authenticated"]
        elif user == "admin":
            groups = ["system:masters", "system:authenticated"]
        self.tokens[tok] = {"user": user, "groups": groups, "uid": uid or str(
            uuid.uuid5(uuid.NAMESPACE_OID, user)), "exp": exp, "extra": extra or {}}

    def token_user(self, tok):
        # EKS tokens, checked as aws-iam-authenticator does (signature
        # recomputed with the fake STS's key authority); the user is the ARN.
        if tok.startswith("k8s-aws-v1.") and getattr(self, "eks_cluster", None):
            sys.dont_write_bytecode = True
            import eks_token_check
            try:
                ident = eks_token_check.verify_token(tok, self.eks_cluster,
                                                     extra_hosts=tuple(self.eks_sts_hosts))
            except eks_token_check.TokenError:
                return None
            return {"user": ident.arn, "groups": ["system:authenticated"],
                    "uid": "aws-iam-authenticator:" + ident.canonical_arn, "exp": None}
        info = self.tokens.get(tok)
        if info is None:
            return None
        if info["exp"] is not None and time.time() >= info["exp"]:
            return None
        return info

    # ---- state ----
    def load_state(self, path):
        state = {}
        if path and os.path.exists(path):
            with open(path) as f:
                state = json.load(f)
        node = state.get("nodeName", "node1")
        fs.KIND_DEFAULTS_NODE[0] = node
        st = self.store
        created = fs.now_rfc3339(time.time() - 300)

        def add(plural, obj, group=""):
            rt = st.types[(group, plural)]
            obj = copy.deepcopy(obj)
            obj.setdefault("metadata", {}).setdefault("creationTimestamp", created)
            ns = obj["metadata"].get("namespace", "default") if rt.namespaced else ""
            if rt.namespaced and ns not in st._ns_names():
                st.create(st.types[("", "namespaces")], {"metadata": {
                    "name": ns, "creationTimestamp": created}}, "", keep_system=True)
            try:
                st.create(rt, obj, ns, keep_system=True)
            except fs.Conflict:
                pass

        for n in state.get("namespaces") or [{"metadata": {"name": "default"}}]:
            add("namespaces", n)
        for n in ("default", "kube-system", "kube-public", "kube-node-lease"):
            if n not in st._ns_names():
                add("namespaces", {"metadata": {"name": n}})
        nodes = {node}
        for p in state.get("pods", []):
            nodes.add((p.get("spec") or {}).get("nodeName") or node)
        for n in state.get("nodes", []):
            add("nodes", n)
        for n in sorted(nodes):
            if ("", n) not in st.objs[("", "nodes")]:
                add("nodes", {"metadata": {"name": n}})
        simple = [("pods", ""), ("secrets", ""), ("configmaps", ""), ("services", ""),
                  ("serviceaccounts", ""), ("events", ""), ("endpoints", ""),
                  ("endpointslices", "discovery.k8s.io"), ("deployments", "apps"),
                  ("replicasets", "apps"), ("leases", "coordination.k8s.io")]
        for plural, group in simple:
            for o in state.get(plural, []):
                add(plural, o, group)
        for crd in state.get("customresourcedefinitions", []):
            add("customresourcedefinitions", crd, "apiextensions.k8s.io")
            self.register_crd(st.get(st.types[("apiextensions.k8s.io",
                                               "customresourcedefinitions")], "",
                                     crd["metadata"]["name"]))
        # The service-account controller's work: a "default" SA per namespace, and the SAs
        # the pods run as.
        sa_rt = st.types[("", "serviceaccounts")]
        for (_, ns) in list(st.objs[("", "namespaces")]):
            if (ns, "default") not in st.objs[sa_rt.key]:
                add("serviceaccounts", {"metadata": {"name": "default", "namespace": ns}})
        for (ns, _), p in list(st.objs[("", "pods")].items()):
            sa = p["spec"].get("serviceAccountName", "default")
            if (ns, sa) not in st.objs[sa_rt.key]:
                add("serviceaccounts", {"metadata": {"name": sa, "namespace": ns}})
        if ("default", "kubernetes") not in st.objs[("", "services")]:
            add("services", {"metadata": {"name": "kubernetes", "namespace": "default", "labels": {
                "component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": "10.96.0.1", "ports": [
                    {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}})
        for k, lines in (state.get("logs") or {}).items():
            self.logs[k] = list(lines)
        ex = state.get("exec") or {}
        # exec: {"files": {PATH: TEXT}} for every pod, {"pods": {"ns/pod": {PATH: TEXT}}}
        self.exec_files = ex.get("files") or {}
        self.exec_pod_files = ex.get("pods") or {}
        # SubjectAccessReview answers: None allows everything (the old behaviour)
        self.access_rules = state.get("subjectAccessRules")

    def register_crd(self, crd):
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        for v in spec.get("versions") or []:
            if not v.get("served", True):
                continue
            subs = {}
            if (v.get("subresources") or {}).get("status") is not None:
                subs["status"] = (names.get("kind"), ["get", "patch", "update"])
            if (v.get("subresources") or {}).get("scale") is not None:
                subs["scale"] = ("Scale", ["get", "patch", "update"], "autoscaling", "v1")
            rt = fs.ResourceType(spec.get("group"), v.get("name"), names.get("plural"),
                                 names.get("kind"), spec.get("scope") == "Namespaced",
                                 names.get("shortNames") or [], names.get("categories") or [],
                                 singular=names.get("singular") or names.get("kind", "").lower(),
                                 subresources=subs, list_kind=names.get("listKind"))
            rt.crd_columns = v.get("additionalPrinterColumns")
            if v.get("storage", True) or rt.key not in self.store.types:
                self.store.add_type(rt)

    # ---- logging ----
    def log_request(self, conn, req, status):
        if req is None or req.logged:
            return
        req.logged = True
        if not self.logf:
            return
        now = datetime.datetime.now(datetime.timezone.utc)
        rec = {"ts": now.isoformat(timespec="milliseconds"),
               "method": req.method, "path": req.target,
               "headers": [[k, v] for k, v in req.headers], "user": req.user,
               "authorization": req.authorization,
               "body": req.body[:4096].decode("utf-8", "replace"), "status": status,
               "remote": conn.remote}
        head = req.body[:4096]
        try:
            head.decode("utf-8")
            binary = any(c < 0x20 and c not in (9, 10, 13) for c in head)
        except UnicodeDecodeError:
            binary = True
        if binary:
            # Binary (protobuf) bodies: the exact bytes too, so tests can decode them.
            rec["body_base64"] = base64.b64encode(head).decode()
        line = json.dumps(rec) + "\n"
        with self.log_lock:
            self.logf.write(line)
            self.logf.flush()

    # ---- listening ----
    def serve(self):
        ctx = None
        if self.args.cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.args.cert, self.args.key)
            ctx.set_alpn_protocols(["http/1.1"])
        socks = []
        for spec in self.args.listen:
            host, port = parse_hostport(spec)
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, port))
            s.listen(512)
            socks.append(s)
            self.listen_addrs.append((host, s.getsockname()[1]))
        for s in socks:
            threading.Thread(target=self.accept_loop, args=(s, ctx), daemon=True).start()
        if self.args.ready_file:
            tmp = self.args.ready_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(json.dumps({"pid": os.getpid(), "listen": [
                    "%s:%d" % (("[%s]" % h) if ":" in h else h, p)
                    for h, p in self.listen_addrs]}) + "\n")
            os.rename(tmp, self.args.ready_file)
        sys.stderr.write("fakeapi: listening on %s\n" % ", ".join(
            "%s:%d" % a for a in self.listen_addrs))
        sys.stderr.flush()
        threading.Thread(target=self.ticker, daemon=True).start()
        while True:
            time.sleep(3600)

    def ticker(self):
        """Wakes log followers so they can emit their periodic lines."""
        while True:
            time.sleep(0.25)
            with self.log_cond:
                self.log_cond.notify_all()

    def accept_loop(self, lsock, ctx):
        while True:
            try:
                s, addr = lsock.accept()
            except OSError:
                time.sleep(0.05)
                continue
            threading.Thread(target=self.handle_conn, args=(s, addr, ctx), daemon=True).start()

    def handle_conn(self, raw, addr, ctx):
        remote = ("[%s]:%d" % (addr[0], addr[1])) if ":" in addr[0] else "%s:%d" % addr[:2]
        sock = raw
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ctx is not None:
                raw.settimeout(10)
                sock = ctx.wrap_socket(raw, server_side=True)
                sock.settimeout(None)
            Conn(self, sock, remote).run()
        except (ssl.SSLError, ConnectionError, OSError, socket.timeout):
            pass
        except Exception:  # noqa: BLE001 - a connection never takes the server down
            traceback.print_exc()
        finally:
            try:
                sock.close()
            except OSError:
                pass


def parse_hostport(spec):
    if spec.startswith("["):
        host, _, port = spec[1:].partition("]:")
    else:
        host, _, port = spec.rpartition(":")
    return host, int(port)


# ---- one connection ----

class Conn:
    def __init__(self, server, sock, remote):
        self.server, self.sock, self.remote = server, sock, remote
        self.reader = Reader(sock)
        self.keep_alive = True
        self.served = 0
        self.head_only = False
        self.wlock = threading.Lock()

    def send(self, data):
        try:
            with self.wlock:
                self.sock.sendall(data)
        except (ConnectionError, ssl.SSLError, OSError) as e:
            raise ClientGone(str(e))

    def run(self):
        while self.keep_alive:
            req = None
            try:
                req = read_request(self)
                if req is None:
                    return
                self.served += 1
                drop = self.server.args.drop_request_every
                if drop and self.served % drop == 0:
                    # An idle-timeout race as a pooled client sees it: the request was
                    # sent, the connection closes unanswered (and unlogged).
                    return
                if self.server.args.max_requests_per_conn and \
                        self.served >= self.server.args.max_requests_per_conn:
                    self.keep_alive = False
                conn_hdr = (req.header("connection") or "").lower()
                if req.version == "HTTP/1.0":
                    self.keep_alive = "keep-alive" in conn_hdr
                elif "close" in conn_hdr:
                    self.keep_alive = False
                Handler(self.server, self, req).dispatch()
            except ClientGone:
                self.server.log_request(self, req, 499)
                return
            except HTTPError as e:
                if req is None:
                    self.keep_alive = False
                    req = Request()
                    req.method = "?"
                self.send_status(req, e)
            except Exception as e:  # noqa: BLE001 - any handler bug is a 500, never a dead server
                traceback.print_exc()
                if req is None:
                    return
                if req.logged:
                    return  # the response had started: nothing sane can follow
                self.send_status(req, HTTPError(500, "InternalError", "Internal error occurred: "
                                                "%s: %s" % (type(e).__name__, e)))

    def base_headers(self, req):
        aid = req.audit_id or req.header("audit-id") or str(uuid.uuid4())
        req.audit_id = aid
        h = [("Audit-Id", aid), ("Cache-Control", "no-cache, private")]
        if req.path not in ("/version", "/healthz", "/livez", "/readyz"):
            h.append(("X-Kubernetes-Pf-Flowschema-Uid", FLOWSCHEMA_UID))
            h.append(("X-Kubernetes-Pf-Prioritylevel-Uid", PRIORITY_UID))
        h.append(("Date", http_date()))
        return h

    def respond(self, req, code, body, ctype="application/json", headers=()):
        h = self.base_headers(req) + [("Content-Type", ctype)] + list(headers)
        gz_min = self.server.args.gzip_min
        if len(body) >= gz_min and "gzip" in (req.header("accept-encoding") or "") and code != 304:
            body = gzip.compress(body, 6)
            h.append(("Content-Encoding", "gzip"))
        if code not in (204, 304):
            h.append(("Content-Length", str(len(body))))
        if not self.keep_alive:
            h.append(("Connection", "close"))
        self.server.log_request(self, req, code)
        head = "HTTP/1.1 %d %s\r\n" % (code, REASONS.get(code, "Status")) + "".join(
            "%s: %s\r\n" % kv for kv in h) + "\r\n"
        if req.method == "HEAD":
            body = b""
        gap = self.server.args.split_head_ms
        if gap is not None and body:
            # As the Go API server does for a body larger than its write buffer: the head
            # goes out in its own write (its own TLS record), the body later.
            self.send(head.encode("latin-1"))
            time.sleep(gap / 1000.0)
            self.send(body)
        else:
            self.send(head.encode("latin-1") + body)

    def send_json(self, req, code, obj, headers=()):
        self.respond(req, code, jdump(obj), "application/json", headers)

    def send_status(self, req, e):
        try:
            self.send_json(req, e.code, status_obj(e.code, e.reason, e.message, e.details),
                           e.headers)
        except ClientGone:
            self.keep_alive = False

    def start_stream(self, req, ctype, code=200, headers=()):
        h = self.base_headers(req) + [("Content-Type", ctype)] + list(headers) + [
            ("Transfer-Encoding", "chunked")]
        if not self.keep_alive:
            h.append(("Connection", "close"))
        self.server.log_request(self, req, code)
        head = "HTTP/1.1 %d %s\r\n" % (code, REASONS.get(code, "Status")) + "".join(
            "%s: %s\r\n" % kv for kv in h) + "\r\n"
        self.head_only = req.method == "HEAD"
        self.send(head.encode("latin-1"))

    def chunk(self, data):
        if data and not self.head_only:
            self.send(b"%x\r\n" % len(data) + data + b"\r\n")

    def end_stream(self):
        if self.head_only:
            self.head_only = False
            return
        self.send(b"0\r\n\r\n")


def main(argv):
    ap = argparse.ArgumentParser(prog="fakeapi", description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", action="append", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--state")
    ap.add_argument("--log")
    ap.add_argument("--token", action="append", default=[])
    ap.add_argument("--control-token")
    ap.add_argument("--version", default="1.33")
    ap.add_argument("--ready-file")
    ap.add_argument("--eks-cluster", help="accept EKS tokens for this cluster id")
    ap.add_argument("--eks-sts-host", action="append", default=[],
                    help="an STS host allowed in EKS tokens besides AWS's own (the fake STS)")
    ap.add_argument("--discovery", choices=["aggregated", "legacy"], default="aggregated",
                    help="legacy: never answer aggregated discovery (clients fall back)")
    ap.add_argument("--bookmark-interval", type=float, default=5.0)
    ap.add_argument("--log-tick", type=float, default=0.5,
                    help="seconds between the extra 'tick N' lines of a followed log")
    ap.add_argument("--max-requests-per-conn", type=int, default=0,
                    help="answer the Nth request of a connection with Connection: close")
    ap.add_argument("--drop-request-every", type=int, default=0,
                    help="close a connection unanswered on its Nth request")
    ap.add_argument("--split-head-ms", type=float, default=None,
                    help="send a response head in its own write, the body MS later")
    ap.add_argument("--gzip-min", type=int, default=128 * 1024,
                    help="gzip responses at least this large when the client accepts gzip")
    ap.add_argument("--review-delay", type=float, default=0.0,
                    help="seconds a TokenReview of an unknown token takes (a slow authenticator)")
    args = ap.parse_args(argv[1:])
    if bool(args.cert) != bool(args.key):
        ap.error("--cert and --key go together")
    srv = Server(args)
    srv.eks_cluster = args.eks_cluster
    srv.eks_sts_hosts = args.eks_sts_host
    try:
        srv.serve()
    except KeyboardInterrupt:
        return 0
    return 0

