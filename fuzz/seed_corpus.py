"""Write tests/corpus/requests.json entries as seed files for the atheris target: python3 fuzz/seed_corpus.py DIR"""

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.corpus import load

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
os.makedirs(out, exist_ok=True)
for entry in load():
    data = b"\x00" + entry["data"]  # first byte: no cuts
    with open(os.path.join(out, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)
print(f"{len(load())} seeds in {out}")
