"""fakeapi.store: the fake API server's object store, resource registry and selectors.

One global, monotonically increasing resourceVersion (as etcd's revision is); every write
bumps it and appends a watch event, so a watch from RV N replays the events after N. Objects
are kept as plain dicts shaped like the API server's JSON (field order as Go marshals it)."""
import bisect
import copy
import datetime
import re
import threading
import time
import uuid
import zlib

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def now_rfc3339(t=None):
    t = time.time() if t is None else t
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(s):
    try:
        return datetime.datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return time.time()


class ResourceType:
    """One resource of one group/version, as discovery describes it."""

    def __init__(self, group, version, plural, kind, namespaced, short=(), categories=(),
                 singular=None, verbs=None, subresources=None, storable=True, list_kind=None):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced = namespaced
        self.short = list(short)
        self.categories = list(categories)
        self.singular = singular or kind.lower()
        self.verbs = list(ALL_VERBS if verbs is None else verbs)
        # name -> (kind, verbs, group, version of the response kind)
        self.subresources = dict(subresources or {})
        self.storable = storable
        self.list_kind = list_kind or kind + "List"

    @property
    def gv(self):
        return self.group + "/" + self.version if self.group else self.version

    @property
    def key(self):
        return (self.group, self.plural)


_STATUS = ("", ["get", "patch", "update"])


def builtin_types():
    core = [
        ResourceType("", "v1", "pods", "Pod", True, ["po"], ["all"], subresources={
            "attach": ("PodAttachOptions", ["create", "get"]),
            "binding": ("Binding", ["create"]),
            "ephemeralcontainers": ("Pod", ["get", "patch", "update"]),
            "eviction": ("Eviction", ["create"], "policy", "v1"),
            "exec": ("PodExecOptions", ["create", "get"]),
            "log": ("Pod", ["get"]),
            "portforward": ("PodPortForwardOptions", ["create", "get"]),
            "proxy": ("PodProxyOptions", ["create", "delete", "get", "head", "options", "patch",
                                          "put"]),
            "status": ("Pod", ["get", "patch", "update"]),
        }),
        ResourceType("", "v1", "secrets", "Secret", True),
        ResourceType("", "v1", "configmaps", "ConfigMap", True, ["cm"]),
        ResourceType("", "v1", "services", "Service", True, ["svc"], ["all"], subresources={
            "proxy": ("ServiceProxyOptions", ["create", "delete", "get", "head", "options",
                                              "patch", "put"]),
            "status": ("Service", ["get", "patch", "update"])}),
        ResourceType("", "v1", "namespaces", "Namespace", False, ["ns"],
                     verbs=["create", "delete", "get", "list", "patch", "update", "watch"],
                     subresources={"finalize": ("Namespace", ["update"]),
                                   "status": ("Namespace", ["get", "patch", "update"])}),
        ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ["sa"],
                     subresources={"token": ("TokenRequest", ["create"],
                                             "authentication.k8s.io", "v1")}),
        ResourceType("", "v1", "events", "Event", True, ["ev"]),
        ResourceType("", "v1", "nodes", "Node", False, ["no"], subresources={
            "proxy": ("NodeProxyOptions", ["create", "delete", "get", "head", "options", "patch",
                                           "put"]),
            "status": ("Node", ["get", "patch", "update"])}),
        ResourceType("", "v1", "endpoints", "Endpoints", True, ["ep"], singular="endpoints"),
        ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ["pvc"],
                     subresources={"status": ("PersistentVolumeClaim",
                                              ["get", "patch", "update"])}),
    ]
    apps = [
        ResourceType("apps", "v1", "deployments", "Deployment", True, ["deploy"], ["all"],
                     subresources={"scale": ("Scale", ["get", "patch", "update"], "autoscaling",
                                             "v1"),
                                   "status": ("Deployment", ["get", "patch", "update"])}),
        ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, ["rs"], ["all"],
                     subresources={"scale": ("Scale", ["get", "patch", "update"], "autoscaling",
                                             "v1"),
                                   "status": ("ReplicaSet", ["get", "patch", "update"])}),
        ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, ["sts"], ["all"],
                     subresources={"scale": ("Scale", ["get", "patch", "update"], "autoscaling",
                                             "v1"),
                                   "status": ("StatefulSet", ["get", "patch", "update"])}),
        ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, ["ds"], ["all"],
                     subresources={"status": ("DaemonSet", ["get", "patch", "update"])}),
    ]
    batch = [
        ResourceType("batch", "v1", "jobs", "Job", True, [], ["all"],
                     subresources={"status": ("Job", ["get", "patch", "update"])}),
        ResourceType("batch", "v1", "cronjobs", "CronJob", True, ["cj"], ["all"],
                     subresources={"status": ("CronJob", ["get", "patch", "update"])}),
    ]
    other = [
        ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
        ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress", True, ["ing"],
                     subresources={"status": ("Ingress", ["get", "patch", "update"])}),
        ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True,
                     ["netpol"]),
        ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
        ResourceType("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False,
                     verbs=["create"], storable=False),
        ResourceType("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview",
                     False, verbs=["create"], storable=False),
        ResourceType("authorization.k8s.io", "v1", "selfsubjectaccessreviews",
                     "SelfSubjectAccessReview", False, verbs=["create"], storable=False),
        ResourceType("authorization.k8s.io", "v1", "selfsubjectrulesreviews",
                     "SelfSubjectRulesReview", False, verbs=["create"], storable=False),
        ResourceType("authorization.k8s.io", "v1", "subjectaccessreviews",
                     "SubjectAccessReview", False, verbs=["create"], storable=False),
        ResourceType("authorization.k8s.io", "v1", "localsubjectaccessreviews",
                     "LocalSubjectAccessReview", True, verbs=["create"], storable=False),
        ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                     "CustomResourceDefinition", False, ["crd", "crds"], ["api-extensions"],
                     subresources={"status": ("CustomResourceDefinition",
                                              ["get", "patch", "update"])}),
        ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
        ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
        ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
        ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings",
                     "ClusterRoleBinding", False),
    ]
    return core + apps + batch + other


# ---- selectors ----

class SelectorError(ValueError):
    pass


_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VAL = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def _split_top(s):
    """Splits on commas outside parentheses."""
    out, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [x.strip() for x in out if x.strip()]


def parse_label_selector(s):
    """A list of (key, op, values) requirements; op in =, !=, in, notin, exists, !exists."""
    reqs = []
    if not s:
        return reqs
    for term in _split_top(s):
        m = re.match(r"^(\S+)\s+(in|notin)\s*\((.*)\)$", term)
        if m:
            vals = [v.strip() for v in m.group(3).split(",") if v.strip()]
            key, op = m.group(1), m.group(2)
        elif term.startswith("!"):
            key, op, vals = term[1:].strip(), "!exists", []
        else:
            m = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", term)
            if m:
                key, op, vals = m.group(1).strip(), m.group(2), [m.group(3).strip()]
                op = "=" if op == "==" else op
            else:
                key, op, vals = term, "exists", []
        if not _LABEL_KEY.match(key):
            raise SelectorError("unable to parse requirement: invalid label key %r" % key)
        for v in vals:
            if not _LABEL_VAL.match(v):
                raise SelectorError("unable to parse requirement: invalid label value: %r" % v)
        reqs.append((key, op, vals))
    return reqs


def labels_match(reqs, labels):
    labels = labels or {}
    for key, op, vals in reqs:
        has = key in labels
        v = labels.get(key)
        if op == "=" and not (has and v == vals[0]):
            return False
        if op == "!=" and has and v == vals[0]:
            return False
        if op == "in" and not (has and v in vals):
            return False
        if op == "notin" and has and v in vals:
            return False
        if op == "exists" and not has:
            return False
        if op == "!exists" and has:
            return False
    return True


# Field selectors each resource supports (besides metadata.name and metadata.namespace), as
# the registry's GetAttrs functions define them.
FIELDS = {
    ("", "pods"): {
        "spec.nodeName": lambda o: o.get("spec", {}).get("nodeName", ""),
        "spec.restartPolicy": lambda o: o.get("spec", {}).get("restartPolicy", ""),
        "spec.schedulerName": lambda o: o.get("spec", {}).get("schedulerName", ""),
        "spec.serviceAccountName": lambda o: o.get("spec", {}).get("serviceAccountName", ""),
        "spec.hostNetwork": lambda o: str(bool(o.get("spec", {}).get("hostNetwork"))).lower(),
        "status.phase": lambda o: o.get("status", {}).get("phase", ""),
        "status.podIP": lambda o: o.get("status", {}).get("podIP", ""),
        "status.nominatedNodeName": lambda o: o.get("status", {}).get("nominatedNodeName", ""),
    },
    ("", "secrets"): {"type": lambda o: o.get("type", "")},
    ("", "namespaces"): {"status.phase": lambda o: o.get("status", {}).get("phase", "")},
    ("", "nodes"): {"spec.unschedulable": lambda o: str(bool(o.get("spec", {}).get(
        "unschedulable"))).lower()},
    ("", "events"): {
        "involvedObject.kind": lambda o: o.get("involvedObject", {}).get("kind", ""),
        "involvedObject.namespace": lambda o: o.get("involvedObject", {}).get("namespace", ""),
        "involvedObject.name": lambda o: o.get("involvedObject", {}).get("name", ""),
        "involvedObject.uid": lambda o: o.get("involvedObject", {}).get("uid", ""),
        "involvedObject.apiVersion": lambda o: o.get("involvedObject", {}).get("apiVersion", ""),
        "involvedObject.resourceVersion": lambda o: o.get("involvedObject", {}).get(
            "resourceVersion", ""),
        "involvedObject.fieldPath": lambda o: o.get("involvedObject", {}).get("fieldPath", ""),
        "reason": lambda o: o.get("reason", ""),
        "reportingComponent": lambda o: o.get("reportingComponent", ""),
        "source": lambda o: o.get("source", {}).get("component", ""),
        "type": lambda o: o.get("type", ""),
    },
}


def parse_field_selector(s, key):
    """A list of (getter, op, value); raises SelectorError for an unsupported field."""
    reqs = []
    if not s:
        return reqs
    fields = FIELDS.get(key, {})
    for term in [t for t in s.split(",") if t.strip()]:
        m = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", term.strip())
        if not m:
            raise SelectorError("invalid selector: '%s'; can't understand '%s'" % (s, term))
        field, op, val = m.group(1).strip(), m.group(2), m.group(3).strip()
        if field == "metadata.name":
            get = lambda o: o.get("metadata", {}).get("name", "")  # noqa: E731
        elif field == "metadata.namespace":
            get = lambda o: o.get("metadata", {}).get("namespace", "")  # noqa: E731
        elif field in fields:
            get = fields[field]
        else:
            raise SelectorError('field label not supported: %s' % field)
        reqs.append((get, "!=" if op == "!=" else "=", val))
    return reqs


def fields_match(reqs, obj):
    for get, op, val in reqs:
        v = get(obj)
        if (op == "=") != (v == val):
            return False
    return True


# ---- the store ----

def _details(rt, name):
    d = {"name": name}
    if rt.group:
        d["group"] = rt.group
    d["kind"] = rt.plural
    return d


class Conflict(Exception):
    def __init__(self, reason, message, code, details=None):
        Exception.__init__(self, message)
        self.reason, self.message, self.code, self.details = reason, message, code, details


META_ORDER = ["name", "generateName", "namespace", "selfLink", "uid", "resourceVersion",
              "generation", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
              "labels", "annotations", "ownerReferences", "finalizers", "managedFields"]


def order_meta(meta):
    out = {}
    for k in META_ORDER:
        if k in meta:
            out[k] = meta[k]
    for k, v in meta.items():
        if k not in out:
            out[k] = v
    return out


def order_obj(obj, rt):
    out = {"kind": rt.kind, "apiVersion": rt.gv, "metadata": order_meta(obj.get("metadata") or {})}
    for k, v in obj.items():
        if k not in ("kind", "apiVersion", "metadata"):
            out[k] = v
    return out


class Store:
    """Objects by (group, plural) then (namespace, name), and the event history for watches."""

    MAX_EVENTS = 20000

    def __init__(self):
        self.cond = threading.Condition()
        self.rv = 1000
        self.types = {}          # (group, plural) -> ResourceType (preferred version)
        self.objs = {}           # (group, plural) -> {(ns, name): obj}
        self.events = []         # [(rv, key, type, obj, prev)]
        self.event_rvs = []
        self.compacted = 0       # the newest RV dropped from the history
        for rt in builtin_types():
            self.add_type(rt)

    def add_type(self, rt):
        self.types[rt.key] = rt
        self.objs.setdefault(rt.key, {})

    def remove_type(self, key):
        self.types.pop(key, None)

    def find_type(self, group, version, plural):
        rt = self.types.get((group, plural))
        if rt is None or rt.version != version:
            return None
        return rt

    def _bump(self):
        self.rv += 1
        return self.rv

    def _emit(self, key, typ, obj, prev):
        self.events.append((self.rv, key, typ, obj, prev))
        self.event_rvs.append(self.rv)
        if len(self.events) > self.MAX_EVENTS:
            drop = len(self.events) - self.MAX_EVENTS
            self.compacted = self.event_rvs[drop - 1]
            del self.events[:drop]
            del self.event_rvs[:drop]
        self.cond.notify_all()

    def defaults(self, rt, obj, ns, keep_system=False):
        """Fills what the API server fills on create. Over the API it always sets uid and
        creationTimestamp itself (FillObjectMetaSystemFields); objects of the state file keep
        theirs (keep_system)."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not keep_system:
            for f in ("uid", "creationTimestamp", "deletionTimestamp", "generation",
                      "deletionGracePeriodSeconds", "selfLink"):
                meta.pop(f, None)
        for f in ("uid", "creationTimestamp"):
            if meta.get(f) is None:
                meta.pop(f, None)
        if rt.namespaced:
            meta["namespace"] = ns or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_rfc3339())
        if rt.plural in ("deployments", "replicasets", "statefulsets", "daemonsets", "jobs",
                         "cronjobs", "customresourcedefinitions") or rt.group not in (
                "", "apps", "batch", "discovery.k8s.io", "coordination.k8s.io",
                "rbac.authorization.k8s.io", "apiextensions.k8s.io", "networking.k8s.io"):
            meta.setdefault("generation", 1)
        fill = KIND_DEFAULTS.get(rt.key)
        if fill:
            fill(obj)
        return order_obj(obj, rt)

    # Every mutator runs under self.cond and returns a deep copy.
    def create(self, rt, obj, ns, dry_run=False, keep_system=False):
        with self.cond:
            obj = self.defaults(rt, obj, ns, keep_system)
            name = obj["metadata"].get("name")
            if not name:
                raise Conflict("Invalid", "%s in version \"%s\" cannot be handled as a %s: "
                               "metadata.name: Required value: name or generateName is required"
                               % (rt.kind, rt.version, rt.kind), 422)
            k = (obj["metadata"].get("namespace", ""), name)
            if k in self.objs[rt.key]:
                raise Conflict("AlreadyExists", '%s "%s" already exists' % (
                    self.qualified(rt), name), 409,
                    _details(rt, name))
            if rt.namespaced and not dry_run and k[0] not in self._ns_names():
                raise Conflict("NotFound", 'namespaces "%s" not found' % k[0], 404,
                               {"name": k[0], "kind": "namespaces"})
            if dry_run:
                obj["metadata"]["resourceVersion"] = str(self.rv)
                obj["metadata"] = order_meta(obj["metadata"])
                return copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self._bump())
            obj["metadata"] = order_meta(obj["metadata"])
            self.objs[rt.key][k] = obj
            self._emit(rt.key, "ADDED", obj, None)
            return copy.deepcopy(obj)

    def _ns_names(self):
        return {n for (_, n) in self.objs[("", "namespaces")]}

    def qualified(self, rt):
        return rt.plural + ("." + rt.group if rt.group else "")

    def not_found(self, rt, name):
        return Conflict("NotFound", '%s "%s" not found' % (self.qualified(rt), name), 404,
                        _details(rt, name))

    def get(self, rt, ns, name):
        with self.cond:
            o = self.objs[rt.key].get((ns if rt.namespaced else "", name))
            if o is None:
                raise self.not_found(rt, name)
            return copy.deepcopy(o)

    def list(self, rt, ns, lsel=None, fsel=None):
        """(items, resourceVersion) for namespace ns ("" = all)."""
        with self.cond:
            items = []
            for (ons, _), o in sorted(self.objs[rt.key].items()):
                if ns and rt.namespaced and ons != ns:
                    continue
                if lsel and not labels_match(lsel, o["metadata"].get("labels")):
                    continue
                if fsel and not fields_match(fsel, o):
                    continue
                items.append(copy.deepcopy(o))
            return items, str(self.rv)

    def update(self, rt, ns, name, obj, dry_run=False, create_ok=False, subresource=None):
        """Replaces an object (PUT); optimistic concurrency on metadata.resourceVersion."""
        with self.cond:
            k = (ns if rt.namespaced else "", name)
            old = self.objs[rt.key].get(k)
            if old is None:
                if create_ok:
                    return self.create(rt, obj, ns, dry_run), True
                raise self.not_found(rt, name)
            want = (obj.get("metadata") or {}).get("resourceVersion")
            if want and want != old["metadata"]["resourceVersion"]:
                raise Conflict("Conflict", 'Operation cannot be fulfilled on %s "%s": the object '
                               'has been modified; please apply your changes to the latest '
                               'version and try again' % (self.qualified(rt), name), 409,
                               _details(rt, name))
            new = copy.deepcopy(obj)
            meta = new.setdefault("metadata", {})
            for f in ("uid", "creationTimestamp", "namespace", "name"):
                if f in old["metadata"]:
                    meta[f] = old["metadata"][f]
            if subresource == "status":
                keep = copy.deepcopy(old)
                keep["status"] = new.get("status", {})
                new = keep
            elif "status" in old and rt.key in KIND_DEFAULTS:
                new["status"] = old["status"] if "status" not in new else new["status"]
            if "generation" in old["metadata"]:
                changed = {x: y for x, y in new.items() if x not in ("metadata", "status")} != {
                    x: y for x, y in old.items() if x not in ("metadata", "status")}
                meta["generation"] = old["metadata"]["generation"] + (1 if changed else 0)
            if rt.key == ("apps", "deployments") and subresource != "status":
                # No controllers run here: a deployment is rolled out as soon as it changes, so
                # `kubectl rollout status` and `scale` see a finished rollout.
                r = (new.get("spec") or {}).get("replicas", 1)
                st = new.setdefault("status", {})
                st.update({"observedGeneration": meta.get("generation", 1), "replicas": r,
                           "updatedReplicas": r, "readyReplicas": r, "availableReplicas": r})
            new = order_obj(new, rt)
            if dry_run:
                return copy.deepcopy(new), False
            new["metadata"]["resourceVersion"] = str(self._bump())
            new["metadata"] = order_meta(new["metadata"])
            self.objs[rt.key][k] = new
            self._emit(rt.key, "MODIFIED", new, old)
            return copy.deepcopy(new), False

    def delete(self, rt, ns, name, dry_run=False, precond_uid=None, precond_rv=None):
        with self.cond:
            k = (ns if rt.namespaced else "", name)
            old = self.objs[rt.key].get(k)
            if old is None:
                raise self.not_found(rt, name)
            if precond_uid and precond_uid != old["metadata"].get("uid"):
                raise Conflict("Conflict", 'Operation cannot be fulfilled on %s "%s": Precondition'
                               ' failed: UID in precondition: %s, UID in object meta: %s' % (
                                   self.qualified(rt), name, precond_uid,
                                   old["metadata"].get("uid")), 409,
                               _details(rt, name))
            if precond_rv and precond_rv != old["metadata"].get("resourceVersion"):
                raise Conflict("Conflict", 'Operation cannot be fulfilled on %s "%s": Precondition'
                               ' failed: ResourceVersion in precondition: %s, ResourceVersion in '
                               'object meta: %s' % (self.qualified(rt), name, precond_rv,
                                                    old["metadata"].get("resourceVersion")), 409,
                               _details(rt, name))
            if dry_run:
                return copy.deepcopy(old)
            del self.objs[rt.key][k]
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self._bump())
            self._emit(rt.key, "DELETED", gone, old)
            if rt.key == ("", "namespaces"):
                self._delete_namespace_contents(name)
            return copy.deepcopy(gone)

    def _delete_namespace_contents(self, ns):
        for key, objs in self.objs.items():
            rt = self.types.get(key)
            if rt is None or not rt.namespaced:
                continue
            for k in [k for k in objs if k[0] == ns]:
                old = objs.pop(k)
                gone = copy.deepcopy(old)
                gone["metadata"]["resourceVersion"] = str(self._bump())
                self._emit(key, "DELETED", gone, old)

    # ---- watch ----
    def events_after(self, key, rv):
        """Events of resource key after rv, or None when rv is older than the history."""
        if rv < self.compacted:
            return None
        i = bisect.bisect_right(self.event_rvs, rv)
        return [e for e in self.events[i:] if e[1] == key]

    def bookmark_rv(self):
        return self.rv


def _pod_defaults(pod):
    spec = pod.setdefault("spec", {})
    spec.setdefault("containers", [{"name": "main", "image": "busybox"}])
    for c in spec["containers"]:
        c.setdefault("name", "main")
        c.setdefault("image", "busybox")
        c.setdefault("resources", {})
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("imagePullPolicy", "IfNotPresent")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    status = pod.setdefault("status", {})
    if not spec.get("nodeName"):
        # Nobody schedules here: a pod created without a node is bound to the fake's node so
        # that it looks like a running pod to every client.
        spec["nodeName"] = KIND_DEFAULTS_NODE[0]
    status.setdefault("phase", "Running")
    running = status["phase"] == "Running"
    start = pod["metadata"].get("creationTimestamp") or now_rfc3339()
    status.setdefault("conditions", [
        {"type": t, "status": "True" if running or t == "PodScheduled" else "False",
         "lastProbeTime": None, "lastTransitionTime": start}
        for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                  "PodScheduled")])
    status.setdefault("hostIP", "10.0.0.10")
    status.setdefault("hostIPs", [{"ip": status["hostIP"]}])
    if "podIP" in status:
        status.setdefault("podIPs", [{"ip": status["podIP"]}])
    status.setdefault("startTime", start)
    status.setdefault("containerStatuses", [
        {"name": c["name"], "state": {"running": {"startedAt": start}} if running else
         {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": start,
                         "finishedAt": start}},
         "lastState": {}, "ready": running, "restartCount": 0, "image": c["image"],
         "imageID": "docker.io/library/%s@sha256:%s" % (c["image"].split(":")[0], "0" * 64),
         "containerID": "containerd://" + uuid.uuid5(uuid.NAMESPACE_OID, pod["metadata"].get(
             "uid", "") + c["name"]).hex * 2, "started": running}
        for c in spec["containers"]])
    status.setdefault("qosClass", "BestEffort")


def _ns_defaults(ns):
    ns.setdefault("spec", {"finalizers": ["kubernetes"]})
    ns.setdefault("status", {"phase": "Active"})
    meta = ns["metadata"]
    labels = meta.setdefault("labels", {})
    labels.setdefault("kubernetes.io/metadata.name", meta["name"])


def _secret_defaults(s):
    s.setdefault("type", "Opaque")
    if "stringData" in s:
        import base64
        data = s.setdefault("data", {})
        for k, v in (s.pop("stringData") or {}).items():
            data[k] = base64.b64encode(str(v).encode()).decode()


def _svc_defaults(s):
    spec = s.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if "clusterIP" not in spec:
        h = zlib.crc32(("%s/%s" % (s["metadata"].get("namespace"), s["metadata"].get(
            "name"))).encode())
        spec["clusterIP"] = "10.96.%d.%d" % (h % 200 + 1, (h >> 8) % 250 + 2)
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack" if len(spec["ipFamilies"]) == 1 else
                    "PreferDualStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for p in spec.setdefault("ports", []):
        p.setdefault("protocol", "TCP")
        p.setdefault("targetPort", p.get("port"))
    s.setdefault("status", {"loadBalancer": {}})


def _node_defaults(n):
    n.setdefault("spec", {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]})
    n.setdefault("status", {
        "capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.10"},
                      {"type": "Hostname", "address": n["metadata"]["name"]}],
        "nodeInfo": {"kubeletVersion": KIND_DEFAULTS_NODE[1], "kubeProxyVersion":
                     KIND_DEFAULTS_NODE[1], "operatingSystem": "linux", "architecture": "amd64",
                     "containerRuntimeVersion": "containerd://1.7.0", "osImage":
                     "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0",
                     "machineID": "", "systemUUID": "", "bootID": ""}})
    labels = n["metadata"].setdefault("labels", {})
    labels.setdefault("kubernetes.io/hostname", n["metadata"]["name"])
    labels.setdefault("kubernetes.io/os", "linux")
    labels.setdefault("kubernetes.io/arch", "amd64")


def _deploy_defaults(d):
    spec = d.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {
        "maxUnavailable": "25%", "maxSurge": "25%"}})
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    r = spec["replicas"]
    d.setdefault("status", {"observedGeneration": 1, "replicas": r, "updatedReplicas": r,
                            "readyReplicas": r, "availableReplicas": r, "conditions": [
                                {"type": "Available", "status": "True",
                                 "reason": "MinimumReplicasAvailable"},
                                {"type": "Progressing", "status": "True",
                                 "reason": "NewReplicaSetAvailable"}]})


def _sa_defaults(sa):
    pass


def _event_defaults(e):
    e.setdefault("type", "Normal")
    e.setdefault("count", 1)
    e.setdefault("firstTimestamp", e["metadata"].get("creationTimestamp"))
    e.setdefault("lastTimestamp", e["metadata"].get("creationTimestamp"))
    e.setdefault("source", {"component": "fakeapi"})
    e.setdefault("involvedObject", {})


# The node name and version pods and nodes are given by default (set from the CLI).
KIND_DEFAULTS_NODE = ["node1", "v1.33.1"]

KIND_DEFAULTS = {
    ("", "pods"): _pod_defaults,
    ("", "namespaces"): _ns_defaults,
    ("", "secrets"): _secret_defaults,
    ("", "services"): _svc_defaults,
    ("", "nodes"): _node_defaults,
    ("apps", "deployments"): _deploy_defaults,
    ("", "events"): _event_defaults,
}
