"""Shared by the tuner's tests: one torch thread, and a method's search space with a small batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine OpenMP threads spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def batch_space(directory: Path, method: str, batch: int = 4) -> Path:
    """The shipped space of ``method`` with the effective batch fixed at ``batch``."""
    path = directory / f"{method}-batch{batch}.yaml"
    path.write_text(
        f"extends: {method}\n"
        "params:\n"
        f"  effective_batch_size: {{kind: fixed, value: {batch}, source: test}}\n"
        "defaults:\n"
        f"  values: {{effective_batch_size: {batch}}}\n"
    )
    return path
