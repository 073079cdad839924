"""fakeapi: a small fake Kubernetes API server for mcpgate's e2e tests and demo.

Run it with `python3 -m fakeapi ...` (tests/e2e on the path) or tests/e2e/run-fakeapi.py;
the options are in fakeapi.server. Modules, each importing only those before it:

  wire     HTTP/1.1 requests, Status errors, content negotiation
  store    the object store, resource registry, selectors
  tables   server-side printing (meta.k8s.io Table)
  proto    decoding of protobuf request bodies
  exec     pods/exec and attach (WebSocket and SPDY)
  handler  routing and the API handlers (one instance per request, given the server)
  server   the listeners, connections and the command line
  check    wire-level self-checks run by test_fakeapi.sh (a client, not part of the server)

There is no module-level server: the Server object is passed to each Handler.
"""
