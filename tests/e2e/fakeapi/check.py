#!/usr/bin/python3
"""python3 -m fakeapi.check HOST PORT CAFILE TOKEN CONTROL_TOKEN REQLOG: wire-level checks of
the fake API server (what kubectl does not show): keep-alive, Status errors, Audit-Id, watch
resourceVersion semantics, bookmarks, timeoutSeconds, Tables, aggregated discovery,
TokenRequest/TokenReview, the request log, and the Python kubernetes client (list, watch,
exec over WebSocket v4). Prints "  ok    NAME" / "  FAIL  NAME" lines and a last line
"checks: N passed, N failed"; exit 0 only when all passed. Used by test_fakeapi.sh."""
import http.client
import json
import socket
import ssl
import sys
import threading
import time

HOST, PORT, CA, TOKEN, CTL, REQLOG = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], \
    sys.argv[5], sys.argv[6]
CTX = ssl.create_default_context(cafile=CA)
RESULTS = [0, 0]


def check(name, cond, info=""):
    if cond:
        RESULTS[0] += 1
        print("  ok    %s" % name)
    else:
        RESULTS[1] += 1
        print("  FAIL  %s %s" % (name, str(info)[:400]))
    sys.stdout.flush()


def conn():
    return http.client.HTTPSConnection(HOST, PORT, context=CTX, timeout=20)


def call(c, method, path, body=None, headers=None, token=TOKEN):
    h = {"Accept": "application/json"}
    if token:
        h["Authorization"] = "Bearer " + token
    if body is not None:
        body = json.dumps(body) if not isinstance(body, (bytes, str)) else body
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    try:
        obj = json.loads(data)
    except ValueError:
        obj = None
    return r, obj, data


def pod(name, labels=None):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def watch_lines(path, seconds, stop_after=None, headers=None):
    """Raw watch: the JSON events of one chunked response, read until it ends."""
    c = conn()
    h = {"Authorization": "Bearer " + TOKEN, "Accept": "application/json"}
    h.update(headers or {})
    c.request("GET", path, headers=h)
    r = c.getresponse()
    out = []
    t0 = time.monotonic()
    c.sock.settimeout(seconds)
    try:
        while True:
            line = r.readline()
            if not line:
                break
            out.append(json.loads(line))
            if stop_after and len(out) >= stop_after:
                break
    except (socket.timeout, TimeoutError):
        pass
    took = time.monotonic() - t0
    c.close()
    return r, out, took


def main():
    c = conn()
    # ---- basics, keep-alive ----
    r, v, _ = call(c, "GET", "/version", token=None)
    check("GET /version without credentials is allowed", r.status == 200 and
          v["gitVersion"].startswith("v1."), v)
    sock1 = c.sock
    r, lst, _ = call(c, "GET", "/api/v1/namespaces/default/pods")
    check("a second request reuses the connection (keep-alive)", c.sock is sock1 and
          r.status == 200)
    check("PodList with kind/apiVersion and a resourceVersion", lst["kind"] == "PodList" and
          lst["apiVersion"] == "v1" and int(lst["metadata"]["resourceVersion"]) > 0)
    check("list items carry no kind (typed lists)", all("kind" not in i for i in lst["items"]))
    check("Content-Type application/json", r.getheader("Content-Type") == "application/json")
    r, _, _ = call(c, "GET", "/api/v1/pods", headers={"Audit-ID": "audit-fixed-1"})
    check("Audit-Id echoes the request's Audit-ID", r.getheader("Audit-Id") == "audit-fixed-1")
    r, _, _ = call(c, "GET", "/api/v1/pods")
    check("Audit-Id is a UUID otherwise", len(r.getheader("Audit-Id") or "") == 36)

    # ---- errors are Status objects with code == HTTP status ----
    for what, path, tok, code, reason in [
            ("no credentials", "/api/v1/pods", None, 401, "Unauthorized"),
            ("a wrong token", "/api/v1/pods", "wrong", 401, "Unauthorized"),
            ("a wrong token on /version", "/version", "wrong", 401, "Unauthorized"),
            ("a missing pod", "/api/v1/namespaces/default/pods/nope", TOKEN, 404, "NotFound"),
            ("an unknown resource", "/api/v1/namespaces/default/widgets", TOKEN, 404,
             "NotFound"),
            ("a bad field selector", "/api/v1/pods?fieldSelector=spec.bogus%3Dx", TOKEN, 400,
             "BadRequest")]:
        r, st, _ = call(c, "GET", path, token=tok)
        check("%s -> %d Status %s" % (what, code, reason), r.status == code and st and
              st.get("kind") == "Status" and st.get("code") == code and
              st.get("reason") == reason, (r.status, st))
    r, st, _ = call(c, "GET", "/api/v1/namespaces/default/pods/nope")
    check("NotFound details name the object", st["details"] == {"name": "nope", "kind": "pods"},
          st)
    r, st, _ = call(c, "POST", "/api/v1/namespaces/default/pods", pod("p1"))
    check("creating an existing pod -> 409 AlreadyExists", r.status == 409 and
          st["reason"] == "AlreadyExists", st)
    r, st, _ = call(c, "GET", "/api/v1/pods", headers={"Authorization": "bearer " + TOKEN})
    check("the bearer scheme is case-insensitive", r.status == 200)

    # ---- selectors ----
    _, l1, _ = call(c, "GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode1")
    check("fieldSelector spec.nodeName", sorted(i["metadata"]["name"] for i in l1["items"]) ==
          ["p1"], [i["metadata"]["name"] for i in l1["items"]])
    _, l1, _ = call(c, "GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dp2")
    check("fieldSelector metadata.name", [i["metadata"]["name"] for i in l1["items"]] == ["p2"])
    _, l1, _ = call(c, "GET", "/api/v1/pods?labelSelector=app%3Dweb")
    check("labelSelector k=v", [i["metadata"]["name"] for i in l1["items"]] == ["p1"])
    _, l1, _ = call(c, "GET", "/api/v1/pods?labelSelector=app%21%3Dweb")
    check("labelSelector k!=v", "p1" not in [i["metadata"]["name"] for i in l1["items"]] and
          "p2" in [i["metadata"]["name"] for i in l1["items"]])
    _, l1, _ = call(c, "GET", "/api/v1/pods?labelSelector=app")
    check("labelSelector k (exists)", [i["metadata"]["name"] for i in l1["items"]] == ["p1"])
    _, l1, _ = call(c, "GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
                    "?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes")
    check("EndpointSlices by kubernetes.io/service-name", [
        i["metadata"]["name"] for i in l1["items"]] == ["kubernetes"], l1)
    _, svc, _ = call(c, "GET", "/api/v1/namespaces/default/services/kubernetes")
    check("the kubernetes Service", svc.get("spec", {}).get("clusterIP") == "10.96.0.1", svc)

    # ---- Table ----
    tbl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    r, t, _ = call(c, "GET", "/api/v1/namespaces/default/pods", headers={"Accept": tbl})
    check("Table: kind and columns", t["kind"] == "Table" and t["apiVersion"] ==
          "meta.k8s.io/v1" and [x["name"] for x in t["columnDefinitions"]][:5] ==
          ["Name", "Ready", "Status", "Restarts", "Age"], t)
    row = [x for x in t["rows"] if x["cells"][0] == "p1"]
    check("Table: a row per pod with PartialObjectMetadata", row and row[0]["cells"][1:4] ==
          ["1/1", "Running", "0"] and row[0]["object"]["kind"] == "PartialObjectMetadata", row)
    r, t, _ = call(c, "GET", "/api/v1/namespaces/default/pods?includeObject=Object",
                   headers={"Accept": tbl})
    check("Table: includeObject=Object", t["rows"][0]["object"].get("spec") is not None)
    r, t, _ = call(c, "GET", "/api/v1/namespaces/default/pods?includeObject=None",
                   headers={"Accept": tbl})
    check("Table: includeObject=None", "object" not in t["rows"][0])

    # ---- discovery ----
    agg = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    r, d, _ = call(c, "GET", "/api", headers={"Accept": agg})
    check("aggregated discovery v2 on /api", r.getheader("Content-Type") ==
          "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList" and
          d["kind"] == "APIGroupDiscoveryList" and any(
              x["resource"] == "pods" for x in d["items"][0]["versions"][0]["resources"]),
          r.getheader("Content-Type"))
    r, d, _ = call(c, "GET", "/apis", headers={"Accept": agg.replace("v=v2", "v=v2beta1")})
    check("aggregated discovery v2beta1 on /apis", d["apiVersion"] ==
          "apidiscovery.k8s.io/v2beta1" and "discovery.k8s.io" in [
              i["metadata"]["name"] for i in d["items"]])
    r, d, _ = call(c, "GET", "/api")
    check("legacy /api is APIVersions", d["kind"] == "APIVersions" and d["versions"] == ["v1"])
    r, d, _ = call(c, "GET", "/api/v1")
    pods_res = [x for x in d["resources"] if x["name"] == "pods"]
    check("/api/v1 APIResourceList with pods", d["kind"] == "APIResourceList" and pods_res and
          pods_res[0]["shortNames"] == ["po"] and "watch" in pods_res[0]["verbs"] and
          any(x["name"] == "pods/exec" for x in d["resources"]))

    # ---- watch semantics ----
    _, l0, _ = call(c, "GET", "/api/v1/namespaces/default/pods")
    rv0 = l0["metadata"]["resourceVersion"]
    got = {}

    def bg():
        got["r"], got["ev"], got["took"] = watch_lines(
            "/api/v1/namespaces/default/pods?watch=1&resourceVersion=%s&timeoutSeconds=3" % rv0, 10)
    th = threading.Thread(target=bg)
    th.start()
    time.sleep(0.5)
    r, created, _ = call(c, "POST", "/api/v1/namespaces/default/pods", pod("wc1", {"x": "y"}))
    check("POST creates: 201 with uid, creationTimestamp, resourceVersion", r.status == 201 and
          created["metadata"].get("uid") and created["metadata"].get("creationTimestamp") and
          int(created["metadata"]["resourceVersion"]) > int(rv0), created)
    r, deleted, _ = call(c, "DELETE", "/api/v1/namespaces/default/pods/wc1")
    check("DELETE answers the pod being deleted", r.status == 200 and deleted["kind"] == "Pod" and
          deleted["metadata"].get("deletionTimestamp"), deleted)
    th.join()
    types = [(e["type"], e["object"]["metadata"]["name"]) for e in got["ev"]]
    check("watch from a resourceVersion: only later events, in order", types == [
        ("ADDED", "wc1"), ("MODIFIED", "wc1"), ("DELETED", "wc1")], types)
    check("watch: chunked", got["r"].getheader("Transfer-Encoding") == "chunked")
    check("watch: timeoutSeconds=3 ends the stream (%.1fs)" % got["took"],
          2.5 <= got["took"] <= 5)
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in got["ev"]]
    check("watch: resourceVersions increase", rvs == sorted(rvs) and len(set(rvs)) == 3, rvs)
    r, ev, took = watch_lines("/api/v1/watch/namespaces/default/pods?timeoutSeconds=1", 5)
    check("legacy /api/v1/watch/... without RV starts with the current pods", [
        e["type"] for e in ev] == ["ADDED"] * len(ev) and {"p1", "p2"} <= {
        e["object"]["metadata"]["name"] for e in ev}, ev)
    r, ev, took = watch_lines("/api/v1/pods?watch=true&resourceVersion=%s&allowWatchBookmarks="
                              "true&timeoutSeconds=3" % rv0, 6)
    bms = [e for e in ev if e["type"] == "BOOKMARK"]
    check("watch: allowWatchBookmarks sends BOOKMARK events", bms and set(
        bms[0]["object"]["metadata"]) <= {"resourceVersion", "creationTimestamp"} and
        bms[0]["object"]["kind"] == "Pod", ev)
    r, ev, took = watch_lines("/api/v1/namespaces/default/pods?watch=1&fieldSelector=metadata."
                              "name%3Dp1&timeoutSeconds=1", 5)
    check("watch with a fieldSelector", [e["object"]["metadata"]["name"] for e in ev] == ["p1"])
    r, ev, took = watch_lines("/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1", 5,
                              headers={"Accept": tbl})
    check("watch as Table: one row per event, columns on the first only", len(ev) >= 2 and all(
        e["object"]["kind"] == "Table" and len(e["object"]["rows"]) == 1 for e in ev) and
        ev[0]["object"]["columnDefinitions"] and ev[1]["object"]["columnDefinitions"] is None,
        ev[:2])
    r, ev, took = watch_lines("/api/v1/namespaces/default/pods?watch=1&sendInitialEvents=true&"
                              "resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&"
                              "timeoutSeconds=1", 5)
    # Periodic bookmarks may follow within the second (a loaded machine), so
    # the first BOOKMARK is the one that must end the initial ADDED events.
    first_bm = next((i for i, e in enumerate(ev) if e["type"] == "BOOKMARK"), None)
    check("watch-list: initial events then the initial-events-end bookmark",
          first_bm is not None and first_bm > 0 and
          all(e["type"] == "ADDED" for e in ev[:first_bm]) and
          ev[first_bm]["object"]["metadata"].get("annotations") ==
          {"k8s.io/initial-events-end": "true"}, ev)

    # ---- secrets, configmaps, namespaces ----
    r, s, _ = call(c, "POST", "/api/v1/namespaces/default/secrets", {
        "metadata": {"name": "s2"}, "stringData": {"k": "v"}})
    check("create a secret: stringData becomes data", r.status == 201 and s["data"] == {
        "k": "dg=="} and s["type"] == "Opaque", s)
    r, st, _ = call(c, "DELETE", "/api/v1/namespaces/default/secrets/s2")
    check("delete a secret -> Status Success with details", r.status == 200 and
          st["kind"] == "Status" and st["status"] == "Success" and
          st["details"]["name"] == "s2", st)
    r, _, _ = call(c, "POST", "/api/v1/namespaces", {"metadata": {"name": "nsx"}})
    r2, _, _ = call(c, "POST", "/api/v1/namespaces/nsx/configmaps", {
        "metadata": {"name": "cm"}, "data": {"a": "b"}})
    r3, st, _ = call(c, "POST", "/api/v1/namespaces/nope/configmaps", {"metadata": {"name": "c"}})
    check("create namespace and a configmap in it; none in a missing namespace",
          (r.status, r2.status, r3.status) == (201, 201, 404), (r.status, r2.status, r3.status))
    r, cm, _ = call(c, "PATCH", "/api/v1/namespaces/nsx/configmaps/cm", {"data": {"c": "d"}},
                    headers={"Content-Type": "application/merge-patch+json"})
    check("merge patch", r.status == 200 and cm["data"] == {"a": "b", "c": "d"}, cm)
    r, _, _ = call(c, "DELETE", "/api/v1/namespaces/nsx")
    r2, _, _ = call(c, "GET", "/api/v1/namespaces/nsx/configmaps/cm")
    check("deleting a namespace deletes its objects", (r.status, r2.status) == (200, 404))

    # ---- gzip, as the API server compresses responses of 128 KiB and more ----
    big = {"metadata": {"name": "big"}, "data": {"k%d" % i: "v" * 100 for i in range(1500)}}
    r, _, _ = call(c, "POST", "/api/v1/namespaces/default/configmaps", big)
    c.request("GET", "/api/v1/namespaces/default/configmaps", headers={
        "Authorization": "Bearer " + TOKEN, "Accept-Encoding": "gzip"})
    r = c.getresponse()
    raw = r.read()
    import gzip
    check("a large list is gzipped when the client accepts gzip", r.getheader(
        "Content-Encoding") == "gzip" and len(json.loads(gzip.decompress(raw))["items"]) >= 2)
    r, lst, _ = call(c, "GET", "/api/v1/namespaces/default/configmaps")
    check("... and not otherwise", r.getheader("Content-Encoding") is None and lst["items"])
    r, lst, _ = call(c, "GET", "/api/v1/namespaces/default/configmaps?limit=1")
    r2, lst2, _ = call(c, "GET", "/api/v1/namespaces/default/configmaps?limit=1&continue=" +
                       lst["metadata"].get("continue", "x"))
    check("list pagination: limit and continue", len(lst["items"]) == 1 and
          lst["metadata"].get("remainingItemCount", 0) >= 1 and lst2["items"] and
          lst2["items"][0]["metadata"]["name"] != lst["items"][0]["metadata"]["name"])
    call(c, "DELETE", "/api/v1/namespaces/default/configmaps/big")

    # ---- TokenRequest / TokenReview ----
    r, tr, _ = call(c, "POST", "/api/v1/namespaces/default/serviceaccounts/default/token", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 900}})
    tok = (tr or {}).get("status", {}).get("token", "")
    check("TokenRequest -> 201 with a token", r.status == 201 and tok.count(".") == 2, tr)
    exp = time.mktime(time.strptime(tr["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")) \
        - time.timezone
    check("TokenRequest honours expirationSeconds", abs(exp - time.time() - 900) < 30)
    r, _, _ = call(c, "GET", "/api/v1/namespaces/default/pods", token=tok)
    check("the requested token is accepted", r.status == 200)
    r, rev, _ = call(c, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": tok}})
    check("TokenReview of it: system:serviceaccount:default:default", r.status == 201 and
          rev["status"]["authenticated"] is True and rev["status"]["user"]["username"] ==
          "system:serviceaccount:default:default", rev)
    r, rev, _ = call(c, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "x"}})
    check("TokenReview of an unknown token: not authenticated", r.status == 201 and
          not rev["status"].get("authenticated"), rev)
    r, st, _ = call(c, "POST", "/api/v1/namespaces/default/serviceaccounts/default/token", {
        "spec": {"expirationSeconds": 60}})
    check("TokenRequest under 10 minutes -> 422", r.status == 422 and st["code"] == 422, st)
    r, st, _ = call(c, "POST", "/api/v1/namespaces/default/serviceaccounts/ghost/token", {})
    check("TokenRequest for a missing SA -> 404", r.status == 404, st)

    # ---- pods/log ----
    r, _, body = call(c, "GET", "/api/v1/namespaces/default/pods/p1/log?tailLines=1")
    check("log tailLines=1", r.status == 200 and body == b"second line\n" and
          r.getheader("Content-Type") == "text/plain", body)
    r, _, body = call(c, "GET", "/api/v1/namespaces/default/pods/p1/log?container=zzz")
    check("log of a wrong container -> 400", r.status == 400)

    # ---- control endpoint ----
    r, _, _ = call(c, "POST", "/_fake/pods", pod("ctl1"), token=CTL)
    r2, _, _ = call(c, "GET", "/api/v1/namespaces/default/pods/ctl1")
    check("control: POST /_fake/pods adds a pod", (r.status, r2.status) == (201, 200))
    r, _, _ = call(c, "POST", "/_fake/pods", pod("ctl2"), token=TOKEN)
    check("control: refused with an API token", r.status == 401)
    r, _, dump = call(c, "GET", "/_fake/log", token=CTL)
    check("control: GET /_fake/log dumps the request log", r.status == 200 and
          b'"/_fake/pods"' in dump)
    c.close()

    # ---- the request log ----
    recs = [json.loads(x) for x in open(REQLOG)]
    keys = {"ts", "method", "path", "headers", "user", "authorization", "body", "status",
            "remote"}
    check("request log: every line has the fields", all(keys <= set(x) for x in recs))
    mine = [x for x in recs if "audit-fixed-1" in json.dumps(x["headers"])]
    check("request log: headers as received, user, authorization, status, remote", mine and
          mine[0]["user"] == "admin" and mine[0]["authorization"] == "Bearer " + TOKEN and
          mine[0]["status"] == 200 and mine[0]["remote"].startswith("127.0.0.1:") and
          ["audit-id", "audit-fixed-1"] in mine[0]["headers"], mine[:1])
    bad = [x for x in recs if x["authorization"] == "Bearer wrong"]
    check("request log: a rejected request is logged with user null and 401", bad and
          bad[0]["user"] is None and bad[0]["status"] == 401)
    posted = [x for x in recs if x["method"] == "POST" and x["path"].endswith("/pods") and
              '"wc1"' in x["body"]]
    check("request log: the request body", posted)

    py_client()
    print("checks: %d passed, %d failed" % tuple(RESULTS))
    return 0 if RESULTS[1] == 0 else 1


def py_client():
    """Debian's python3-kubernetes against the fake."""
    from kubernetes import client, watch
    from kubernetes.stream import stream
    cfg = client.Configuration()
    cfg.host = "https://%s:%d" % (HOST, PORT)
    cfg.ssl_ca_cert = CA
    cfg.api_key = {"authorization": "Bearer " + TOKEN}
    api = client.CoreV1Api(client.ApiClient(cfg))
    names = [p.metadata.name for p in api.list_namespaced_pod("default").items]
    check("python client: list pods", "p1" in names and "p2" in names, names)
    s = api.read_namespaced_secret("s1", "default")
    check("python client: read a secret", s.data.get("password") == "aHVudGVyMi1mYWtl", s.data)
    seen = []

    def later():
        time.sleep(1.0)
        c = conn()
        call(c, "POST", "/api/v1/namespaces/default/pods", pod("py-w"))
        c.close()
    threading.Thread(target=later).start()
    w = watch.Watch()
    t0 = time.monotonic()
    for ev in w.stream(api.list_namespaced_pod, "default", timeout_seconds=4):
        seen.append((ev["type"], ev["object"].metadata.name))
        if ev["object"].metadata.name == "py-w":
            w.stop()
    check("python client: a watch sees the current pods, then one created while open",
          ("ADDED", "p1") in seen and seen[-1] == ("ADDED", "py-w") and
          time.monotonic() - t0 < 4, seen)
    out = stream(api.connect_get_namespaced_pod_exec, "p1", "default",
                 command=["echo", "py-exec"], stderr=True, stdin=False, stdout=True, tty=False)
    check("python client: exec over WebSocket v4", out == "py-exec\n", repr(out))
    r = stream(api.connect_get_namespaced_pod_exec, "p1", "default",
               command=["sh", "-c", "echo o; echo e >&2; exit 4"], stderr=True, stdin=False,
               stdout=True, tty=False, _preload_content=False)
    r.run_forever(timeout=5)
    check("python client: exec exit code and stderr", (r.returncode, r.read_stdout(),
                                                       r.read_stderr()) == (4, "o\n", "e\n"))


if __name__ == "__main__":
    sys.exit(main())
