"""The shared mechanism of adapter methods: a fresh peft adapter per trial, unloaded afterwards."""

from __future__ import annotations

from typing import Any

import peft
from torch import nn

from tuner.methods._base import Method

# peft saves a non-default adapter into a subfolder named after it; "default" saves in place.
ADAPTER_NAME = "default"


class PeftMethod(Method):
    """Wraps the base in a freshly initialised adapter and unloads it again (no merge)."""

    def peft_config(self, peft_values: dict[str, Any]) -> peft.PeftConfig:
        config_class = getattr(peft, self.peft_config_class)
        return config_class(task_type="CAUSAL_LM", **self.peft_values(peft_values))

    def attach(self, base: nn.Module, peft_values: dict[str, Any]) -> nn.Module:
        return peft.get_peft_model(base, self.peft_config(peft_values), adapter_name=ADAPTER_NAME)

    def detach(self, base: nn.Module, model: nn.Module) -> None:
        # unload() swaps every adapter layer back for the original module it wraps, without
        # merging, so the base's weights were never touched.
        restored = model.unload()
        if restored is not base:
            raise RuntimeError("peft unload returned a different model than the shared base")
