"""Render the run's report: one self-contained HTML page whose first screen is the verdict.

Plots are PNGs embedded as base64 data URIs and the style is inline, so the file can be mailed or archived
alone; the only links are relative ones to files beside it (results.csv, history.csv, the Data Docs).
"""

from __future__ import annotations

import math
from html import escape

import numpy as np
import pandas as pd

from tasks.data.datasets import Dataset
from tasks.gate.expectations import GateResult
from tasks.report.aggregate import HELPS, HURTS, Verdict, axes_in, axis_rows
from tasks.report.comparison import comparison_section
from tasks.report.explain import gate_links
from tasks.report.gate_section import ImageDrawer, gate_section
from tasks.report.plots import figure_png, pyplot
from tasks.training.grid import BASELINE_AXIS, baseline_value

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
dl.facts{display:flex;flex-wrap:wrap;gap:.5em 2em;margin:.4em 0}dl.facts dt{font-size:.8em;color:#556}
dl.facts dd{margin:0;font-size:1.15em;font-weight:600}
@media (max-width:600px){body{padding:.7em;font-size:14px}h1{font-size:1.25em}}
@media print{body{max-width:none;padding:0}h2{break-after:avoid}img,table,figure,.check{break-inside:avoid}
a{color:inherit;text-decoration:none}.scroll{overflow:visible}}
"""


def render_report(run: dict, gate: GateResult | None, summary: pd.DataFrame | None, verdict: Verdict | None,
                  curves: dict | None, results: pd.DataFrame | None, data: Dataset | None = None,
                  diagnoses: dict | None = None, predictions: dict | None = None) -> str:
    """The whole page. ``run`` holds the run's facts: id, dataset, parameters, timings, error. ``diagnoses``:
    what each variant's curves show (`tasks.report.diagnose`); ``predictions``: each cell's class per validation image
    (`tasks.report.comparison`)."""
    parts = [f"<h1>Why isn't the model improving? &mdash; {escape(run['dataset'])}</h1>",
             f"<p class=muted>run {escape(run['run_id'])} &middot; {escape(run.get('started', ''))}</p>",
             _verdict_html(run, gate, verdict, summary)]
    drawer = ImageDrawer(data) if data is not None else None  # one value range for every thumbnail
    parts.append(_dataset_html(run, gate, data, drawer))
    if summary is not None and results is not None:
        for axis in axes_in(summary):
            parts.append(_axis_html(axis, summary, curves or {}, diagnoses or {}))
        if verdict is not None and predictions and data is not None:
            parts.append(comparison_section(verdict, summary, predictions, data, drawer))
        parts.append(_runs_html(results))
    parts.append(_timing_html(run))
    body = "\n".join(parts)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><title>Ablation report: "
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
    return (f"<div class='verdict{tone}'><p class=headline>{escape(verdict.headline)}</p>"
            f"{_key_facts(gate, verdict, summary)}<ul>{''.join(items)}</ul>"
            f"{notes}<p class=muted>Effects are mean paired differences in best validation accuracy against the "
            f"baseline over shared seeds, with 95% t-intervals and a paired test (exact permutation for up to 12 "
            f"seeds); a change is said to help or hurt only when its interval excludes zero. With n seeds the exact "
            f"test cannot go below p = 2/2<sup>n</sup> (0.25 for 3 seeds): add seeds for it to agree.</p></div>")


def _key_facts(gate: GateResult | None, verdict: Verdict, summary: pd.DataFrame | None) -> str:
    """The first screen's three numbers: the gate's status, the baseline's accuracy, the best change's gain."""
    facts = [("data-quality gate", gate.status if gate else "not run")]
    base = summary[summary["axis"] == BASELINE_AXIS].to_dict("records") if summary is not None else []
    if base:
        facts.append(("baseline best val accuracy", _mean_ci(base[0], "best")))
    if verdict.helps:
        best = verdict.helps[0]
        facts.append((f"best change: {escape(best['variant'])}", f"{best['delta'] * 100:+.1f} points "
                      f"<small>[{best['ci_low'] * 100:+.1f}, {best['ci_high'] * 100:+.1f}]</small>"))
    else:
        facts.append(("best change", "none clearly better than the baseline"))
    return "<dl class=facts>" + "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts) + "</dl>"


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


def _dataset_html(run: dict, gate: GateResult | None, data: Dataset | None,
                  drawer: ImageDrawer | None = None) -> str:
    facts = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                    for k, v in (run.get("data") or {}).items())
    html = f"<h2>Dataset</h2><table>{facts}</table>"
    return html + (gate_section(gate, data, run.get("data_docs_link"), drawer) if gate is not None else "")


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
    plot, effect = _curves_png(axis, summary, curves), _effect_png(axis, summary)
    return (f"<h2>{escape(axis.replace('_', ' ').capitalize())}</h2><div class=scroll><table><tr><th>variant</th>"
            f"<th>seeds</th><th>best val acc [95% CI]</th><th>sd</th><th>final val acc [95% CI]</th>"
            f"<th>&Delta; vs baseline [95% CI]</th><th>p</th><th>effect</th><th>s per run</th></tr>{''.join(rows)}"
            f"</table></div>" + (f"<ul class=diagnoses>{''.join(found)}</ul>" if found else "")
            + (f"<img alt='effect of each {escape(axis)} variant' src='data:image/png;base64,{effect}'>"
               if effect else "")
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
    """Accuracy and loss per epoch, one colour per variant: validation solid with the band its seeds span,
    training dashed (means over seeds)."""
    variants = [(r["axis"], r["variant"]) for r in axis_rows(summary, axis).to_dict("records")]
    variants = [v for v in variants if v in curves]
    if not variants:
        return None
    fig, panels = pyplot().subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for i, key in enumerate(variants):
        label = f"{baseline_value(axis)} (baseline)" if key[0] == BASELINE_AXIS else key[1]
        for panel, metric in zip(panels, ("accuracy", "loss")):
            curve = curves[key]
            epochs = np.arange(1, len(curve[f"val_{metric}"]) + 1)
            panel.plot(epochs, curve[f"val_{metric}"], color=f"C{i}", label=label)
            panel.fill_between(epochs, curve[f"val_{metric}_low"], curve[f"val_{metric}_high"], color=f"C{i}",
                               alpha=0.15, linewidth=0)
            panel.plot(epochs, curve[metric], color=f"C{i}", linestyle="--", alpha=0.6)
    for panel, metric in zip(panels, ("accuracy", "loss")):
        panel.set(xlabel="epoch", ylabel=metric, title=f"{metric}: validation (band: seeds), training dashed")
        panel.xaxis.get_major_locator().set_params(integer=True)
        panel.grid(alpha=0.3)
    panels[0].legend(fontsize=8, loc="lower right")
    return figure_png(fig)


def _effect_png(axis: str, summary: pd.DataFrame) -> str | None:
    """Each variant's paired difference from the baseline with its 95% interval, against a line at zero."""
    rows = [r for r in axis_rows(summary, axis).to_dict("records")
            if r["axis"] != BASELINE_AXIS and not math.isnan(r.get("delta", math.nan))]
    if not rows:
        return None
    fig, ax = pyplot().subplots(figsize=(7.5, 0.55 * len(rows) + 1.1), dpi=100)
    for y, row in enumerate(rows):
        colour = {HELPS: "#17692c", HURTS: "#a22"}.get(row["effect"], "#556")
        low, high = row["ci_low"], row["ci_high"]
        if not math.isnan(low):
            ax.plot([low * 100, high * 100], [y, y], color=colour, linewidth=2)
        ax.plot(row["delta"] * 100, y, "o", color=colour)
    ax.axvline(0, color="#889", linewidth=1)
    ax.set_yticks(range(len(rows)), [r["variant"] for r in rows])
    ax.invert_yaxis()
    ax.set(xlabel="change in best validation accuracy vs baseline (points, 95% CI)")
    ax.grid(axis="x", alpha=0.3)
    return figure_png(fig)


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


def verdict_markdown(verdict: Verdict, gate_status: str | None, report: str) -> str:
    """The verdict for Prefect's UI (a markdown artifact): the headline, each effect with its interval, the link."""
    def line(row: dict) -> str:
        interval = ("" if math.isnan(row["ci_low"])
                    else f" (95% CI {row['ci_low'] * 100:+.1f} to {row['ci_high'] * 100:+.1f})")
        return (f"- **{row['variant']}** ({row['axis'].replace('_', ' ')}): {row['effect']}, "
                f"{row['delta'] * 100:+.1f} points{interval}")
    lines = [f"### {verdict.headline}", "", f"Data-quality gate: **{gate_status or 'not run'}**", ""]
    lines += [line(row) for row in verdict.helps + verdict.hurts + verdict.unclear]
    if verdict.control is not None:
        lines.append(f"- A/A control: {line(verdict.control).removeprefix('- ')}")
    lines += [""] + verdict.notes + ["", f"Report: `{report}`"]
    return "\n".join(lines)
