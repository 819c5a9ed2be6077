"""QLoRA: LoRA on a 4-bit NF4 base (Dettmers et al. 2023).

The base arrives quantised from ``load_base_model``: real bitsandbytes 4-bit on CUDA, NF4-faithful
(quantised then dequantised) weights on CPU.
"""

from torch import nn

from tuner.methods._base import register
from tuner.methods.lora import LoRA


@register
class QLoRA(LoRA):
    name = "qlora"
    summary = "LoRA adapter on a 4-bit NF4-quantised base model (bitsandbytes)"
    quantized = True

    def prepare(self, base: nn.Module) -> None:
        if getattr(base, "is_loaded_in_4bit", False):
            from peft import prepare_model_for_kbit_training

            # Layer norms in fp32, as the QLoRA recipe does; no gradient checkpointing: trials are
            # short and checkpointing costs a third more compute.
            prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
