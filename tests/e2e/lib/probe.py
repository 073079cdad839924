#!/usr/bin/python3
"""probe.py HOST PORT [--family 4|6] [--send TEXT] [--timeout S]

Connects like an unmodified client and prints one JSON line:
{"ok", "error", "errno", "pid", "peer", "local"}; peer is what getpeername()
returns inside the pod (the eBPF program must make it the dialled address).
With --send, writes TEXT, half-closes, and reports what came back."""
import argparse, errno, json, os, socket, sys

ap = argparse.ArgumentParser()
ap.add_argument("host")
ap.add_argument("port", type=int)
ap.add_argument("--family", choices=["4", "6"], default=None)
ap.add_argument("--send", default=None)
ap.add_argument("--timeout", type=float, default=3.0)
ap.add_argument("--hold", type=float, default=0.0, help="seconds to keep the socket open")
a = ap.parse_args()

fam = socket.AF_INET6 if (a.family == "6" or ":" in a.host) else socket.AF_INET
out = {"pid": os.getpid(), "ok": False}
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(a.timeout)
try:
    s.connect((a.host, a.port))
    out["ok"] = True
    p = s.getpeername()
    out["peer"] = "%s:%d" % (("[%s]" % p[0]) if fam == socket.AF_INET6 else p[0], p[1])
    l = s.getsockname()
    out["local"] = "%s:%d" % (("[%s]" % l[0]) if fam == socket.AF_INET6 else l[0], l[1])
    if a.send is not None:
        s.sendall(a.send.encode())
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        out["received"] = data.decode("utf-8", "replace")
    if a.hold:
        import time
        time.sleep(a.hold)
except OSError as e:
    out["error"] = e.strerror or str(e)
    out["errno"] = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else "timeout"
finally:
    s.close()
print(json.dumps(out))
sys.exit(0 if out["ok"] else 1)
