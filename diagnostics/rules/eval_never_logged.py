"""EVL001 eval-never-logged."""

from __future__ import annotations

from diagnostics.findings import Fix
from diagnostics.rules._base import RuleContext, rule


@rule("EVL001", "eval-never-logged", "insufficient", "info")
def eval_never_logged(ctx: RuleContext):
    """
    ## What it detects
    The run logged training losses but never an eval loss.

    ## Why it matters
    Without held-out loss, overfitting and memorisation cannot be told from learning: a falling
    training loss says nothing about the model you will ship. It is a note; the training curve is
    still diagnosed.

    ## Evidence
    The number of training points and that no `eval_loss` was found. A run configured to evaluate
    every `eval_steps` that ended before its first evaluation is said to have done so, with no fix.

    ## Fix
    Hold out an eval split and evaluate during training: `eval_strategy="steps"` with `eval_steps`
    about a tenth of the run.

    ## References
    transformers TrainingArguments (`eval_strategy`, `eval_steps`).
    """
    s = ctx.stats
    if s.n_eval > 0 or s.n_train == 0:
        return None
    strategy = str(ctx.run.config.get("eval_strategy") or "no").lower()
    every = ctx.run.config.get("eval_steps")
    if strategy == "steps" and isinstance(every, int | float) and every >= 1 and s.last_step < every:
        # Evaluation was set up; the run ended (diverged, was stopped) before its first one.
        return eval_never_logged.finding(
            f"no eval loss logged: the run ended at step {s.last_step:g}, before its first evaluation"
            f" (eval_steps={every:g})",
            confidence=1.0,
            evidence={
                "train_points": s.n_train,
                "eval_points": 0,
                "last_step": s.last_step,
                "eval_steps": every,
            },
        )
    fixes = [
        Fix(
            ctx.vocabulary.eval_strategy_param,
            ctx.run.config.get("eval_strategy", "no"),
            "steps",
            "evaluate during training",
        )
    ]
    if s.total_steps >= 10:
        fixes.append(
            Fix(
                "eval_steps",
                ctx.run.config.get("eval_steps"),
                max(1, int(s.total_steps // 10)),
                "ten evaluations per run",
            )
        )
    return eval_never_logged.finding(
        "no eval loss logged: overfitting cannot be seen",
        confidence=1.0,
        evidence={"train_points": s.n_train, "eval_points": 0},
        fixes=fixes,
    )
