"""The method registry: every method attaches a fresh trainable state and gives the base back intact."""

from __future__ import annotations

import pytest
import torch

from tests._tuner_helpers import one_thread  # noqa: F401 - the fixture, used below
from tuner._tiny import build_tiny_llama
from tuner.methods import UnknownMethodError, available_methods, get_method

pytestmark = pytest.mark.usefixtures("one_thread")

PEFT_VALUES = {
    "lora": {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"},
    "qlora": {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear"},
    "dora": {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": "all-linear", "use_dora": True},
    "ia3": {"target_modules": None, "feedforward_modules": None},
    "full": {},
}


def test_registry_lists_the_five_methods():
    assert available_methods() == ["dora", "full", "ia3", "lora", "qlora"]
    assert get_method("qlora").quantized and not get_method("lora").quantized
    assert get_method("dora").peft_values({"r": 8}) == {"r": 8, "use_dora": True}
    assert get_method("full").peft_values({"r": 8}) == {}


def test_unknown_method_is_one_clear_error():
    with pytest.raises(UnknownMethodError, match="unknown method 'lorax'; choose one of: dora, full"):
        get_method("lorax")


def _train_a_little(model: torch.nn.Module) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    assert params, "nothing to train"
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    ids = torch.randint(0, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize("name", ["full", "lora", "qlora", "dora", "ia3"])
def test_attach_train_detach_leaves_the_base_pristine(name):
    base, _ = build_tiny_llama(seed=0)
    pristine = {k: v.clone() for k, v in base.state_dict().items()}
    modules = [type(m).__name__ for m in base.modules()]
    method = get_method(name)
    method.prepare(base)
    for _ in range(2):  # twice: a second trial must find the same base
        model = method.attach(base, PEFT_VALUES[name])
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in base.parameters())
        assert 0 < trainable <= total
        if name != "full":
            assert trainable < total / 2
        _train_a_little(model)
        method.detach(base, model)
        state = base.state_dict()
        assert set(state) == set(pristine)
        assert all(torch.equal(state[k], pristine[k]) for k in pristine)
        assert [type(m).__name__ for m in base.modules()] == modules
        assert not any(p.requires_grad for p in base.parameters()) or name == "full"
