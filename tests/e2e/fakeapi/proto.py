"""fakeapi.proto: decoding of Kubernetes protobuf request bodies
(Content-Type application/vnd.kubernetes.protobuf), which kubectl 1.3x sends for its typed
clients (kubectl create secret|configmap|namespace|serviceaccount|deployment|job|cronjob|
service|role|rolebinding..., create token, auth can-i/whoami).

The envelope is the 4-byte magic "k8s\\0" then a runtime.Unknown message {1: typeMeta
{1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding, 4: contentType}; raw is the object in
the protobuf encoding of its generated.proto. Only the kinds listed in KINDS are known; the
result is the same dict the JSON body would have decoded to."""
import base64
import datetime
import struct

MAGIC = b"k8s\x00"


class ProtoError(ValueError):
    pass


def _varint(b, i):
    shift = result = 0
    while True:
        if i >= len(b):
            raise ProtoError("truncated varint")
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if not c & 0x80:
            return result, i
        shift += 7
        if shift > 70:
            raise ProtoError("varint too long")


def fields(b):
    """[(field number, wire type, value)]: value is an int (varint/fixed) or bytes."""
    out, i = [], 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = struct.unpack("<Q", b[i:i + 8])[0], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            if i + n > len(b):
                raise ProtoError("truncated field %d" % num)
            v, i = bytes(b[i:i + n]), i + n
        elif wt == 5:
            v, i = struct.unpack("<I", b[i:i + 4])[0], i + 4
        else:
            raise ProtoError("unsupported wire type %d" % wt)
        out.append((num, wt, v))
    return out


def _signed(v, bits=64):
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


# A schema is {field number: (json name, type, repeated)}; type is "string", "bytes",
# "int", "bool", "time", ("map", value type) or a nested schema dict.
TIME = "time"
OWNER_REF = {1: ("kind", "string", False), 3: ("name", "string", False),
             4: ("uid", "string", False), 5: ("apiVersion", "string", False),
             6: ("controller", "optbool", False), 7: ("blockOwnerDeletion", "optbool", False)}
MANAGED = {1: ("manager", "string", False), 2: ("operation", "string", False),
           3: ("apiVersion", "string", False), 4: ("time", TIME, False),
           6: ("fieldsType", "string", False), 8: ("subresource", "string", False)}
OBJECT_META = {
    1: ("name", "string", False), 2: ("generateName", "string", False),
    3: ("namespace", "string", False), 4: ("selfLink", "string", False),
    5: ("uid", "string", False), 6: ("resourceVersion", "string", False),
    7: ("generation", "int", False), 8: ("creationTimestamp", TIME, False),
    9: ("deletionTimestamp", TIME, False), 10: ("deletionGracePeriodSeconds", "int", False),
    11: ("labels", ("map", "string"), False), 12: ("annotations", ("map", "string"), False),
    13: ("ownerReferences", OWNER_REF, True), 14: ("finalizers", "string", True),
    17: ("managedFields", MANAGED, True)}
OBJECT_REF = {1: ("kind", "string", False), 2: ("namespace", "string", False),
              3: ("name", "string", False), 4: ("uid", "string", False),
              5: ("apiVersion", "string", False), 6: ("resourceVersion", "string", False),
              7: ("fieldPath", "string", False)}
LOCAL_REF = {1: ("name", "string", False)}
RESOURCE_ATTRS = {1: ("namespace", "string", False), 2: ("verb", "string", False),
                  3: ("group", "string", False), 4: ("version", "string", False),
                  5: ("resource", "string", False), 6: ("subresource", "string", False),
                  7: ("name", "string", False)}
NON_RESOURCE_ATTRS = {1: ("path", "string", False), 2: ("verb", "string", False)}

KINDS = {
    ("v1", "Secret"): {1: ("metadata", OBJECT_META, False), 2: ("data", ("map", "bytes"), False),
                       3: ("type", "string", False),
                       4: ("stringData", ("map", "string"), False),
                       5: ("immutable", "optbool", False)},
    ("v1", "ConfigMap"): {1: ("metadata", OBJECT_META, False),
                          2: ("data", ("map", "string"), False),
                          3: ("binaryData", ("map", "bytes"), False),
                          4: ("immutable", "optbool", False)},
    ("v1", "Namespace"): {1: ("metadata", OBJECT_META, False),
                          2: ("spec", {1: ("finalizers", "string", True)}, False),
                          3: ("status", {1: ("phase", "string", False)}, False)},
    ("v1", "ServiceAccount"): {1: ("metadata", OBJECT_META, False),
                               2: ("secrets", OBJECT_REF, True),
                               3: ("imagePullSecrets", LOCAL_REF, True),
                               4: ("automountServiceAccountToken", "optbool", False)},
    ("authentication.k8s.io/v1", "TokenRequest"): {
        1: ("metadata", OBJECT_META, False),
        2: ("spec", {1: ("audiences", "string", True),
                     3: ("boundObjectRef", {1: ("kind", "string", False),
                                            2: ("apiVersion", "string", False),
                                            3: ("name", "string", False),
                                            4: ("uid", "string", False)}, False),
                     4: ("expirationSeconds", "optint", False)}, False)},
    ("authentication.k8s.io/v1", "TokenReview"): {
        1: ("metadata", OBJECT_META, False),
        2: ("spec", {1: ("token", "string", False), 2: ("audiences", "string", True)}, False)},
    ("authentication.k8s.io/v1", "SelfSubjectReview"): {1: ("metadata", OBJECT_META, False)},
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): {
        1: ("metadata", OBJECT_META, False),
        2: ("spec", {1: ("resourceAttributes", RESOURCE_ATTRS, False),
                     2: ("nonResourceAttributes", NON_RESOURCE_ATTRS, False)}, False)},
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): {
        1: ("metadata", OBJECT_META, False), 2: ("spec", {1: ("namespace", "string", False)},
                                                 False)},
    ("authorization.k8s.io/v1", "SubjectAccessReview"): {
        1: ("metadata", OBJECT_META, False),
        2: ("spec", {1: ("resourceAttributes", RESOURCE_ATTRS, False),
                     2: ("nonResourceAttributes", NON_RESOURCE_ATTRS, False),
                     3: ("user", "string", False), 4: ("groups", "string", True),
                     6: ("uid", "string", False)}, False)},
    ("v1", "DeleteOptions"): {1: ("gracePeriodSeconds", "optint", False),
                              2: ("preconditions", {1: ("uid", "string", False),
                                                    2: ("resourceVersion", "string", False)},
                                  False),
                              3: ("orphanDependents", "optbool", False),
                              4: ("propagationPolicy", "string", False),
                              5: ("dryRun", "string", True)},
}
KINDS[("meta.k8s.io/v1", "DeleteOptions")] = KINDS[("v1", "DeleteOptions")]

# Workloads: the fields `kubectl create deployment|job|cronjob|service|role...` fills.
LABEL_SELECTOR = {1: ("matchLabels", ("map", "string"), False),
                  2: ("matchExpressions", {1: ("key", "string", False),
                                           2: ("operator", "string", False),
                                           3: ("values", "string", True)}, True)}
CONTAINER = {
    1: ("name", "string", False), 2: ("image", "string", False),
    3: ("command", "string", True), 4: ("args", "string", True),
    5: ("workingDir", "string", False),
    6: ("ports", {1: ("name", "string", False), 2: ("hostPort", "int", False),
                  3: ("containerPort", "int", False), 4: ("protocol", "string", False),
                  5: ("hostIP", "string", False)}, True),
    7: ("env", {1: ("name", "string", False), 2: ("value", "string", False)}, True),
    8: ("resources", {1: ("limits", ("map", "quantity"), False),
                      2: ("requests", ("map", "quantity"), False)}, False),
    9: ("volumeMounts", {1: ("name", "string", False), 2: ("readOnly", "bool", False),
                         3: ("mountPath", "string", False), 4: ("subPath", "string", False)},
        True),
    13: ("terminationMessagePath", "string", False), 14: ("imagePullPolicy", "string", False),
    16: ("stdin", "bool", False), 17: ("stdinOnce", "bool", False), 18: ("tty", "bool", False),
    20: ("terminationMessagePolicy", "string", False)}
POD_SPEC = {
    2: ("containers", CONTAINER, True), 3: ("restartPolicy", "string", False),
    4: ("terminationGracePeriodSeconds", "optint", False),
    5: ("activeDeadlineSeconds", "optint", False), 6: ("dnsPolicy", "string", False),
    7: ("nodeSelector", ("map", "string"), False), 8: ("serviceAccountName", "string", False),
    9: ("serviceAccount", "string", False), 10: ("nodeName", "string", False),
    11: ("hostNetwork", "bool", False), 12: ("hostPID", "bool", False),
    13: ("hostIPC", "bool", False), 16: ("hostname", "string", False),
    17: ("subdomain", "string", False), 19: ("schedulerName", "string", False),
    20: ("initContainers", CONTAINER, True),
    21: ("automountServiceAccountToken", "optbool", False),
    24: ("priorityClassName", "string", False)}
POD_TEMPLATE = {1: ("metadata", OBJECT_META, False), 2: ("spec", POD_SPEC, False)}
JOB_SPEC = {1: ("parallelism", "optint", False), 2: ("completions", "optint", False),
            3: ("activeDeadlineSeconds", "optint", False), 4: ("selector", LABEL_SELECTOR, False),
            5: ("manualSelector", "optbool", False), 6: ("template", POD_TEMPLATE, False),
            7: ("backoffLimit", "optint", False),
            8: ("ttlSecondsAfterFinished", "optint", False)}
POLICY_RULE = {1: ("verbs", "string", True), 2: ("apiGroups", "string", True),
               3: ("resources", "string", True), 4: ("resourceNames", "string", True),
               5: ("nonResourceURLs", "string", True)}
BINDING = {1: ("metadata", OBJECT_META, False),
           2: ("subjects", {1: ("kind", "string", False), 2: ("apiGroup", "string", False),
                            3: ("name", "string", False), 4: ("namespace", "string", False)},
               True),
           3: ("roleRef", {1: ("apiGroup", "string", False), 2: ("kind", "string", False),
                           3: ("name", "string", False)}, False)}
INGRESS_BACKEND = {4: ("service", {1: ("name", "string", False), 2: ("port", {
    1: ("name", "string", False), 2: ("number", "int", False)}, False)}, False)}
KINDS.update({
    ("v1", "Pod"): {1: ("metadata", OBJECT_META, False), 2: ("spec", POD_SPEC, False)},
    ("apps/v1", "Deployment"): {1: ("metadata", OBJECT_META, False), 2: ("spec", {
        1: ("replicas", "optint", False), 2: ("selector", LABEL_SELECTOR, False),
        3: ("template", POD_TEMPLATE, False),
        4: ("strategy", {1: ("type", "string", False), 2: ("rollingUpdate", {
            1: ("maxUnavailable", "intorstr", False), 2: ("maxSurge", "intorstr", False)},
            False)}, False),
        5: ("minReadySeconds", "int", False), 6: ("revisionHistoryLimit", "optint", False),
        7: ("paused", "bool", False), 9: ("progressDeadlineSeconds", "optint", False)}, False)},
    ("batch/v1", "Job"): {1: ("metadata", OBJECT_META, False), 2: ("spec", JOB_SPEC, False)},
    ("batch/v1", "CronJob"): {1: ("metadata", OBJECT_META, False), 2: ("spec", {
        1: ("schedule", "string", False), 2: ("startingDeadlineSeconds", "optint", False),
        3: ("concurrencyPolicy", "string", False), 4: ("suspend", "optbool", False),
        5: ("jobTemplate", {1: ("metadata", OBJECT_META, False), 2: ("spec", JOB_SPEC, False)},
            False),
        6: ("successfulJobsHistoryLimit", "optint", False),
        7: ("failedJobsHistoryLimit", "optint", False), 8: ("timeZone", "string", False)},
        False)},
    ("v1", "Service"): {1: ("metadata", OBJECT_META, False), 2: ("spec", {
        1: ("ports", {1: ("name", "string", False), 2: ("protocol", "string", False),
                      3: ("port", "int", False), 4: ("targetPort", "intorstr", False),
                      5: ("nodePort", "int", False)}, True),
        2: ("selector", ("map", "string"), False), 3: ("clusterIP", "string", False),
        4: ("type", "string", False), 5: ("externalIPs", "string", True),
        7: ("sessionAffinity", "string", False), 8: ("loadBalancerIP", "string", False),
        10: ("externalName", "string", False),
        11: ("externalTrafficPolicy", "string", False)}, False)},
    ("rbac.authorization.k8s.io/v1", "Role"): {1: ("metadata", OBJECT_META, False),
                                               2: ("rules", POLICY_RULE, True)},
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): {1: ("metadata", OBJECT_META, False),
                                                      2: ("rules", POLICY_RULE, True)},
    ("networking.k8s.io/v1", "Ingress"): {1: ("metadata", OBJECT_META, False), 2: ("spec", {
        1: ("defaultBackend", INGRESS_BACKEND, False),
        2: ("tls", {1: ("hosts", "string", True), 2: ("secretName", "string", False)}, True),
        3: ("rules", {1: ("host", "string", False), 2: ("", {1: ("http", {1: ("paths", {
            1: ("path", "string", False), 2: ("backend", INGRESS_BACKEND, False),
            3: ("pathType", "string", False)}, True)}, False)}, False)}, True),
        4: ("ingressClassName", "string", False)}, False)},
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): BINDING,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): BINDING,
})


def _time(b):
    if not b:
        return None  # a zero metav1.Time marshals as an empty message
    secs = 0
    for num, _, v in fields(b):
        if num == 1:
            secs = _signed(v)
    return datetime.datetime.fromtimestamp(secs, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _scalar(typ, wt, v):
    if typ == "string":
        return v.decode("utf-8", "replace")
    if typ == "bytes":
        return base64.b64encode(v).decode()
    if typ in ("int", "optint"):
        return _signed(v)
    if typ in ("bool", "optbool"):
        return bool(v)
    if typ == "intorstr":
        kind, ival, sval = 0, 0, ""
        for num, _, x in fields(v):
            if num == 1:
                kind = x
            elif num == 2:
                ival = _signed(x, 32) if x < 1 << 32 else _signed(x)
            elif num == 3:
                sval = x.decode("utf-8", "replace")
        return sval if kind == 1 else ival
    if typ == "quantity":
        for num, _, x in fields(v):
            if num == 1:
                return x.decode()
        return "0"
    if typ == TIME:
        return _time(v)
    raise ProtoError("bad type %r" % (typ,))


def decode_message(b, schema):
    out = {}
    for num, wt, v in fields(b):
        spec = schema.get(num)
        if spec is None:
            continue  # a field this fake does not model
        name, typ, repeated = spec
        if isinstance(typ, tuple) and typ[0] == "map":
            key = val = None
            for n2, w2, v2 in fields(v):
                if n2 == 1:
                    key = v2.decode("utf-8", "replace")
                elif n2 == 2:
                    val = _scalar(typ[1], w2, v2)
            out.setdefault(name, {})[key or ""] = val if val is not None else (
                "" if typ[1] in ("string", "bytes") else None)
            continue
        if isinstance(typ, dict):
            val = decode_message(v, typ)
            if name == "":
                out.update(val)  # an inlined struct (`json:",inline"`)
                continue
        else:
            val = _scalar(typ, wt, v)
            # Generated marshallers write every non-pointer field, empty or not; JSON has
            # omitempty on nearly all of them, so an empty value is left out here too.
            # Pointer fields (optint, optbool) are written only when set: zero is meaningful.
            if not repeated and typ not in ("optint", "optbool") and val in ("", 0, False,
                                                                              None):
                continue
        if repeated:
            out.setdefault(name, []).append(val)
        else:
            out[name] = val
    return out


def decode(body):
    """The JSON-shaped dict of a protobuf-encoded object; raises ProtoError."""
    if not body.startswith(MAGIC):
        raise ProtoError("missing the k8s protobuf magic")
    api_version = kind = ""
    raw = b""
    for num, _, v in fields(body[len(MAGIC):]):
        if num == 1:
            for n2, _, v2 in fields(v):
                if n2 == 1:
                    api_version = v2.decode()
                elif n2 == 2:
                    kind = v2.decode()
        elif num == 2:
            raw = v
        elif num == 3 and v:
            raise ProtoError("content encoding %r is not supported" % v)
    schema = KINDS.get((api_version, kind))
    if schema is None:
        raise ProtoError("no protobuf schema for %s %s in the fake" % (api_version, kind))
    obj = {"kind": kind, "apiVersion": api_version}
    obj.update(decode_message(raw, schema))
    if "metadata" in obj:
        obj["metadata"].setdefault("creationTimestamp", None)
    return obj


# ---- encoding (for the OpenAPI v2 document kubectl before 1.30 downloads) ----

def _enc_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return _enc_varint(num << 3 | 2) + _enc_varint(len(data)) + data


def field_varint(num, n):
    return _enc_varint(num << 3) + _enc_varint(n)


def openapi_v2(version, ops):
    """A gnostic openapi_v2.Document (OpenAPIv2.proto) with one PATCH operation per
    (path, group, version, kind) in ops, each declaring the fieldValidation query parameter
    and x-kubernetes-group-version-kind: what kubectl's QueryParamVerifier looks for to use
    server-side field validation. No definitions: patches fall back to the built-in types."""
    qp = (field_bytes(2, "query") + field_bytes(3, "fieldValidation instructs the server on "
                                                   "how to handle unknown fields") +
          field_bytes(4, "fieldValidation") + field_bytes(6, "string") + field_varint(20, 1))
    param_item = field_bytes(1, field_bytes(2, field_bytes(3, qp)))
    ok = field_bytes(1, field_bytes(1, "200") + field_bytes(2, field_bytes(1, field_bytes(
        1, "OK"))))
    paths = b""
    for path, g, v, kind in ops:
        gvk_yaml = 'group: "%s"\nkind: %s\nversion: %s\n' % (g, kind, v)
        ext = field_bytes(1, "x-kubernetes-group-version-kind") + field_bytes(
            2, field_bytes(2, gvk_yaml))
        op = (field_bytes(3, "partially update the specified " + kind) +
              field_bytes(5, "patch" + kind) + field_bytes(8, param_item) +
              field_bytes(9, ok) + field_bytes(13, ext))
        paths += field_bytes(2, field_bytes(1, path) + field_bytes(2, field_bytes(8, op)))
    return (field_bytes(1, "2.0") + field_bytes(2, field_bytes(1, "Kubernetes") +
                                                   field_bytes(2, version)) +
            field_bytes(8, paths))
