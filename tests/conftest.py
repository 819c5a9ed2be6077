"""Shared fixtures: the tiny random Llama (fast unit tests) and an isolated cache folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner._tiny import build_tiny_llama, build_tiny_tokenizer, save_tiny_llama


@pytest.fixture
def tiny_llama():
    """A fresh tiny Llama and its tokenizer (safe to modify: built for each test)."""
    return build_tiny_llama(seed=0)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The tiny model's byte-level tokenizer with a ChatML template (shared: don't modify it)."""
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A folder written by ``save_tiny_llama``: what ``--model <folder>`` gets in CLI tests."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Point ``$FINETUNE_DOCTOR_CACHE`` at an empty folder for this test."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FINETUNE_DOCTOR_CACHE", str(cache))
    return cache
