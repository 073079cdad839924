#!/usr/bin/python3
"""run-fakeapi.py ARGS: starts the fake API server package (tests/e2e/fakeapi/) from any
working directory, as `python3 -m fakeapi ARGS` would from tests/e2e."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fakeapi.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv))
