"""``report.html`` of ``cxr-device compare``: one self-contained page (inline style, the ROC figure
embedded), every text from the inputs escaped, no external resource and no script."""
from __future__ import annotations

import html
from pathlib import Path

from .html_report import image, page
from .html_report import table as _table


def _e(value) -> str:
    return html.escape("n/a" if value is None else str(value), quote=True)


def _f(value, signed: bool = False) -> str:
    return "n/a" if value is None else f"{value:+.4f}" if signed else f"{value:.4f}"


def _ci(interval) -> str:
    lo, hi = interval
    return "n/a" if lo is None or hi is None else f"[{lo:+.4f}, {hi:+.4f}]"


def _verdict(met: bool) -> str:
    return '<span class="met">met</span>' if met else '<span class="not">not met</span>'


def _endpoints(document: dict) -> str:
    criteria, rows = document["judgement"]["criteria"], []
    a = document["auroc"]
    rows.append(["AUROC", _f(a["baseline"]), _f(a["candidate"]), _f(a["difference"], True), _ci(a["ci95"]),
                 f"z test p = {_f(a['p_value'])}", *_criterion(criteria.get("auroc")), _e(a["method"])])
    for name in ("sensitivity", "specificity"):
        s = document[name]
        test = f"McNemar exact p = {_f(s['mcnemar']['p_value'])} ({s['mcnemar']['discordant']} discordant)"
        rows.append([name, f"{_f(s['baseline']['value'])} ({s['baseline']['k']}/{s['baseline']['n']})",
                     f"{_f(s['candidate']['value'])} ({s['candidate']['k']}/{s['candidate']['n']})",
                     _f(s["difference"], True), _ci(s["ci95"]), _e(test), *_criterion(criteria.get(name)),
                     _e(s["interval_method"])])
    return _table(["endpoint", "baseline", "candidate", "difference", "95% CI", "test", "margin", "judged",
                   "interval method"], rows)


def _criterion(row: dict | None) -> list[str]:
    return ["none", "not judged"] if row is None else [f"{row['margin']:+g}", _verdict(row["met"])]


def _unscored(refusals: dict) -> str:
    rows = [[_e(who), _e(r["key"]), _e(r["label"]), _e(r["baseline_status"]), _e(r["baseline_reason"]),
             _e(r["candidate_status"]), _e(r["candidate_reason"])]
            for who, key in (("candidate only", "unscored_by_candidate_only"),
                             ("baseline only", "unscored_by_baseline_only"), ("both", "unscored_by_both"))
            for r in refusals[key]]
    if not rows:
        return "<p>Every input was scored by both devices.</p>"
    return _table(["not scored by", "input", "label", "baseline status", "baseline reason", "candidate status",
                   "candidate reason"], rows)


def render_report(document: dict, figure_png: bytes | None) -> str:
    """The HTML text of the report."""
    name, paired = _e(document["name"]), document["paired"]
    judgement, refusals, g = document["judgement"], document["refusals"], document["agreement"]
    intro = (f"<p>Made by <code>cxr-device compare</code>; differences are {_e(paired['differences'])}, on the "
             f"{paired['n_cases']} inputs both devices scored ({paired['n_positive']} positive, "
             f"{paired['n_negative']} negative, {paired['n_patients']} patients). Margins: "
             f"{_e(document['margins']['source'])}. {_e(judgement['rule'])}.</p>")
    devices = _table(["device", "device.json sha256", "threshold", "signature"],
                     [[d, _e(v["device_json_sha256"]), _f(v["threshold"]), _e(v["signature"])]
                      for d, v in document["devices"].items()])
    parts = [f"<h1>Comparison on {name}: {_e(document['verdict'])}</h1>", intro, devices]
    if judgement["not_enough_data"]:
        reasons = "".join(f"<li>{_e(r)}</li>" for r in judgement["not_enough_data"])
        parts.append(f"<h2>Not enough data</h2><ul>{reasons}</ul>")
    parts += ["<h2>Differences and margins</h2>", _endpoints(document), f"<p>{_e(paired['independence'])}.</p>"]
    if figure_png:
        parts.append(image(figure_png, "ROC curves of both devices with their locked operating points"))
    t = g["table"]
    decisions = _table(["", "candidate: pneumonia", "candidate: no pneumonia"],
                       [["baseline: pneumonia", str(t["both_positive"]), str(t["baseline_only_positive"])],
                        ["baseline: no pneumonia", str(t["candidate_only_positive"]), str(t["both_negative"])]])
    parts += ["<h2>Agreement of the decisions</h2>", decisions,
              f"<p>Observed agreement {_f(g['observed_agreement'])}, Cohen's kappa {_f(g['kappa'])}.</p>"]
    r = judgement["criteria"]["refusals"]
    unscored = (f"<p>Not scored by the baseline: {refusals['not_scored_by_baseline']}; by the candidate: "
                f"{refusals['not_scored_by_candidate']}, of {refusals['n_inputs']}. Increase of the unscored share "
                f"{_f(r['increase'], True)} (allowed up to {r['margin']:g}): {_verdict(r['met'])}. "
                f"{_e(refusals['finding'] or 'No change in which inputs are scored.')}</p>")
    parts += ["<h2>Inputs not scored</h2>", unscored, _unscored(refusals)]
    excluded = document["inputs"]["excluded"]
    if excluded:
        rows = [[_e(x["key"]), _e(x["reason"]), _e(x["detail"])] for x in excluded]
        parts += ["<h2>Excluded before scoring</h2>", _table(["input", "reason", "detail"], rows)]
    return page(f"Comparison {document['name']}", parts)


def write_report(document: dict, path: Path, folder: Path) -> None:
    """Write ``report.html``, embedding the ROC figure when there is one."""
    figure = document["figures"].get("roc")
    png = (folder / figure).read_bytes() if figure else None
    path.write_text(render_report(document, png), encoding="utf-8")
