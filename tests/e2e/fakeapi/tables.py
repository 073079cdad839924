"""fakeapi.tables: server-side printing (meta.k8s.io Table), as the API server's printers
(pkg/printers/internalversion) build the columns `kubectl get` shows."""
import time

from .store import parse_rfc3339


def human_duration(secs):
    """apimachinery's duration.HumanDuration."""
    s = int(secs)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return "%ds" % s
    minutes = s // 60
    if minutes < 10:
        return "%dm" % minutes if s % 60 == 0 else "%dm%ds" % (minutes, s % 60)
    if minutes < 180:
        return "%dm" % minutes
    hours = s // 3600
    if hours < 8:
        return "%dh" % hours if minutes % 60 == 0 else "%dh%dm" % (hours, minutes % 60)
    if hours < 48:
        return "%dh" % hours
    if hours < 24 * 8:
        return "%dd" % (hours // 24) if hours % 24 == 0 else "%dd%dh" % (hours // 24, hours % 24)
    if hours < 24 * 365 * 2:
        return "%dd" % (hours // 24)
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return "%dy" % (hours // 24 // 365) if dy == 0 else "%dy%dd" % (hours // 24 // 365, dy)
    return "%dy" % (hours // 24 // 365)


def age(obj):
    ts = (obj.get("metadata") or {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    return human_duration(time.time() - parse_rfc3339(ts))


DESC = {
    "Name": "Name must be unique within a namespace. Is required when creating resources, "
            "although some resources may allow a client to request the generation of an "
            "appropriate name automatically. Name is primarily intended for creation "
            "idempotence and configuration definition. Cannot be updated. More info: "
            "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    "Age": "CreationTimestamp is a timestamp representing the server time when this object was "
           "created. It is not guaranteed to be set in happens-before order across separate "
           "operations. Clients may not set this value. It is represented in RFC3339 form and "
           "is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
           "https://git.k8s.io/community/contributors/devel/sig-architecture/"
           "api-conventions.md#metadata",
}


def col(name, typ="string", priority=0, fmt=""):
    return {"name": name, "type": typ, "format": "name" if name == "Name" else fmt,
            "description": DESC.get(name, name), "priority": priority}


def _pod_row(p):
    spec, st = p.get("spec", {}), p.get("status", {})
    cs = st.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for c in cs if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in cs)
    reason = st.get("reason") or st.get("phase") or "Unknown"
    for c in cs:
        state = c.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state and state["terminated"].get("reason"):
            reason = state["terminated"]["reason"]
    if (p.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    return [p["metadata"]["name"], "%d/%d" % (ready, total), reason, str(restarts), age(p),
            st.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
            st.get("nominatedNodeName") or "<none>", "%d/%d" % (0, len(gates)) if gates else
            "<none>"]


POD_COLS = [col("Name"), col("Ready"),
            col("Status"), col("Restarts"), col("Age"), col("IP", priority=1),
            col("Node", priority=1), col("Nominated Node", priority=1),
            col("Readiness Gates", priority=1)]


def _ports(spec):
    out = []
    for p in spec.get("ports") or []:
        s = "%s/%s" % (p.get("port"), p.get("protocol", "TCP"))
        if p.get("nodePort"):
            s = "%s:%s/%s" % (p.get("port"), p["nodePort"], p.get("protocol", "TCP"))
        out.append(s)
    return ",".join(out) or "<none>"


def _selector(sel):
    return ",".join("%s=%s" % kv for kv in sorted((sel or {}).items())) or "<none>"


PRINTERS = {
    ("", "pods"): (POD_COLS, _pod_row),
    ("", "secrets"): ([col("Name"), col("Type"), col("Data", "string"), col("Age")],
                      lambda o: [o["metadata"]["name"], o.get("type", "Opaque"),
                                 len(o.get("data") or {}), age(o)]),
    ("", "configmaps"): ([col("Name"), col("Data", "string"), col("Age")],
                         lambda o: [o["metadata"]["name"], len(o.get("data") or {}) +
                                    len(o.get("binaryData") or {}), age(o)]),
    ("", "namespaces"): ([col("Name"), col("Status"), col("Age")],
                         lambda o: [o["metadata"]["name"], (o.get("status") or {}).get(
                             "phase", "Active"), age(o)]),
    ("", "services"): ([col("Name"), col("Type"), col("Cluster-IP"), col("External-IP"),
                        col("Port(s)"), col("Age"), col("Selector", priority=1)],
                       lambda o: [o["metadata"]["name"], o.get("spec", {}).get("type",
                                                                                "ClusterIP"),
                                  o.get("spec", {}).get("clusterIP", "<none>"), "<none>",
                                  _ports(o.get("spec", {})), age(o),
                                  _selector(o.get("spec", {}).get("selector"))]),
    ("", "serviceaccounts"): ([col("Name"), col("Secrets", "integer"), col("Age")],
                              lambda o: [o["metadata"]["name"], len(o.get("secrets") or []),
                                         age(o)]),
    ("", "nodes"): ([col("Name"), col("Status"), col("Roles"), col("Age"), col("Version"),
                     col("Internal-IP", priority=1), col("External-IP", priority=1)],
                    lambda o: [o["metadata"]["name"], "Ready", "<none>", age(o),
                               o.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", ""),
                               "10.0.0.10", "<none>"]),
    ("", "events"): ([col("Last Seen"), col("Type"), col("Reason"), col("Object"),
                      col("Message")],
                     lambda o: [age(o), o.get("type", ""), o.get("reason", ""), "%s/%s" % (
                         o.get("involvedObject", {}).get("kind", "").lower(),
                         o.get("involvedObject", {}).get("name", "")), o.get("message", "")]),
    ("apps", "deployments"): ([col("Name"), col("Ready"), col("Up-to-date", "integer"),
                               col("Available", "integer"), col("Age")],
                              lambda o: [o["metadata"]["name"], "%s/%s" % (
                                  o.get("status", {}).get("readyReplicas", 0),
                                  o.get("spec", {}).get("replicas", 1)),
                                  o.get("status", {}).get("updatedReplicas", 0),
                                  o.get("status", {}).get("availableReplicas", 0), age(o)]),
    ("discovery.k8s.io", "endpointslices"): (
        [col("Name"), col("AddressType"), col("Ports"), col("Endpoints"), col("Age")],
        lambda o: [o["metadata"]["name"], o.get("addressType", ""),
                   ",".join(str(p.get("port")) for p in o.get("ports") or []) or "<unset>",
                   ",".join(a for e in o.get("endpoints") or [] for a in e.get("addresses", []))
                   or "<unset>", age(o)]),
}


def printer(rt):
    p = PRINTERS.get(rt.key)
    if p:
        return p
    if rt.group in ("", "apps", "batch", "discovery.k8s.io", "coordination.k8s.io",
                    "rbac.authorization.k8s.io", "apiextensions.k8s.io", "networking.k8s.io"):
        return [col("Name"), col("Age")], lambda o: [o["metadata"]["name"], age(o)]
    # A custom resource without additionalPrinterColumns: the default "Created At" column.
    return ([col("Name"), {"name": "Created At", "type": "date", "format": "",
                           "description": DESC["Age"], "priority": 0}],
            lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp")])


def partial(obj, api_version):
    return {"kind": "PartialObjectMetadata", "apiVersion": api_version,
            "metadata": obj.get("metadata", {})}


def table(rt, objs, include="Metadata", rv=None, api_version="meta.k8s.io/v1", columns=True):
    cols, row = printer(rt)
    out = {"kind": "Table", "apiVersion": api_version, "metadata": {}}
    if rv is not None:
        out["metadata"]["resourceVersion"] = rv
    out["columnDefinitions"] = cols if columns else None
    rows = []
    for o in objs:
        r = {"cells": row(o)}
        if include == "Object":
            r["object"] = o
        elif include != "None":
            r["object"] = partial(o, api_version)
        rows.append(r)
    out["rows"] = rows
    return out
