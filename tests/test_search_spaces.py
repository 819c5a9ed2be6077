"""Search spaces: the shipped YAMLs, sampling, defaults, and one clear error per bad file."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import optuna
import pytest

from search_spaces import SearchSpace, SpaceError, TrialConfig, available_methods, load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)

LR = "learning_rate: {kind: float, low: 1.0e-4, high: 1.0e-3, log: true, source: test}"


def write(tmp_path: Path, text: str, name: str = "my.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(SpaceError) as info:
        load_space(path=write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "my.yaml"))
    return message


def test_available_methods():
    assert available_methods() == ["dora", "full", "ia3", "lora", "qlora"]


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(SpaceError, match=r"unknown method 'lorax' .*dora, full, ia3, lora, qlora"):
        load_space("lorax")


@pytest.mark.parametrize("method", ["dora", "full", "ia3", "lora", "qlora"])
def test_samples_stay_inside_the_ranges(method):
    space = load_space(method)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    distributions = space.distributions()
    for _ in range(30):
        trial = study.ask()
        config = space.sample(trial)
        assert config.method == method
        assert set(trial.params) == set(distributions)
        for name, value in trial.params.items():
            assert distributions[name]._contains(distributions[name].to_internal_repr(value))
        values = config.values()
        assert 3e-6 <= values["learning_rate"] <= 1e-2
        if "lora_alpha" in values:
            assert values["lora_alpha"] == trial.params["lora_alpha_ratio"] * values["r"]
            assert isinstance(values["lora_alpha"], int)
        study.tell(trial, 1.0)


def test_learning_rate_ranges_follow_the_research_notes():
    ranges = {m: load_space(m).distributions()["learning_rate"] for m in available_methods()}
    assert (ranges["full"].low, ranges["full"].high) == (3e-6, 1e-4)
    assert (ranges["lora"].low, ranges["lora"].high) == (3e-5, 1e-3)
    assert (ranges["qlora"].low, ranges["qlora"].high) == (5e-5, 5e-4)
    assert (ranges["ia3"].low, ranges["ia3"].high) == (1e-3, 1e-2)
    assert ranges["dora"].high < ranges["lora"].high
    assert all(d.log for d in ranges.values())


def test_alpha_is_never_sampled_on_its_own():
    for method in ("lora", "qlora", "dora"):
        distributions = load_space(method).distributions()
        assert "lora_alpha" not in distributions
        assert "lora_alpha_ratio" in distributions


def test_lora_defaults_are_the_common_recipe():
    config = load_space("lora").defaults()
    assert config.training_args["learning_rate"] == 2e-4
    assert config.training_args["warmup_ratio"] == 0.03
    assert config.peft == {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
    assert config.quantization == {}


def test_qlora_fixes_its_bitsandbytes_config():
    space = load_space("qlora")
    study = optuna.create_study()
    config = space.sample(study.ask())
    assert config.quantization == {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": "bfloat16",
    }
    assert space.defaults().quantization == config.quantization


def test_dora_and_ia3_carry_their_peft_settings():
    assert load_space("dora").defaults().peft["use_dora"] is True
    ia3 = load_space("ia3").defaults()
    assert set(ia3.peft) == {"target_modules", "feedforward_modules"}
    assert ia3.training_args["learning_rate"] == 3e-3
    assert load_space("full").defaults().peft == {}


@pytest.mark.parametrize("method", ["dora", "full", "ia3", "lora", "qlora"])
def test_defaults_can_be_enqueued_and_replayed(method):
    space = load_space(method)
    study = optuna.create_study()
    study.enqueue_trial(space.optuna_params(space.defaults()))
    assert space.sample(study.ask()) == space.defaults()


def test_a_default_outside_the_space_cannot_be_enqueued():
    space = load_space("lora")
    config = space.defaults()
    config.peft["lora_alpha"] = 8  # 0.5 x 16 is in, 8 / 16 = 0.5 is in; 3 / 16 is not
    space.optuna_params(config)
    config.peft["lora_alpha"] = 3
    with pytest.raises(SpaceError, match=r"lora\.yaml: lora_alpha: 3 is 0\.1875 x r"):
        space.optuna_params(config)


def test_describe_has_a_source_for_every_row():
    for method in available_methods():
        rows = load_space(method).describe()
        assert rows and all(row["source"] for row in rows)
        assert {"name", "kind", "range", "log", "source"} <= set(rows[0])
    lr = load_space("lora").describe()[0]
    assert (lr["name"], lr["kind"], lr["range"], lr["log"]) == (
        "learning_rate",
        "float",
        "[3e-05, 0.001]",
        True,
    )


def test_to_dict_round_trips():
    for method in available_methods():
        space = load_space(method)
        again = SearchSpace.from_dict(space.to_dict())
        assert again.to_dict() == space.to_dict()
        assert again.defaults() == space.defaults()


def test_trial_config_round_trips():
    config = load_space("qlora").defaults()
    assert TrialConfig.from_dict(config.to_dict()) == config


def test_user_file_extending_a_shipped_space(tmp_path):
    path = write(
        tmp_path,
        """
        extends: lora
        params:
          learning_rate: {kind: float, low: 2.0e-5, high: 2.0e-4, log: true, source: "mine"}
          r: {kind: fixed, value: 16, source: "mine"}
          weight_decay: null
        defaults:
          values:
            learning_rate: 1.0e-4
        """,
    )
    space = load_space("lora", path)
    assert space.source_path == path
    assert "r" not in space.distributions()
    assert "weight_decay" not in space.defaults().training_args
    assert space.defaults().training_args["learning_rate"] == 1e-4
    assert space.defaults().peft["lora_alpha"] == 32
    study = optuna.create_study()
    config = space.sample(study.ask())
    assert config.peft["r"] == 16 and config.peft["lora_alpha"] in (8, 16, 32)


def test_method_of_the_file_must_match(tmp_path):
    path = write(tmp_path, "extends: lora\n")
    with pytest.raises(SpaceError, match="method: the file is for 'lora', but 'qlora' was asked for"):
        load_space("qlora", path)


def test_numbers_written_as_yaml_strings_are_accepted(tmp_path):
    text = """
        method: full
        params:
          learning_rate: {kind: float, low: 3e-6, high: 1e-4, log: true, source: test}
        defaults: {values: {learning_rate: 2.0e-5}}
        """
    space = load_space(path=write(tmp_path, text))
    assert space.distributions()["learning_rate"].low == 3e-6


def spec(method: str, *params: str, tail: str = "") -> str:
    """A small YAML text: ``method`` and one flow-style parameter per line."""
    lines = "".join(f"  {p}\n" for p in params)
    return f"method: {method}\nparams:\n{lines}{tail}"


FLOAT = "learning_rate: {kind: float, low: %s, high: %s, log: %s, source: x}"
ERRORS = [
    (spec("lora", FLOAT % (0.01, 0.001, "false")), "learning_rate: low (0.01) > high (0.001)"),
    (spec("lora", FLOAT % (0, 0.1, "true")), "learning_rate: a log range needs low > 0"),
    (
        spec("lora", "learning_rate: {kind: float, high: 0.1, source: x}"),
        "learning_rate: missing key 'low'",
    ),
    (
        spec("lora", "learning_rate: {low: 0.1, high: 0.2, source: x}"),
        "learning_rate: missing key 'kind'",
    ),
    (spec("lora", "learning_rate: {kind: beta, source: x}"), "learning_rate: unknown kind 'beta'"),
    (
        spec("lora", "r: {kind: categorical, choices: [], source: x}"),
        "r: choices must be a non-empty list",
    ),
    (spec("lora", "r: {kind: categorical, choices: [8, 8], source: x}"), "r: choices repeat a value"),
    (spec("lora", "r: {kind: categorical, choices: [8]}"), "r: missing key 'source'"),
    (
        spec("lora", "lora_alpha: {kind: ratio_of, of: rank, choices: [1, 2], source: x}"),
        "lora_alpha: of: unknown parameter 'rank'",
    ),
    (
        spec(
            "lora",
            "lr_scheduler_type: {kind: categorical, choices: [a, b], source: x}",
            "lora_alpha: {kind: ratio_of, of: lr_scheduler_type, choices: [1, 2], source: x}",
        ),
        "lora_alpha: of: 'lr_scheduler_type' is not numeric",
    ),
    (
        spec("lora", "learnig_rate: {kind: fixed, value: 1, source: x}"),
        "learnig_rate: unknown parameter",
    ),
    (spec("loraa", LR), "method: unknown method 'loraa'"),
    ("params:\n  " + LR + "\n", "method: missing key"),
    ("method: lora\n", "params: missing key"),
    (spec("lora", LR, tail="search: 1\n"), "search: unknown key"),
    (
        spec("full", "r: {kind: fixed, value: 8, source: x}"),
        "r: adapter setting in a full fine-tuning space",
    ),
    (spec("ia3", "r: {kind: fixed, value: 8, source: x}"), "r: not a IA3Config setting"),
    (
        spec("lora", "bnb_4bit_quant_type: {kind: fixed, value: nf4, source: x}"),
        "bnb_4bit_quant_type: quantization settings apply to method qlora only",
    ),
    (spec("dora", LR), "use_dora: a dora space must fix use_dora to true"),
    (spec("qlora", LR), "load_in_4bit: a qlora space must fix load_in_4bit to true"),
    (spec("lora", LR), "defaults: learning_rate: missing"),
    (
        spec("lora", LR, tail="defaults: {values: {learning_rate: 1.0e-4, r: 8}}\n"),
        "defaults: r: not a parameter of this space",
    ),
    (spec("lora", "learning_rate: {kind: float, low: 0.1, high: 0.2"), "line 4:"),
    ("- just\n- a list\n", "expected a mapping"),
    ("extends: nothing.yaml\n", "extends: {tmp}/nothing.yaml not found"),
]


@pytest.mark.parametrize(("text", "expected"), ERRORS)
def test_each_error_names_the_key(tmp_path, text, expected):
    assert expected.format(tmp=tmp_path) in error_of(tmp_path, text)


def test_missing_file(tmp_path):
    with pytest.raises(SpaceError, match=r"nope\.yaml: search space file not found"):
        load_space(path=tmp_path / "nope.yaml")


def test_ratio_of_a_continuous_range(tmp_path):
    text = """
        extends: lora
        params:
          lora_alpha: {kind: ratio_of, of: r, low: 0.5, high: 4.0, log: true, source: test}
        """
    space = load_space(path=write(tmp_path, text))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial = study.ask()
        config = space.sample(trial)
        assert math.isclose(config.peft["lora_alpha"], trial.params["lora_alpha_ratio"] * config.peft["r"])
        study.tell(trial, 0.0)
