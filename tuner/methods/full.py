"""Full fine-tuning: every weight trains; the pristine weights are restored in place afterwards."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tuner.methods._base import Method, register


@register
class FullFineTuning(Method):
    name = "full"
    summary = "full fine-tuning of every weight (restored in place between trials)"

    def __init__(self) -> None:
        self._pristine: dict[str, torch.Tensor] = {}

    def prepare(self, base: nn.Module) -> None:
        # Kept on the CPU: on a GPU the copy would halve the memory left for training.
        self._pristine = {name: p.detach().to("cpu", copy=True) for name, p in base.named_parameters()}

    def attach(self, base: nn.Module, peft: dict[str, Any]) -> nn.Module:
        if not self._pristine:
            self.prepare(base)
        for param in base.parameters():
            param.requires_grad_(True)
        return base

    @torch.no_grad()
    def detach(self, base: nn.Module, model: nn.Module) -> None:
        for name, param in base.named_parameters():
            param.copy_(self._pristine[name])
            param.requires_grad_(False)
            param.grad = None
