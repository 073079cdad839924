#!/usr/bin/python3
"""eks_token_check.py: the checks aws-iam-authenticator makes on an EKS token,
done offline against the test fake STS's known keys, so the fake API server
can map a `k8s-aws-v1.` token to the IAM identity that signed it.

    from eks_token_check import verify_token, TokenError
    ident = verify_token(token, cluster_id="my-cluster", now=None,
                         extra_hosts=["127.0.0.1:8443"])
    ident.arn            # arn:aws:sts::123456789012:assumed-role/mcp-exec/mcpgate-ns-pod
    ident.canonical_arn  # arn:aws:iam::123456789012:role/mcp-exec

CLI:  eks_token_check.py --cluster C [--now RFC3339|EPOCH] [--host H]... TOKEN|-
      prints the identity as JSON (exit 0) or {"error": ...} (exit 1).

The checks follow aws-iam-authenticator's pkg/token Verify(): token at most
4 KiB; prefix; strict unpadded base64url; https; host allow-listed (the
global and regional STS names, plus the extra hosts a test adds); path "/";
only the allow-listed query parameters, each once; Action=GetCallerIdentity;
x-k8s-aws-id among the signed headers; 0 <= X-Amz-Expires <= 900; X-Amz-Date
present and not more than 15 minutes old. Where the authenticator then asks
STS, this module does what STS would: X-Amz-Date not more than 15 minutes in
the future, Version 2011-06-15, credential scope for sts in the region the
host implies, the key known and its session token valid, and the SigV4
signature recomputed with x-k8s-aws-id set to OUR cluster id.

Keys: the long-term test key AKIDEXAMPLE (the SigV4 test suite's), and every
temporary key fakests.py issues. Temporary credentials are self-describing:
the secret is an HMAC of the key id under a master secret and the session
token carries the key id, ARN and expiry under the same HMAC, so any process
that shares the master secret (default below, or $FAKESTS_MASTER_SECRET)
can verify them without talking to the fake STS.

Python 3 standard library only.
"""
import argparse
import base64
import calendar
import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import time
import urllib.parse

DEFAULT_MASTER_SECRET = "mcpgate-fakests-master-secret"
ACCOUNT = "123456789012"
STATIC_KEYS = {
    # the aws-sig-v4-test-suite key pair; the identity is a test IAM user
    "AKIDEXAMPLE": ("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                    "arn:aws:iam::%s:user/mcpgate-test" % ACCOUNT),
}
MAX_TOKEN_LEN = 4096
TOKEN_PREFIX = "k8s-aws-v1."
PRESIGNED_URL_EXPIRATION = 15 * 60
ALLOWED_PARAMS = {"action", "version", "x-amz-algorithm", "x-amz-credential", "x-amz-date",
                  "x-amz-expires", "x-amz-security-token", "x-amz-signature",
                  "x-amz-signedheaders"}
REGIONAL_HOST = re.compile(
    r"^sts\.([a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-[0-9]+)\.amazonaws\.com(?:\.cn)?$")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class TokenError(Exception):
    """A token (or a signed request) that does not verify; .code is the
    STS-style error code, str() the reason."""

    def __init__(self, message, code="InvalidToken"):
        super().__init__(message)
        self.code = code


class Identity:
    def __init__(self, arn, access_key_id, source_identity=None):
        self.arn = arn
        self.access_key_id = access_key_id
        self.source_identity = source_identity
        self.account = arn.split(":")[4]
        self.canonical_arn = canonical_arn(arn)
        self.session_name = arn.split("/", 2)[2] if ":assumed-role/" in arn else ""

    def as_dict(self):
        return {"arn": self.arn, "canonicalArn": self.canonical_arn, "account": self.account,
                "accessKeyId": self.access_key_id, "sessionName": self.session_name,
                "sourceIdentity": self.source_identity}


def canonical_arn(arn):
    """arn:aws:sts::A:assumed-role/R/S -> arn:aws:iam::A:role/R (as the
    authenticator's arn.Canonicalize; role paths are not in the STS ARN)."""
    m = re.match(r"^arn:([\w-]+):sts::(\d{12}):assumed-role/([^/]+)/(.+)$", arn)
    if m:
        return "arn:%s:iam::%s:role/%s" % (m.group(1), m.group(2), m.group(3))
    return arn


# ---- SigV4, independently of the C implementation ----

def _q(s):
    return urllib.parse.quote(s, safe="-_.~")


def canonical_query(pairs):
    return "&".join("%s=%s" % kv for kv in sorted((_q(k), _q(v)) for k, v in pairs))


def _collapse(v):
    return " ".join(v.split())


def canonical_request(method, path, pairs, headers, signed, payload_hash):
    """<headers>: {lower-case name: value}; <signed>: the names, sorted."""
    lines = "".join("%s:%s\n" % (h, _collapse(headers[h])) for h in signed)
    return "\n".join([method, _q_path(path), canonical_query(pairs), lines, ";".join(signed),
                      payload_hash])


def _q_path(path):
    return urllib.parse.quote(path or "/", safe="/-_.~")


def signing_key(secret, date, region, service):
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def signature(secret, amz_date, scope_region, service, creq):
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date,
                     "%s/%s/%s/aws4_request" % (amz_date[:8], scope_region, service),
                     hashlib.sha256(creq.encode()).hexdigest()])
    k = signing_key(secret, amz_date[:8], scope_region, service)
    return hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()


def parse_amz_date(s):
    if not re.match(r"^\d{8}T\d{6}Z$", s or ""):
        raise TokenError("X-Amz-Date %r is not YYYYMMDDTHHMMSSZ" % s, "IncompleteSignature")
    return calendar.timegm(time.strptime(s, "%Y%m%dT%H%M%SZ"))


# ---- the fake STS's key authority ----

class KeyAuthority:
    """Issues and recognises the fake STS's temporary credentials."""

    def __init__(self, master_secret=None, static_keys=None):
        self.master = (master_secret or os.environ.get("FAKESTS_MASTER_SECRET")
                       or DEFAULT_MASTER_SECRET).encode()
        self.static = dict(STATIC_KEYS if static_keys is None else static_keys)

    def _mac(self, what):
        return hmac.new(self.master, what, hashlib.sha256).digest()

    def secret_for(self, akid):
        return base64.b64encode(self._mac(b"secret:" + akid.encode())).decode()[:40]

    def issue(self, arn, duration, now, source_identity=None):
        """Temporary credentials for <arn>, valid <duration> s from <now>."""
        akid = "ASIA" + base64.b32encode(secrets.token_bytes(10)).decode()[:16]
        exp = int(now) + int(duration)
        payload = json.dumps({"a": akid, "r": arn, "e": exp, "s": source_identity},
                             separators=(",", ":")).encode()
        # standard base64: the token has '/', '+' and '=' in it, as real
        # session tokens do, so percent-encoding gets exercised
        token = "FQoG/+=" + base64.b64encode(payload).decode() + "." + \
            base64.b64encode(self._mac(b"token:" + payload)).decode()
        return {"AccessKeyId": akid, "SecretAccessKey": self.secret_for(akid),
                "SessionToken": token, "Expiration": exp, "Arn": arn}

    def lookup(self, akid, session_token, now):
        """(secret, arn, source_identity) for a key, or TokenError with the
        code STS would answer."""
        if akid in self.static:
            if session_token:
                raise TokenError("The security token included in the request is invalid.",
                                 "InvalidClientTokenId")
            secret, arn = self.static[akid]
            return secret, arn, None
        if not akid.startswith("ASIA") or not session_token:
            raise TokenError("The security token included in the request is invalid.",
                             "InvalidClientTokenId")
        try:
            if not session_token.startswith("FQoG/+="):
                raise ValueError
            body, mac = session_token[7:].rsplit(".", 1)
            payload = base64.b64decode(body, validate=True)
            if not hmac.compare_digest(base64.b64decode(mac, validate=True),
                                       self._mac(b"token:" + payload)):
                raise ValueError
            info = json.loads(payload)
        except (ValueError, TypeError):
            raise TokenError("The security token included in the request is invalid.",
                             "InvalidClientTokenId")
        if info.get("a") != akid:
            raise TokenError("The security token included in the request is invalid.",
                             "InvalidClientTokenId")
        if now >= info["e"]:
            raise TokenError("The security token included in the request is expired",
                             "ExpiredToken")
        return self.secret_for(akid), info["r"], info.get("s")


# ---- the token check ----

def _b64url_strict(s):
    if not re.match(r"^[A-Za-z0-9_-]*$", s) or len(s) % 4 == 1:
        raise TokenError("token is not unpadded base64url")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def allowed_host(host, extra_hosts=()):
    """The region the host signs for, or None if it is not an STS host."""
    if host == "sts.amazonaws.com":
        return "us-east-1"
    m = REGIONAL_HOST.match(host)
    if m:
        return m.group(1)
    if host in extra_hosts:
        return ""  # a test endpoint: any region
    return None


def verify_token(token, cluster_id, now=None, extra_hosts=(), authority=None):
    """Returns the Identity behind <token> for <cluster_id>, or raises
    TokenError. <now>: seconds since the epoch (default: the clock)."""
    now = time.time() if now is None else now
    authority = authority or KeyAuthority()
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LEN:
        raise TokenError("token is too large")
    if not token.startswith(TOKEN_PREFIX):
        raise TokenError("token is missing expected %r prefix" % TOKEN_PREFIX)
    try:
        url = _b64url_strict(token[len(TOKEN_PREFIX):]).decode("utf-8")
    except UnicodeDecodeError:
        raise TokenError("token URL is not UTF-8")
    u = urllib.parse.urlsplit(url)
    if u.scheme != "https":
        raise TokenError("unexpected scheme %r in pre-signed URL" % u.scheme)
    if u.username is not None or u.password is not None or u.fragment:
        raise TokenError("unexpected userinfo or fragment in pre-signed URL")
    region = allowed_host(u.netloc, extra_hosts)
    if region is None:
        raise TokenError("unexpected hostname %r in pre-signed URL" % u.netloc)
    if u.path != "/":
        raise TokenError("unexpected path in pre-signed URL")
    try:
        pairs = urllib.parse.parse_qsl(u.query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise TokenError("malformed query parameter")
    params = {}
    for k, v in pairs:
        if k.lower() not in ALLOWED_PARAMS:
            raise TokenError("non-whitelisted query parameter %r" % k)
        if k.lower() in params:
            raise TokenError("query parameter with multiple values not supported")
        params[k.lower()] = v
    if params.get("action") != "GetCallerIdentity":
        raise TokenError("unexpected action parameter in pre-signed URL")
    signed = params.get("x-amz-signedheaders", "").split(";")
    if "x-k8s-aws-id" not in [h.lower() for h in signed]:
        raise TokenError("client did not sign the x-k8s-aws-id header in the pre-signed URL")
    try:
        expires = int(params.get("x-amz-expires", ""))
    except ValueError:
        expires = -1
    if expires < 0 or expires > 900:
        raise TokenError("invalid X-Amz-Expires parameter in pre-signed URL")
    if "x-amz-date" not in params:
        raise TokenError("X-Amz-Date parameter must be present in pre-signed URL")
    date = parse_amz_date(params["x-amz-date"])
    if now > date + PRESIGNED_URL_EXPIRATION:
        raise TokenError("X-Amz-Date parameter is expired (15 minute expiration)")
    # From here on, what STS itself would check.
    if date > now + PRESIGNED_URL_EXPIRATION:
        raise TokenError("Signature not yet current", "SignatureDoesNotMatch")
    if params.get("version") != "2011-06-15":
        raise TokenError("unexpected Version", "InvalidAction")
    if params.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
        raise TokenError("unsupported X-Amz-Algorithm", "IncompleteSignature")
    cred = params.get("x-amz-credential", "").split("/")
    if len(cred) != 5 or cred[1] != params["x-amz-date"][:8] or cred[3] != "sts" \
            or cred[4] != "aws4_request" or (region and cred[2] != region):
        raise TokenError("bad credential scope", "SignatureDoesNotMatch")
    if sorted(signed) != signed or not set(signed) <= {"host", "x-k8s-aws-id"}:
        raise TokenError("unexpected signed headers %r" % signed, "SignatureDoesNotMatch")
    secret, arn, source_identity = authority.lookup(cred[0], params.get("x-amz-security-token"),
                                                    now)
    headers = {"host": u.netloc, "x-k8s-aws-id": cluster_id}
    creq = canonical_request("GET", u.path, [(k, v) for k, v in pairs if k != "X-Amz-Signature"],
                             headers, signed, EMPTY_SHA256)
    want = signature(secret, params["x-amz-date"], cred[2], "sts", creq)
    if not hmac.compare_digest(want, params.get("x-amz-signature", "")):
        raise TokenError("The request signature we calculated does not match the signature "
                         "you provided.", "SignatureDoesNotMatch")
    return Identity(arn, cred[0], source_identity)


def _parse_now(s):
    if s is None:
        return None
    if re.match(r"^\d+(\.\d+)?$", s):
        return float(s)
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cluster", required=True, help="the cluster id the token must be for")
    ap.add_argument("--now", help="RFC 3339 time or epoch seconds (default: now)")
    ap.add_argument("--host", action="append", default=[], help="extra allowed STS host[:port]")
    ap.add_argument("--master-secret", help="fake STS master secret")
    ap.add_argument("token", help="the token, or - to read it from stdin")
    a = ap.parse_args(argv)
    token = sys.stdin.read().strip() if a.token == "-" else a.token
    try:
        ident = verify_token(token, a.cluster, _parse_now(a.now), a.host,
                             KeyAuthority(a.master_secret))
    except TokenError as e:
        print(json.dumps({"error": str(e), "code": e.code}))
        return 1
    print(json.dumps(ident.as_dict(), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
