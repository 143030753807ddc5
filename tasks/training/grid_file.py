"""A grid file (`ablate run --grid ablation.toml`, or .yaml): the baseline, the axes and their values, seeds and
the mode, validated with pydantic so that a typo is one line naming the key and what is allowed.

    seeds = 3                      # or "auto": rounds of seeds until each change is settled
    max_seeds = 10                 # with seeds = "auto": the most seeds a variant gets
    mode = "one-factor"            # or "factorial"
    factorial = ["learning_rate", "dropout"]   # factorial mode: the axes to cross (default: every axis)

    [baseline]                     # any training setting; unset ones keep the built-in baseline's value
    epochs = 10
    learning_rate = 1e-3

    [axes]                         # a setting and the values to try
    learning_rate = [1e-2, 1e-3, 1e-4]
    optimizer = ["sgd", "adam", "adamw"]

One-factor mode changes one setting at a time around the baseline; factorial mode trains every combination of
the chosen axes (the others at the baseline). Either way the baseline is trained once per seed and shared.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from tasks.errors import AblationError
from tasks.training.grid import (AA_AXIS, AA_VARIANT, AUGMENTATIONS, AXES, BASELINE, BASELINE_AXIS,
                                 DEFAULT_MAX_SEEDS, FIRST_LOOK, LR_SCHEDULES, MODEL_SPEC, NORMALIZATIONS, OPTIMIZERS,
                                 SPELLINGS, VALUE_SPELLINGS, Cell, TrainConfig, Variant, seeded)

FACTORIAL_AXIS = "factorial"
MAX_CELLS = 10_000  # a factorial grid past this is a typo, not a plan


class GridFileError(AblationError):
    """The grid file cannot be read or does not validate (exit code 2)."""


class Settings(BaseModel):
    """Every training setting a grid file may set, with the values it may take."""

    model_config = ConfigDict(extra="forbid")

    epochs: Annotated[int, Field(ge=1, le=10_000)] = BASELINE.max_epochs
    normalization: Literal[NORMALIZATIONS] = BASELINE.normalization  # type: ignore[valid-type]
    conv_filters: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] = list(BASELINE.conv_filters)
    dense_units: Annotated[int, Field(ge=0)] = BASELINE.dense_units
    learning_rate: Annotated[float, Field(gt=0, le=10)] = BASELINE.learning_rate
    dropout: Annotated[float, Field(ge=0, lt=1)] = BASELINE.dropout
    batch_size: Annotated[int, Field(ge=1)] = BASELINE.batch_size
    patience: Annotated[int, Field(ge=1)] = BASELINE.patience
    early_stopping: bool = BASELINE.early_stopping
    optimizer: Literal[OPTIMIZERS] = BASELINE.optimizer  # type: ignore[valid-type]
    weight_decay: Annotated[float, Field(ge=0, lt=1)] = BASELINE.weight_decay
    lr_schedule: Literal[LR_SCHEDULES] = BASELINE.lr_schedule  # type: ignore[valid-type]
    warmup_epochs: Annotated[int, Field(ge=0)] = BASELINE.warmup_epochs
    batch_norm: bool = BASELINE.batch_norm
    augmentation: list[Literal[AUGMENTATIONS]] = list(BASELINE.augmentation)  # type: ignore[valid-type]
    width: Annotated[float, Field(gt=0, le=16)] = BASELINE.width
    input_scale: Annotated[float, Field(gt=0, le=8)] = BASELINE.input_scale
    model: Annotated[str, Field(pattern=f"^$|{MODEL_SPEC}")] = BASELINE.model  # "" or "package.module:function"

    @model_validator(mode="after")
    def _possible(self) -> Settings:
        if self.warmup_epochs and self.lr_schedule != "cosine":
            raise ValueError("warmup_epochs needs lr_schedule = \"cosine\"")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be fewer than epochs ({self.epochs})")
        return self

    def config(self) -> TrainConfig:
        values = self.model_dump()
        values["max_epochs"] = values.pop("epochs")
        return replace(BASELINE, **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


SETTINGS = tuple(Settings.model_fields)


class GridFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seeds: int | Literal["auto"] = 3  # checked by _seeds, for one message rather than one per type
    max_seeds: Annotated[int, Field(ge=FIRST_LOOK, le=100)] | None = None
    mode: Literal["one-factor", "factorial"] = "one-factor"
    factorial: list[str] | None = None
    baseline: Settings = Settings()
    axes: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(min_length=1)

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise ValueError(f"expected a whole number from 1 to 100, or \"auto\"; got {value!r}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, raw: Any) -> Any:
        """Settings and values in either spelling ("normalisation", "standardise") become the project's own,
        before anything else reads them, so variants are named alike whichever the file uses."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        for table in ("baseline", "axes"):
            if isinstance(raw.get(table), dict):
                raw[table] = _respelled(raw[table], table)
        if isinstance(raw.get("factorial"), list):
            raw["factorial"] = [SPELLINGS.get(name, name) if isinstance(name, str) else name
                                for name in raw["factorial"]]
        return raw

    @model_validator(mode="after")
    def _axes_are_settings(self) -> GridFile:
        if self.max_seeds is not None and self.seeds != "auto":
            raise ValueError("max_seeds needs seeds = \"auto\"")
        unknown = [axis for axis in self.axes if axis not in SETTINGS]
        if unknown:
            raise ValueError(f"unknown axis {', '.join(unknown)}; allowed: {', '.join(SETTINGS)}")
        if self.factorial is not None:
            if self.mode != "factorial":
                raise ValueError("factorial lists axes to cross: it needs mode = \"factorial\"")
            missing = [axis for axis in self.factorial if axis not in self.axes]
            if missing:
                raise ValueError(f"factorial names {', '.join(missing)}, which [axes] does not list")
        return self

    def variants(self) -> list[tuple[str, str, TrainConfig]]:
        """(axis, variant name, config) for the baseline and every variant, validated value by value."""
        base = self.baseline.config()
        choices = {axis: [(value, self._with(axis, value)) for value in values] for axis, values in self.axes.items()}
        found = [(BASELINE_AXIS, BASELINE_AXIS, base)]
        if self.mode == "one-factor":
            for axis, options in choices.items():
                found += [(axis, _name(axis, value), config) for value, config in options if config != base]
            return _unique(found)
        crossed = self.factorial or list(self.axes)
        for combination in itertools.product(*(self.axes[axis] for axis in crossed)):
            changes = dict(zip(crossed, combination))
            config = self._with_all(changes)
            if config != base:
                found.append((FACTORIAL_AXIS, ", ".join(_name(a, v) for a, v in changes.items()), config))
        return _unique(found)

    def _with(self, axis: str, value: Any) -> TrainConfig:
        return self._with_all({axis: value})

    def _with_all(self, changes: dict[str, Any]) -> TrainConfig:
        try:
            return Settings(**self.baseline.model_dump() | changes).config()
        except ValidationError as exc:
            raise ValueError(_one_line(exc, prefix="axes")) from None


def load_grid(path: str | Path) -> GridFile:
    """Read and validate a grid file (.toml, .yaml or .yml); every problem is a GridFileError of one line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise GridFileError(f"--grid {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text)
        else:
            raw = tomllib.loads(text)
    except Exception as exc:  # tomllib.TOMLDecodeError, yaml.YAMLError: a syntax error, with its place
        mark = getattr(exc, "problem_mark", None)  # YAML's place of the problem; TOML's message holds its own
        detail = (f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None
                  else str(exc).splitlines()[0])
        raise GridFileError(f"--grid {path}: not valid {'TOML' if path.suffix.lower() == '.toml' else 'YAML'}: "
                            f"{detail}") from None
    if not isinstance(raw, dict):
        raise GridFileError(f"--grid {path}: expected a table of settings at the top")
    try:
        grid = GridFile(**raw)
        grid_cells(grid)  # every value of every axis must build a valid config
    except ValidationError as exc:
        raise GridFileError(f"--grid {path}: {_one_line(exc)}") from None
    except ValueError as exc:
        raise GridFileError(f"--grid {path}: {exc}") from None
    return grid


def parse_setting(text: str) -> tuple[str, Any]:
    """``--set SETTING=VALUE``: the value as TOML reads it (``0.001``, ``true``, ``[32, 64]``, ``"adamw"``),
    or the bare text (``standardize``); the setting in either spelling. Raises ValueError in one line."""
    key, equals, raw = (part.strip() for part in text.partition("="))
    if not equals or not key or not raw:
        raise ValueError(f"expected SETTING=VALUE, got {text!r}")
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    ((key, value),) = _respelled({key: value}, "--set").items()
    if key not in SETTINGS:
        raise ValueError(f"unknown setting {key!r}; allowed: {', '.join(SETTINGS)}")
    field = Settings.model_fields[key]
    kind = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    try:  # this setting's type and range alone: how settings go together is checked with all of them
        value = TypeAdapter(kind).validate_python(value)
    except ValidationError as exc:
        raise ValueError(f"{key}: {_one_line(exc)}") from None
    return key, value


def baseline_config(settings: dict[str, Any] | None, epochs: int | None = None) -> TrainConfig:
    """The built-in baseline with ``settings`` (``--set``, or the flow's ``settings``) in place of its own;
    ``epochs`` too, unless the settings already set it (both is an error). GridFileError (exit 2) on a bad set."""
    settings = dict(settings or {})
    if epochs is not None and "epochs" in settings:
        raise GridFileError("epochs is set twice: give --epochs or --set epochs=N, not both")
    try:
        table = _respelled(settings, "--set")
        config = Settings(**table | ({"epochs": epochs} if epochs is not None else {})).config()
    except ValidationError as exc:
        raise GridFileError(f"--set: {_one_line(exc)}") from None
    except ValueError as exc:
        raise GridFileError(str(exc)) from None
    return config


def check_no_conflict(given: dict[str, Any]) -> None:
    """A grid file sets the axes, epochs, seeds and baseline itself: any of them also given (not None) is an
    error that names them, as the caller spells them ("--epochs" on the command line, "epochs" as a flow
    parameter)."""
    names = [name for name, value in given.items() if value is not None]
    if names:
        raise GridFileError(f"a grid file sets the axes, epochs, seeds and baseline itself; drop {', '.join(names)}")


def grid_cells(grid: GridFile, aa: bool = False) -> list[Cell]:
    """The grid's cells: every variant for seeds 0..seeds-1 (up to max_seeds with seeds = "auto"), and the A/A
    control with ``aa``."""
    variants = grid_variants(grid, aa)
    return seeded(variants, range(grid.max_seeds or DEFAULT_MAX_SEEDS if grid.seeds == "auto" else grid.seeds))


def grid_variants(grid: GridFile, aa: bool = False) -> list[Variant]:
    variants = grid.variants()
    if aa:
        variants.append((AA_AXIS, AA_VARIANT, replace(variants[0][2], run_copy=1)))
    most = grid.max_seeds or DEFAULT_MAX_SEEDS if grid.seeds == "auto" else grid.seeds
    if len(variants) * most > MAX_CELLS:
        raise ValueError(f"{len(variants) * most} cells is more than {MAX_CELLS}: cross fewer axes")
    return variants


def settings_of(config: TrainConfig, was: TrainConfig = BASELINE) -> dict[str, Any]:
    """A config as a grid file's settings: epochs, then each setting the built-in baseline does not share, and
    each that differs from ``was`` (so a change back to a built-in value is still written out)."""
    values: dict[str, Any] = {"epochs": config.max_epochs}
    for name in SETTINGS[1:]:
        value = getattr(config, name)
        if value != getattr(BASELINE, name) or value != getattr(was, name):
            values[name] = list(value) if isinstance(value, tuple) else value
    return values


def builtin_axes(axes: list[str]) -> dict[str, list[Any]]:
    """Built-in axes as a grid file's [axes]: one axis per setting they change, with every value they try
    ("depth" becomes conv_filters and dense_units)."""
    found: dict[str, list[Any]] = {}
    for axis in axes:
        for change in AXES[axis].values():
            for name, value in change.items():
                value = list(value) if isinstance(value, tuple) else value
                if value not in found.setdefault(name, []):
                    found[name].append(value)
    return found


def follow_up(config: TrainConfig, axes: dict[str, list[Any]], seeds: int | str, max_seeds: int | None,
              mode: str = "one-factor", factorial: list[str] | None = None, header: str = "",
              was: TrainConfig = BASELINE) -> str:
    """A grid file (TOML) whose baseline is ``config``, with the same ``axes``, seeds and mode: the next round
    of the user's search. A value that cannot be tried around this baseline (a warm-up without the cosine
    schedule) is dropped, and so is an axis left with none, so the file always loads."""
    baseline = settings_of(config, was)
    centre, kept = Settings(**baseline).config(), {}
    for name, values in axes.items():
        possible = [value for value in values if _valid(baseline | {name: value})]
        if any(Settings(**baseline | {name: value}).config() != centre for value in possible):
            kept[name] = possible
    lines = [f"# {line}".rstrip() for line in header.splitlines()] + [f"seeds = {toml_value(seeds)}"]
    if seeds == "auto" and max_seeds:
        lines.append(f"max_seeds = {max_seeds}")
    lines.append(f"mode = {toml_value(mode)}")
    if factorial and (crossed := [axis for axis in factorial if axis in kept]):
        lines.append(f"factorial = {toml_value(crossed)}")
    lines += ["", "[baseline]"] + [f"{key} = {toml_value(value)}" for key, value in baseline.items()]
    lines += ["", "[axes]"] + [f"{key} = {toml_value(value)}" for key, value in kept.items()]
    return "\n".join(lines) + "\n"


def _valid(settings: dict[str, Any]) -> bool:
    try:
        Settings(**settings)
    except ValidationError:
        return False
    return True


def toml_value(value: Any) -> str:
    """A setting's value as TOML writes it: strings quoted, lists bracketed, floats as Python prints them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _respelled(table: dict, where: str) -> dict:
    """A [baseline] or [axes] table with its keys, and the normalization values, in the project's spelling."""
    respelled, written = {}, {}
    for key, value in table.items():
        name = SPELLINGS.get(key, key) if isinstance(key, str) else key
        if name in respelled:
            raise ValueError(f"{where}: {written[name]} and {key} are the same setting; keep one")
        written[name] = key
        if name == "normalization":
            value = ([VALUE_SPELLINGS.get(v, v) if isinstance(v, str) else v for v in value]
                     if isinstance(value, list) else VALUE_SPELLINGS.get(value, value))
        respelled[name] = value
    return respelled


def _name(axis: str, value: Any) -> str:
    if isinstance(value, list):
        value = "+".join(map(str, value)) or "none"
    return f"{axis} {value}"


def _unique(variants: list[tuple[str, str, TrainConfig]]) -> list[tuple[str, str, TrainConfig]]:
    """Drop a variant whose config another already has (e.g. the same value listed twice)."""
    seen, kept = set(), []
    for axis, name, config in variants:
        if config not in seen:
            seen.add(config)
            kept.append((axis, name, config))
    return kept


def _one_line(exc: ValidationError, prefix: str = "") -> str:
    problems = []
    for error in exc.errors():
        where = ".".join([prefix] * bool(prefix) + [str(part) for part in error["loc"]])
        if error["type"] == "extra_forbidden":
            allowed = SETTINGS if where.startswith("baseline.") else tuple(GridFile.model_fields)
            problems.append(f"{where}: unknown key; allowed: {', '.join(allowed)}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)

