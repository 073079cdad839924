#!/usr/bin/python3
"""loadgen.py MODE [options]: load shapes for the limits e2e (test_limits.sh),
run inside a pod against https://10.96.0.1 with the pod's CA and token.

  hold   --count N --marker M --hold S --out F   N connections, one GET each
         (kept open); writes the statuses to F, then holds them S seconds
  seq    --count N --marker M --out F [--tokens F2]  N GETs, each on a new
         connection (a token per line of F2 in turn, else the pod's); writes
         statuses and latency figures (p50/p99 ms) to F
  flood  --conns C --seconds S --out F           C threads of GETs with random
         bearer tokens for S seconds; writes status counts to F
  stall  --path P --hold S --out F               one GET whose answer is never
         read (tiny receive buffer), held S seconds
  tcp    --count N --hold S --out F              N bare TCP connections, held

Every result file is written atomically (rename), so a test can wait for it."""
import argparse, json, os, random, socket, ssl, string, sys, threading, time

SA = "/var/run/secrets/kubernetes.io/serviceaccount"
HOST, PORT = "10.96.0.1", 443


def ctx():
    c = ssl.create_default_context(cafile=SA + "/ca.crt")
    c.set_alpn_protocols(["http/1.1"])
    return c


def pod_token():
    return open(SA + "/token").read().strip()


def write(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.rename(tmp, path)


def read_response(s):
    """Reads one response (Content-Length or until close); returns (status,
    headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(body) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    elif headers.get("transfer-encoding") == "chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    return status, headers, body


def get(path, token=None, sock=None, timeout=10):
    """GETs <path>; on a new connection unless <sock>. Returns (sock,
    result dict)."""
    t0 = time.monotonic()
    if sock is None:
        raw = socket.create_connection((HOST, PORT), timeout=timeout)
        sock = ctx().wrap_socket(raw, server_hostname=HOST)
    sock.settimeout(timeout)
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
           "Accept: application/json\r\n\r\n" % (path, HOST, token or pod_token()))
    try:
        sock.sendall(req.encode())
        status, headers, body = read_response(sock)
    except (OSError, ssl.SSLError) as e:
        return sock, {"status": 0, "error": str(e), "ms": (time.monotonic() - t0) * 1000}
    r = {"status": status, "ms": (time.monotonic() - t0) * 1000,
         "retryAfter": headers.get("retry-after")}
    if status >= 400:
        try:
            st = json.loads(body)
            r["reason"], r["kind"] = st.get("reason"), st.get("kind")
        except ValueError:
            r["reason"] = None
    return sock, r


def path_for(marker):
    return "/api/v1/namespaces/default/pods?labelSelector=marker%3D" + marker


def pct(vals, p):
    vals = sorted(vals)
    return vals[min(len(vals) - 1, int(round(p / 100.0 * (len(vals) - 1))))] if vals else None


def mode_hold(a):
    socks, res = [], []
    for i in range(a.count):
        try:
            s, r = get(path_for("%s-%d" % (a.marker, i)))
            socks.append(s)
        except OSError as e:
            r = {"status": 0, "error": str(e)}
        res.append(r)
    write(a.out, res)
    time.sleep(a.hold)


def mode_seq(a):
    tokens = [l.strip() for l in open(a.tokens)] if a.tokens else [None]
    res = []
    for i in range(a.count):
        try:
            s, r = get(path_for("%s-%d" % (a.marker, i)), token=tokens[i % len(tokens)])
            s.close()
        except OSError as e:
            r = {"status": 0, "error": str(e)}
        res.append(r)
    ms = [r["ms"] for r in res if r.get("status") == 200]
    write(a.out, {"results": res, "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99)})


def mode_flood(a):
    counts, retry_after, lock = {}, [0], threading.Lock()
    end = time.monotonic() + a.seconds

    def one():
        while time.monotonic() < end:
            tok = "".join(random.choice(string.ascii_letters) for _ in range(40))
            try:
                s, r = get(path_for("flood"), token=tok, timeout=30)
                s.close()
            except OSError:
                r = {"status": 0}
            with lock:
                counts[r["status"]] = counts.get(r["status"], 0) + 1
                if r["status"] == 429 and r.get("retryAfter"):
                    retry_after[0] += 1
            if r["status"] == 429:
                time.sleep(0.2)  # a client honouring Retry-After would wait longer

    ts = [threading.Thread(target=one) for _ in range(a.conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    write(a.out, {"counts": counts, "retryAfter": retry_after[0]})


def mode_stall(a):
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect((HOST, PORT))
    s = ctx().wrap_socket(raw, server_hostname=HOST)
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n"
               % (a.path, HOST, pod_token())).encode())
    write(a.out, {"sent": True})
    time.sleep(a.hold)


def mode_tcp(a):
    socks = []
    for _ in range(a.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect((HOST, PORT))
            socks.append(s)
        except OSError:
            s.close()
    write(a.out, {"connected": len(socks)})
    time.sleep(a.hold)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["hold", "seq", "flood", "stall", "tcp"])
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--marker", default="m")
    ap.add_argument("--hold", type=float, default=0)
    ap.add_argument("--seconds", type=float, default=1)
    ap.add_argument("--path", default="/version")
    ap.add_argument("--tokens")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    {"hold": mode_hold, "seq": mode_seq, "flood": mode_flood, "stall": mode_stall,
     "tcp": mode_tcp}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
