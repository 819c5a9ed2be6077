"""Model loading: resolving --model, the tiny test model, NF4 emulation, GGUF conversion (slow)."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from tuner._model import (
    DEFAULT_MODEL,
    ModelError,
    _cached_folder,
    bnb_config,
    default_gguf_path,
    load_base_model,
    nf4_roundtrip_,
    resolve_model,
)
from tuner._tiny import TINY_MODEL, build_tiny_llama

TEXT = "The json module encodes Python objects as JSON text and decodes JSON text back into objects."


def linear_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach().clone() for n, m in model.named_modules() if type(m) is nn.Linear}


def loss_on(model: nn.Module, tokenizer, text: str = TEXT) -> float:
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids, labels=ids).loss.item()


# --- resolve_model ------------------------------------------------------------------------------


def test_missing_path_is_one_line(tmp_path):
    with pytest.raises(ModelError, match=r"^model path does not exist: /x/y$"):
        resolve_model("/x/y")
    with pytest.raises(ModelError, match=r"model path does not exist: .*missing\.gguf$"):
        resolve_model(str(tmp_path / "missing.gguf"))


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelError, match="not a model folder"):
        resolve_model(str(tmp_path))


def test_a_folder_resolves_to_itself(tiny_model_dir):
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)


def test_unknown_hub_name_is_one_line():
    with pytest.raises(ModelError) as info:
        resolve_model("finetune-doctor-tests/no-such-model")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("cannot load model 'finetune-doctor-tests/no-such-model'")


def test_default_model_file_is_found():
    path = default_gguf_path()
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000


def test_cache_folder_is_written_atomically(isolated_cache):
    def interrupted(tmp: Path) -> None:
        (tmp / "config.json").write_text("{}")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _cached_folder("model-x", interrupted)
    assert list((isolated_cache / "models").iterdir()) == []  # neither the folder nor a temp one

    calls = []
    folder = _cached_folder("model-x", lambda tmp: calls.append((tmp / "config.json").write_text("{}")))
    assert folder == isolated_cache / "models" / "model-x" and (folder / "config.json").is_file()
    assert _cached_folder("model-x", lambda tmp: calls.append("again")) == folder
    assert len(calls) == 1


# --- the tiny model ------------------------------------------------------------------------------


def test_tiny_llama_is_deterministic_and_leaves_the_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    (a, tokenizer), (b, _) = build_tiny_llama(seed=0), build_tiny_llama(seed=0)
    assert torch.equal(torch.rand(1), expected)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    c, _ = build_tiny_llama(seed=1)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    assert tokenizer.pad_token != tokenizer.eos_token
    text = tokenizer.apply_chat_template([{"role": "user", "content": "héllo"}], tokenize=False)
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_load_tiny_llama_by_name(isolated_cache):
    model, tokenizer, info = load_base_model(TINY_MODEL, method="lora")
    assert info.path.startswith(str(isolated_cache))
    assert (info.device, info.dtype, info.quantization) == ("cpu", "float32", "none")
    assert info.n_params == sum(p.numel() for p in model.parameters()) < 200_000
    assert tokenizer.chat_template and tokenizer.pad_token_id is not None
    reference, _ = build_tiny_llama(seed=0)
    assert torch.equal(model.lm_head.weight, reference.lm_head.weight)
    start = time.perf_counter()
    load_base_model(TINY_MODEL, method="lora")
    assert time.perf_counter() - start < 5


def test_load_a_saved_folder(tiny_model_dir):
    model, tokenizer, info = load_base_model(str(tiny_model_dir), method="full")
    assert info.name == str(tiny_model_dir) and info.quantization == "none"
    assert 4 < loss_on(model, tokenizer) < 7  # random init: about ln(vocab size) = 5.6


def test_qlora_on_cpu_is_nf4_emulated(tiny_model_dir):
    plain, _, _ = load_base_model(str(tiny_model_dir), method="lora")
    quantized, _, info = load_base_model(str(tiny_model_dir), method="qlora")
    assert info.quantization == "nf4-emulated-cpu"
    before, after = linear_weights(plain), linear_weights(quantized)
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert "lm_head" not in changed and len(changed) == 14  # 2 layers x (q, k, v, o, gate, up, down)
    assert torch.equal(plain.model.embed_tokens.weight, quantized.model.embed_tokens.weight)


# --- nf4_roundtrip_ ------------------------------------------------------------------------------


def test_nf4_roundtrip_changes_weights_by_a_small_relative_amount(tiny_llama):
    model, _ = tiny_llama
    before = linear_weights(model)
    assert nf4_roundtrip_(model) == 14
    after = linear_weights(model)
    for name in before:
        if name == "lm_head":
            assert torch.equal(before[name], after[name])
            continue
        relative = ((after[name] - before[name]).norm() / before[name].norm()).item()
        assert 0.01 < relative < 0.2, (name, relative)  # 4 bits: ~10 % error, never zero


def test_nf4_roundtrip_matches_bitsandbytes_functions(tiny_llama):
    import bitsandbytes.functional as bnbf

    model, _ = tiny_llama
    weight = model.model.layers[1].mlp.down_proj.weight.detach().clone()
    packed, state = bnbf.quantize_4bit(weight, blocksize=64, quant_type="nf4", compress_statistics=True)
    expected = bnbf.dequantize_4bit(packed, state)
    nf4_roundtrip_(model)
    assert torch.equal(model.model.layers[1].mlp.down_proj.weight, expected)


def test_nf4_emulation_computes_what_bitsandbytes_linear4bit_computes(tiny_llama):
    """The design's claim: the emulated base gives the same outputs as real 4-bit layers."""
    import bitsandbytes as bnb

    model, tokenizer = tiny_llama
    real = copy.deepcopy(model)
    for parent in list(real.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child is not real.lm_head:
                layer = bnb.nn.Linear4bit(
                    child.in_features,
                    child.out_features,
                    bias=False,
                    compute_dtype=torch.float32,
                    quant_type="nf4",
                )
                weight = bnb.nn.Params4bit(
                    child.weight.data.clone(),
                    requires_grad=False,
                    compress_statistics=True,
                    quant_type="nf4",
                    blocksize=64,
                )
                layer.weight = weight._quantize("cpu")
                setattr(parent, name, layer)
    nf4_roundtrip_(model)
    ids = torch.tensor([tokenizer(TEXT)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, real(ids).logits, rtol=1e-5, atol=1e-5)


def test_bnb_config_from_space_values():
    config = bnb_config({"bnb_4bit_compute_dtype": "bfloat16"})
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant and config.bnb_4bit_compute_dtype == torch.bfloat16


# --- the real model (slow) -----------------------------------------------------------------------


@pytest.mark.slow
def test_gguf_is_converted_once_then_loads_fast(isolated_cache):
    start = time.perf_counter()
    path = resolve_model(None)
    converted = time.perf_counter() - start
    assert Path(path).parent == isolated_cache / "models"
    assert resolve_model("smollm2") == resolve_model(DEFAULT_MODEL) == path
    start = time.perf_counter()
    model, tokenizer, info = load_base_model(None, method="lora")
    loaded = time.perf_counter() - start
    assert loaded < converted / 3, (loaded, converted)
    assert info.name == DEFAULT_MODEL and 130e6 < info.n_params < 140e6
    assert tokenizer.pad_token_id is not None and "<|im_start|>" in tokenizer.chat_template
    assert loss_on(model, tokenizer) < 6  # a trained model, not random weights (ln 49152 = 10.8)
