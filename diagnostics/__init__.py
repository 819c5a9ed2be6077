"""Loss-curve diagnosis for fine-tuning runs: readers -> RunLog -> statistics -> rules -> advice."""

from diagnostics.engine import RunFailure, diagnose, diagnose_path
from diagnostics.findings import Abstention, Diagnosis, Finding, Fix
from diagnostics.runlog import LogPoint, RunConfig, RunLog, Series

__all__ = [
    "Abstention",
    "Diagnosis",
    "Finding",
    "Fix",
    "LogPoint",
    "RunConfig",
    "RunFailure",
    "RunLog",
    "Series",
    "diagnose",
    "diagnose_path",
]
