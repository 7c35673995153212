"""``python -m tests.harness sink --port P --out FILE --mode-file FILE``: the SMTP sink as a
process (see tests/harness/sink.py). An entry of its own, because ``-m tests.harness.sink``
would run a module the package has already imported."""

from __future__ import annotations

import sys

from .sink import main

if sys.argv[1:2] != ["sink"]:
    sys.exit("usage: python -m tests.harness sink --port PORT --out FILE --mode-file FILE")
main(sys.argv[2:])
