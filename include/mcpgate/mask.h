/*
 * mask: streaming, bounded-memory secret redaction of API-server responses.
 *
 * The proxy runs every response body through one of these maskers before a
 * byte reaches the pod; requests are never rewritten. Masking is done on
 * what the API server answers, by object kind, so the form of the question
 * (get, list, watch, Table, last-applied annotation, logs) does not matter.
 *
 * What is masked
 *  - Secret objects wherever they appear (single object, SecretList, generic
 *    List, watch events, Table rows, nested in other objects): every value of
 *    `data` becomes MG_MASK_DATA_MARKER (valid base64, so typed clients still
 *    decode) and every value of `stringData` becomes MG_MASK_STRING_MARKER.
 *    Keys are kept; `managedFields` pass (they hold no values).
 *  - `kubectl.kubernetes.io/last-applied-configuration` annotations: the
 *    JSON document inside the string is masked by a nested streaming masker
 *    (same rules), its output re-escaped into the string. If that document is
 *    not valid JSON, the rest of the annotation is replaced by a marker. The
 *    nested document's position comes from its own kind alone, never from the
 *    object it sits on (often a PartialObjectMetadata: Table rows, metadata
 *    lists and watches): kubectl sorts its keys, so its `data` comes before
 *    its `kind` and is masked until that kind says it is not a Secret (a
 *    ConfigMap's last-applied data is masked too: its live `data` is not).
 *  - Pattern detectors over every other string value and over text streams;
 *    a hit keeps any public prefix (`ghp_`, `AKIA`, `-----BEGIN … KEY-----`)
 *    and replaces the secret part by `***MASKED:<detector>***`.
 *
 * How a Secret is recognised while bytes stream (kind may come after data:
 * unstructured objects and last-applied documents serialise keys in sorted
 * order, so "data" < "kind" is normal there):
 *  - each object has a kind (once its "kind" member is read) and a position
 *    hint: top level, watch event `object` and Table `rows[].object` take the
 *    request's resource hint ("secrets" → Secret); items of a SecretList are
 *    Secrets, items of another typed `XList` are X, items of a generic List
 *    are unknown; other nested objects are "not a Secret" when their parent
 *    is known not to be one (unless they carry an apiVersion of their own:
 *    an embedded manifest), else unknown.
 *  - a `data`/`stringData` member is masked when its object is a Secret, or
 *    its kind is not known yet and its position does not say "not a Secret".
 *    So ConfigMap data stays readable (kind comes first from the API server,
 *    and typed list items inherit the list's kind) while an object whose kind
 *    is still unknown is treated as a Secret.
 *  - if a "kind": "Secret" (or "SecretList") arrives after data of that
 *    object was passed unmasked, the masker fails (fail closed): the bytes
 *    already sent were proven safe under what was known, nothing more goes.
 *
 * Streaming and memory
 *  - Output goes to a caller-provided sink as bytes become safe; a feed may
 *    write nothing (pending detector candidates are held back) or more than
 *    it got (markers). Any split of the input gives the same output.
 *  - Memory per masker is fixed: about 44 KiB for a JSON masker (a nesting
 *    stack of 512 levels, a hold-back buffer of at most ~16.5 KiB for
 *    undecided detector candidates - the longest is a JWT header+payload; a
 *    longer candidate is masked -, a 16 KiB output buffer, a 4 KiB decode
 *    batch), plus one nested masker of the same size once a last-applied
 *    annotation is seen, plus ~18 KiB of compiled rules; ~35 KiB per text
 *    masker; gzip adds zlib's inflate and deflate state (~300 KiB).
 *  - Valid JSON in gives valid JSON out. Malformed JSON (including invalid
 *    UTF-8 and lone surrogates), nesting beyond 512, or an unsafe ordering is
 *    an error; the caller must stop the stream. Strings are re-encoded the
 *    way the API server (Go encoding/json) writes them, so unmasked API
 *    server output passes byte for byte.
 *
 * Text streams (pods/log, exec/attach output) use the same detectors as
 * streaming state machines: a hit split across chunks or frames is masked,
 * PEM blocks spanning lines are masked up to their END line (at most 64 KiB),
 * and bytes that cannot be part of a hit are written at once (a log line is
 * out before its newline arrives). Only bytes after a confirmed prefix
 * (e.g. after `ghp_`) are held until the candidate is decided.
 *
 * A candidate cut short is masked: when a stream ends (finish, the end of a
 * JSON string, an exec channel's end) or pauses (flush) while bytes after a
 * matched prefix or keyword are held, they are masked whatever their length
 * (limitBytes or an exec exit can stop a token one byte short of its
 * detector's minimum, and its tail is then a guess away). A run after an
 * access key id, which has no prefix of its own, is masked once it holds 20
 * chars; shorter, an end writes it and a pause keeps it held.
 *
 * The masking modules live in userspace/mask/, one header each:
 *   mcpgate/rules.h  detectors and the configuration (and the shared types)
 *   mcpgate/scan.h   the text/detector scanner (logs, exec/attach channels)
 *   mcpgate/json.h   the streaming JSON masker
 *   mcpgate/body.h   a masker for a whole response body (gzip, content types)
 *   mcpgate/tunnel.h exec/attach frames (WebSocket and SPDY streams)
 * This header is what the proxy includes: all of them but the tunnel one.
 */
#ifndef MCPGATE_MASK_H
#define MCPGATE_MASK_H

#include "mcpgate/body.h"
#include "mcpgate/json.h"
#include "mcpgate/rules.h"
#include "mcpgate/scan.h"

#endif /* MCPGATE_MASK_H */
