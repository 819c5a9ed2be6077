"""DoRA: LoRA on the direction of each weight plus a trained magnitude (Liu et al. 2024)."""

from typing import ClassVar

from tuner.methods._base import register
from tuner.methods._peft import PeftMethod


@register
class DoRA(PeftMethod):
    name = "dora"
    summary = "weight-decomposed LoRA (peft's use_dora) on the frozen base model"
    peft_config_class = "LoraConfig"
    peft_fixed: ClassVar[dict[str, bool]] = {"use_dora": True}
