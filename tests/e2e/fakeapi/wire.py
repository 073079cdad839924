"""fakeapi.wire: the fake API server's HTTP/1.1 side: reading a request, Status errors, content
negotiation, the reason phrases and dates of response heads."""
import json
import select
import ssl
import time
import urllib.parse
import uuid


MAX_LINE = 64 * 1024
MAX_HEADERS = 256
MAX_BODY = 16 * 1024 * 1024


def jdump(obj):
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def status_obj(code, reason, message, details=None, status="Failure"):
    st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": status}
    if message:
        st["message"] = message
    if reason:
        st["reason"] = reason
    if details is not None:
        st["details"] = details
    st["code"] = code
    return st


class HTTPError(Exception):
    """An error answered with a Status object (HTTP code == status.code)."""

    def __init__(self, code, reason, message, details=None, headers=()):
        Exception.__init__(self, message)
        self.code, self.reason, self.message, self.details = code, reason, message, details
        self.headers = list(headers)


class ClientGone(Exception):
    pass


def parse_bool(v):
    """strconv.ParseBool, as the API server's query conversion uses it."""
    if v in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if v in ("0", "f", "F", "FALSE", "false", "False", ""):
        return False
    raise HTTPError(400, "BadRequest", 'strconv.ParseBool: parsing "%s": invalid syntax' % v)


# ---- the connection: reading ----

class Reader:
    """Buffered reads from a (TLS) socket; lets a watch notice a client that went away."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def _fill(self):
        if self.eof:
            return False
        try:
            d = self.sock.recv(65536)
        except (ConnectionError, ssl.SSLError, OSError):
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def readline(self, limit=MAX_LINE):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > limit:
                raise HTTPError(431, "", "header line too long")
            if not self._fill():
                line = bytes(self.buf)
                self.buf.clear()
                return line

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise ClientGone("EOF after %d of %d bytes" % (len(self.buf), n))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_some(self, n=65536):
        """At least one byte unless EOF (then b"")."""
        if not self.buf and not self._fill():
            return b""
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def readable(self, timeout):
        """True when data (or EOF) is waiting, within timeout seconds."""
        if self.buf or self.eof:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        try:
            r, _, _ = select.select([self.sock], [], [], timeout)
        except (ValueError, OSError):
            return True
        return bool(r)

    def client_gone(self):
        """Non-blocking: has the peer closed (or reset) the connection? Any bytes it sent are
        kept for the next request."""
        if self.eof:
            return True
        if not self.readable(0):
            return False
        try:
            self.sock.setblocking(False)
            try:
                d = self.sock.recv(65536)
            finally:
                self.sock.setblocking(True)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except (ConnectionError, ssl.SSLError, OSError):
            self.eof = True
            return True
        if not d:
            self.eof = True
            return True
        self.buf += d
        return False


class Request:
    def __init__(self):
        self.method = self.target = self.version = ""
        self.headers = []
        self.body = b""
        self.path = ""
        self.query = {}
        self.user = None
        self.authorization = None
        self.audit_id = None
        self.logged = False

    def header(self, name, default=None):
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k == name]

    def q(self, name, default=None):
        v = self.query.get(name)
        return v[0] if v else default

    def qall(self, name):
        return self.query.get(name, [])


def read_request(conn):
    r = conn.reader
    line = r.readline()
    while line in (b"\r\n", b"\n"):  # RFC 9112 2.2: ignore leading empty lines
        line = r.readline()
    if not line:
        return None
    req = Request()
    try:
        method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ")
    except ValueError:
        raise HTTPError(400, "BadRequest", "malformed request line")
    req.method, req.target, req.version = method, target, version
    while True:
        h = r.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        if len(req.headers) >= MAX_HEADERS:
            raise HTTPError(431, "", "too many headers")
        name, sep, value = h.decode("latin-1").partition(":")
        if not sep:
            raise HTTPError(400, "BadRequest", "malformed header line")
        req.headers.append((name.strip().lower(), value.strip()))
    parsed = urllib.parse.urlsplit(target)
    req.path = urllib.parse.unquote(parsed.path)
    req.query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
    te = req.header("transfer-encoding")
    if (req.header("expect") or "").lower() == "100-continue" and (
            te or int(req.header("content-length") or 0) > 0):
        conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
    if te and te.lower() == "chunked":
        body = bytearray()
        while True:
            size_line = r.readline().split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise HTTPError(400, "BadRequest", "bad chunk size")
            if size == 0:
                while r.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += r.read_exact(size)
            r.readline()
            if len(body) > MAX_BODY:
                raise HTTPError(413, "RequestEntityTooLarge", "request entity too large")
        req.body = bytes(body)
    elif req.header("content-length"):
        try:
            n = int(req.header("content-length"))
        except ValueError:
            raise HTTPError(400, "BadRequest", "bad Content-Length")
        if n > MAX_BODY:
            raise HTTPError(413, "RequestEntityTooLarge", "request entity too large")
        req.body = r.read_exact(n)
    return req


FLOWSCHEMA_UID = str(uuid.uuid4())
PRIORITY_UID = str(uuid.uuid4())

REASONS = {100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
           202: "Accepted", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           406: "Not Acceptable", 409: "Conflict", 410: "Gone", 413: "Request Entity Too Large",
           415: "Unsupported Media Type", 422: "Unprocessable Entity", 429: "Too Many Requests",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 503: "Service Unavailable", 504: "Gateway Timeout"}


def http_date():
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())


# ---- content negotiation ----

def parse_accept(value):
    """[(type, params)] in order."""
    out = []
    for part in (value or "").split(","):
        part = part.strip()
        if not part:
            continue
        bits = [b.strip() for b in part.split(";")]
        params = {}
        for b in bits[1:]:
            k, _, v = b.partition("=")
            params[k.strip().lower()] = v.strip()
        out.append((bits[0].lower(), params))
    return out


def negotiate(req, kinds=("",)):
    """The first acceptable representation: "" (plain JSON), "Table", "PartialObjectMetadata"
    or "PartialObjectMetadataList", with its group version. Raises 406."""
    acc = parse_accept(req.header("accept"))
    if not acc:
        return "", None
    for typ, params in acc:
        if typ not in ("application/json", "*/*", "application/*", "application/yaml",
                       "application/json;stream=watch"):
            continue
        as_ = params.get("as")
        if not as_:
            return "", None
        if as_ in kinds and params.get("g") == "meta.k8s.io" and params.get("v") in (
                "v1", "v1beta1"):
            return as_, "meta.k8s.io/" + params["v"]
    raise HTTPError(406, "NotAcceptable", "only the following media types are accepted: "
                    "application/json, application/yaml, application/vnd.kubernetes.protobuf")
