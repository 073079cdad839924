#!/usr/bin/python3
"""py_client.py: the Python `kubernetes` client (Debian's python3-kubernetes), configured as an
unmodified in-cluster workload is (config.load_incluster_config()).

  py_client.py list-pods NS               -> {"pods": [names...]}
  py_client.py read-secret NS NAME        -> {"name", "data": {k: base64 as received},
                                              "decoded": {k: text or null}, "undecodable": [k]}
  py_client.py watch-pods NS SECONDS MAX  -> one line per event {"type", "name"}, flushed

Exit 0 on success; 1 with one line on stderr on an API or connection error; 2 on usage.
A watch that ends (SECONDS elapsed, MAX events seen, or the server closed it) is a success;
a summary {"end": why, "events": n} goes to stderr so stdout holds events only."""
import base64
import binascii
import json
import sys
import time


def out(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def core_api():
    from kubernetes import client, config
    config.load_incluster_config()
    return client.CoreV1Api()


def list_pods(ns):
    pods = core_api().list_namespaced_pod(ns)
    out({"pods": [p.metadata.name for p in (pods.items or [])]})


def decode(value):
    """Text of a base64 value, or None when it is not base64 (a masked value need not be):
    the tests assert on what came back, so decoding never raises."""
    if not isinstance(value, str):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.decode("utf-8", "replace")


def read_secret(ns, name):
    s = core_api().read_namespaced_secret(name, ns)
    data = dict(s.data or {})
    decoded = {k: decode(v) for k, v in data.items()}
    out({"name": s.metadata.name, "data": data, "decoded": decoded,
         "undecodable": sorted(k for k, v in decoded.items() if v is None)})


def watch_pods(ns, seconds, max_events):
    import urllib3
    from kubernetes import watch
    api = core_api()
    w = watch.Watch()
    deadline = time.monotonic() + seconds
    n = 0
    why = "closed"
    # timeout_seconds bounds the watch on the server side (and makes Watch.stream issue one
    # request, without re-listing); _request_timeout bounds each socket read on our side, so
    # a server that holds the stream open silently cannot keep us past SECONDS.
    stream = w.stream(api.list_namespaced_pod, ns, timeout_seconds=max(1, int(seconds + 0.999)),
                      _request_timeout=(10, max(1.0, seconds)))
    try:
        for ev in stream:
            obj = ev.get("object")
            meta = getattr(obj, "metadata", None)
            if meta is None and isinstance(obj, dict):
                meta_name = (obj.get("metadata") or {}).get("name")
            else:
                meta_name = getattr(meta, "name", None)
            out({"type": ev.get("type"), "name": meta_name})
            n += 1
            if n >= max_events:
                why = "max_events"
                break
            if time.monotonic() >= deadline:
                why = "timeout"
                break
    except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError) as e:
        # A read timeout is how SECONDS ends a quiet stream; anything else is an error.
        if isinstance(e, urllib3.exceptions.ReadTimeoutError) or time.monotonic() >= deadline:
            why = "timeout"
        else:
            raise
    finally:
        w.stop()
    sys.stderr.write(json.dumps({"end": why, "events": n}) + "\n")


def describe(e):
    status = getattr(e, "status", None)
    if status is not None and hasattr(e, "body"):
        body = e.body.decode("utf-8", "replace") if isinstance(e.body, bytes) else e.body
        return "HTTP %s %s: %s" % (status, getattr(e, "reason", ""), body)
    return "%s: %s" % (type(e).__name__, e)


def parse(argv):
    """The action to run, or None on a usage error."""
    cmd, args = (argv[1], argv[2:]) if len(argv) > 1 else ("", [])
    if cmd == "list-pods" and len(args) == 1:
        return lambda: list_pods(args[0])
    if cmd == "read-secret" and len(args) == 2:
        return lambda: read_secret(args[0], args[1])
    if cmd == "watch-pods" and len(args) == 3:
        try:
            seconds, max_events = float(args[1]), int(args[2])
        except ValueError:
            return None
        if seconds > 0 and max_events > 0:
            return lambda: watch_pods(args[0], seconds, max_events)
    return None


def main(argv):
    action = parse(argv)
    if action is None:
        sys.stderr.write("usage:\n" + __doc__.split("\n\n")[1] + "\n")
        return 2
    try:
        action()
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        sys.stderr.write("py_client: %s\n" % describe(e).replace("\n", " "))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
