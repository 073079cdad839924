"""fakeapi.handler: routing and the API handlers of the fake API server (one instance per
request). Discovery, CRUD on the store, watch, Tables, pods/log, reviews, TokenRequest and
the test control endpoint; exec lives in fakeapi.exec."""
import base64
import copy
import hashlib
import json
import os
import random
import threading
import time
import uuid

from . import store as fs
from . import tables as ft
from .wire import (HTTPError, ClientGone, jdump, status_obj, parse_bool, negotiate,
                   parse_accept)

# The API groups in the order the real server lists them (its priority order).
GROUP_ORDER = ["apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io",
               "authorization.k8s.io", "autoscaling", "batch", "certificates.k8s.io",
               "networking.k8s.io", "policy", "rbac.authorization.k8s.io", "storage.k8s.io",
               "admissionregistration.k8s.io", "apiextensions.k8s.io", "scheduling.k8s.io",
               "coordination.k8s.io", "node.k8s.io", "discovery.k8s.io",
               "flowcontrol.apiserver.k8s.io"]

PUBLIC_PATHS = ("/version", "/version/", "/healthz", "/livez", "/readyz",
                "/.well-known/openid-configuration", "/openid/v1/jwks")

BUILTIN_GROUPS = ("", "apps", "batch", "discovery.k8s.io", "coordination.k8s.io",
                  "rbac.authorization.k8s.io", "apiextensions.k8s.io", "networking.k8s.io",
                  "authentication.k8s.io", "authorization.k8s.io")

def _hash8(s):
    return base64.b64encode(hashlib.sha256(s.encode()).digest()[:8]).decode()


def access_rule_for(rules, spec):
    """The index of the first rule allowing the SubjectAccessReview <spec>, or -1."""
    ra = spec.get("resourceAttributes") or {}
    who = [spec.get("user") or ""] + list(spec.get("groups") or [])
    res = ra.get("resource") or ""
    if ra.get("subresource"):
        res += "/" + ra["subresource"]

    def ok(values, v):
        values = values if values is not None else ["*"]
        return "*" in values or v in values
    for i, r in enumerate(rules):
        if not ra or r.get("user") not in who:
            continue
        if ok(r.get("verbs"), ra.get("verb") or "") and ok(r.get("resources"), res) and \
                ok(r.get("groups"), ra.get("group") or "") and \
                ok(r.get("namespaces"), ra.get("namespace") or ""):
            return i
    return -1


class Handler:
    def __init__(self, server, conn, req):
        self.srv, self.conn, self.req = server, conn, req
        self.store = server.store

    # ---- entry ----
    def dispatch(self):
        req = self.req
        self.authenticate()
        p = req.path
        if p in ("/healthz", "/livez", "/readyz") or p.startswith(("/healthz/", "/livez/",
                                                                    "/readyz/")):
            if req.method not in ("GET", "HEAD"):
                raise HTTPError(405, "MethodNotAllowed", "the server does not allow this method")
            return self.conn.respond(req, 200, b"ok", "text/plain; charset=utf-8",
                                     [("X-Content-Type-Options", "nosniff")])
        if p in ("/version", "/version/"):
            return self.conn.send_json(req, 200, self.version_info())
        if p.startswith("/_fake/"):
            return self.control()
        if req.user is None:
            raise HTTPError(401, "Unauthorized", "Unauthorized")
        parts = [x for x in p.split("/") if x != ""]
        if not parts:
            return self.conn.send_json(req, 200, {"paths": sorted(self.root_paths())})
        if parts[0] == "api":
            if len(parts) == 1:
                return self.discovery_root(core=True)
            if parts[1] != "v1":
                raise self.page_not_found()
            if len(parts) == 2:
                return self.resource_list("", "v1")
            return self.resource_request("", "v1", parts[2:])
        if parts[0] == "apis":
            if len(parts) == 1:
                return self.discovery_root(core=False)
            group = parts[1]
            if len(parts) == 2:
                return self.group_info(group)
            if len(parts) == 3:
                return self.resource_list(group, parts[2])
            return self.resource_request(group, parts[2], parts[3:])
        if parts[0] == "openapi":
            return self.openapi(parts[1:])
        raise self.page_not_found()

    def page_not_found(self):
        return HTTPError(404, "NotFound", "the server could not find the requested resource",
                         {})

    def authenticate(self):
        req = self.req
        auth = req.header("authorization")
        req.authorization = auth
        if not auth:
            if not req.path.startswith(PUBLIC_PATHS) and not req.path.startswith("/_fake/"):
                raise HTTPError(401, "Unauthorized", "Unauthorized")
            return
        scheme, _, tok = auth.strip().partition(" ")
        tok = tok.strip()
        if req.path.startswith("/_fake/"):
            return
        info = self.srv.token_user(tok) if scheme.lower() == "bearer" else None
        if info is None:
            # A credential that does not authenticate is a 401 on every path, public or not.
            raise HTTPError(401, "Unauthorized", "Unauthorized")
        req.user = info["user"]
        req.user_info = info

    def version_info(self):
        gv = self.srv.git_version
        return {"major": "1", "minor": self.srv.minor, "emulationMajor": "1",
                "emulationMinor": self.srv.minor, "minCompatibilityMajor": "1",
                "minCompatibilityMinor": str(max(0, int(self.srv.minor) - 1)),
                "gitVersion": gv, "gitCommit": hashlib.sha1(gv.encode()).hexdigest(),
                "gitTreeState": "clean", "buildDate": "2025-05-15T08:00:00Z",
                "goVersion": "go1.24.2", "compiler": "gc", "platform": "linux/amd64"}

    def root_paths(self):
        paths = ["/api", "/api/v1", "/apis", "/apis/", "/healthz", "/livez", "/readyz",
                 "/version", "/openapi/v2", "/openapi/v3", "/openapi/v3/"]
        for g, vs in self.groups().items():
            if g:
                paths.append("/apis/" + g)
                paths += ["/apis/%s/%s" % (g, v) for v in vs]
        return paths

    # ---- discovery ----
    def groups(self):
        """group -> [versions] from the registry (core as "")."""
        out = {}
        for rt in self.store.types.values():
            vs = out.setdefault(rt.group, [])
            if rt.version not in vs:
                vs.append(rt.version)
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], 1000), kv[0])))

    def types_of(self, group, version):
        return sorted([rt for rt in self.store.types.values()
                       if rt.group == group and rt.version == version], key=lambda r: r.plural)

    def discovery_root(self, core):
        req = self.req
        agg = None
        # Aggregated discovery: v2beta1 from 1.26 (on by default from 1.27), v2 from 1.30;
        # --discovery legacy serves only the per-group-version documents, as older servers do.
        minor = int(self.srv.minor)
        served = set()
        if self.srv.args.discovery != "legacy":
            if minor >= 26:
                served.add("v2beta1")
            if minor >= 30:
                served.add("v2")
        for typ, params in parse_accept(req.header("accept")):
            if typ in ("application/json", "*/*", "application/*") and params.get("as") is None:
                break
            if (typ == "application/json" and params.get("g") == "apidiscovery.k8s.io" and
                    params.get("as") == "APIGroupDiscoveryList" and
                    params.get("v") in served):
                agg = params["v"]
                break
        if agg:
            body = jdump(self.aggregated(core, agg))
            etag = '"%s"' % hashlib.sha256(body).hexdigest().upper()
            ctype = "application/json;g=apidiscovery.k8s.io;v=%s;as=APIGroupDiscoveryList" % agg
            hdrs = [("Vary", "Accept"), ("Etag", etag)]
            if req.header("if-none-match") == etag:
                return self.conn.respond(req, 304, b"", ctype, hdrs)
            return self.conn.respond(req, 200, body, ctype, hdrs)
        if core:
            addr = self.srv.listen_addrs[0] if self.srv.listen_addrs else ("127.0.0.1", 443)
            host = "[%s]" % addr[0] if ":" in addr[0] else addr[0]
            return self.conn.send_json(req, 200, {
                "kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "%s:%d" % (host, addr[1])}]},
                [("Vary", "Accept")])
        groups = []
        for g, vs in self.groups().items():
            if g:
                groups.append(self.group_obj(g, vs, with_kind=False))
        return self.conn.send_json(req, 200, {"kind": "APIGroupList", "apiVersion": "v1",
                                              "groups": groups}, [("Vary", "Accept")])

    def group_obj(self, g, vs, with_kind=True):
        gvs = [{"groupVersion": "%s/%s" % (g, v), "version": v} for v in vs]
        o = {"kind": "APIGroup", "apiVersion": "v1"} if with_kind else {}
        o.update({"name": g, "versions": gvs, "preferredVersion": gvs[0]})
        return o

    def group_info(self, group):
        vs = self.groups().get(group)
        if not vs or not group:
            raise self.page_not_found()
        return self.conn.send_json(self.req, 200, self.group_obj(group, vs))

    def resource_entries(self, group, version):
        res = []
        for rt in self.types_of(group, version):
            e = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                 "kind": rt.kind, "verbs": rt.verbs}
            if rt.short:
                e["shortNames"] = rt.short
            if rt.categories:
                e["categories"] = rt.categories
            if rt.storable:
                e["storageVersionHash"] = _hash8(rt.gv + "/" + rt.kind)
            res.append(e)
            for sub, spec in sorted(rt.subresources.items()):
                s = {"name": rt.plural + "/" + sub, "singularName": "", "namespaced":
                     rt.namespaced}
                if len(spec) > 2:
                    s["group"], s["version"] = spec[2], spec[3]
                s["kind"], s["verbs"] = spec[0], spec[1]
                res.append(s)
        return sorted(res, key=lambda e: e["name"])

    def resource_list(self, group, version):
        if not self.types_of(group, version):
            raise self.page_not_found()
        gv = "%s/%s" % (group, version) if group else version
        out = {"kind": "APIResourceList"}
        if group:
            out["apiVersion"] = "v1"
        out["groupVersion"] = gv
        out["resources"] = self.resource_entries(group, version)
        return self.conn.send_json(self.req, 200, out)

    def aggregated(self, core, ver):
        items = []
        for g, vs in self.groups().items():
            if core != (g == ""):
                continue
            versions = []
            for v in vs:
                res = []
                for rt in self.types_of(g, v):
                    e = {"resource": rt.plural, "responseKind": {"group": g, "version": v,
                                                                 "kind": rt.kind},
                         "scope": "Namespaced" if rt.namespaced else "Cluster",
                         "singularResource": rt.singular, "verbs": rt.verbs}
                    if rt.short:
                        e["shortNames"] = rt.short
                    if rt.categories:
                        e["categories"] = rt.categories
                    subs = []
                    for sub, spec in sorted(rt.subresources.items()):
                        rk = {"group": spec[2] if len(spec) > 2 else g,
                              "version": spec[3] if len(spec) > 2 else v, "kind": spec[0]}
                        subs.append({"subresource": sub, "responseKind": rk, "verbs": spec[1]})
                    if subs:
                        e["subresources"] = subs
                    res.append(e)
                versions.append({"version": v, "resources": res, "freshness": "Current"})
            meta = {"creationTimestamp": None}
            if g:
                meta = {"name": g, "creationTimestamp": None}
            items.append({"metadata": meta, "versions": versions})
        return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/" + ver,
                "metadata": {}, "items": items}

    def openapi(self, parts):
        """OpenAPI v3 as far as kubectl needs it: the root lists the group versions, and each
        group version's document has, per resource, the paths with their operations, the
        x-kubernetes-group-version-kind extension and the fieldValidation query parameter, so
        `kubectl apply/create -f` uses server-side field validation. No schemas. /openapi/v2
        is the same in gnostic protobuf, the only form kubectl asks it in."""
        if parts == ["v2"]:
            return self.openapi_v2()
        if not parts or parts[0] != "v3":
            raise self.page_not_found()
        gvs = {}
        for g, vs in self.groups().items():
            for v in vs:
                gvs[("api/" + v) if not g else "apis/%s/%s" % (g, v)] = (g, v)
        if len(parts) == 1:
            paths = {}
            for key, (g, v) in gvs.items():
                h = hashlib.sha512(json.dumps(self.openapi_gv(g, v), sort_keys=True).encode())
                paths[key] = {"serverRelativeURL": "/openapi/v3/%s?hash=%s" % (
                    key, h.hexdigest().upper()[:128])}
            return self.conn.send_json(self.req, 200, {"paths": paths})
        key = "/".join(parts[1:])
        if key not in gvs:
            raise self.page_not_found()
        body = jdump(self.openapi_gv(*gvs[key]))
        hdrs = [("Etag", '"%s"' % hashlib.sha512(body).hexdigest().upper()[:128])]
        if self.req.q("hash"):
            hdrs.append(("Cache-Control", "public, immutable"))
            hdrs.append(("Expires", "Fri, 01 Jan 2100 00:00:00 GMT"))
        return self.conn.respond(self.req, 200, body, "application/json", hdrs)

    def openapi_v2(self):
        from . import proto as fakeapi_proto
        ops = []
        for g, vs in self.groups().items():
            for v in vs:
                prefix = "/api/" + v if not g else "/apis/%s/%s" % (g, v)
                for rt in self.types_of(g, v):
                    if rt.storable:
                        ns = "/namespaces/{namespace}" if rt.namespaced else ""
                        ops.append((prefix + ns + "/" + rt.plural + "/{name}", g, v, rt.kind))
        accept = self.req.header("accept") or ""
        if "protobuf" in accept:
            body = fakeapi_proto.openapi_v2(self.srv.git_version, ops)
            # kube-openapi answers this media type with "." for "@" (Go's mime parser
            # rejects "@").
            ctype = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        else:
            body = jdump({"swagger": "2.0", "info": {"title": "Kubernetes",
                                                     "version": self.srv.git_version},
                          "paths": {p: {"patch": {
                              "description": "partially update the specified " + k,
                              "operationId": "patch" + k, "parameters": [{
                                  "uniqueItems": True, "type": "string",
                                  "name": "fieldValidation", "in": "query"}],
                              "responses": {"200": {"description": "OK"}},
                              "x-kubernetes-action": "patch",
                              "x-kubernetes-group-version-kind": {"group": g, "kind": k,
                                                                  "version": v}}}
                              for p, g, v, k in ops}})
            ctype = "application/json"
        return self.conn.respond(self.req, 200, body, ctype, [("Etag", '"%s"' % hashlib.sha512(
            body).hexdigest().upper()[:128]), ("Vary", "Accept")])

    def openapi_gv(self, g, v):
        fv = {"name": "fieldValidation", "in": "query", "description": "fieldValidation "
              "instructs the server on how to handle objects in the request containing unknown "
              "or duplicate fields.", "schema": {"type": "string", "uniqueItems": True}}
        paths = {}
        prefix = "/api/" + v if not g else "/apis/%s/%s" % (g, v)
        for rt in self.types_of(g, v):
            gvk = {"group": g, "version": v, "kind": rt.kind}
            ns = "/namespaces/{namespace}" if rt.namespaced else ""

            def op(action, params=()):
                return {"description": "%s %s" % (action, rt.kind), "operationId": action +
                        rt.kind, "parameters": list(params), "responses": {
                            "200": {"description": "OK"}, "401": {"description": "Unauthorized"}},
                        "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}
            coll = {}
            if "list" in rt.verbs:
                coll["get"] = op("list")
            if "create" in rt.verbs:
                coll["post"] = op("post", [fv])
            if "deletecollection" in rt.verbs:
                coll["delete"] = op("deletecollection")
            paths[prefix + ns + "/" + rt.plural] = coll
            if rt.storable:
                paths[prefix + ns + "/" + rt.plural + "/{name}"] = {
                    "get": op("get"), "put": op("put", [fv]), "patch": op("patch", [fv]),
                    "delete": op("delete")}
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version":
                                             self.srv.git_version},
                "paths": paths, "components": {"schemas": {}}}

    # ---- resource requests ----
    def resource_request(self, group, version, parts):
        req = self.req
        watch_path = False
        if parts and parts[0] == "watch":
            watch_path = True
            parts = parts[1:]
        ns = ""
        if len(parts) >= 2 and parts[0] == "namespaces":
            if len(parts) == 2 or parts[2] in ("status", "finalize"):
                ns = ""
            else:
                ns = parts[1]
                parts = parts[2:]
        if not parts:
            raise self.page_not_found()
        plural = parts[0]
        name = parts[1] if len(parts) > 1 else None
        sub = parts[2] if len(parts) > 2 else None
        if len(parts) > 3 and sub != "proxy":
            raise self.page_not_found()
        rt = self.store.find_type(group, version, plural)
        if rt is None:
            raise self.page_not_found()
        if ns and not rt.namespaced:
            raise self.page_not_found()
        m = req.method
        if watch_path:
            if m != "GET" or sub:
                raise HTTPError(405, "MethodNotAllowed", "the server does not allow this method on"
                                " the requested resource")
            return self.watch(rt, ns, name)
        if sub:
            return self.subresource(rt, ns, name, sub, parts[3:])
        if not rt.storable:
            if m == "POST" and name is None:
                return self.review(rt, ns)
            raise HTTPError(405, "MethodNotAllowed", "the server does not allow this method on "
                            "the requested resource")
        if rt.namespaced and name is not None and not ns:
            raise self.page_not_found()
        if m in ("GET", "HEAD"):
            if name is None:
                if parse_bool(req.q("watch", "")):
                    return self.watch(rt, ns, None)
                return self.list(rt, ns)
            return self.get(rt, ns, name)
        if m == "POST":
            if name is not None:
                raise HTTPError(405, "MethodNotAllowed", "the server does not allow this method "
                                "on the requested resource")
            if rt.namespaced and not ns:
                raise self.page_not_found()
            return self.create(rt, ns)
        if m == "PUT" and name is not None:
            return self.update(rt, ns, name)
        if m == "PATCH" and name is not None:
            return self.patch(rt, ns, name)
        if m == "DELETE":
            if name is None:
                return self.delete_collection(rt, ns)
            return self.delete(rt, ns, name)
        raise HTTPError(405, "MethodNotAllowed", "the server does not allow this method on the "
                        "requested resource")

    def qint(self, name):
        """An integer query parameter (None when absent); 400 when it is not one."""
        v = self.req.q(name)
        if v is None or v == "":
            return None
        try:
            return int(v)
        except ValueError:
            raise HTTPError(400, "BadRequest", 'strconv.ParseInt: parsing "%s": invalid syntax'
                            % v)

    def err(self, c):
        return HTTPError(c.code, c.reason, c.message, c.details)

    def body_json(self, any_type=False):
        ctype = (self.req.header("content-type") or "application/json").split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf" and not any_type:
            from . import proto as fakeapi_proto
            try:
                return fakeapi_proto.decode(self.req.body)
            except fakeapi_proto.ProtoError as e:
                raise HTTPError(415, "UnsupportedMediaType", "the body of the request was in an "
                                "unknown format: %s (the fake decodes protobuf for a few kinds "
                                "only; send application/json)" % e)
        if not any_type and ctype not in ("application/json", "application/merge-patch+json",
                         "application/strategic-merge-patch+json", "application/json-patch+json",
                         "application/apply-patch+yaml", "application/yaml", "*/*", ""):
            raise HTTPError(415, "UnsupportedMediaType", 'the body of the request was in an '
                            'unknown format - accepted media types include: application/json, '
                            'application/yaml, application/vnd.kubernetes.protobuf')
        try:
            return json.loads(self.req.body.decode("utf-8") or "null")
        except (ValueError, UnicodeDecodeError) as e:
            raise HTTPError(400, "BadRequest", "the body of the request could not be decoded as "
                            "JSON: %s" % e)

    def check_kind(self, rt, obj):
        if not isinstance(obj, dict):
            raise HTTPError(400, "BadRequest", "the object provided is not a JSON object")
        meta = obj.get("metadata")
        if meta is not None and (not isinstance(meta, dict) or not all(
                isinstance(meta.get(f, ""), str) for f in ("name", "namespace",
                                                           "generateName"))):
            raise HTTPError(400, "BadRequest", "json: cannot unmarshal metadata into Go struct "
                            "field %s.metadata of type v1.ObjectMeta" % rt.kind)
        k, av = obj.get("kind"), obj.get("apiVersion")
        if (k and k != rt.kind) or (av and av != rt.gv):
            raise HTTPError(400, "BadRequest", "the API version in the data (%s) does not match "
                            "the expected API version (%s)" % (av, rt.gv) if av != rt.gv else
                            "%s in version \"%s\" cannot be handled as a %s: no kind \"%s\" is "
                            "registered" % (rt.kind, rt.version, rt.kind, k))

    def dry_run(self):
        return "All" in self.req.qall("dryRun")

    def selectors(self, rt):
        try:
            lsel = fs.parse_label_selector(self.req.q("labelSelector", ""))
            fsel = fs.parse_field_selector(self.req.q("fieldSelector", ""), rt.key)
        except fs.SelectorError as e:
            raise HTTPError(400, "BadRequest", str(e))
        return lsel, fsel

    def out_items(self, rt, items):
        # Typed lists of built-in resources carry no kind/apiVersion per item; custom
        # resources (unstructured) keep them.
        if rt.group in BUILTIN_GROUPS:
            return [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
                    for o in items]
        return items

    def list(self, rt, ns):
        req = self.req
        lsel, fsel = self.selectors(rt)
        as_, gv = negotiate(req, ("Table", "PartialObjectMetadataList"))
        items, rv = self.store.list(rt, ns, lsel, fsel)
        meta = {"resourceVersion": rv}
        limit = self.qint("limit") or 0
        start = 0
        cont = req.q("continue")
        if cont:
            try:
                tok = json.loads(base64.b64decode(cont + "==="))
                start, rv = int(tok["start"]), tok["rv"]
                meta["resourceVersion"] = rv
            except (ValueError, KeyError, TypeError):
                raise HTTPError(400, "BadRequest", "continue key is not valid: illegal base64 "
                                "data")
        rest = items[start:]
        if limit > 0 and len(rest) > limit:
            items = rest[:limit]
            meta["continue"] = base64.b64encode(json.dumps(
                {"v": "meta.k8s.io/v1", "rv": rv, "start": start + limit}).encode()).decode()
            meta["remainingItemCount"] = len(rest) - limit
        else:
            items = rest
        if as_ == "Table":
            t = ft.table(rt, items, req.q("includeObject", "Metadata"), None, gv)
            t["metadata"] = meta
            return self.conn.send_json(req, 200, t)
        if as_ == "PartialObjectMetadataList":
            return self.conn.send_json(req, 200, {
                "kind": "PartialObjectMetadataList", "apiVersion": gv, "metadata": meta,
                "items": [ft.partial(o, gv) for o in items]})
        return self.conn.send_json(req, 200, {"kind": rt.list_kind, "apiVersion": rt.gv,
                                              "metadata": meta,
                                              "items": self.out_items(rt, items)})

    def render_one(self, rt, obj, code=200):
        req = self.req
        as_, gv = negotiate(req, ("Table", "PartialObjectMetadata"))
        if as_ == "Table":
            t = ft.table(rt, [obj], req.q("includeObject", "Metadata"),
                         obj["metadata"].get("resourceVersion"), gv)
            return self.conn.send_json(req, code, t)
        if as_ == "PartialObjectMetadata":
            return self.conn.send_json(req, code, ft.partial(obj, gv))
        return self.conn.send_json(req, code, obj)

    def get(self, rt, ns, name):
        try:
            obj = self.store.get(rt, ns, name)
        except fs.Conflict as c:
            raise self.err(c)
        return self.render_one(rt, obj)

    def create(self, rt, ns):
        obj = self.body_json()
        self.check_kind(rt, obj)
        meta = obj.setdefault("metadata", {}) if isinstance(obj.get("metadata"), dict) or \
            "metadata" not in obj else None
        if meta is None:
            raise HTTPError(400, "BadRequest", "metadata must be an object")
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != ns:
            raise HTTPError(400, "BadRequest", "the namespace of the provided object does not "
                            "match the namespace sent on the request")
        for f in ("resourceVersion",):
            meta.pop(f, None)
        try:
            out = self.store.create(rt, obj, ns, self.dry_run())
        except fs.Conflict as c:
            raise self.err(c)
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions") and not self.dry_run():
            self.srv.register_crd(out)
            out = self.crd_established(rt, out)
        return self.render_one(rt, out, 201)

    def crd_established(self, rt, crd):
        st = {"conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": fs.now_rfc3339()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted",
             "lastTransitionTime": fs.now_rfc3339()}],
            "acceptedNames": crd.get("spec", {}).get("names", {}),
            "storedVersions": [v["name"] for v in crd.get("spec", {}).get("versions", [])
                               if v.get("storage")]}
        new = copy.deepcopy(crd)
        new["status"] = st
        out, _ = self.store.update(rt, "", crd["metadata"]["name"], new, subresource="status")
        return out

    def update(self, rt, ns, name, sub=None):
        obj = self.body_json()
        self.check_kind(rt, obj)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise HTTPError(400, "BadRequest", "the name of the object (%s) does not match the "
                            "name on the URL (%s)" % (meta["name"], name))
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != ns:
            raise HTTPError(400, "BadRequest", "the namespace of the provided object does not "
                            "match the namespace sent on the request")
        meta["name"] = name
        try:
            out, created = self.store.update(rt, ns, name, obj, self.dry_run(), create_ok=(
                sub is None and rt.key == ("coordination.k8s.io", "leases")), subresource=sub)
        except fs.Conflict as c:
            raise self.err(c)
        return self.render_one(rt, out, 201 if created else 200)

    def patch(self, rt, ns, name, sub=None):
        ctype = (self.req.header("content-type") or "").split(";")[0].strip()
        patch = self.body_json()
        try:
            cur = self.store.get(rt, ns, name)
        except fs.Conflict as c:
            if ctype == "application/apply-patch+yaml":
                patch.setdefault("metadata", {})["name"] = name
                try:
                    out = self.store.create(rt, patch, ns, self.dry_run())
                except fs.Conflict as c2:
                    raise self.err(c2)
                return self.render_one(rt, out, 201)
            raise self.err(c)
        if ctype == "application/json-patch+json":
            new = json_patch(cur, patch)
        elif ctype == "application/merge-patch+json":
            new = merge_patch(cur, patch)
        elif ctype == "application/strategic-merge-patch+json":
            new = merge_patch(cur, patch, strategic=True)
        elif ctype == "application/apply-patch+yaml":
            new = merge_patch(cur, patch, strategic=True)
        else:
            raise HTTPError(415, "UnsupportedMediaType", "the body of the request was in an "
                            "unknown format - accepted media types include: "
                            "application/json-patch+json, application/merge-patch+json, "
                            "application/apply-patch+yaml, application/strategic-merge-patch+json")
        if not isinstance(new, dict):
            raise HTTPError(422, "Invalid", "patch result is not an object")
        # A patch without a resourceVersion applies to whatever is current.
        if not (patch.get("metadata") or {}).get("resourceVersion") if isinstance(
                patch, dict) else True:
            new.setdefault("metadata", {})["resourceVersion"] = cur["metadata"]["resourceVersion"]
        try:
            out, _ = self.store.update(rt, ns, name, new, self.dry_run(), subresource=sub)
        except fs.Conflict as c:
            raise self.err(c)
        return self.render_one(rt, out, 200)

    def delete_options(self):
        opts = {}
        if self.req.body.strip():
            opts = self.body_json()
        if not isinstance(opts, dict):
            opts = {}
        if self.req.q("gracePeriodSeconds") is not None:
            opts["gracePeriodSeconds"] = self.qint("gracePeriodSeconds")
        if self.req.q("propagationPolicy"):
            opts["propagationPolicy"] = self.req.q("propagationPolicy")
        if self.req.qall("dryRun") or opts.get("dryRun"):
            opts["dryRun"] = self.req.qall("dryRun") or opts.get("dryRun")
        return opts

    def delete(self, rt, ns, name):
        opts = self.delete_options()
        pre = opts.get("preconditions") or {}
        dry = "All" in (opts.get("dryRun") or [])
        if rt.key == ("", "pods") and not dry:
            # Graceful deletion as the kubelet finishes it at once: MODIFIED with a
            # deletionTimestamp, then DELETED; the answer is the pod being deleted.
            try:
                cur = self.store.get(rt, ns, name)
                grace = opts.get("gracePeriodSeconds", cur["spec"].get(
                    "terminationGracePeriodSeconds", 30))
                if pre.get("uid") and pre["uid"] != cur["metadata"]["uid"]:
                    self.store.delete(rt, ns, name, precond_uid=pre["uid"])
                if grace and grace > 0:
                    cur["metadata"]["deletionTimestamp"] = fs.now_rfc3339(time.time() + grace)
                    cur["metadata"]["deletionGracePeriodSeconds"] = grace
                    cur, _ = self.store.update(rt, ns, name, cur)
                self.store.delete(rt, ns, name)
            except fs.Conflict as c:
                raise self.err(c)
            return self.render_one(rt, cur, 200)
        try:
            gone = self.store.delete(rt, ns, name, dry, pre.get("uid"), pre.get(
                "resourceVersion"))
        except fs.Conflict as c:
            raise self.err(c)
        if rt.key == ("", "namespaces"):
            gone["status"] = {"phase": "Terminating"}
            gone["metadata"]["deletionTimestamp"] = fs.now_rfc3339()
            return self.render_one(rt, gone, 200)
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions") and not dry:
            for key, t in list(self.store.types.items()):
                if t.group == gone.get("spec", {}).get("group") and t.plural == gone.get(
                        "spec", {}).get("names", {}).get("plural"):
                    self.store.remove_type(key)
        return self.conn.send_json(self.req, 200, status_obj(
            200, "", "", dict(fs._details(rt, name), uid=gone["metadata"].get("uid")),
            status="Success"))

    def delete_collection(self, rt, ns):
        if "deletecollection" not in rt.verbs:
            raise HTTPError(405, "MethodNotAllowed", "the server does not allow this method on "
                            "the requested resource")
        lsel, fsel = self.selectors(rt)
        dry = self.dry_run()
        items, rv = self.store.list(rt, ns, lsel, fsel)
        out = []
        for o in items:
            try:
                out.append(self.store.delete(rt, o["metadata"].get("namespace", ""),
                                             o["metadata"]["name"], dry))
            except fs.Conflict:
                pass
        return self.conn.send_json(self.req, 200, {
            "kind": rt.list_kind, "apiVersion": rt.gv,
            "metadata": {"resourceVersion": str(self.store.rv)},
            "items": self.out_items(rt, out)})

    # ---- watch ----
    def watch(self, rt, ns, name):
        req, st = self.req, self.store
        lsel, fsel = self.selectors(rt)
        if name:
            fsel = fsel + [(lambda o: o.get("metadata", {}).get("name", ""), "=", name)]
        as_, gv = negotiate(req, ("Table", "PartialObjectMetadata"))
        include = req.q("includeObject", "Metadata")
        rv_param = req.q("resourceVersion", "")
        bookmarks = parse_bool(req.q("allowWatchBookmarks", ""))
        initial = req.q("sendInitialEvents")
        send_initial = parse_bool(initial) if initial is not None else rv_param in ("", "0")
        if initial is not None and (not bookmarks or req.q("resourceVersionMatch") !=
                                    "NotOlderThan"):
            raise HTTPError(422, "Invalid", "ListOptions.meta.k8s.io \"\" is invalid: "
                            "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for "
                            "watch unless the WatchList feature gate is enabled")
        t = req.q("timeoutSeconds")
        timeout = self.qint("timeoutSeconds") if t else int(1800 * (1 + random.random()))
        deadline = time.monotonic() + timeout
        with st.cond:
            if send_initial:
                items, _ = st.list(rt, ns, lsel, fsel)
                pos = st.rv
                too_old = False
            else:
                try:
                    pos = int(rv_param)
                except ValueError:
                    raise HTTPError(400, "BadRequest", 'resourceVersion: Invalid value: "%s": '
                                    "must be a valid integer" % rv_param)
                items = []
                too_old = pos < st.compacted
        self.conn.start_stream(req, "application/json")

        first_table = [True]

        def emit(typ, obj):
            if typ in ("BOOKMARK", "ERROR") or as_ == "":
                o = obj
            elif as_ == "Table":
                # As the API server does: column definitions on the first event only (then
                # TableOptions.NoHeaders, which leaves them null).
                o = ft.table(rt, [obj], include, None, gv, columns=first_table[0])
                first_table[0] = False
            else:
                o = ft.partial(obj, gv)
            self.conn.chunk(jdump({"type": typ, "object": o}))

        if too_old:
            emit("ERROR", status_obj(410, "Expired", "too old resource version: %d (%d)" % (
                pos, st.compacted)))
            return self.conn.end_stream()
        for o in items:
            emit("ADDED", o)
        if initial is not None and send_initial and bookmarks:
            emit("BOOKMARK", self.bookmark(rt, pos, initial_end=True))
        last_bm = time.monotonic()
        interval = self.srv.args.bookmark_interval

        def matches(o):
            if o is None:
                return False
            if ns and rt.namespaced and o["metadata"].get("namespace") != ns:
                return False
            return fs.labels_match(lsel, o["metadata"].get("labels")) and fs.fields_match(
                fsel, o)

        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            with st.cond:
                evs = st.events_after(rt.key, pos)
                if evs is None:
                    evs = "gone"
                elif not evs:
                    st.cond.wait(min(1.0, deadline - now))
                    evs = st.events_after(rt.key, pos)
                    if evs is None:
                        evs = "gone"
                if evs != "gone":
                    pos = st.rv
            if evs == "gone":
                emit("ERROR", status_obj(410, "Expired", "too old resource version: %d (%d)" % (
                    pos, st.compacted)))
                break
            for (erv, _, typ, obj, prev) in evs:
                cur_m, old_m = matches(obj), matches(prev)
                if typ == "ADDED" and cur_m:
                    emit("ADDED", obj)
                elif typ == "MODIFIED":
                    if cur_m and old_m:
                        emit("MODIFIED", obj)
                    elif cur_m:
                        emit("ADDED", obj)
                    elif old_m:
                        emit("DELETED", obj)
                elif typ == "DELETED" and old_m:
                    emit("DELETED", obj)
            if bookmarks and time.monotonic() - last_bm >= interval:
                emit("BOOKMARK", self.bookmark(rt, pos))
                last_bm = time.monotonic()
            if self.conn.reader.client_gone():
                raise ClientGone("watch client went away")
        self.conn.end_stream()

    def bookmark(self, rt, rv, initial_end=False):
        meta = {"resourceVersion": str(rv), "creationTimestamp": None}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": rt.kind, "apiVersion": rt.gv, "metadata": meta}

    # ---- subresources ----
    def subresource(self, rt, ns, name, sub, rest):
        m = self.req.method
        spec = rt.subresources.get(sub)
        if spec is None:
            raise self.page_not_found()
        if rt.key == ("", "pods"):
            if sub == "log" and m in ("GET", "HEAD"):
                return self.pod_log(ns, name)
            if sub in ("exec", "attach") and m in ("GET", "POST"):
                from . import exec as fakeapi_exec
                return fakeapi_exec.handle(self, ns, name, sub)
        if rt.key == ("", "serviceaccounts") and sub == "token" and m == "POST":
            return self.token_request(ns, name)
        if sub == "status" or (sub == "ephemeralcontainers"):
            if m == "GET":
                return self.get(rt, ns, name)
            if m == "PUT":
                return self.update(rt, ns, name, sub="status")
            if m == "PATCH":
                return self.patch(rt, ns, name, sub="status")
        if sub == "scale":
            return self.scale(rt, ns, name)
        if sub == "finalize" and m == "PUT":
            return self.update(rt, ns, name)
        raise HTTPError(405, "MethodNotAllowed", "the server does not allow this method on the "
                        "requested resource")

    def scale(self, rt, ns, name):
        try:
            obj = self.store.get(rt, ns, name)
        except fs.Conflict as c:
            raise self.err(c)
        m = self.req.method
        if m in ("PUT", "PATCH"):
            body = self.body_json() or {}
            if m == "PATCH":
                cur = self.scale_obj(obj)
                ctype = (self.req.header("content-type") or "").split(";")[0]
                body = json_patch(cur, body) if ctype == "application/json-patch+json" else \
                    merge_patch(cur, body)
            replicas = (body.get("spec") or {}).get("replicas")
            if isinstance(replicas, int):
                obj["spec"]["replicas"] = replicas
                st = obj.setdefault("status", {})
                for k in ("replicas", "readyReplicas", "availableReplicas", "updatedReplicas"):
                    st[k] = replicas
                try:
                    obj, _ = self.store.update(rt, ns, name, obj)
                except fs.Conflict as c:
                    raise self.err(c)
        elif m != "GET":
            raise HTTPError(405, "MethodNotAllowed", "the server does not allow this method on "
                            "the requested resource")
        return self.conn.send_json(self.req, 200, self.scale_obj(obj))

    def scale_obj(self, obj):
        sel = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {
            k: obj["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion",
                                            "creationTimestamp") if k in obj["metadata"]},
            "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
            "status": {"replicas": obj.get("status", {}).get("replicas", 0),
                       "selector": ",".join("%s=%s" % kv for kv in sorted(sel.items()))}}

    # ---- pods/log ----
    def pod_and_container(self, ns, name):
        pods = self.store.types[("", "pods")]
        try:
            pod = self.store.get(pods, ns, name)
        except fs.Conflict as c:
            raise self.err(c)
        names = [c["name"] for c in pod["spec"].get("containers", [])]
        c = self.req.q("container")
        if not c:
            if len(names) != 1:
                raise HTTPError(400, "BadRequest", "a container name must be specified for pod "
                                "%s, choose one of: [%s]" % (name, " ".join(names)))
            c = names[0]
        elif c not in names + [x["name"] for x in pod["spec"].get("initContainers", [])]:
            raise HTTPError(400, "BadRequest", "container %s is not valid for pod %s" % (c, name))
        return pod, c

    def log_lines(self, ns, name, c):
        srv = self.srv
        for k in ("%s/%s/%s" % (ns, name, c), "%s/%s" % (ns, name)):
            if k in srv.logs:
                return k
        return "%s/%s" % (ns, name)

    def pod_log(self, ns, name):
        req, srv = self.req, self.srv
        pod, c = self.pod_and_container(ns, name)
        follow = parse_bool(req.q("follow", ""))
        stamps = parse_bool(req.q("timestamps", ""))
        tail = req.q("tailLines")
        limit = req.q("limitBytes")
        limit = self.qint("limitBytes")
        key = self.log_lines(ns, name, c)
        with srv.log_cond:
            lines = list(srv.logs.get(key, []))
        idx = len(lines)
        if tail is not None:
            n = self.qint("tailLines")
            lines = lines[-n:] if n > 0 else []
        self.conn.start_stream(req, "text/plain")
        sent = [0]

        def out(line):
            data = ((fs.now_rfc3339().replace("Z", ".000000000Z") + " ") if stamps else "") + \
                line + "\n"
            b = data.encode()
            if limit is not None:
                b = b[:max(0, limit - sent[0])]
            if b:
                self.conn.chunk(b)
                sent[0] += len(b)
            return limit is None or sent[0] < limit

        for line in lines:
            if not out(line):
                return self.conn.end_stream()
        if not follow:
            return self.conn.end_stream()
        tick = 0
        step = srv.args.log_tick
        next_tick = time.monotonic() + step
        pods = self.store.types[("", "pods")]
        srv.follow_stop.discard("%s/%s" % (ns, name))
        while True:
            with srv.log_cond:
                srv.log_cond.wait(0.25)
                cur = srv.logs.get(key, [])
                new, idx = cur[idx:], len(cur)
                stop = "%s/%s" % (ns, name) in srv.follow_stop
            for line in new:
                if not out(line):
                    return self.conn.end_stream()
            if stop:
                break
            if step > 0 and time.monotonic() >= next_tick:
                tick += 1
                next_tick += step
                if not out("tick %d" % tick):
                    return self.conn.end_stream()
            if (ns, name) not in self.store.objs[pods.key]:
                break
            if self.conn.reader.client_gone():
                raise ClientGone("log follower went away")
        self.conn.end_stream()

    # ---- authentication / authorization reviews, TokenRequest ----
    def review(self, rt, ns):
        body = self.body_json() or {}
        self.check_kind(rt, body)
        spec = body.get("spec") or {}
        out = {"kind": rt.kind, "apiVersion": rt.gv,
               "metadata": {"creationTimestamp": None}}
        if ns:
            out["metadata"]["namespace"] = ns
        info = getattr(self.req, "user_info", None) or {}
        if rt.plural == "tokenreviews":
            tok = spec.get("token", "")
            ti = self.srv.token_user(tok)
            out["spec"] = spec
            if ti is None and self.srv.args.review_delay:
                time.sleep(self.srv.args.review_delay)
            if ti is None:
                out["status"] = {"user": {}, "error": "[invalid bearer token, token lookup "
                                 "failed]"}
            else:
                user = {"username": ti["user"], "uid": ti["uid"], "groups": ti["groups"]}
                if ti.get("extra"):
                    user["extra"] = ti["extra"]
                auds = spec.get("audiences") or ["https://kubernetes.default.svc.cluster.local"]
                out["status"] = {"authenticated": True, "user": user, "audiences": auds}
        elif rt.plural == "selfsubjectreviews":
            out["status"] = {"userInfo": {"username": info.get("user"), "uid": info.get("uid"),
                                          "groups": info.get("groups")}}
        elif rt.plural == "selfsubjectrulesreviews":
            out["spec"] = spec
            out["status"] = {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"],
                                                "resources": ["*"]}],
                             "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                             "incomplete": False}
        elif rt.plural == "subjectaccessreviews" and self.srv.access_rules is not None:
            out["spec"] = spec
            rule = access_rule_for(self.srv.access_rules, spec)
            out["status"] = {"allowed": True, "reason": "fake rule %d" % rule} if rule >= 0 \
                else {"allowed": False}
        else:
            out["spec"] = spec
            out["status"] = {"allowed": True, "reason": "the fake API server allows everything"}
        return self.conn.send_json(self.req, 201, out)

    def token_request(self, ns, sa):
        sas = self.store.types[("", "serviceaccounts")]
        try:
            sa_obj = self.store.get(sas, ns, sa)
        except fs.Conflict as c:
            raise self.err(c)
        body = self.body_json() or {}
        spec = dict(body.get("spec") or {})
        exp = spec.get("expirationSeconds")
        exp = 3600 if exp is None else int(exp)
        if exp < 600:
            raise HTTPError(422, "Invalid", 'TokenRequest.authentication.k8s.io "%s" is invalid: '
                            'spec.expirationSeconds: Invalid value: %d: may not specify a duration'
                            ' less than 10 minutes' % (sa, exp), {
                                "name": sa, "group": "authentication.k8s.io",
                                "kind": "TokenRequest", "causes": [{
                                    "reason": "FieldValueInvalid",
                                    "message": "Invalid value: %d: may not specify a duration "
                                               "less than 10 minutes" % exp,
                                    "field": "spec.expirationSeconds"}]})
        auds = spec.get("audiences") or ["https://kubernetes.default.svc.cluster.local"]
        now = int(time.time())
        user = "system:serviceaccount:%s:%s" % (ns, sa)
        claims = {"aud": auds, "exp": now + exp, "iat": now,
                  "iss": "https://kubernetes.default.svc.cluster.local", "jti": str(uuid.uuid4()),
                  "kubernetes.io": {"namespace": ns, "serviceaccount": {
                      "name": sa, "uid": sa_obj["metadata"]["uid"]}},
                  "nbf": now, "sub": user}
        bref = spec.get("boundObjectRef")
        extra = {"authentication.kubernetes.io/credential-id": ["JTI=" + claims["jti"]]}
        if bref and bref.get("kind") == "Pod":
            claims["kubernetes.io"]["pod"] = {"name": bref.get("name"), "uid": bref.get("uid")}
            extra["authentication.kubernetes.io/pod-name"] = [bref.get("name") or ""]
            extra["authentication.kubernetes.io/pod-uid"] = [bref.get("uid") or ""]

        def b64u(b):
            return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
        tok = "%s.%s.%s" % (b64u(json.dumps({"alg": "RS256", "kid": "fakeapi"}).encode()),
                            b64u(json.dumps(claims, separators=(",", ":")).encode()),
                            b64u(os.urandom(256)))
        self.srv.add_token(tok, user, now + exp, uid=sa_obj["metadata"]["uid"], extra=extra)
        spec["audiences"] = auds
        spec["expirationSeconds"] = exp
        spec.setdefault("boundObjectRef", None)
        out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"name": sa, "namespace": ns, "creationTimestamp": fs.now_rfc3339()},
               "spec": spec,
               "status": {"token": tok, "expirationTimestamp": fs.now_rfc3339(now + exp)}}
        return self.conn.send_json(self.req, 201, out)

    # ---- the test control endpoint ----
    def control(self):
        req, srv = self.req, self.srv
        ct = srv.args.control_token
        auth = req.header("authorization") or ""
        if not ct or auth.partition(" ")[2].strip() != ct or \
                auth.partition(" ")[0].lower() != "bearer":
            raise HTTPError(401 if ct else 404, "Unauthorized" if ct else "NotFound",
                            "Unauthorized" if ct else "the server could not find the requested "
                            "resource")
        req.user = "fakeapi:control"
        what = req.path[len("/_fake/"):]
        m = req.method
        if what == "log" and m == "GET":
            data = b""
            if srv.args.log and os.path.exists(srv.args.log):
                with srv.log_lock, open(srv.args.log, "rb") as f:
                    data = f.read()
            return self.conn.respond(req, 200, data, "application/x-ndjson")
        if what in ("pods", "objects") and m == "POST":
            body = self.body_json(any_type=True)
            objs = body if isinstance(body, list) else (body.get("items") if isinstance(
                body, dict) and "items" in body else [body])
            out = []
            for o in objs:
                kind = o.get("kind", "Pod")
                rt = next((t for t in self.store.types.values() if t.kind == kind), None)
                if rt is None:
                    raise HTTPError(400, "BadRequest", "unknown kind %s" % kind)
                ns = (o.get("metadata") or {}).get("namespace", "default") if rt.namespaced \
                    else ""
                if rt.namespaced and ns not in self.store._ns_names():
                    self.store.create(self.store.types[("", "namespaces")],
                                      {"metadata": {"name": ns}}, "")
                try:
                    out.append(self.store.create(rt, o, ns, keep_system=True))
                except fs.Conflict as c:
                    raise self.err(c)
            return self.conn.send_json(req, 201, {"items": out})
        if what == "logs" and m == "POST":
            body = self.body_json(any_type=True) or {}
            with srv.log_cond:
                for k, lines in body.items():
                    if isinstance(lines, str):
                        lines = [lines]
                    srv.logs.setdefault(k, []).extend(lines)
                srv.log_cond.notify_all()
            return self.conn.send_json(req, 200, {"ok": True})
        if what == "logs/end" and m == "POST":
            body = self.body_json(any_type=True) or {}
            with srv.log_cond:
                for k in body.get("pods", []):
                    srv.follow_stop.add(k)
                srv.log_cond.notify_all()
            return self.conn.send_json(req, 200, {"ok": True})
        if what == "access-rules" and m == "POST":
            body = self.body_json(any_type=True)
            srv.access_rules = body if isinstance(body, list) else None
            return self.conn.send_json(req, 200, {"ok": True})
        if what == "tokens" and m == "POST":
            body = self.body_json(any_type=True) or {}
            for tok, user in body.items():
                srv.add_token(tok, user, None)
            return self.conn.send_json(req, 200, {"ok": True})
        if what == "state" and m == "GET":
            st = self.store
            with st.cond:
                out = {"resourceVersion": str(st.rv), "objects": {
                    "%s/%s" % (k[0] or "core", k[1]): [o for o in v.values()]
                    for k, v in st.objs.items() if v}}
            return self.conn.send_json(req, 200, out)
        raise self.page_not_found()


# ---- patches ----

def merge_patch(target, patch, strategic=False):
    """RFC 7386 JSON merge patch; with strategic, lists of objects that all have a "name" are
    merged by name (the merge key of containers, env, ports, volumes...) and $-directives are
    dropped, which is what the client-side apply patches kubectl sends need."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if strategic and k.startswith("$"):
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict):
            if strategic and v.get("$patch") == "delete":
                out.pop(k, None)
            elif strategic and v.get("$patch") == "replace":
                out[k] = {x: y for x, y in v.items() if x != "$patch"}
            else:
                out[k] = merge_patch(out.get(k), v, strategic)
        elif strategic and isinstance(v, list) and isinstance(out.get(k), list) and v and all(
                isinstance(x, dict) and "name" in x for x in v + out[k]):
            merged = {x["name"]: copy.deepcopy(x) for x in out[k]}
            order = [x["name"] for x in out[k]]
            for x in v:
                if x.get("$patch") == "delete":
                    merged.pop(x["name"], None)
                    continue
                if x["name"] in merged:
                    merged[x["name"]] = merge_patch(merged[x["name"]], x, True)
                else:
                    merged[x["name"]] = merge_patch({}, x, True)
                    order.append(x["name"])
            out[k] = [merged[n] for n in order if n in merged]
        else:
            out[k] = copy.deepcopy(v)
    return out


def _ptr(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise HTTPError(422, "Invalid", "invalid JSON pointer %r" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc, ops):
    """RFC 6902."""
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise HTTPError(400, "BadRequest", "json patch must be a list of operations")

    def parent(d, parts):
        for p in parts[:-1]:
            d = d[int(p)] if isinstance(d, list) else d[p]
        return d

    def get(d, parts):
        for p in parts:
            d = d[int(p)] if isinstance(d, list) else d[p]
        return d

    try:
        for op in ops:
            kind, parts = op.get("op"), _ptr(op.get("path", ""))
            if kind == "test":
                if get(doc, parts) != op.get("value"):
                    raise HTTPError(422, "Invalid", "the server rejected our request due to an "
                                    "error in our request: test failed")
                continue
            if kind in ("move", "copy"):
                src = _ptr(op.get("from", ""))
                val = copy.deepcopy(get(doc, src))
                if kind == "move":
                    sp = parent(doc, src)
                    if isinstance(sp, list):
                        sp.pop(int(src[-1]))
                    else:
                        del sp[src[-1]]
                kind, op = "add", {"value": val}
            if not parts:
                doc = copy.deepcopy(op.get("value"))
                continue
            par = parent(doc, parts)
            last = parts[-1]
            if kind == "add":
                if isinstance(par, list):
                    par.insert(len(par) if last == "-" else int(last), copy.deepcopy(op["value"]))
                else:
                    par[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                if isinstance(par, list):
                    par.pop(int(last))
                else:
                    del par[last]
            elif kind == "replace":
                if isinstance(par, list):
                    par[int(last)] = copy.deepcopy(op["value"])
                else:
                    if last not in par:
                        raise KeyError(last)
                    par[last] = copy.deepcopy(op["value"])
            else:
                raise HTTPError(422, "Invalid", "unknown json patch op %r" % kind)
    except (KeyError, IndexError, ValueError, TypeError) as e:
        raise HTTPError(422, "Invalid", "the server rejected our request due to an error in our "
                        "request: %s" % e)
    return doc
