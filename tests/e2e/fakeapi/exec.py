"""fakeapi.exec: pods/exec (and attach) for the fake API server.

Two transports, as the real API server/kubelet offer them:
  - WebSocket (RFC 6455) with the subprotocols v5.channel.k8s.io (adds channel 255, CLOSE),
    v4/v3/v2.channel.k8s.io, channel.k8s.io and their base64 variants: each binary message
    starts with its channel byte (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize);
  - SPDY/3.1 (what kubectl before 1.30 uses): one SPDY stream per channel, named by its
    "streamtype" header; name/value blocks are zlib-compressed with the SPDY/3 dictionary.
The "container" is a tiny builtin interpreter, not a shell: echo, cat, sh -c, true/false, exit,
env, printenv, sleep, seq, hostname, id, pwd, whoami, uname, date, ls. An unknown command
exits 127 with a message on stderr; the exit code travels in the error channel as the kubelet
sends it (Status NonZeroExitCode with an ExitCode cause)."""
import base64
import hashlib
import json
import re
import shlex
import struct
import time
import zlib

from .wire import HTTPError, ClientGone, parse_bool

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io",
                "v2.channel.k8s.io", "channel.k8s.io", "v4.base64.channel.k8s.io",
                "v3.base64.channel.k8s.io", "v2.base64.channel.k8s.io", "base64.channel.k8s.io"]
SPDY_PROTOCOLS = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                  "channel.k8s.io"]


def _spdy_dictionary():
    """The SPDY/3 header-compression dictionary (draft 3, section 2.6.10.1): length-prefixed
    header names and values, then a run of common strings; 1423 bytes."""
    words = ["options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
             "accept-encoding", "accept-language", "accept-ranges", "age", "allow",
             "authorization", "cache-control", "connection", "content-base", "content-encoding",
             "content-language", "content-length", "content-location", "content-md5",
             "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
             "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
             "last-modified", "location", "max-forwards", "pragma", "proxy-authenticate",
             "proxy-authorization", "range", "referer", "retry-after", "server", "te", "trailer",
             "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
             "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
             "public", "set-cookie", "keep-alive", "origin"]
    tail = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417"
            "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
            "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
            "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
            "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
            "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
            "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
            "charset=iso-8859-1,utf-,*,enq=0.")
    d = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + tail.encode()
    assert len(d) == 1423, len(d)
    return d


SPDY_DICT = _spdy_dictionary()


# ---- the builtin "container" ----

class ExitCommand(Exception):
    def __init__(self, code):
        Exception.__init__(self, code)
        self.code = code


class Proc:
    """What a command sees: stdin (a callable returning bytes, b"" at EOF), stdout, stderr."""

    def __init__(self, read_stdin, out, err, env, files, pod):
        self.read_stdin, self.out, self.err = read_stdin, out, err
        self.env, self.files, self.pod = env, files, pod


def run_argv(p, argv):
    if not argv:
        return 0
    cmd, args = argv[0].rsplit("/", 1)[-1], argv[1:]
    if cmd == "echo":
        nl = True
        if args and args[0] == "-n":
            nl, args = False, args[1:]
        p.out((" ".join(args) + ("\n" if nl else "")).encode())
        return 0
    if cmd == "cat":
        rc = 0
        for a in args or ["-"]:
            if a == "-":
                while True:
                    d = p.read_stdin()
                    if not d:
                        break
                    p.out(d)
            elif a in p.files:
                p.out(p.files[a].encode() if isinstance(p.files[a], str) else p.files[a])
            else:
                p.err(("cat: %s: No such file or directory\n" % a).encode())
                rc = 1
        return rc
    if cmd in ("sh", "bash", "ash", "dash"):
        if args and args[0] == "-c":
            if len(args) < 2:
                p.err(b"sh: -c requires an argument\n")
                return 2
            return run_script(p, args[1])
        # An interactive shell: one line of stdin at a time.
        buf = b""
        rc = 0
        while True:
            d = p.read_stdin()
            if not d:
                if buf.strip():
                    rc = run_script(p, buf.decode("utf-8", "replace"))
                return rc
            buf += d
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    rc = run_script(p, line.decode("utf-8", "replace"), top=False)
                except ExitCommand as e:
                    return e.code
    if cmd == "true" or cmd == ":":
        return 0
    if cmd == "false":
        return 1
    if cmd == "exit":
        raise ExitCommand(int(args[0]) if args and args[0].lstrip("-").isdigit() else 0)
    if cmd == "env":
        p.out("".join("%s=%s\n" % kv for kv in p.env.items()).encode())
        return 0
    if cmd == "printenv":
        if not args:
            p.out("".join("%s=%s\n" % kv for kv in p.env.items()).encode())
            return 0
        rc = 0
        for a in args:
            if a in p.env:
                p.out((p.env[a] + "\n").encode())
            else:
                rc = 1
        return rc
    if cmd == "sleep":
        try:
            t = min(float(args[0]) if args else 0, 300)
        except ValueError:
            p.err(("sleep: invalid time interval '%s'\n" % args[0]).encode())
            return 1
        time.sleep(t)
        return 0
    if cmd == "seq":
        try:
            nums = [int(a) for a in args]
        except ValueError:
            p.err(b"seq: invalid argument\n")
            return 1
        first, last = (nums[0], nums[1]) if len(nums) >= 2 else (1, nums[0] if nums else 0)
        chunk = []
        for i in range(first, last + 1):
            chunk.append("%d\n" % i)
            if len(chunk) >= 4096:
                p.out("".join(chunk).encode())
                chunk = []
        if chunk:
            p.out("".join(chunk).encode())
        return 0
    if cmd == "hostname":
        p.out((p.pod["metadata"]["name"] + "\n").encode())
        return 0
    if cmd == "whoami":
        p.out(b"root\n")
        return 0
    if cmd == "id":
        p.out(b"uid=0(root) gid=0(root) groups=0(root)\n")
        return 0
    if cmd == "pwd":
        p.out(b"/\n")
        return 0
    if cmd == "uname":
        p.out(b"Linux %s 6.1.0 #1 SMP x86_64 GNU/Linux\n" % p.pod["metadata"]["name"].encode()
              if "-a" in args else b"Linux\n")
        return 0
    if cmd == "date":
        p.out(time.strftime("%a %b %d %H:%M:%S UTC %Y\n", time.gmtime()).encode())
        return 0
    if cmd == "ls":
        rc = 0
        for d in args or ["/"]:
            pre = d.rstrip("/") + "/"
            if d in p.files:
                p.out((d + "\n").encode())
                continue
            names = sorted({f[len(pre):].split("/")[0] for f in p.files if f.startswith(pre)})
            if not names:
                p.err(("ls: %s: No such file or directory\n" % d).encode())
                rc = 2
            for n in names:
                p.out((n + "\n").encode())
        return rc
    raise LookupError(argv[0])


def expand(script, env):
    """$NAME and ${NAME} from the environment, outside single quotes (no other expansion)."""
    out, i, quote = [], 0, None
    while i < len(script):
        ch = script[i]
        if ch == "'" and quote != '"':
            quote = None if quote == "'" else "'"
        elif ch == '"' and quote != "'":
            quote = None if quote == '"' else '"'
        elif ch == "\\" and quote != "'" and i + 1 < len(script):
            out.append(script[i:i + 2])
            i += 2
            continue
        elif ch == "$" and quote != "'":
            m = re.match(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))",
                         script[i:])
            if m:
                out.append(env.get(m.group(1) or m.group(2), ""))
                i += m.end()
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def run_script(p, script, top=True):
    """A tiny subset of sh: commands split by ; && || and |, with shlex quoting, and the
    redirections N>&M and N>/dev/null, and $VAR expansion."""
    script = expand(script, p.env)
    script = re.sub(r"(?<![\w>&])([12]?)>&([12])\b", lambda m: " __redir_%s_%s " % (
        m.group(1) or "1", m.group(2)), script)
    script = re.sub(r"(?<![\w>&])([12]?)>\s*/dev/null\b", lambda m: " __null_%s " % (
        m.group(1) or "1"), script)
    try:
        lex = shlex.shlex(script, posix=True, punctuation_chars=";&|")
        lex.whitespace_split = True
        toks = list(lex)
    except ValueError as e:
        p.err(("sh: syntax error: %s\n" % e).encode())
        return 2
    # [(connector, [pipeline of argvs])]
    seq, cur, pipe, conn = [], [], [], ";"
    for t in toks + [";"]:
        if t in (";", "&&", "||", "|"):
            pipe.append(cur)
            cur = []
            if t != "|":
                seq.append((conn, pipe))
                pipe, conn = [], t
        else:
            cur.append(t)
    rc = 0
    try:
        for connector, pipeline in seq:
            if connector == "&&" and rc != 0:
                continue
            if connector == "||" and rc == 0:
                continue
            pipeline = [a for a in pipeline if a]
            if not pipeline:
                continue
            rc = run_pipeline(p, pipeline)
    except ExitCommand as e:
        if top:
            return e.code
        raise
    return rc


def run_pipeline(p, pipeline):
    stdin = p.read_stdin
    rc = 0
    for i, argv in enumerate(pipeline):
        last = i == len(pipeline) - 1
        buf = []
        fds = {1: p.out if last else buf.append, 2: p.err}
        plain = []
        for a in argv:
            m = re.match(r"^__(redir|null)_(\d)(?:_(\d))?$", a)
            if not m:
                plain.append(a)
            elif m.group(1) == "null":
                fds[int(m.group(2))] = lambda b: None
            else:
                fds[int(m.group(2))] = fds[int(m.group(3))]
        argv = plain
        sub = Proc(stdin, fds[1], fds[2], p.env, p.files, p.pod)
        try:
            rc = run_argv(sub, argv)
        except LookupError:
            fds[2](("sh: 1: %s: not found\n" % argv[0]).encode())
            rc = 127
        if not last:
            data = [b"".join(buf)]

            def stdin(data=data):
                d, data[0] = data[0], b""
                return d
    return rc


def container_env(pod, container):
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOSTNAME": pod["metadata"]["name"]}
    for c in pod["spec"].get("containers", []):
        if c.get("name") != container:
            continue
        for e in c.get("env") or []:
            if "value" in e:
                env[e["name"]] = str(e["value"])
    env.update({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
                "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT":
                "tcp://10.96.0.1:443", "HOME": "/root"})
    return env


def exit_status(argv, rc):
    """The error-channel Status the kubelet writes for protocol v4+."""
    if rc == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": "command terminated with non-zero exit code: error executing command "
                       "[%s], exit code %d" % (" ".join(argv), rc),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(rc)}]}}


def execute(h, pod, container, argv, tty, read_stdin, out, err):
    """Runs argv; returns its exit code. tty merges stderr into stdout and maps \\n to \\r\\n."""
    srv = h.srv
    key = "%s/%s" % (pod["metadata"]["namespace"], pod["metadata"]["name"])
    files = dict(srv.exec_files)
    files.update(srv.exec_pod_files.get(key) or {})
    env = container_env(pod, container)
    if tty:
        env["TERM"] = "xterm"

        def o(b):
            out(b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        e = o
    else:
        o, e = out, err
    p = Proc(read_stdin, o, e, env, files, pod)
    try:
        return run_argv(p, argv)
    except ExitCommand as x:
        return x.code
    except LookupError:
        e(('exec: "%s": executable file not found in $PATH\n' % argv[0]).encode())
        return 127


# ---- entry ----

def handle(h, ns, name, sub):
    req = h.req
    pod, container = h.pod_and_container(ns, name)
    argv = req.qall("command")
    if sub == "exec" and not argv:
        raise HTTPError(400, "BadRequest", "you must specify at least 1 command")
    flags = {k: parse_bool(req.q(k, "")) for k in ("stdin", "stdout", "stderr", "tty")}
    if not (flags["stdin"] or flags["stdout"] or flags["stderr"]):
        raise HTTPError(400, "BadRequest", "you must specify at least one of stdin, stdout, "
                        "stderr")
    if sub == "attach":
        argv = ["sh"] if flags["stdin"] else ["sleep", "3600"]
    up = (req.header("upgrade") or "").lower()
    conn_hdr = (req.header("connection") or "").lower()
    if "upgrade" not in conn_hdr or not up:
        raise HTTPError(400, "BadRequest", "Upgrade request required")
    if up == "websocket":
        return WebSocketExec(h, pod, container, argv, flags).run()
    if up.startswith("spdy/3.1"):
        return SpdyExec(h, pod, container, argv, flags).run()
    raise HTTPError(400, "BadRequest", "unable to upgrade: unsupported protocol %r" % up)


def _header_list(req, name):
    out = []
    for v in req.header_all(name):
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


# ---- WebSocket ----

class WebSocketExec:
    def __init__(self, h, pod, container, argv, flags):
        self.h, self.pod, self.container, self.argv, self.flags = h, pod, container, argv, flags
        self.conn = h.conn
        self.stdin_done = not flags["stdin"]
        self.closed = False

    def run(self):
        h, req = self.h, self.h.req
        key = req.header("sec-websocket-key")
        if (req.header("sec-websocket-version") or "") != "13" or not key:
            raise HTTPError(400, "BadRequest", "websocket: bad handshake (need version 13 and a "
                            "key)")
        offered = _header_list(req, "sec-websocket-protocol")
        proto = None
        for p in offered or [""]:
            if p in WS_PROTOCOLS or p == "":
                proto = p
                break
        if proto is None:
            raise HTTPError(400, "BadRequest", "requested protocol(s) are not supported: %s; "
                            "supports %s" % (offered, WS_PROTOCOLS))
        self.proto = proto
        self.b64 = "base64" in proto
        self.version = int(proto[1]) if proto.startswith("v") else 1
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        hdrs = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept)]
        if proto:
            hdrs.append(("Sec-WebSocket-Protocol", proto))
        h.conn.keep_alive = False
        h.srv.log_request(h.conn, req, 101)
        head = "HTTP/1.1 101 Switching Protocols\r\n" + "".join(
            "%s: %s\r\n" % kv for kv in h.conn.base_headers(req) + hdrs) + "\r\n"
        self.conn.send(head.encode("latin-1"))
        try:
            rc = execute(h, self.pod, self.container, self.argv, self.flags["tty"],
                         self.read_stdin, lambda b: self.write(1, b), lambda b: self.write(2, b))
            if self.version >= 4:
                self.write(3, json.dumps(exit_status(self.argv, rc),
                                         separators=(",", ":")).encode())
            elif rc != 0:
                self.write(3, ("command terminated with non-zero exit code: error executing "
                               "command [%s], exit code %d" % (" ".join(self.argv), rc)).encode())
            self.send_frame(0x8, struct.pack(">H", 1000))
            self.drain_until_close(2.0)
        except ClientGone:
            pass
        return None

    # frames
    def send_frame(self, opcode, payload):
        n = len(payload)
        if n < 126:
            head = struct.pack(">BB", 0x80 | opcode, n)
        elif n < 65536:
            head = struct.pack(">BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack(">BBQ", 0x80 | opcode, 127, n)
        self.conn.send(head + payload)

    def write(self, ch, data):
        if self.flags["tty"] and ch == 2:
            ch = 1
        if ch in (1, 2) and not self.flags["stdout" if ch == 1 else "stderr"]:
            return
        for i in range(0, max(len(data), 1), 32 * 1024):
            part = data[i:i + 32 * 1024]
            if self.b64:
                self.send_frame(0x1, (chr(ord("0") + ch)).encode() + base64.b64encode(part))
            else:
                self.send_frame(0x2, bytes([ch]) + part)

    def read_frame(self):
        """(opcode, payload) of one whole message; control frames are answered here."""
        r = self.conn.reader
        msg, msg_op = b"", None
        while True:
            b0, b1 = r.read_exact(2)
            fin, op = b0 & 0x80, b0 & 0x0F
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", r.read_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", r.read_exact(8))[0]
            mask = r.read_exact(4) if b1 & 0x80 else None
            data = r.read_exact(n)
            if mask:
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
            if op == 0x9:
                self.send_frame(0xA, data)
                continue
            if op == 0xA:
                continue
            if op == 0x8:
                return 0x8, data
            if op != 0:
                msg_op = op
            msg += data
            if fin:
                return msg_op, msg

    def read_stdin(self):
        while not self.stdin_done:
            op, data = self.read_frame()
            if op == 0x8:
                self.closed = True
                self.stdin_done = True
                try:
                    self.send_frame(0x8, data[:2] or struct.pack(">H", 1000))
                except ClientGone:
                    pass
                raise ClientGone("websocket closed by the client")
            if not data:
                continue
            if self.b64:
                ch = data[0] - ord("0")
                try:
                    payload = base64.b64decode(data[1:])
                except ValueError:
                    continue
            else:
                ch, payload = data[0], data[1:]
            if ch == 0 and payload:
                return payload
            if ch == 255 and self.version >= 5 and payload[:1] == b"\x00":
                self.stdin_done = True
        return b""

    def drain_until_close(self, timeout):
        end = time.monotonic() + timeout
        while not self.closed and time.monotonic() < end:
            if not self.conn.reader.readable(max(0.0, end - time.monotonic())):
                return
            op, data = self.read_frame()
            if op == 0x8:
                return


# ---- SPDY/3.1 ----

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1, 2, 3, 4, 6, 7, 8, 9)
FLAG_FIN = 0x01


class SpdyExec:
    def __init__(self, h, pod, container, argv, flags):
        self.h, self.pod, self.container, self.argv, self.flags = h, pod, container, argv, flags
        self.conn = h.conn
        self.inflate = zlib.decompressobj(zdict=SPDY_DICT)
        self.deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY,
                                        SPDY_DICT)
        self.streams = {}        # streamtype -> id
        self.stdin_buf = []
        self.stdin_eof = False
        self.last_id = 0
        self.goaway = False

    def run(self):
        h, req = self.h, self.h.req
        offered = _header_list(req, "x-stream-protocol-version")
        proto = ""
        for p in offered:
            if p in SPDY_PROTOCOLS:
                proto = p
                break
        if offered and not proto:
            raise HTTPError(403, "Forbidden", "unable to upgrade: unable to negotiate protocol: "
                            "client supports %s, server supports %s" % (offered, SPDY_PROTOCOLS))
        self.version = int(proto[1]) if proto.startswith("v") else 1
        hdrs = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]
        if proto:
            hdrs.append(("X-Stream-Protocol-Version", proto))
        h.conn.keep_alive = False
        h.srv.log_request(h.conn, req, 101)
        head = "HTTP/1.1 101 Switching Protocols\r\n" + "".join(
            "%s: %s\r\n" % kv for kv in h.conn.base_headers(req) + hdrs) + "\r\n"
        self.conn.send(head.encode("latin-1"))
        want = {"error"}
        if self.flags["stdin"]:
            want.add("stdin")
        if self.flags["stdout"]:
            want.add("stdout")
        if self.flags["stderr"] and not self.flags["tty"]:
            want.add("stderr")
        if self.flags["tty"] and self.version >= 3:
            want.add("resize")
        deadline = time.monotonic() + 30
        try:
            while not want <= set(self.streams):
                if time.monotonic() > deadline or self.goaway:
                    return None
                if not self.conn.reader.readable(1.0):
                    continue
                self.handle_frame()
            if "stdin" not in self.streams:
                self.stdin_eof = True
            rc = execute(h, self.pod, self.container, self.argv, self.flags["tty"],
                         self.read_stdin, lambda b: self.write("stdout", b),
                         lambda b: self.write("stderr", b))
            for st in ("stdout", "stderr"):
                if st in self.streams:
                    self.data(self.streams[st], b"", FLAG_FIN)
            if self.version >= 4:
                self.data(self.streams["error"], json.dumps(exit_status(self.argv, rc),
                                                            separators=(",", ":")).encode())
            elif rc != 0:
                self.data(self.streams["error"], ("command terminated with non-zero exit code: "
                                                  "error executing command [%s], exit code %d" % (
                                                      " ".join(self.argv), rc)).encode())
            self.data(self.streams["error"], b"", FLAG_FIN)
            self.control(GOAWAY, 0, struct.pack(">II", self.last_id, 0))
            # Let the client read everything before the connection goes.
            end = time.monotonic() + 1.0
            while time.monotonic() < end and not self.goaway:
                if not self.conn.reader.readable(max(0.0, end - time.monotonic())):
                    break
                self.handle_frame()
        except ClientGone:
            pass
        return None

    # frames out
    def control(self, typ, flags, payload):
        self.conn.send(struct.pack(">HHI", 0x8000 | 3, typ, (flags << 24) | len(payload)) +
                       payload)

    def data(self, sid, payload, flags=0):
        for i in range(0, max(len(payload), 1), 32 * 1024):
            part = payload[i:i + 32 * 1024]
            last = i + 32 * 1024 >= len(payload)
            self.conn.send(struct.pack(">II", sid & 0x7FFFFFFF, ((flags if last else 0) << 24) |
                                       len(part)) + part)

    def write(self, streamtype, b):
        if self.flags["tty"] and streamtype == "stderr":
            streamtype = "stdout"
        sid = self.streams.get(streamtype)
        if sid is not None and b:
            self.data(sid, b)

    def header_block(self, pairs):
        raw = struct.pack(">I", len(pairs))
        for k, v in pairs:
            raw += struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
        return self.deflate.compress(raw) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    def parse_headers(self, block):
        raw = self.inflate.decompress(block)
        out = {}
        n = struct.unpack(">I", raw[:4])[0]
        pos = 4
        for _ in range(n):
            ln = struct.unpack(">I", raw[pos:pos + 4])[0]
            k = raw[pos + 4:pos + 4 + ln].decode("latin-1")
            pos += 4 + ln
            lv = struct.unpack(">I", raw[pos:pos + 4])[0]
            v = raw[pos + 4:pos + 4 + lv].decode("latin-1")
            pos += 4 + lv
            out[k.lower()] = v
        return out

    # frames in
    def handle_frame(self):
        r = self.conn.reader
        hdr = r.read_exact(8)
        w0, w1 = struct.unpack(">II", hdr)
        flags, length = w1 >> 24, w1 & 0xFFFFFF
        payload = r.read_exact(length)
        if w0 & 0x80000000:
            typ = w0 & 0xFFFF
            if typ == SYN_STREAM:
                sid = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
                hdrs = self.parse_headers(payload[10:])
                self.last_id = max(self.last_id, sid)
                st = hdrs.get("streamtype", "")
                self.streams[st] = sid
                self.control(SYN_REPLY, 0, struct.pack(">I", sid) + self.header_block([]))
                if flags & FLAG_FIN and st == "stdin":
                    self.stdin_eof = True
            elif typ in (SYN_REPLY, HEADERS):
                self.parse_headers(payload[4:])
            elif typ == PING:
                self.control(PING, 0, payload[:4])
            elif typ == RST_STREAM:
                sid = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
                if sid == self.streams.get("stdin"):
                    self.stdin_eof = True
            elif typ == GOAWAY:
                self.goaway = True
                self.stdin_eof = True
            return
        sid = w0 & 0x7FFFFFFF
        if sid == self.streams.get("stdin"):
            if payload:
                self.stdin_buf.append(payload)
                # Hand back the receive window we consumed (SPDY/3 flow control).
                self.control(WINDOW_UPDATE, 0, struct.pack(">II", sid, len(payload)))
            if flags & FLAG_FIN:
                self.stdin_eof = True

    def read_stdin(self):
        while True:
            if self.stdin_buf:
                return self.stdin_buf.pop(0)
            if self.stdin_eof:
                return b""
            if not self.conn.reader.readable(1.0):
                continue
            if self.conn.reader.eof:
                self.stdin_eof = True
                return b""
            self.handle_frame()
