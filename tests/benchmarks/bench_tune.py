"""Benchmark: `tune study` against transformers' `Trainer.hyperparameter_search(backend="optuna")`.

Run by hand (about 15-20 minutes on 2 idle CPU cores; much longer on a busy machine):

    python tests/benchmarks/bench_tune.py [--n-trials 8] [--max-steps 8] [--out bench_runs]

Same model (SmolLM2-135M-Instruct), data (the built-in stdlib-docs set, 128 tokens), LoRA search
space (lora.yaml with the batch fixed at 4 x 128 tokens), number of trials and steps per trial on
both sides; each side prunes and evaluates as it does by default:

- `tune study`: the base loaded once, Hyperband on the eval loss of a 32-example subset every 4
  steps, the best trial's weights evaluated once on the whole eval split at the end;
- HF: `model_init` loads the model and applies the trial's LoraConfig, every evaluation runs on the
  whole eval split, Optuna's default MedianPruner, objective = last evaluation.

Figures printed:
(a) wall(tune study) / wall(HF search), with both best eval losses on the whole eval split in
    the same measure, HF's (Trainer.evaluate at batch 8 of tune's saved best adapter; tune's own
    eval loss is per token, which HF's average of batch means is not);
(b) wall(tune study) / sum over its trials of pure training + evaluation time;
(c) best eval loss found vs the common defaults (lr 2e-4, r 16, alpha 32, dropout 0.05, warm-up
    3%) trained for the same steps (both on the trials' eval subset, and on the whole split);
(d) resident memory after each of the worker's trials (all within 5% of the first?) and the peak.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

BATCH = 4
EVAL_EVERY = 4
SEED = 0


def space_file(out: Path) -> Path:
    path = out / "bench_lora.yaml"
    path.write_text(
        "# lora.yaml with the batch fixed, as in the HF run\n"
        "extends: lora\n"
        "params:\n"
        f"  effective_batch_size: {{kind: fixed, value: {BATCH}, source: benchmark}}\n"
        "defaults:\n"
        f"  values: {{effective_batch_size: {BATCH}}}\n"
    )
    return path


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def run_tune(out: Path, n_trials: int, max_steps: int, model: str | None, baseline: bool) -> float:
    """`tune study` as a user runs it (a fresh process); returns its wall time in seconds."""
    command = [
        sys.executable, "-m", "tuner.cli", "study", "-q", "--method", "lora",
        "--space", str(space_file(out)), "--n-trials", str(n_trials), "--max-steps", str(max_steps),
        "--eval-every", str(EVAL_EVERY), "--seed", str(SEED), "--out", str(out / "tune"),
        "--study-name", "bench",
    ]  # fmt: skip
    if model:
        command += ["--model", model]
    if baseline:
        command.append("--baseline")
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def run_hf(out: Path, n_trials: int, max_steps: int, model: str | None) -> dict:
    """The HF search in a fresh process (this file with --hf); returns its printed JSON."""
    command = [sys.executable, __file__, "--hf", "--n-trials", str(n_trials), "--max-steps", str(max_steps)]
    command += ["--out", str(out), *(["--model", model] if model else [])]
    start = time.perf_counter()
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (out / "hf_search.log").write_text(result.stdout + result.stderr)
    data = json.loads(result.stdout.strip().splitlines()[-1])
    data["wall"] = wall
    return data


def hf_search(out: Path, n_trials: int, max_steps: int, model_spec: str | None) -> None:
    """Trainer.hyperparameter_search(backend="optuna") with a model_init that loads the model and
    applies the trial's LoraConfig; prints one JSON line."""
    import optuna
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    from search_spaces import load_space
    from tuner._data import load_tokenized
    from tuner._export import installed_training_args
    from tuner._model import resolve_model

    start = time.perf_counter()
    space = load_space("lora", space_file(out))
    path = resolve_model(model_spec)
    tokenizer = AutoTokenizer.from_pretrained(path)
    train, evaluation, _ = load_tokenized(None, tokenizer, max_length=128, seed=SEED)
    loads: list[float] = []

    def model_init(trial=None):
        t0 = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        params = trial.params if trial is not None else {}
        config = space.sample(optuna.trial.FixedTrial(params)) if params else space.defaults()
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **config.peft))
        loads.append(time.perf_counter() - t0)
        return model

    def hp_space(trial):
        values = installed_training_args(space.sample(trial).training_args)
        values.pop("per_device_train_batch_size", None)  # fixed below, as on the tune side
        values.pop("gradient_accumulation_steps", None)
        # HF casts a searched value to the type of the argument's default (warmup_steps: int 0), so
        # a ratio would become 0: give it the warm-up steps the ratio means (as tune's trials get).
        values["warmup_steps"] = math.ceil(values["warmup_steps"] * max_steps)
        return values

    args = TrainingArguments(
        output_dir=str(out / "hf"),
        max_steps=max_steps,
        per_device_train_batch_size=BATCH,
        eval_strategy="steps",
        eval_steps=EVAL_EVERY,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        seed=SEED,
        data_seed=SEED,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model_init=model_init,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
    )
    search_start = time.perf_counter()
    best = trainer.hyperparameter_search(
        hp_space=hp_space,
        n_trials=n_trials,
        direction="minimize",
        backend="optuna",
        sampler=optuna.samplers.TPESampler(seed=SEED),
    )
    end = time.perf_counter()
    print(
        json.dumps(
            {
                "best_objective": best.objective,
                "best_params": best.hyperparameters,
                "search_seconds": end - search_start,
                "in_process_seconds": end - start,
                "model_loads": len(loads),
                "model_load_seconds": sum(loads),
                "n_eval": len(evaluation),
            }
        )
    )


def hf_evaluate(adapter: Path, model_spec: str | None) -> None:
    """HF's default evaluation (Trainer.evaluate, batch 8, the eval split in its order) of a saved
    adapter: the measure HF's search ranked its trials by; prints one JSON line."""
    import torch
    from peft import PeftModel
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    from tuner._data import load_tokenized
    from tuner._model import resolve_model

    path = resolve_model(model_spec)
    tokenizer = AutoTokenizer.from_pretrained(path)
    _, evaluation, _ = load_tokenized(None, tokenizer, max_length=128, seed=SEED)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), adapter
    )
    args = TrainingArguments(output_dir=str(adapter.parent / "hf-eval"), report_to="none", use_cpu=True)
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    metrics = Trainer(model=model, args=args, eval_dataset=evaluation, data_collator=collator).evaluate()
    print(json.dumps({"eval_loss": metrics["eval_loss"]}))


def hf_measure_of_best(out: Path, model: str | None) -> float:
    command = [sys.executable, __file__, "--hf-eval", str(out / "tune" / "best_adapter")]
    result = subprocess.run(
        command + (["--model", model] if model else []), check=True, capture_output=True, text=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])["eval_loss"]


def tune_figures(out: Path) -> dict:
    import optuna

    url = f"sqlite:///{out / 'tune' / 'study.db'}"
    study = optuna.load_study(study_name="bench", storage=url)
    trials = [t for t in study.trials if "seconds" in t.user_attrs]
    seconds = [t.user_attrs["seconds"] for t in trials]
    rss = [t.user_attrs["memory_mb"]["rss"] for t in trials]
    peak = max(t.user_attrs["memory_mb"]["peak_rss"] for t in trials)
    attrs = study.user_attrs
    (worker,) = [v for k, v in attrs.items() if k.startswith("worker:") and v["trials"]]
    return {
        "in_process_wall": worker["wall_seconds"],
        "best_value": study.best_value,
        "best_trial": study.best_trial.number,
        "best_full": attrs["best_full_eval"]["eval_loss"],
        "full_eval_seconds": attrs["best_full_eval"]["seconds"],
        "n_eval": attrs["best_full_eval"]["n_examples"],
        "pure": sum(s.get("train", 0) + s.get("eval", 0) for s in seconds),
        "states": [t.user_attrs["outcome"] for t in trials],
        "rss": rss,
        "peak_rss": peak,
        "baseline": attrs.get("baseline"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench_runs"))
    parser.add_argument("--model", help="another model (e.g. tiny-llama, to check the script quickly)")
    parser.add_argument("--hf", action="store_true", help="internal: run the HF side only")
    parser.add_argument("--hf-eval", type=Path, help="internal: HF's evaluation of a saved adapter")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    if options.hf_eval:
        hf_evaluate(options.hf_eval, options.model)
        return
    if options.hf:
        hf_search(options.out, options.n_trials, options.max_steps, options.model)
        return
    if (options.out / "tune").exists():
        sys.exit(f"{options.out / 'tune'} exists: remove it or pass another --out")
    n, steps = options.n_trials, options.max_steps
    model = options.model or "SmolLM2-135M"
    print(f"{model} LoRA, {n} trials x {steps} steps, batch {BATCH} x 128 tokens, eval every {EVAL_EVERY}")
    print(f"load average before: {load_average()}", flush=True)
    tune_wall = run_tune(options.out, n, steps, options.model, baseline=False)
    print(f"tune study: {tune_wall:.1f} s (load average {load_average()})", flush=True)
    baseline_wall = run_tune(options.out, n, steps, options.model, baseline=True)  # only the baseline runs
    print(f"common defaults, same steps: {baseline_wall:.1f} s (load average {load_average()})", flush=True)
    hf = run_hf(options.out, n, steps, options.model)
    print(f"HF hyperparameter_search: {hf['wall']:.1f} s (load average {load_average()})", flush=True)
    tune = tune_figures(options.out)
    tune["best_in_hf_measure"] = hf_measure_of_best(options.out, options.model)
    print_figures(tune_wall, tune, hf)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_figures(tune_wall: float, tune: dict, hf: dict) -> None:
    baseline = tune["baseline"]
    print("\n== figures ==")
    ratio = tune_wall / hf["wall"]
    ok = ratio <= 0.8 and tune["best_in_hf_measure"] <= hf["best_objective"]
    print(
        f"(a) wall tune / HF = {tune_wall:.1f} / {hf['wall']:.1f} s = {ratio:.3f} "
        f"(target <= 0.8, at equal or better loss)  {_verdict(ok)}"
    )
    print(
        f"    best eval loss on the whole eval split ({tune['n_eval']} examples), both in HF's measure "
        f"(Trainer.evaluate, batch 8): tune {tune['best_in_hf_measure']:.4f} (trial {tune['best_trial']}), "
        f"HF {hf['best_objective']:.4f}; in tune's own (per token): {tune['best_full']:.4f}"
    )
    print(f"    HF loaded the model {hf['model_loads']} times ({hf['model_load_seconds']:.1f} s)")
    # The best trial's evaluation on the rest of the eval split is evaluation of a trial's weights
    # (HF evaluates every trial on the whole split), so it counts as evaluation time; the strict
    # figure, which counts it as overhead, is printed too.
    work = tune["pure"] + tune["full_eval_seconds"]
    overhead = tune_wall / work
    print(
        f"(b) wall / pure train+eval = {tune_wall:.1f} / {work:.1f} s = {overhead:.3f} "
        f"(target <= 1.15)  {_verdict(overhead <= 1.15)}"
    )
    print(
        f"    pure = the trials' training and evaluation ({tune['pure']:.1f} s) + the best trial's evaluation"
        f" on the rest of the eval split, with saving its adapter ({tune['full_eval_seconds']:.1f} s);"
        f" counting that as"
        f" overhead: {tune_wall / tune['pure']:.3f}. The wall includes process start, imports, model + data"
        f" loading and the reports; from the start of run_study: {tune['in_process_wall']:.1f} / {work:.1f} s"
        f" = {tune['in_process_wall'] / work:.3f}"
    )
    lower = tune["best_value"] < baseline["eval_loss"]
    print(
        f"(c) best eval loss (32-example subset): tuned {tune['best_value']:.4f} vs common defaults "
        f"{baseline['eval_loss']:.4f}  {_verdict(lower)}"
    )
    print(
        f"    whole eval split: tuned {tune['best_full']:.4f} vs common defaults "
        f"{baseline['full_eval_loss']:.4f}"
    )
    first = tune["rss"][0]
    worst = max(abs(x - first) / first for x in tune["rss"])
    print(f"(d) RSS after each trial (MiB): {', '.join(f'{x:.0f}' for x in tune['rss'])}")
    print(
        f"    largest deviation from the first: {worst:.1%} (target <= 5%)  {_verdict(worst <= 0.05)}; "
        f"peak RSS {tune['peak_rss']:.0f} MiB"
    )
    print(f"    trial outcomes: {', '.join(tune['states'])}")


if __name__ == "__main__":
    main()
