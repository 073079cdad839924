#!/usr/bin/python3
"""mcp_drive.py: drive the mcp-server-kubernetes MCP server over stdio, like an agent would.

Starts the server (default: node <this dir>/node_modules/mcp-server-kubernetes/dist/index.js),
sends initialize, then notifications/initialized, then each step in order, and prints one JSON
line per request on stdout:
  {"step": i, "method": M, "ok": true, "result": {...}}       a JSON-RPC result
  {"step": i, "method": M, "ok": false, "error": {...}}       a JSON-RPC error response
  {"step": i, "method": M, "ok": false, "timeout": true}      no answer within the timeout
For tools/call, "text" is added: the text items of result.content joined (what an agent reads).

Steps, in command-line order (all of --call, --tool, --read may be repeated and mixed):
  --call METHOD[:JSON_PARAMS]   e.g. --call tools/list
                                     --call 'tools/call:{"name":"kubectl_get","arguments":{...}}'
  --tool NAME[:JSON_ARGS]       shorthand for tools/call
  --read URI                    shorthand for resources/read
  --script FILE                 a JSON array of steps (read before the options above):
                                "tools/list", {"method": M, "params": {...}, "timeout": S},
                                {"method": M, "notify": true}, {"sleep": S}

Exit status: 0 when every request was answered (JSON-RPC errors and tool results with
isError are answers: the tests assert on them); 3 when a request timed out or the server
exited early; 2 on usage errors. The server's stderr goes to --server-log (default: ours).
The server gets our environment plus --env K=V; its non-JSON stdout lines go to the log too."""
import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SERVER = os.path.join(HERE, "node_modules", "mcp-server-kubernetes", "dist", "index.js")
# Accepted by @modelcontextprotocol/sdk 1.26 (SUPPORTED_PROTOCOL_VERSIONS), and the version
# most deployed MCP clients speak today.
DEFAULT_PROTOCOL = "2025-06-18"


def parse_step(kind, text):
    if kind == "read":
        return {"method": "resources/read", "params": {"uri": text}}
    head, sep, tail = text.partition(":")
    params = json.loads(tail) if sep else None
    if kind == "tool":
        return {"method": "tools/call", "params": {"name": head, "arguments": params or {}}}
    step = {"method": head}
    if params is not None:
        step["params"] = params
    return step


class StepAction(argparse.Action):
    """Keeps --call/--tool/--read in the order they were given."""

    def __call__(self, parser, ns, value, option_string=None):
        try:
            ns.steps.append(parse_step(self.const, value))
        except ValueError as e:
            parser.error("%s %s: bad JSON: %s" % (option_string, value, e))


def load_script(path):
    with open(path) as f:
        raw = json.load(f)
    if not isinstance(raw, list):
        raise ValueError("a script is a JSON array of steps")
    steps = []
    for s in raw:
        if isinstance(s, str):
            s = {"method": s}
        if not isinstance(s, dict) or not ("method" in s or "sleep" in s):
            raise ValueError("bad step: %r" % (s,))
        steps.append(s)
    return steps


class Server:
    def __init__(self, argv, env, log):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=log, env=env, bufsize=0)
        self.log = log
        self.msgs = queue.Queue()
        self.lock = threading.Lock()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        # The stdio transport is newline-delimited JSON; anything else on stdout (the server
        # console.log()s on SIGTERM) is noise for the log, not a protocol message.
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                self._note("non-JSON stdout line: " + line.decode("utf-8", "replace").rstrip())
                continue
            if isinstance(msg, dict):
                self.msgs.put(msg)
        self.msgs.put(None)

    def _note(self, text):
        try:
            if self.log is None:
                sys.stderr.write("mcp_drive: %s\n" % text)
            else:
                os.write(self.log.fileno(), ("mcp_drive: %s\n" % text).encode())
        except OSError:
            pass

    def send(self, msg):
        data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        with self.lock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def answer_server_request(self, msg):
        # The server may ask us things (ping; roots/list, sampling, elicitation only when we
        # announced those capabilities, which we do not).
        if msg.get("method") == "ping":
            self.send({"jsonrpc": "2.0", "id": msg["id"], "result": {}})
        else:
            self.send({"jsonrpc": "2.0", "id": msg["id"],
                       "error": {"code": -32601, "message": "method not found"}})

    def request(self, rid, method, params, timeout):
        """The response to request rid, None on timeout; raises EOFError when the server ends."""
        msg = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                m = self.msgs.get(timeout=left)
            except queue.Empty:
                return None
            if m is None:
                raise EOFError("server exited (status %s)" % self.proc.poll())
            if "method" in m and "id" in m:
                self.answer_server_request(m)
            elif "method" in m:
                continue  # a notification: logging, progress, list_changed
            elif m.get("id") == rid:
                return m
            # else: a late answer to a request that timed out; drop it

    def close(self, grace=5.0):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                try:
                    self.proc.send_signal(sig)
                except OSError:
                    pass
            try:
                return self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
        return self.proc.wait()


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def tool_text(result):
    items = result.get("content") if isinstance(result, dict) else None
    if not isinstance(items, list):
        return None
    return "".join(c.get("text", "") for c in items if isinstance(c, dict) and
                   c.get("type") == "text")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.set_defaults(steps=[])
    ap.add_argument("--call", action=StepAction, const="call", metavar="METHOD[:JSON]")
    ap.add_argument("--tool", action=StepAction, const="tool", metavar="NAME[:JSON]")
    ap.add_argument("--read", action=StepAction, const="read", metavar="URI")
    ap.add_argument("--script", metavar="FILE")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per request (30)")
    ap.add_argument("--init-timeout", type=float, default=60.0,
                    help="seconds for the server to start and answer initialize (60)")
    ap.add_argument("--server-log", metavar="FILE", help="the server's stderr (appended)")
    ap.add_argument("--server", default=DEFAULT_SERVER, help="the server's entry script")
    ap.add_argument("--node", default="node", help="the node binary (found on PATH)")
    ap.add_argument("--env", action="append", default=[], metavar="K=V",
                    help="extra environment for the server")
    ap.add_argument("--protocol", default=DEFAULT_PROTOCOL, help="MCP protocol version")
    ap.add_argument("--print-init", action="store_true",
                    help="print the initialize answer as step 0")
    a = ap.parse_args()

    steps = []
    if a.script:
        try:
            steps = load_script(a.script)
        except (OSError, ValueError) as e:
            ap.error("--script %s: %s" % (a.script, e))
    steps += a.steps
    env = dict(os.environ)
    for kv in a.env:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            ap.error("--env wants K=V, got %r" % kv)
        env[k] = v

    log = open(a.server_log, "ab") if a.server_log else None
    try:
        srv = Server([a.node, a.server], env, log)
    except OSError as e:
        sys.stderr.write("mcp_drive: cannot start %s %s: %s\n" % (a.node, a.server, e))
        return 3
    rc = 0
    try:
        init = srv.request(0, "initialize", {
            "protocolVersion": a.protocol,
            "capabilities": {},
            "clientInfo": {"name": "mcpgate-e2e-mcp-drive", "version": "1"},
        }, a.init_timeout)
        if init is None or "result" not in init:
            sys.stderr.write("mcp_drive: initialize failed: %s\n" %
                             ("timeout" if init is None else json.dumps(init.get("error"))))
            return 3
        if a.print_init:
            emit({"step": 0, "method": "initialize", "ok": True, "result": init["result"]})
        srv.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        for i, st in enumerate(steps, 1):
            if "sleep" in st:
                time.sleep(float(st["sleep"]))
                continue
            method, params = st["method"], st.get("params")
            if st.get("notify"):
                msg = {"jsonrpc": "2.0", "method": method}
                if params is not None:
                    msg["params"] = params
                srv.send(msg)
                continue
            line = {"step": i, "method": method}
            if method == "tools/call" and isinstance(params, dict):
                line["tool"] = params.get("name")
            resp = srv.request(i, method, params, float(st.get("timeout", a.timeout)))
            if resp is None:
                line.update(ok=False, timeout=True)
                rc = 3
                # Tell the server to give up; a late answer is dropped by request().
                srv.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                          "params": {"requestId": i, "reason": "mcp_drive timeout"}})
            elif "error" in resp:
                line.update(ok=False, error=resp["error"])
            else:
                line.update(ok=True, result=resp.get("result"))
                if method == "tools/call":
                    line["text"] = tool_text(resp.get("result"))
            emit(line)
    except (EOFError, BrokenPipeError) as e:
        sys.stderr.write("mcp_drive: %s\n" % e)
        rc = 3
    finally:
        srv.close()
        if log is not None:
            log.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
