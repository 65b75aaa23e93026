"""Set-up shared by the benchmark scripts; import it before anything from the package.

Models load from local files only (no hub), Chroma sends no telemetry, tokenizers stay
single-process, and the repository root is importable when a script runs as
``python benchmarks/NAME.py`` from a checkout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

for _key, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("ANONYMIZED_TELEMETRY", "False"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_key, _value)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
