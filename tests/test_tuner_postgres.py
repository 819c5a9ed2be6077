"""Two ``tune study`` processes on one PostgreSQL study share its trials without duplicates."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests._tuner_helpers import batch_space
from tuner._live import StudyCounts
from tuner._study import open_storage

URL = os.environ.get("TUNE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
N_TRIALS = 6

pytestmark = [pytest.mark.postgres, pytest.mark.slow]  # two processes, ~30-75 s


@pytest.fixture
def storage():
    try:
        storage = open_storage(URL)
        optuna.get_all_study_names(storage)
    except Exception as error:  # no server here: say so rather than fail
        pytest.skip(f"PostgreSQL not reachable at {URL}: {error}")
    return storage


def test_two_processes_share_one_study(tmp_path: Path, storage):
    name = f"tune-test-{uuid.uuid4().hex[:8]}"
    space = batch_space(tmp_path, "lora")
    command = [
        sys.executable, "-m", "tuner.cli", "study", "-q",
        "--model", "tiny-llama", "--max-examples", "48", "--max-steps", "4", "--eval-every", "2",
        "--eval-examples", "8", "--n-trials", str(N_TRIALS), "--space", str(space),
        "--storage", URL, "--study-name", name,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    workers = [
        subprocess.Popen(
            [*command, "--out", str(tmp_path / f"w{i}")], env=env, text=True, stderr=subprocess.PIPE
        )
        for i in range(2)
    ]
    try:
        errors = [w.communicate(timeout=600)[1] for w in workers]
        assert [w.returncode for w in workers] == [0, 0], errors
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        counts = StudyCounts.of(study, N_TRIALS)
        # each worker checks the count before asking for a trial: at most one extra if both ask at once
        assert N_TRIALS <= counts.finished <= N_TRIALS + 1
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        by_worker: dict[str, list[int]] = {}
        for trial in trials:
            by_worker.setdefault(trial.user_attrs["worker"], []).append(trial.number)
        assert len(by_worker) == 2, by_worker  # both did work
        assert sorted(n for numbers in by_worker.values() for n in numbers) == list(range(len(trials)))
        params = [tuple(sorted(t.params.items())) for t in trials]
        assert len(set(params)) == len(params)  # the two samplers did not propose the same trials
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
        optuna.delete_study(study_name=name, storage=storage)
