"""Benchmark: diagnose 1,000 trainer_state.json files (target: under 20 s on 2 cores).

Copies the real trainer_state.json logs of ../shared/real_logs (or any folder given) round-robin
into 1,000 run folders, then times the whole `diagnose DIR --format json` command (readers, rules
and JSON output, the way a user runs it) and the in-process `diagnose_path`.

    python tests/benchmarks/bench_diagnose.py [--source ../shared/real_logs] [--count 1000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = ROOT.parent / "shared" / "real_logs"


def build_corpus(source: Path, count: int, target: Path) -> int:
    files = sorted(source.glob("*trainer_state.json"))
    if not files:
        raise SystemExit(f"no *trainer_state.json in {source}")
    size = 0
    for i in range(count):
        original = files[i % len(files)]
        run = target / f"run_{i:04d}"
        run.mkdir()
        shutil.copyfile(original, run / "trainer_state.json")
        size += original.stat().st_size
    return size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from diagnostics import diagnose_path

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp)
        size = build_corpus(args.source, args.count, corpus)
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "diagnostics.cli", str(corpus), "--format", "json"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        cli_seconds = time.perf_counter() - started
        runs = json.loads(out.stdout)["runs"]
        errors = sum(r["status"] == "error" for r in runs)

        started = time.perf_counter()
        results = diagnose_path(corpus)
        api_seconds = time.perf_counter() - started

    print(f"files={args.count} bytes={size / 1e6:.1f}MB runs={len(runs)} errors={errors}")
    print(
        f"cli_seconds={cli_seconds:.2f} api_seconds={api_seconds:.2f} "
        f"per_run_ms={1000 * api_seconds / max(len(results), 1):.1f} target_seconds=20"
    )


if __name__ == "__main__":
    main()
