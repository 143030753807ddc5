"""Typed, bounded flow parameters. Prefect validates a run's parameters against these (pydantic) before the flow
body starts, and the deployments enforce the same schema in the UI, so a bad value fails at once with a message
naming the parameter and the allowed range, not minutes later inside a task."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tasks.training.grid import AXES, SPELLINGS

# The built-in axes, from the grid itself, in either spelling ("normalisation" or "normalization"): the flow
# takes the project's own from there on.
Axis = Literal[tuple(AXES) + tuple(SPELLINGS)]  # type: ignore[valid-type]
Epochs = Annotated[int, Field(ge=1, le=10_000, description="epochs per training run")]
Seeds = Annotated[int, Field(ge=1, le=100, description="seeds per variant, or \"auto\": in rounds")]
MaxSeeds = Annotated[int, Field(ge=3, le=100, description="with seeds \"auto\": the most seeds per variant")]
Limit = Annotated[int, Field(ge=1, description="at most this many images per split, stratified")]
HeldOutFraction = Annotated[float, Field(gt=0, lt=1, description="share held out when there is no test split")]
ValFraction = Annotated[float, Field(gt=0, lt=1, description="share of the training split set aside for "
                                                              "validation, per seed")]
Side = Annotated[int, Field(ge=1, le=4096)]
Retries = Annotated[int, Field(ge=0, le=10, description="retries of a cell whose training process crashed")]
Processes = Annotated[int, Field(ge=1, le=512, description="training processes in all")]
PerGpu = Annotated[int, Field(ge=1, le=64, description="training processes per GPU")]
Seconds = Annotated[float, Field(gt=0, description="time limit per cell, in seconds")]
