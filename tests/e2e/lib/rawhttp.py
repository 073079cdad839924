#!/usr/bin/python3
"""rawhttp.py HOST PORT CAFILE < request-bytes

Sends the exact bytes on stdin over TLS (verifying HOST against CAFILE, as a
pod would) and prints one JSON line: {"status", "headers", "body", "raw"} of
the first response, and "closed" if the server closed the connection after
it. For the smuggling tests, where no well-behaved client would do."""
import json, socket, ssl, sys

host, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
req = sys.stdin.buffer.read()
ctx = ssl.create_default_context(cafile=cafile)
ctx.set_alpn_protocols(["http/1.1"])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
raw = socket.socket(fam, socket.SOCK_STREAM)
raw.settimeout(5)
raw.connect((host, port))
s = ctx.wrap_socket(raw, server_hostname=host)
s.sendall(req)
data = b""
closed = False
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            closed = True
            break
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            hl = [l.split(b":", 1) for l in head.split(b"\r\n")[1:]]
            h = {k.strip().lower().decode(): v.strip().decode() for k, v in hl}
            if "content-length" in h and len(rest) >= int(h["content-length"]):
                # see whether the proxy closes after an error
                s.settimeout(1.0)
except (socket.timeout, ssl.SSLError, ConnectionResetError):
    pass
head, _, body = data.partition(b"\r\n\r\n")
lines = head.split(b"\r\n")
status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
headers = {}
for l in lines[1:]:
    k, _, v = l.partition(b":")
    headers[k.strip().lower().decode()] = v.strip().decode()
print(json.dumps({"status": status, "headers": headers, "body": body.decode("utf-8", "replace"),
                  "closed": closed, "alpn": s.selected_alpn_protocol()}))
