#!/usr/bin/python3
"""stale_origin.py reset SRC PORT DST DPORT
   stale_origin.py reuse SRC PORT DST DPORT PATH

The two halves of the stale-origin check (issue 8 item 6), run in one
network namespace from two cgroups:

  reset  binds SRC:PORT, connects to DST:DPORT (a selected pod dialling the
         API: the kernel redirects it to the proxy, whose daemon is stopped,
         so it waits in the accept queue), then resets it (SO_LINGER 0).
  reuse  binds the same SRC:PORT, dials DST:DPORT (the proxy address itself,
         from an unselected cgroup), speaks TLS without verifying and sends
         GET PATH. Prints {"served": true} if an HTTP answer came back.

One JSON line each; exit 0 when the step itself ran."""
import json, socket, ssl, struct, sys

mode, src, port, dst, dport = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
fam = socket.AF_INET6 if ":" in src or ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.settimeout(5)
s.bind((src, port))
out = {"mode": mode}
try:
    s.connect((dst, dport))
    out["connected"] = True
    if mode == "reset":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        t = ctx.wrap_socket(s, server_hostname="kubernetes.default.svc")
        t.sendall(("GET %s HTTP/1.1\r\nHost: kubernetes.default.svc\r\n"
                   "Connection: close\r\n\r\n" % sys.argv[6]).encode())
        data = t.recv(4096)
        out["served"] = data.startswith(b"HTTP/")
        out["status"] = data.split(b"\r\n", 1)[0].decode("latin-1")
except OSError as e:
    out["error"] = str(e)
    out["served"] = False
print(json.dumps(out))
