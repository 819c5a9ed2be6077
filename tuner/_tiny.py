"""A tiny randomly initialised Llama and a byte-level tokenizer, for fast tests (no download).

``load_base_model("tiny-llama", ...)`` loads it from a cached folder; ``save_tiny_llama(dir)``
writes one anywhere, so a folder path can be passed to ``--model``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

TINY_MODEL = "tiny-llama"
TINY_VERSION = 1  # bump when the architecture or tokenizer changes: the cached folder is keyed by it

BOS, EOS, PAD, IM_START = "<|endoftext|>", "<|im_end|>", "<|pad|>", "<|im_start|>"

# ChatML, as SmolLM2 uses, without its default system prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: one token per UTF-8 byte, plus ChatML special tokens."""
    byte_vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=byte_vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START],
        model_max_length=512,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "right"
    return tokenizer


def tiny_llama_config(vocab_size: int, tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    # Grouped-query attention and tied embeddings, as in SmolLM2, at toy size.
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_llama(seed: int = 0) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A randomly initialised 2-layer Llama (hidden 64) and its byte-level tokenizer.

    The same seed gives the same weights; the global torch RNG is left as it was.
    """
    tokenizer = build_tiny_tokenizer()
    config = tiny_llama_config(len(tokenizer), tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    return model, tokenizer


def save_tiny_llama(directory: str | Path, seed: int = 0) -> Path:
    """Write the tiny model and tokenizer to ``directory`` (a folder ``--model`` accepts)."""
    directory = Path(directory)
    model, tokenizer = build_tiny_llama(seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
