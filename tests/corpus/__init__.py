"""The request corpus: valid, malformed, pipelined and smuggling requests.

``requests.json`` holds one entry per line: ``name``, ``data`` (the bytes sent,
as a latin-1 string with JSON escapes) and the expected outcome:

* ``requests``: the requests the parser hands out, in order; each lists only
  the fields it checks (``method``, ``path``, ``raw_path``, ``query``,
  ``version``, ``headers`` as ``[name, value]`` pairs, ``keep_alive``,
  ``expect_continue``, ``upgrade``, ``te_trailers``, ``body``; ``complete`` is false for a
  request whose end-of-message never comes);
* ``error``: the status of the ParseError raised after them, if any;
* ``trailing``: the bytes left after a WebSocket upgrade.

Bytes fields are latin-1 strings, ``path`` is text.  Both parsers must give
exactly this however the bytes are split; ``DIFFERENCES.md`` lists where the
two implementations may legitimately differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def load() -> list[dict[str, Any]]:
    """Return the corpus entries, ``data`` (and ``trailing``) as bytes."""
    with open(HERE / "requests.json", encoding="ascii") as f:
        entries = json.load(f)
    for entry in entries:
        entry["data"] = entry["data"].encode("latin-1")
        if "trailing" in entry:
            entry["trailing"] = entry["trailing"].encode("latin-1")
    return entries
