"""Render the run's report: one self-contained HTML page whose first screen is the verdict.

Plots are PNGs embedded as base64 data URIs and the style is inline, so the file can be mailed or archived
alone; the only links are relative ones to files beside it (results.csv, history.csv, the Data Docs).
"""

from __future__ import annotations

import base64
import io
import math
from html import escape

import numpy as np
import pandas as pd

from tasks.aggregate import HELPS, HURTS, Verdict, axis_rows
from tasks.datasets import Dataset
from tasks.explain import gate_links
from tasks.gate import GateResult
from tasks.gate_report import gate_section
from tasks.grid import AXES, BASELINE_AXIS, baseline_value

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1.5em;color:#1d232a}
h1{font-size:1.5em;margin:.2em 0}h2{margin-top:2em;border-bottom:1px solid #dde}small,.muted{color:#667}
.verdict{border-radius:8px;padding:1em 1.3em;margin:1em 0;background:#eef6ee;border:1px solid #9c9}
.verdict.fail{background:#fbecec;border-color:#d99}.verdict.flat{background:#f3f4f7;border-color:#bbc}
.verdict p.headline{font-size:1.25em;font-weight:600;margin:.2em 0 .6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}td,th{padding:.3em .7em;border-bottom:1px solid #e3e3ea;
text-align:left;vertical-align:top}th{background:#f5f6f9}td.num{text-align:right;font-variant-numeric:tabular-nums}
.helps{color:#17692c;font-weight:600}.hurts{color:#a22;font-weight:600}.critical{color:#a22}.warning{color:#8a5a00}
.pass{color:#17692c}img{max-width:100%}code{background:#f3f3f6;padding:0 .25em;border-radius:3px}
.check{border-left:4px solid #d99;padding:.1em 1em;margin:1em 0}.check.warning-box{border-color:#e5c07b}
.check h3{margin:.3em 0;font-size:1.05em}.thumbs{display:flex;flex-wrap:wrap;gap:.6em}
figure{margin:0;max-width:110px;font-size:.75em;overflow-wrap:anywhere}figure img{width:72px;image-rendering:pixelated;
border:1px solid #ccd}figure.nopixels{border:1px dashed #ccd;padding:.3em}
img.strip{height:48px;image-rendering:pixelated}
table.samples th{font-weight:600;overflow-wrap:anywhere;max-width:14em}details{margin:1em 0}
.scroll{overflow-x:auto}
"""


def render_report(run: dict, gate: GateResult | None, summary: pd.DataFrame | None, verdict: Verdict | None,
                  curves: dict | None, results: pd.DataFrame | None, data: Dataset | None = None,
                  diagnoses: dict | None = None) -> str:
    """The whole page. ``run`` holds the run's facts: id, dataset, parameters, timings, error. ``diagnoses``:
    what each variant's curves show (`tasks.diagnose`)."""
    parts = [f"<h1>Why isn't the model improving? &mdash; {escape(run['dataset'])}</h1>",
             f"<p class=muted>run {escape(run['run_id'])} &middot; {escape(run.get('started', ''))}</p>",
             _verdict_html(run, gate, verdict, summary)]
    parts.append(_dataset_html(run, gate, data))
    if summary is not None and results is not None:
        for axis in AXES:
            if (summary["axis"] == axis).any():
                parts.append(_axis_html(axis, summary, curves or {}, diagnoses or {}))
        parts.append(_runs_html(results))
    parts.append(_timing_html(run))
    body = "\n".join(parts)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Ablation report: "
            f"{escape(run['dataset'])}</title><style>{STYLE}</style></head><body>{body}</body></html>")


def _verdict_html(run: dict, gate: GateResult | None, verdict: Verdict | None,
                  summary: pd.DataFrame | None = None) -> str:
    if verdict is None:
        return _gate_verdict_html(run, gate)
    items = [f"<li class=helps>{_effect_line(r)}</li>" for r in verdict.helps]
    items += [f"<li class=hurts>{_effect_line(r)}</li>" for r in verdict.hurts]
    if verdict.unclear:
        names = ", ".join(escape(f"{r['variant']}") for r in verdict.unclear)
        items.append(f"<li>No clear difference from the baseline: {names}.</li>")
    if verdict.control is not None:
        expected = "as it should" if verdict.control["effect"] not in (HELPS, HURTS) else "which it should not"
        items.append(f"<li>A/A control, the baseline trained twice: {_effect_line(verdict.control)}, "
                     f"{expected}.</li>")
    failed = {c.name for c in gate.failed} if gate else set()
    notes = "".join(f"<p>{escape(n)}</p>" for n in gate_links(failed, summary))
    notes += "".join(f"<p class=muted>{escape(n)}</p>" for n in verdict.notes)
    tone = "" if verdict.helps else " flat"
    return (f"<div class='verdict{tone}'><p class=headline>{escape(verdict.headline)}</p><ul>{''.join(items)}</ul>"
            f"{notes}<p class=muted>Effects are mean paired differences in best validation accuracy against the "
            f"baseline over shared seeds, with 95% t-intervals and a paired test (exact permutation for up to 12 "
            f"seeds); a change is said to help or hurt only when its interval excludes zero.</p></div>")


def _gate_verdict_html(run: dict, gate: GateResult | None) -> str:
    """The first screen when nothing was trained: the gate stopped the run, or only the gate was asked for."""
    problems = sorted(gate.failed if gate else [], key=lambda c: c.severity != "critical")
    failed = "".join(f"<li><b class={c.severity}>{escape(c.title)}</b> ({c.severity}): {escape(c.observed)}.</li>"
                     for c in problems)
    if run["status"] == "gate failed":
        return (f"<div class='verdict fail'><p class=headline>Training did not run: {escape(run['error'])}.</p>"
                f"<ul>{failed}</ul><p>Fix the data (the offending images are listed below), or rerun with "
                f"<code>--gate warn</code> to train anyway.</p></div>")
    status = gate.status if gate else "not run"
    tone = {"pass": "", "warn": " flat"}.get(status, " fail")
    headline = {"pass": "The data passed every check.", "warn": "The data passed, with warnings."}.get(
        status, "The data failed critical checks: fix them before training.")
    return f"<div class='verdict{tone}'><p class=headline>{headline}</p><ul>{failed}</ul></div>"


def _effect_line(row: dict) -> str:
    word = "helps" if row["effect"] == HELPS else "hurts" if row["effect"] == HURTS else row["effect"]
    interval = ("no interval" if math.isnan(row["ci_low"])
                else f"95% CI {row['ci_low'] * 100:+.1f} to {row['ci_high'] * 100:+.1f}")
    test = f", {row['test']} p = {row['p_value']:.2g}" if row.get("test") else ""
    return (f"{escape(row['variant'])} <small>({escape(row['axis'].replace('_', ' '))})</small> {word}: "
            f"{row['delta'] * 100:+.1f} points ({interval}{test}, {int(row['pairs'])} seeds)")


def _dataset_html(run: dict, gate: GateResult | None, data: Dataset | None) -> str:
    facts = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                    for k, v in (run.get("data") or {}).items())
    html = f"<h2>Dataset</h2><table>{facts}</table>"
    return html + (gate_section(gate, data, run.get("data_docs_link")) if gate is not None else "")


def _axis_html(axis: str, summary: pd.DataFrame, curves: dict, diagnoses: dict) -> str:
    rows, found = [], []
    for row in axis_rows(summary, axis).to_dict("records"):
        is_base = row["axis"] == BASELINE_AXIS
        name = f"{baseline_value(axis) or 'baseline'} (baseline)" if is_base else row["variant"]
        delta = "" if is_base else _delta_cell(row)
        effect = "" if is_base else f"<span class={row['effect'].split()[0]}>{escape(row['effect'])}</span>"
        test = "" if is_base or not row.get("test") else f"{row['p_value']:.2g} <small>{escape(row['test'])}</small>"
        found += [f"<li><b>{escape(name)}</b>: {escape(d.sentence)}</li>"
                  for d in diagnoses.get((row["axis"], row["variant"]), [])]
        rows.append(f"<tr><td>{escape(name)}</td><td class=num>{row['scored']}/{row['cells']}</td>"
                    f"<td class=num>{_mean_ci(row, 'best')}</td><td class=num>{_pct(row['std_best'])}</td>"
                    f"<td class=num>{_mean_ci(row, 'final')}</td><td class=num>{delta}</td><td>{test}</td>"
                    f"<td>{effect}</td><td class=num>{_seconds(row.get('mean_seconds'))}</td></tr>")
    plot = _curves_png(axis, summary, curves)
    return (f"<h2>{escape(axis.replace('_', ' ').capitalize())}</h2><div class=scroll><table><tr><th>variant</th>"
            f"<th>seeds</th><th>best val acc [95% CI]</th><th>sd</th><th>final val acc [95% CI]</th>"
            f"<th>&Delta; vs baseline [95% CI]</th><th>p</th><th>effect</th><th>s per run</th></tr>{''.join(rows)}"
            f"</table></div>" + (f"<ul class=diagnoses>{''.join(found)}</ul>" if found else "")
            + (f"<img alt='learning curves for {escape(axis)}' src='data:image/png;base64,{plot}'>" if plot else ""))


def _mean_ci(row: dict, which: str) -> str:
    low, high = row[f"{which}_ci_low"], row[f"{which}_ci_high"]
    interval = "" if math.isnan(low) else f" <small>[{low * 100:.1f}, {high * 100:.1f}]</small>"
    return _pct(row[f"mean_{which}"]) + interval


def _seconds(value) -> str:
    return "&ndash;" if value is None or math.isnan(value) else f"{value:.1f}"


def _delta_cell(row: dict) -> str:
    if math.isnan(row["delta"]):
        return "&ndash;"
    interval = "" if math.isnan(row["ci_low"]) else f" [{row['ci_low'] * 100:+.1f}, {row['ci_high'] * 100:+.1f}]"
    return f"{row['delta'] * 100:+.1f}{interval}"


def _pct(value: float) -> str:
    return "&ndash;" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * 100:.1f}%"


def _curves_png(axis: str, summary: pd.DataFrame, curves: dict) -> str | None:
    """Mean train (dashed) and validation (solid) accuracy per epoch, one colour per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [(r["axis"], r["variant"]) for r in axis_rows(summary, axis).to_dict("records")]
    variants = [v for v in variants if v in curves]
    if not variants:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=100)
    for i, key in enumerate(variants):
        label = f"{baseline_value(axis)} (baseline)" if key[0] == BASELINE_AXIS else key[1]
        epochs = np.arange(1, len(curves[key]["val_accuracy"]) + 1)
        ax.plot(epochs, curves[key]["val_accuracy"], color=f"C{i}", label=label)
        ax.plot(epochs, curves[key]["accuracy"], color=f"C{i}", linestyle="--", alpha=0.6)
    ax.set(xlabel="epoch", ylabel="accuracy (mean over seeds)", title="validation (solid) and training (dashed)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _runs_html(results: pd.DataFrame) -> str:
    rows = "".join(
        f"<tr><td>{escape(r['axis'])}</td><td>{escape(r['variant'])}</td><td class=num>{r['seed']}</td>"
        f"<td>{escape(r['status'])}{' (cached)' if r.get('cached') is True else ''}</td>"
        f"<td class=num>{_pct(r['best_val_accuracy'])}</td>"
        f"<td class=num>{_pct(r['final_val_accuracy'])}</td><td class=num>{_pct(r['final_train_accuracy'])}</td>"
        f"<td class=num>{r['epochs']}</td><td class=num>{r['seconds']:.1f}</td><td>{escape(str(r['error'] or ''))}</td></tr>"
        for r in results.fillna({"error": ""}).to_dict("records"))
    return (f"<h2>All training runs</h2><p><a href='results.csv'>results.csv</a> (one row per run) &middot; "
            f"<a href='history.csv'>history.csv</a> (one row per run and epoch)</p><div class=scroll><table><tr>"
            f"<th>axis</th><th>variant</th><th>seed</th><th>status</th><th>best val</th><th>final val</th><th>final train</th>"
            f"<th>epochs</th><th>s</th><th>error</th></tr>{rows}</table></div>")


def _timing_html(run: dict) -> str:
    """Run facts: where and on what it ran, its Prefect flow run, when, how long each stage took."""
    timings = run.get("timings") or {}
    cells = "".join(f"<tr><th>{escape(k)}</th><td class=num>{v:.1f}{'' if k == 'slots' else ' s'}</td></tr>"
                    for k, v in timings.items())
    facts = {"started": run.get("started", ""), "Prefect flow run": run.get("flow_run_id", "")}
    facts |= run.get("environment") or {}
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in facts.items() if v)
    params = escape(", ".join(f"{k}={v}" for k, v in (run.get("parameters") or {}).items()))
    return f"<h2>Run</h2><table>{rows}</table><p class=muted>{params}</p><table>{cells}</table>"
