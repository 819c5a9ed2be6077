"""LoRA: a low-rank adapter on the frozen base (Hu et al. 2021)."""

from tuner.methods._base import register
from tuner.methods._peft import PeftMethod


@register
class LoRA(PeftMethod):
    name = "lora"
    summary = "LoRA adapter on the frozen base model"
    peft_config_class = "LoraConfig"
