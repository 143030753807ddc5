"""`ablate serve` (and `python deployments/serve.py`): the deployments of deployments/prefect.yaml served from
this one process with Prefect's `serve`, for a single machine without a work pool or worker.

The YAML file is the one source: names, entrypoints, schedules, parameters and concurrency are read from it, so
served and deployed flows cannot drift apart.
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from pathlib import Path

PREFECT_YAML = Path(__file__).resolve().parents[1] / "deployments" / "prefect.yaml"


def load_deployments(path: Path = PREFECT_YAML) -> list[dict]:
    """The deployment entries of a prefect.yaml."""
    import yaml  # PyYAML, installed with Prefect

    return yaml.safe_load(path.read_text())["deployments"]


def load_flow(entrypoint: str):
    """"flows/ablation.py:ablation" -> the flow object, imported as a module of this project."""
    file, name = entrypoint.split(":")
    module = importlib.import_module(file.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def runner_deployments(path: Path = PREFECT_YAML) -> list:
    """Each YAML deployment as a `RunnerDeployment` for `serve`, with its schedules, parameters and limit."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    deployments = []
    for entry in load_deployments(path):
        schedules = entry.get("schedules") or []
        limit = entry.get("concurrency_limit")
        deployments.append(load_flow(entry["entrypoint"]).to_deployment(
            name=entry["name"], description=entry.get("description"), tags=entry.get("tags"),
            parameters=entry.get("parameters") or {},
            schedules=[_schedule(s) for s in schedules],
            concurrency_limit=ConcurrencyLimitConfig(**limit) if isinstance(limit, dict) else limit,
            enforce_parameter_schema=entry.get("enforce_parameter_schema", True)))
    return deployments


def _schedule(entry: dict):
    from prefect.schedules import Cron, Interval

    if "cron" in entry:
        return Cron(entry["cron"], timezone=entry.get("timezone"))
    return Interval(timedelta(seconds=entry["interval"]), timezone=entry.get("timezone"))


def serve_all(path: Path = PREFECT_YAML) -> None:
    """Register every deployment and run their scheduled and triggered runs here until Ctrl-C."""
    from prefect import serve

    serve(*runner_deployments(path))
