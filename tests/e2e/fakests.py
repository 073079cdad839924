#!/usr/bin/python3
"""fakests.py: a fake AWS STS and EKS Pod Identity agent for mcpgate's tests.

    fakests.py [--host 127.0.0.1] [--port 0] [--port-file F] [--tls-cert C --tls-key K]
               [--pod-identity-token TOKEN] [--pod-identity-role ARN]

Prints "listening on HOST:PORT" once ready (and writes PORT to --port-file).
Listens on loopback only unless told otherwise; tests never point it
elsewhere.

STS (the query protocol, POST form or GET query, at any path):
  AssumeRoleWithWebIdentity  unsigned, as in AWS; RoleArn, RoleSessionName,
                             WebIdentityToken required. A token containing
                             "invalid" -> 400 InvalidIdentityToken.
  AssumeRole                 SigV4-signed in the Authorization header; the
                             signature is recomputed with the key's secret:
                             unknown key -> 403 InvalidClientTokenId, bad
                             signature -> 403 SignatureDoesNotMatch, expired
                             session -> 403 ExpiredToken, X-Amz-Date more than
                             15 min off -> 403 SignatureDoesNotMatch.
                             RoleSessionName, DurationSeconds (900-3600),
                             SourceIdentity and Tags are validated as STS does
                             (400 ValidationError).
  GetCallerIdentity          presigned (query) or header-signed; answers the
                             caller's ARN. With a presigned URL the request
                             must carry the x-k8s-aws-id header it signed.
  A RoleArn containing "deny" -> 403 AccessDenied. Answers use the real XML
  shapes (AssumeRoleResponse, AssumeRoleWithWebIdentityResponse,
  GetCallerIdentityResponse, ErrorResponse).

Pod Identity agent: GET /v1/credentials with Authorization equal to
--pod-identity-token -> {AccessKeyId, SecretAccessKey, Token, AccountId,
Expiration}; wrong or missing token -> 401/400 with a JSON error.

Kubernetes TokenRequest (for the serviceaccount provider's unit tests only;
the e2e fake API server has its own):
  POST /api/v1/namespaces/NS/serviceaccounts/SA/token with Authorization
  "Bearer <--api-token>" and a TokenRequest body -> 201 with status.token and
  status.expirationTimestamp; a ServiceAccount named *deny* -> 403 Status
  Forbidden; a wrong bearer -> 401 Status Unauthorized.

Test controls:
  POST /_control {"mode": "up"|"down"|"throttle"|"error500"}
        down: connections are closed without an answer; throttle: 400
        Throttling; error500: 500 InternalFailure (STS and the agent alike).
  POST /_control {"now": EPOCH|null}   fix the fake's clock (null: real time)
  POST /_control {"pod_identity_duration": SECONDS}
  GET  /_requests   JSON list of what was received (no secret values: the
                    web identity token and signatures are reduced to flags)
  POST /_reset      forget the request log

Credentials it issues verify with eks_token_check.KeyAuthority (same master
secret), so the fake API server can check tokens signed with them.
Python 3 standard library only.
"""
import argparse
import datetime
import hashlib
import hmac
import http.server
import json
import os
import re
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eks_token_check as etc  # noqa: E402

XMLNS = "https://sts.amazonaws.com/doc/2011-06-15/"
NAME_RE = re.compile(r"^[\w+=,.@-]{2,64}$")
ROLE_RE = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})$")
TAG_KEY_RE = re.compile(r"^[\w\s.:/=+@-]{1,128}$", re.UNICODE)
TAG_VALUE_RE = re.compile(r"^[\w\s.:/=+@-]{0,256}$", re.UNICODE)


def xml_escape(s):
    return (str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def iso(t):
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


class StsError(Exception):
    def __init__(self, status, code, message, typ="Sender"):
        super().__init__(message)
        self.status, self.code, self.message, self.typ = status, code, message, typ


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.mode = "up"
        self.fixed_now = None
        self.requests = []
        self.authority = etc.KeyAuthority(args.master_secret)
        self.pod_identity_token = args.pod_identity_token
        self.pod_identity_role = args.pod_identity_role
        self.pod_identity_duration = args.pod_identity_duration
        self.api_token = args.api_token
        self.serial = 0

    def now(self):
        with self.lock:
            return self.fixed_now if self.fixed_now is not None else time.time()

    def record(self, entry):
        with self.lock:
            self.requests.append(entry)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakests"

    def log_message(self, fmt, *args):
        if os.environ.get("FAKESTS_VERBOSE"):
            sys.stderr.write("fakests: " + fmt % args + "\n")

    # ---- plumbing ----

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, body, ctype):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, status, obj):
        self._send(status, json.dumps(obj), "application/json")

    def _sts_error(self, e):
        self._send(e.status,
                   '<ErrorResponse xmlns="%s">\n  <Error>\n    <Type>%s</Type>\n'
                   "    <Code>%s</Code>\n    <Message>%s</Message>\n  </Error>\n"
                   "  <RequestId>%s</RequestId>\n</ErrorResponse>\n"
                   % (XMLNS, e.typ, xml_escape(e.code), xml_escape(e.message), uuid.uuid4()),
                   "text/xml")

    def _gate(self):
        """Applies the failure mode. True if the request was answered."""
        mode = self.server.state.mode
        if mode == "down":
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return True
        if mode == "throttle":
            self._sts_error(StsError(400, "Throttling", "Rate exceeded"))
            return True
        if mode == "error500":
            self._sts_error(StsError(500, "InternalFailure", "internal failure", "Receiver"))
            return True
        return False

    # ---- verbs ----

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/_requests":
            with self.server.state.lock:
                return self._send_json(200, self.server.state.requests)
        if self._gate():
            return
        if u.path == "/v1/credentials":
            return self._pod_identity()
        self._sts(u, b"")

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        body = self._body()
        st = self.server.state
        if u.path == "/_control":
            cmd = json.loads(body or b"{}")
            with st.lock:
                if "mode" in cmd:
                    st.mode = cmd["mode"]
                if "now" in cmd:
                    st.fixed_now = cmd["now"]
                if "pod_identity_duration" in cmd:
                    st.pod_identity_duration = int(cmd["pod_identity_duration"])
            return self._send_json(200, {"ok": True})
        if u.path == "/_reset":
            with st.lock:
                st.requests = []
            return self._send_json(200, {"ok": True})
        if self._gate():
            return
        m = re.match(r"^/api/v1/namespaces/([a-z0-9.-]+)/serviceaccounts/([a-z0-9.-]+)/token$",
                     u.path)
        if m:
            return self._token_request(m.group(1), m.group(2), body)
        self._sts(u, body)

    # ---- TokenRequest ----

    def _k8s_status(self, code, reason, message):
        self._send_json(code, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Failure", "message": message, "reason": reason,
                               "code": code})

    def _token_request(self, ns, sa, body):
        st = self.server.state
        auth = self.headers.get("Authorization", "")
        entry = {"path": self.path, "method": "POST", "action": "TokenRequest",
                 "authorization": "match" if st.api_token and auth == "Bearer " + st.api_token
                 else "mismatch", "content_type": self.headers.get("Content-Type", "")}
        try:
            entry["body"] = json.loads(body)
        except ValueError:
            entry["body"] = None
        st.record(entry)
        if entry["authorization"] != "match":
            return self._k8s_status(401, "Unauthorized", "Unauthorized")
        b = entry["body"]
        if not isinstance(b, dict) or b.get("apiVersion") != "authentication.k8s.io/v1" or \
                b.get("kind") != "TokenRequest" or not isinstance(b.get("spec"), dict):
            return self._k8s_status(400, "BadRequest", "not a TokenRequest")
        exp = b["spec"].get("expirationSeconds", 3600)
        if not isinstance(exp, int) or exp < 600:
            return self._k8s_status(422, "Invalid", "spec.expirationSeconds: Invalid value: "
                                    "may not specify a duration less than 10 minutes")
        if "deny" in sa:
            return self._k8s_status(403, "Forbidden", 'serviceaccounts "%s" is forbidden: User '
                                    '"system:serviceaccount:mcpgate:mcpgate" cannot create '
                                    'resource "serviceaccounts/token" in the namespace "%s"'
                                    % (sa, ns))
        with st.lock:
            st.serial += 1
            n = st.serial
        now = st.now()
        self._send_json(201, {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                              "metadata": {"name": sa, "namespace": ns},
                              "spec": b["spec"],
                              "status": {"token": "sa-token.%s.%s.%d" % (ns, sa, n),
                                         "expirationTimestamp": iso(now + exp)}})

    # ---- the Pod Identity agent ----

    def _pod_identity(self):
        st = self.server.state
        auth = self.headers.get("Authorization")
        st.record({"path": "/v1/credentials", "method": "GET", "action": "PodIdentity",
                   "authorization": "match" if auth == st.pod_identity_token else
                   ("missing" if auth is None else "mismatch")})
        if auth is None:
            return self._send_json(400, {"code": "InvalidParameterException",
                                         "message": "Authorization header is missing"})
        if not st.pod_identity_token or not hmac.compare_digest(auth, st.pod_identity_token):
            return self._send_json(401, {"code": "AccessDeniedException",
                                         "message": "Service account token cannot be empty or "
                                                    "does not match"})
        now = st.now()
        c = st.authority.issue(st.pod_identity_role, st.pod_identity_duration, now)
        self._send_json(200, {"AccessKeyId": c["AccessKeyId"],
                              "SecretAccessKey": c["SecretAccessKey"],
                              "Token": c["SessionToken"],
                              "AccountId": etc.ACCOUNT,
                              "Expiration": iso(c["Expiration"])})

    # ---- STS ----

    def _sts(self, u, body):
        st = self.server.state
        qpairs = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
        ctype = self.headers.get("Content-Type", "")
        fpairs = []
        if body:
            if not ctype.startswith("application/x-www-form-urlencoded"):
                return self._sts_error(StsError(400, "InvalidParameterValue",
                                                "unsupported content type"))
            fpairs = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)
        params = {}
        for k, v in qpairs + fpairs:
            if k != "X-Amz-Signature" and not k.startswith("X-Amz-"):
                params[k] = v
        action = params.get("Action", "")
        entry = {"path": u.path, "method": self.command, "action": action,
                 "params": {k: v for k, v in params.items() if k != "WebIdentityToken"},
                 "web_identity_token": "present" if params.get("WebIdentityToken") else
                 "missing",
                 "authorization": "present" if self.headers.get("Authorization") else "missing",
                 "security_token": "present" if self.headers.get("X-Amz-Security-Token") or
                 any(k == "X-Amz-Security-Token" for k, _ in qpairs) else "missing",
                 "content_type": ctype}
        try:
            if params.get("Version") != "2011-06-15":
                raise StsError(400, "InvalidAction", "Could not find operation %s for version %s"
                               % (action, params.get("Version")))
            if action == "AssumeRoleWithWebIdentity":
                xml = self._assume_role_with_web_identity(params, entry)
            elif action == "AssumeRole":
                caller = self._authenticate(u, qpairs, body, entry)
                xml = self._assume_role(params, caller, entry)
            elif action == "GetCallerIdentity":
                caller = self._authenticate(u, qpairs, body, entry)
                xml = ("<GetCallerIdentityResponse xmlns=\"%s\">\n  <GetCallerIdentityResult>\n"
                       "    <Arn>%s</Arn>\n    <UserId>%s</UserId>\n    <Account>%s</Account>\n"
                       "  </GetCallerIdentityResult>\n  <ResponseMetadata>\n"
                       "    <RequestId>%s</RequestId>\n  </ResponseMetadata>\n"
                       "</GetCallerIdentityResponse>\n"
                       % (XMLNS, xml_escape(caller.arn), xml_escape(caller.access_key_id),
                          caller.account, uuid.uuid4()))
            else:
                raise StsError(400, "InvalidAction", "Could not find operation %s" % action)
        except StsError as e:
            entry["result"] = e.code
            st.record(entry)
            return self._sts_error(e)
        entry["result"] = "OK"
        st.record(entry)
        self._send(200, xml, "text/xml")

    def _authenticate(self, u, qpairs, body, entry):
        """Verifies the request's SigV4 signature (header or query form);
        returns the caller's etc.Identity."""
        st = self.server.state
        now = st.now()
        q = {k: v for k, v in qpairs}
        auth = self.headers.get("Authorization")
        if auth:
            m = re.match(r"^AWS4-HMAC-SHA256 Credential=([^,]+), ?SignedHeaders=([^,]+), ?"
                         r"Signature=([0-9a-f]{64})$", auth)
            if not m:
                raise StsError(400, "IncompleteSignature", "Authorization header is malformed")
            cred, signed, sig = m.group(1).split("/"), m.group(2).split(";"), m.group(3)
            amz_date = self.headers.get("X-Amz-Date", "")
            token = self.headers.get("X-Amz-Security-Token")
            pairs = qpairs
            payload = hashlib.sha256(body).hexdigest()
            if "x-amz-date" not in signed:
                raise StsError(400, "IncompleteSignature", "X-Amz-Date must be signed")
            if token is not None and "x-amz-security-token" not in signed:
                raise StsError(400, "IncompleteSignature",
                               "X-Amz-Security-Token must be signed")
        elif "X-Amz-Signature" in q:
            cred = q.get("X-Amz-Credential", "").split("/")
            signed = q.get("X-Amz-SignedHeaders", "").split(";")
            sig = q["X-Amz-Signature"]
            amz_date = q.get("X-Amz-Date", "")
            token = q.get("X-Amz-Security-Token")
            pairs = [(k, v) for k, v in qpairs if k != "X-Amz-Signature"]
            payload = hashlib.sha256(body).hexdigest()
        else:
            raise StsError(403, "MissingAuthenticationToken",
                           "Request is missing Authentication Token")
        if len(cred) != 5 or cred[3] != "sts" or cred[4] != "aws4_request":
            raise StsError(403, "SignatureDoesNotMatch", "Credential should be scoped to a "
                           "valid region and to the sts service")
        try:
            date = etc.parse_amz_date(amz_date)
        except etc.TokenError as e:
            raise StsError(403, "IncompleteSignature", str(e))
        if abs(now - date) > 15 * 60 or cred[1] != amz_date[:8]:
            raise StsError(403, "SignatureDoesNotMatch", "Signature expired or not yet current: "
                           "%s is more than 15 minutes from now" % amz_date)
        try:
            secret, arn, sid = st.authority.lookup(cred[0], token, now)
        except etc.TokenError as e:
            raise StsError(403, e.code, str(e))
        headers = {}
        for h in signed:
            v = self.headers.get_all(h)
            if v is None:
                raise StsError(403, "SignatureDoesNotMatch", "signed header %s is missing" % h)
            headers[h] = ",".join(v)
        creq = etc.canonical_request(self.command, u.path, pairs, headers, signed, payload)
        want = etc.signature(secret, amz_date, cred[2], "sts", creq)
        entry["signature"] = "valid" if hmac.compare_digest(want, sig) else "invalid"
        entry["signed_headers"] = signed
        entry["region"] = cred[2]
        if entry["signature"] != "valid":
            # Real STS goes on with the canonical request here; say as much
            # on a second line, as STS does, so clients must cut it off.
            raise StsError(403, "SignatureDoesNotMatch",
                           "The request signature we calculated does not match the signature "
                           "you provided. Check your AWS Secret Access Key and signing method."
                           "\n\nThe Canonical String for this request should have been\n'%s'"
                           % creq)
        return etc.Identity(arn, cred[0], sid)

    def _validate_role(self, params):
        role = params.get("RoleArn", "")
        m = ROLE_RE.match(role)
        if not m:
            raise StsError(400, "ValidationError", "1 validation error detected: Value '%s' at "
                           "'roleArn' failed to satisfy constraint" % role)
        sess = params.get("RoleSessionName", "")
        if not NAME_RE.match(sess):
            raise StsError(400, "ValidationError", "1 validation error detected: Value '%s' at "
                           "'roleSessionName' failed to satisfy constraint: Member must "
                           "satisfy regular expression pattern: [\\w+=,.@-]*" % sess)
        try:
            dur = int(params.get("DurationSeconds", "3600"))
        except ValueError:
            dur = -1
        if dur < 900 or dur > 3600:
            raise StsError(400, "ValidationError", "The requested DurationSeconds exceeds the "
                           "MaxSessionDuration set for this role.")
        return role, m.group(1), m.group(2), sess, dur

    def _credentials_xml(self, action, c, sess_arn, role_id, extra=""):
        return ("<%sResponse xmlns=\"%s\">\n  <%sResult>\n%s    <AssumedRoleUser>\n"
                "      <AssumedRoleId>%s</AssumedRoleId>\n      <Arn>%s</Arn>\n"
                "    </AssumedRoleUser>\n    <Credentials>\n"
                "      <AccessKeyId>%s</AccessKeyId>\n"
                "      <SecretAccessKey>%s</SecretAccessKey>\n"
                "      <SessionToken>%s</SessionToken>\n"
                "      <Expiration>%s</Expiration>\n    </Credentials>\n"
                "    <PackedPolicySize>6</PackedPolicySize>\n  </%sResult>\n"
                "  <ResponseMetadata>\n    <RequestId>%s</RequestId>\n  </ResponseMetadata>\n"
                "</%sResponse>\n"
                % (action, XMLNS, action, extra, xml_escape(role_id), xml_escape(sess_arn),
                   c["AccessKeyId"], xml_escape(c["SecretAccessKey"]),
                   xml_escape(c["SessionToken"]), iso(c["Expiration"]), action, uuid.uuid4(),
                   action))

    def _assume_role_with_web_identity(self, params, entry):
        st = self.server.state
        role, acct, name, sess, dur = self._validate_role(params)
        tok = params.get("WebIdentityToken", "")
        if not tok or "invalid" in tok:
            raise StsError(400, "InvalidIdentityToken", "Couldn't retrieve verification key from "
                           "your identity provider")
        if "deny" in role:
            raise StsError(403, "AccessDenied", "Not authorized to perform "
                           "sts:AssumeRoleWithWebIdentity")
        sess_arn = "arn:aws:sts::%s:assumed-role/%s/%s" % (acct, name, sess)
        c = st.authority.issue(sess_arn, dur, st.now())
        entry["issued"] = c["AccessKeyId"]
        return self._credentials_xml(
            "AssumeRoleWithWebIdentity", c, sess_arn, "AROAFAKEWEBIDENTITY:" + sess,
            "    <SubjectFromWebIdentityToken>system:serviceaccount:fake:fake"
            "</SubjectFromWebIdentityToken>\n    <Audience>sts.amazonaws.com</Audience>\n"
            "    <Provider>arn:aws:iam::%s:oidc-provider/fake</Provider>\n" % acct)

    def _assume_role(self, params, caller, entry):
        st = self.server.state
        role, acct, name, sess, dur = self._validate_role(params)
        sid = params.get("SourceIdentity")
        if sid is not None and (not NAME_RE.match(sid) or sid.lower().startswith("aws:")):
            raise StsError(400, "ValidationError", "1 validation error detected: Value at "
                           "'sourceIdentity' failed to satisfy constraint")
        if caller.source_identity and sid is not None and sid != caller.source_identity:
            raise StsError(403, "AccessDenied", "SourceIdentity cannot be changed once set")
        tags = {}
        for k, v in params.items():
            m = re.match(r"^Tags\.member\.(\d+)\.(Key|Value)$", k)
            if m:
                tags.setdefault(int(m.group(1)), {})[m.group(2)] = v
        for t in tags.values():
            if not TAG_KEY_RE.match(t.get("Key", "")) or \
                    not TAG_VALUE_RE.match(t.get("Value", "")):
                raise StsError(400, "ValidationError", "invalid session tag")
        entry["tags"] = {t.get("Key"): t.get("Value") for t in tags.values()}
        if "deny" in role:
            raise StsError(403, "AccessDenied", "User: %s is not authorized to perform: "
                           "sts:AssumeRole on resource: %s" % (caller.arn, role))
        sess_arn = "arn:aws:sts::%s:assumed-role/%s/%s" % (acct, name, sess)
        c = st.authority.issue(sess_arn, dur, st.now(), sid or caller.source_identity)
        entry["issued"] = c["AccessKeyId"]
        extra = "    <SourceIdentity>%s</SourceIdentity>\n" % xml_escape(sid) if sid else ""
        return self._credentials_xml("AssumeRole", c, sess_arn, "AROAFAKEASSUMEROLE:" + sess,
                                     extra)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--master-secret")
    ap.add_argument("--pod-identity-token", default=None,
                    help="the Authorization value the agent accepts")
    ap.add_argument("--pod-identity-role",
                    default="arn:aws:sts::%s:assumed-role/mcpgate-pod-identity/eks-pod-identity"
                    % etc.ACCOUNT)
    ap.add_argument("--pod-identity-duration", type=int, default=6 * 3600)
    ap.add_argument("--api-token", default=None,
                    help="the bearer token TokenRequest calls must carry")
    a = ap.parse_args(argv)
    srv = Server((a.host, a.port), Handler)
    srv.state = State(a)
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    port = srv.server_address[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, a.port_file)
    print("listening on %s:%d" % (a.host, port), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
