"""The default dataset, "stdlib-docs": instructions about the installed Python standard library.

Each example asks about one public function, class or method ("What does `os.path.join` do?") and
answers with the first paragraph of its docstring: about a thousand examples of real technical
prose, built in a second or two without any download, the same on every machine with the same
Python version. Trivial, signature-only and duplicate docstrings are skipped.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from typing import Any

# Widely used modules with well-written docstrings; nothing that opens windows or prints on import.
MODULES = (
    "argparse",
    "base64",
    "bisect",
    "calendar",
    "collections",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email.utils",
    "enum",
    "fnmatch",
    "fractions",
    "functools",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "math",
    "operator",
    "os",
    "os.path",
    "pathlib",
    "pickle",
    "random",
    "re",
    "secrets",
    "shlex",
    "shutil",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "typing",
    "unittest",
    "urllib.parse",
    "uuid",
    "zipfile",
)

FUNCTION_QUESTIONS = (
    "What does `{name}` do?",
    "Explain `{name}`.",
    "In Python, what is `{name}` used for?",
    "Describe what the Python function `{name}` does.",
)
CLASS_QUESTIONS = (
    "What is `{name}` in Python?",
    "Explain the class `{name}`.",
    "What is `{name}` used for?",
)

MIN_WORDS = 5
SHORT_SUMMARY_WORDS = 25  # a one-line summary gets the paragraph that follows it
MAX_PER_MODULE = 45
MAX_CHARS = 700
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->\s*.+)?$")


def source_description() -> str:
    return f"docstrings of the Python {sys.version.split()[0]} standard library ({len(MODULES)} modules)"


def _is_prose(paragraph: str) -> bool:
    """A paragraph of sentences, not a doctest, a field list or a code block."""
    lines = paragraph.splitlines()
    if any(line.startswith((" ", "\t", ">>>", "...", "-", "*", ":")) for line in lines):
        return False
    head = lines[0].rstrip(":").strip().lower()
    return head not in {"args", "arguments", "parameters", "returns", "raises", "example", "examples"}


def _first_paragraph(doc: str | None) -> str | None:
    """The docstring's first real paragraph, joined into one line (with the next prose paragraph
    when the first is a short summary line); None if it's too thin or a wall of text."""
    if not doc:
        return None
    paragraphs = [p for p in inspect.cleandoc(doc).split("\n\n") if p.strip()]
    while paragraphs and _SIGNATURE.match(" ".join(paragraphs[0].split())):
        paragraphs.pop(0)  # C functions often start with their signature
    if not paragraphs or not _is_prose(paragraphs[0]):
        return None
    text = " ".join(paragraphs[0].split())
    if len(text.split()) < MIN_WORDS or len(text) > MAX_CHARS:
        return None
    if len(text.split()) < SHORT_SUMMARY_WORDS and len(paragraphs) > 1 and _is_prose(paragraphs[1]):
        longer = f"{text} {' '.join(paragraphs[1].split())}"
        if len(longer) <= MAX_CHARS:
            text = longer
    return text


# Where a module's objects are really defined when that isn't the module itself.
_IMPLEMENTED_IN = {"os": {"posix", "nt"}, "os.path": {"posixpath", "ntpath", "genericpath"}}


def _defined_in(obj: Any, module_name: str) -> bool:
    """Whether ``obj`` belongs to ``module_name`` (or its C accelerator ``_name``), not a re-export."""
    home = getattr(obj, "__module__", None) or ""
    short = module_name.split(".")[-1]
    if home in (module_name, f"_{short}") or home.startswith(f"{module_name}."):
        return True
    return home in _IMPLEMENTED_IN.get(module_name, ())


def _members(module_name: str) -> Iterator[tuple[str, Any]]:
    """(qualified name, object) of the module's public functions, classes and their methods."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return
    for attr in sorted(getattr(module, "__all__", None) or dir(module)):
        obj = getattr(module, attr, None)
        if attr.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if not _defined_in(obj, module_name):
            continue
        name = f"{module_name}.{attr}"
        yield name, obj
        if inspect.isclass(obj):
            for method_name, method in sorted(vars(obj).items()):
                if not method_name.startswith("_") and inspect.isroutine(method):
                    yield f"{name}.{method_name}", method


def _pick(templates: tuple[str, ...], name: str) -> str:
    return templates[_spread(name)[0] % len(templates)].format(name=name)


def _spread(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def build_stdlib_docs() -> list[tuple[str, str]]:
    """(instruction, response) pairs, sorted by name; deterministic for a given Python version.

    At most ``MAX_PER_MODULE`` per module (chosen by a hash of the name, not alphabetically), so
    that ``os`` and ``decimal`` don't crowd out the rest.
    """
    seen_names: set[str] = set()
    seen_answers: set[str] = set()
    pairs: list[tuple[str, str, str]] = []
    for module_name in MODULES:
        candidates: list[tuple[str, str, str]] = []
        for name, obj in _members(module_name):
            answer = _first_paragraph(getattr(obj, "__doc__", None))
            if name in seen_names or answer is None or answer in seen_answers:
                continue
            seen_names.add(name)
            seen_answers.add(answer)
            questions = CLASS_QUESTIONS if inspect.isclass(obj) else FUNCTION_QUESTIONS
            candidates.append((name, _pick(questions, name), answer))
        candidates.sort(key=lambda c: _spread(c[0]))
        pairs.extend(candidates[:MAX_PER_MODULE])
    pairs.sort()
    return [(question, answer) for _, question, answer in pairs]
