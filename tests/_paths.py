"""Where the hand-labelled real logs are: beside the repository (../shared/real_logs, as in the
developers' layout), or at the workplace's fixed path when the checkout lies elsewhere (a CI clone)."""

from __future__ import annotations

import os
from pathlib import Path

_CANDIDATES = [
    Path(os.environ["REAL_LOGS"]) if os.environ.get("REAL_LOGS") else None,
    Path(__file__).resolve().parents[2] / "shared" / "real_logs",
    Path("/work/shared/real_logs"),
]
REAL_LOGS = next((p for p in _CANDIDATES if p is not None and p.is_dir()), _CANDIDATES[1])
