"""Read a gate suite file (TOML): which checks run, their severities and thresholds, all validated up front.

The default suite is `tasks/gate/gate_suite.toml`, versioned with the code. A user's suite is checked key by key,
so a typo is a one-line error naming the key and what is allowed, not a check that silently never runs.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from tasks.errors import AblationError
from tasks.gate.checks import CHECKS, CRITICAL, OFF, WARNING
from tasks.gate.near_copies import MAX_DISTANCE

DEFAULT_SUITE = Path(__file__).with_name("gate_suite.toml")
SEVERITIES = (CRITICAL, WARNING, OFF)
# (exclusive low, inclusive high, whole number) for settings whose meaning bounds them; others are positive.
PARAM_RANGES = {
    "min_brightest_level": (0, 1, False), "max_darkest_level": (0, 1, False),
    "max_ratio": (1, float("inf"), False), "max_factor": (1, float("inf"), False), "bins": (1, 1000, True),
    "max_distance": (0, 1, False), "critical_share": (0, 1, False),
}
# Settings added after suites were in use: a suite written before them still loads, with these values.
PARAM_DEFAULTS = {"max_distance": MAX_DISTANCE, "critical_share": 0.01}


class SuiteError(AblationError):
    """The suite file is missing, not TOML, or names an unknown check, setting or severity (exit code 2)."""


def load_suite(path: str | Path | None = None) -> dict:
    """{"name", "version", "path", "checks": {check: {"severity", thresholds...}}} from a suite file."""
    path = Path(path) if path else DEFAULT_SUITE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SuiteError(f"cannot read suite {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SuiteError(f"suite {path} is not valid TOML: {exc}") from None
    name, version = raw.pop("name", path.stem), raw.pop("version", None)
    if not isinstance(version, int):
        raise SuiteError(f"suite {path}: 'version' must be a whole number (bump it when you edit the suite)")
    checks = {key: _check_settings(path, key, value) for key, value in raw.items()}
    if not checks:
        raise SuiteError(f"suite {path} has no checks (known: {', '.join(CHECKS)})")
    return {"name": str(name), "version": version, "path": str(path), "checks": checks}


def _check_settings(path: Path, key: str, value) -> dict:
    if key not in CHECKS:
        raise SuiteError(f"suite {path}: unknown check [{key}] (known: {', '.join(CHECKS)})")
    if not isinstance(value, dict):
        raise SuiteError(f"suite {path}: [{key}] must be a table with a severity")
    settings = dict(value)
    severity = settings.pop("severity", None)
    if severity not in SEVERITIES:
        raise SuiteError(f"suite {path}: [{key}] severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    params = CHECKS[key].params
    unknown = sorted(set(settings) - set(params))
    if unknown:
        allowed = ", ".join(("severity", *params))
        raise SuiteError(f"suite {path}: [{key}] has unknown setting {unknown[0]!r} (allowed: {allowed})")
    settings = {p: PARAM_DEFAULTS[p] for p in params if p not in settings and p in PARAM_DEFAULTS} | settings
    missing = [p for p in params if p not in settings]
    if missing:
        raise SuiteError(f"suite {path}: [{key}] needs {', '.join(missing)}")
    for param, number in settings.items():
        low, high, whole = PARAM_RANGES.get(param, (0, float("inf"), False))
        if (isinstance(number, bool) or not isinstance(number, (int, float)) or not low < number <= high
                or (whole and number != int(number))):
            kind = "a whole number" if whole else "a number"
            raise SuiteError(f"suite {path}: [{key}] {param} must be {kind} above {low:g}"
                             + (f" and at most {high:g}" if high < float("inf") else "") + f", got {number!r}")
    return {"severity": severity, **settings}
