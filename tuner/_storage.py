"""Where studies live: Optuna RDB storage (SQLite by default, PostgreSQL to share), and finding one.

Heartbeats are always on: a trial whose worker died is failed after the grace period and queued
again once (``RetryHeartbeatStaleTrialCallback``), by whichever worker asks for a trial next.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import optuna

DB_FILE = "study.db"
RUNS_DIR = Path("tune_runs")


class StorageError(ValueError):
    """A storage that can't be opened, or a study that isn't there; ``str(e)`` is one line."""


def open_storage(
    url: str, *, heartbeat_interval: int = 30, grace_period: int = 120
) -> optuna.storages.RDBStorage:
    """Optuna RDB storage at ``url`` with heartbeats and retries of a dead worker's trial."""
    url = with_installed_driver(url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)  # Optuna >= 4.9's name
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=retry,
                engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
            )
    except Exception as exc:  # sqlalchemy / driver errors: one line
        raise StorageError(f"cannot open storage {url}: {_one_line(exc)}") from None


def with_installed_driver(url: str) -> str:
    """``postgresql://`` means psycopg 3 to SQLAlchemy 2.1; use psycopg2 when only it is installed."""
    scheme, sep, rest = url.partition("://")
    only_psycopg2 = (
        importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None
    )
    if scheme in ("postgresql", "postgres") and sep and only_psycopg2:
        return f"postgresql+psycopg2://{rest}"
    return url


def find_study(ref: str, storage: str | None = None) -> tuple[optuna.Study, Path]:
    """The study ``ref`` names: a study folder or ``.db`` file, or a study name (in ``storage``, else
    under ``tune_runs/``); and the folder its outputs belong in."""
    name: str | None = None
    if storage is not None:
        url, name, folder = storage, ref, RUNS_DIR / ref
    else:
        path = Path(ref)
        if path.is_file() and path.suffix == ".db":
            db, folder = path, path.parent
        elif path.is_dir():
            db, folder = path / DB_FILE, path
        elif (RUNS_DIR / ref / DB_FILE).is_file():
            db, folder = RUNS_DIR / ref / DB_FILE, RUNS_DIR / ref
        else:
            raise StorageError(
                f"no study at {ref!r}: give a study folder, a .db file, or a name with --storage"
            )
        if not db.is_file():
            raise StorageError(f"{folder}: no {DB_FILE} in this folder")
        url = f"sqlite:///{db.resolve()}"
    url = with_installed_driver(url)
    try:
        names = optuna.get_all_study_names(storage=url)
    except Exception as exc:  # sqlalchemy / driver errors: one line
        raise StorageError(f"cannot open storage {url}: {_one_line(exc)}") from None
    if name is None:
        if len(names) != 1:
            raise StorageError(f"{url} holds {len(names)} studies; name one: tune best NAME --storage {url}")
        name = names[0]
    elif name not in names:
        raise StorageError(f"no study {name!r} in {url} (it has: {', '.join(names) or 'none'})")
    return optuna.load_study(study_name=name, storage=url), folder


def existing_trials(storage: optuna.storages.BaseStorage, name: str) -> int:
    """How many trials the study ``name`` holds (0 when there is no such study yet)."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
