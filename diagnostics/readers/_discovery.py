"""Finding the runs under a folder: which files are logs, of which format, and which belong together."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from diagnostics.readers._base import HEAD_BYTES, LogFormat

# Never logs: weights, code, configuration (read as configuration only), pictures, archives.
_SKIP_SUFFIXES = frozenset(
    (  # noqa: SIM905 (a word list reads better than 40 quoted items)
        ".py .pyc .bin .safetensors .pt .pth .ckpt .gguf .onnx .h5 .msgpack .model .pkl .pickle .npy .npz "
        ".parquet .arrow .yaml .yml .toml .cfg .ini .sh .lock .png .jpg .jpeg .gif .svg .webp .pdf .html "
        ".css .js .zip .gz .tgz .tar .xz .bz2 .7z .whl"
    ).split()
)
_CONFIG_FILES = frozenset(
    (  # noqa: SIM905
        "training_args.json adapter_config.json config.json generation_config.json tokenizer_config.json "
        "tokenizer.json special_tokens_map.json added_tokens.json vocab.json preprocessor_config.json "
        "all_results.json train_results.json eval_results.json model.safetensors.index.json"
    ).split()
)
_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "venv"})
_TRAILING_NUMBER = re.compile(r"-(\d+)$")


def walk(root: Path) -> Iterator[Path]:
    """Every candidate file under ``root`` in sorted order, hidden folders and obvious non-logs left out."""
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
        for name in sorted(filenames):
            path = Path(directory, name)
            if name.startswith(".") or name in _CONFIG_FILES or path.suffix.lower() in _SKIP_SUFFIXES:
                continue
            yield path


def sniff(path: Path, formats: Sequence[LogFormat], column_map) -> LogFormat | None:
    """The first format of the registry that claims the file (by its name and first bytes)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        head = b""
    for log_format in formats:
        if log_format.claims(path, head, column_map):
            return log_format
    return None


def group(
    paths: Sequence[Path], formats: Sequence[LogFormat], column_map
) -> list[tuple[LogFormat, Path, list[Path]]]:
    """(format, run key, files) per run, sorted by the run's path."""
    groups: dict[tuple[str, Path], tuple[LogFormat, list[Path]]] = {}
    for path in paths:
        log_format = sniff(path, formats, column_map)
        if log_format is None:
            continue
        key = log_format.run_key(path)
        groups.setdefault((log_format.name, key), (log_format, []))[1].append(path)
    ordered = sorted(groups.items(), key=lambda item: (item[0][1].parts, item[0][0]))
    return [(fmt, key, files) for (_, key), (fmt, files) in ordered]


def config_dir(files: Sequence[Path]) -> Path:
    """Where a run's configuration search starts: the newest checkpoint-N folder of the run, else the
    folder of its files."""
    folders = {path.parent for path in files}
    numbered = [f for f in folders if _TRAILING_NUMBER.search(f.name)]
    if numbered:
        return max(numbered, key=lambda f: int(_TRAILING_NUMBER.search(f.name).group(1)))  # type: ignore[union-attr]
    return min(folders, key=lambda f: len(f.parts))


def run_directory(source: Path) -> Path:
    """The folder a run lives in: the source itself when it is a folder, else the file's folder."""
    return source if source.is_dir() else source.parent
