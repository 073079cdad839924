"""python3 -m fakeapi: runs the fake API server (see fakeapi.server)."""
import sys

from .server import main

sys.exit(main(sys.argv))
