"""What a fine-tuning method does to the shared base model of a worker.

A worker loads (and quantises) the base model once and runs every trial on it, so a method has
three jobs: ``prepare`` the base once, ``attach`` a fresh trainable state for a trial, and
``detach`` it afterwards so the next trial starts from the pristine base. LoRA-family methods
wrap the base in a freshly initialised adapter and unload it again; full fine-tuning trains the
base itself and restores its weights in place.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn


class Method(ABC):
    """One fine-tuning method. Subclasses register themselves with :func:`register`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    #: The base is loaded 4-bit (bitsandbytes on CUDA, NF4-emulated on CPU).
    quantized: ClassVar[bool] = False
    #: The peft config class this method's ``peft`` values belong to (``None``: no adapter).
    peft_config_class: ClassVar[str | None] = None
    #: Values the method always sets, whatever the search space says (DoRA: ``use_dora=True``).
    peft_fixed: ClassVar[dict[str, Any]] = {}

    def prepare(self, base: nn.Module) -> None:  # noqa: B027 - most methods need no preparation
        """Called once per worker, after loading the base model."""

    @abstractmethod
    def attach(self, base: nn.Module, peft: dict[str, Any]) -> nn.Module:
        """The model a trial trains: ``base`` with a fresh adapter, or ``base`` made trainable."""

    @abstractmethod
    def detach(self, base: nn.Module, model: nn.Module) -> None:
        """Undo ``attach``: afterwards ``base`` is exactly as ``prepare`` left it."""

    def peft_values(self, peft: dict[str, Any]) -> dict[str, Any]:
        """The peft config values a trial with ``peft`` sampled uses (the method's fixed ones win)."""
        return {**peft, **self.peft_fixed} if self.peft_config_class else {}

    def snapshot(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """A CPU copy of what a trial trained (the adapter, or every weight)."""
        return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def restore(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Put a :meth:`snapshot` back into a freshly attached ``model``."""
        params = dict(model.named_parameters())
        for name, value in state.items():
            params[name].copy_(value)

    def save(self, model: nn.Module, path: Path) -> None:
        """Save what the trial trained (the adapter, or the whole model for full fine-tuning)."""
        model.save_pretrained(path)


_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Method]]:
    return _REGISTRY
