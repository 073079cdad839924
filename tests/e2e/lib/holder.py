#!/usr/bin/python3
"""holder.py STATUS NAME=HOST:PORT ...

Opens one TCP connection per NAME (HOST may be [v6] or ::ffff:a.b.c.d) and
holds them, sending nothing. Writes {NAME: "open" | "closed" | "<ERRNO>"}
to STATUS (atomically) at start and whenever one changes: a connection cut
under it shows up as the error its owner sees (ECONNABORTED, ECONNRESET).
Runs until killed."""
import errno, json, os, select, socket, sys

status_file, specs = sys.argv[1], sys.argv[2:]
socks, state = {}, {}
for spec in specs:
    name, hp = spec.split("=", 1)
    host, port = hp.rsplit(":", 1)
    host = host.strip("[]")
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((host, int(port)))
        s.setblocking(False)
        socks[s] = name
        state[name] = "open"
    except OSError as e:
        state[name] = "connect:" + errno.errorcode.get(e.errno, str(e.errno))


def write():
    tmp = status_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.rename(tmp, status_file)


write()
while True:
    live = [s for s in socks if state[socks[s]] == "open"]
    r, _, x = select.select(live, [], live, 1.0) if live else ([], [], [])
    if not live:
        select.select([], [], [], 1.0)
    changed = False
    for s in set(r) | set(x):
        try:
            data = s.recv(4096)
            if data:
                continue
            state[socks[s]] = "closed"
        except BlockingIOError:
            continue
        except OSError as e:
            state[socks[s]] = errno.errorcode.get(e.errno, str(e.errno))
        changed = True
    if changed:
        write()
