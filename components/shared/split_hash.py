"""The hash behind every deterministic split and sample: a string to a stable number in [0, 1].

Stable across runs, machines and processes (sha256; Python's `hash()` is salted
per process). Ingestion assigns splits by it (`face_example_gen/sources.py`),
the Trainer's quality report splits the shared data by it
(`pipeline/cli/quality_report.py`), and the benches sample by it. A salted text
(`'sample/' + image_id`) gives a draw independent of the split.
"""

import hashlib


def unit_hash(text: str) -> float:
  """The first 32 bits of sha256(text) as a float in [0, 1]: same text, same number, everywhere."""
  return int(hashlib.sha256(text.encode('utf-8')).hexdigest()[:8], 16) / 0xFFFFFFFF
