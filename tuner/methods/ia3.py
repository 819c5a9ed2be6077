"""(IA)^3: learned rescaling vectors on keys, values and the feed-forward input (Liu et al. 2022)."""

from tuner.methods._base import register
from tuner.methods._peft import PeftMethod


@register
class IA3(PeftMethod):
    name = "ia3"
    summary = "(IA)^3 rescaling vectors on the frozen base model"
    peft_config_class = "IA3Config"
