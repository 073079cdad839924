#!/usr/bin/python3
"""slowscraper.py HOST PORT PATH SECONDS: connects with a tiny receive buffer, sends
"GET PATH", prints {"event": "sent"}, and never reads; after SECONDS it reports whether the
server cut it ({"event": "end", "reset": bool, "received": bytes drained at the end})."""
import json, socket, sys, time

host, port, path, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connect: a tiny window
s.connect((host, port))
s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
print(json.dumps({"event": "sent"}), flush=True)
time.sleep(secs)
received, reset = 0, False
s.settimeout(1)
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        received += len(b)
except ConnectionResetError:
    reset = True
except (socket.timeout, OSError):
    pass
print(json.dumps({"event": "end", "reset": reset, "received": received}), flush=True)
