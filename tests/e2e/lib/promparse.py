#!/usr/bin/python3
"""promparse.py [FILE]: a strict parser of the Prometheus text exposition format 0.0.4.

Reads FILE (or stdin), checks every line, and prints one JSON line:
{"ok": true, "samples": [[name, {label: value}, value], ...]} with label values unescaped;
or {"ok": false, "line": N, "error": "...", "text": "..."} at the first bad line, exit 1.

Rules checked (https://prometheus.io/docs/instrumenting/exposition_formats/):
- UTF-8 throughout; lines end with \\n (the last one too); no empty lines, no \\r.
- "# HELP name text" (text: \\\\ and \\n escapes only), "# TYPE name counter|gauge|histogram|
  summary|untyped", other "# ..." comments; at most one HELP and one TYPE per family, TYPE
  before the family's first sample.
- A sample: metric name [a-zA-Z_:][a-zA-Z0-9_:]*, optional {label="value",...} with label
  names [a-zA-Z_][a-zA-Z0-9_]* (no duplicates, not starting with __), values in double quotes
  with only \\\\, \\" and \\n as escapes; one space; a float (Go ParseFloat syntax, NaN, +Inf,
  -Inf); optional integer timestamp.
- A family's samples are contiguous (one group per name); the same name+labels appears once.
- A histogram family: name_bucket with an "le" label, name_sum, name_count only; buckets
  cumulative (non-decreasing) and ending in le="+Inf" equal to _count."""
import json
import re
import sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LNAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|Inf|NaN)")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class Bad(Exception):
    pass


def parse_labels(s, i):
    """s[i] == '{'. Returns (labels, index after '}')."""
    labels = {}
    i += 1
    while True:
        if s[i:i + 1] == "}":
            return labels, i + 1
        m = LNAME.match(s, i)
        if not m:
            raise Bad("bad label name at column %d" % (i + 1))
        name = m.group(0)
        if name.startswith("__"):
            raise Bad("reserved label name %s" % name)
        if name in labels:
            raise Bad("duplicate label %s" % name)
        i = m.end()
        if s[i:i + 2] != '="':
            raise Bad("expected =\" after label %s" % name)
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise Bad("unterminated label value")
            c = s[i]
            if c == "\\":
                nxt = s[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise Bad("bad escape \\%s in label value" % nxt)
                val.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise Bad("raw newline in label value")
            else:
                val.append(c)
                i += 1
        labels[name] = "".join(val)
        if s[i:i + 1] == ",":
            i += 1
            if s[i:i + 1] == "}":
                return labels, i + 1  # a trailing comma is allowed
        elif s[i:i + 1] != "}":
            raise Bad("expected , or } at column %d" % (i + 1))


def family_of(name, types):
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and types.get(name[:-len(suf)]) in ("histogram", "summary"):
            return name[:-len(suf)]
    return name


def parse(data):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Bad("invalid UTF-8 at byte %d" % e.start) from None
    if not text.endswith("\n"):
        raise Bad("no final newline")
    types, helps, samples, seen, done_families = {}, set(), [], set(), set()
    current = None
    for n, line in enumerate(text[:-1].split("\n"), 1):
        try:
            if "\r" in line:
                raise Bad("carriage return")
            if not line:
                raise Bad("empty line")
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    if not NAME.fullmatch(parts[2]):
                        raise Bad("bad metric name in %s" % parts[1])
                    rest = parts[3] if len(parts) > 3 else ""
                    if parts[1] == "HELP":
                        if parts[2] in helps:
                            raise Bad("second HELP for %s" % parts[2])
                        if re.search(r"\\[^\\n]", rest.replace("\\\\", "")):
                            raise Bad("bad escape in HELP")
                        helps.add(parts[2])
                    else:
                        if rest not in TYPES:
                            raise Bad("bad TYPE %r" % rest)
                        if parts[2] in types:
                            raise Bad("second TYPE for %s" % parts[2])
                        if parts[2] in done_families or parts[2] == current:
                            raise Bad("TYPE after samples of %s" % parts[2])
                        types[parts[2]] = rest
                continue
            m = NAME.match(line)
            if not m:
                raise Bad("bad metric name")
            name, i = m.group(0), m.end()
            labels = {}
            if line[i:i + 1] == "{":
                labels, i = parse_labels(line, i)
            if line[i:i + 1] != " ":
                raise Bad("expected one space before the value")
            rest = line[i + 1:].split(" ")
            if len(rest) > 2 or not FLOAT.fullmatch(rest[0]) or (
                    len(rest) == 2 and not re.fullmatch(r"-?\d+", rest[1])):
                raise Bad("bad value or timestamp %r" % line[i + 1:])
            fam = family_of(name, types)
            if fam != current:
                if fam in done_families:
                    raise Bad("samples of %s not contiguous" % fam)
                if current is not None:
                    done_families.add(current)
                current = fam
            if types.get(fam) == "histogram":
                if name == fam + "_bucket":
                    if "le" not in labels or not FLOAT.fullmatch(labels["le"]):
                        raise Bad("histogram bucket without a valid le")
                elif name not in (fam + "_sum", fam + "_count"):
                    raise Bad("histogram %s has sample %s" % (fam, name))
            key = (name, tuple(sorted(labels.items())))
            if key in seen:
                raise Bad("duplicate sample %s%s" % (name, labels))
            seen.add(key)
            samples.append([name, labels, float(rest[0])])
        except Bad as e:
            raise Bad("%d\t%s\t%s" % (n, e, line[:200])) from None
    for fam, t in types.items():
        if t != "histogram":
            continue
        buckets = [s for s in samples if s[0] == fam + "_bucket"]
        count = [s[2] for s in samples if s[0] == fam + "_count"]
        vals = [s[2] for s in buckets]
        if vals != sorted(vals) or not buckets or buckets[-1][1]["le"] != "+Inf" or \
                count != [vals[-1]]:
            raise Bad("0\thistogram %s buckets not cumulative or +Inf != _count\t" % fam)
    return samples


def main():
    data = open(sys.argv[1], "rb").read() if len(sys.argv) > 1 else sys.stdin.buffer.read()
    try:
        samples = parse(data)
    except Bad as e:
        n, err, text = str(e).split("\t", 2)
        print(json.dumps({"ok": False, "line": int(n), "error": err, "text": text}))
        return 1
    print(json.dumps({"ok": True, "samples": samples}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
