"""``report.html`` of ``cxr-device monitor`` and its figures: one self-contained page (inline style,
figures embedded), every text from the node's records escaped, no script and no external resource.
AE titles, manufacturers and model names are whatever senders put in their headers: they are
shown as text only (control characters as visible escapes), never in a figure."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cxr_device.runtime.pipeline import ACCEPTED

from . import monitor_figures as mf
from .html_report import image, page, table, text
from .monitor import GROUPS, OTHER, observed_text


def draw_figures(out: Path, document: dict, reference: np.ndarray | None, studies: list[dict],
                 images: list[dict]) -> dict:
    """Draw the figures that have data into ``out``; their names by key."""
    made = {}
    days = document["days"]
    if days:
        mf.plot_volume(days, out / mf.FIGURES["volume"])
        mf.plot_p_charts(days, out / mf.FIGURES["p_charts"])
        made.update(volume=mf.FIGURES["volume"], p_charts=mf.FIGURES["p_charts"])
    drift = document["overall"].get("drift")
    if reference is not None and drift is not None:
        observed = np.array([i["probability"] for i in images if i["status"] == ACCEPTED and i["device"] != OTHER
                             and i["probability"] is not None], dtype=float)
        mf.plot_scores(reference, observed, out / mf.FIGURES["scores"], drift["psi"], drift["ks_p_value"])
        made["scores"] = mf.FIGURES["scores"]
    ttn = document["overall"]["ttn"]
    if ttn["n"]:
        mf.plot_ttn([s["ttn_s"] for s in studies if s["ttn_s"] is not None], ttn["p50_s"], ttn["p95_s"],
                    out / mf.FIGURES["ttn"])
        made["ttn"] = mf.FIGURES["ttn"]
    return made


def _n(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else text(value)


def _counts(counts: dict) -> str:
    return ", ".join(f"{text(k)} {v}" for k, v in counts.items()) or "none"


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _flag(f: dict) -> str:
    if not f["n_studies"]:
        return "no scored study"
    band = f" (limits {_pct(f['lower'])} to {_pct(f['upper'])})" if f["judged"] else " (not judged)"
    return f"{f['flagged']} / {f['n_studies']} = {_pct(f['share'])}{band}" + (" <b>CROSSED</b>" if f["crossed"] else "")


def _refusal(r: dict) -> str:
    if not r["n_studies"]:
        return "no study"
    return (f"{r['not_scored']} / {r['n_studies']} = {_pct(r['share'])} (upper {_pct(r['upper'])})"
            + (" <b>CROSSED</b>" if r["crossed"] else ""))


def _drift(d: dict | None) -> str:
    if d is None:
        return "not judged (no reference)"
    if d["psi"] is None:
        return "no score"
    verdict = " <b>CROSSED</b>" if d["crossed"] else "" if d["judged"] else " (not judged: too few scores)"
    return f"PSI {d['psi']:.3f}, KS p {d['ks_p_value']:.3g}, n {d['n_observed']}{verdict}"


def _ttn(t: dict) -> str:
    return "not measured" if not t["n"] else f"p50 {t['p50_s']:.2f} s, p95 {t['p95_s']:.2f} s, max {t['max_s']:.2f} s (n {t['n']})"


def _signal_rows(items: list[dict], label) -> list[list[str]]:
    return [[label(item), str(item["volume"]["studies"]), str(item["volume"]["images"]), _refusal(item["refusal"]),
             _flag(item["flag"]), _drift(item.get("drift")) if "drift" in item else "", _ttn(item["ttn"])]
            for item in items]


HEADER = ["", "studies", "images", "not scored (refusals)", "flagged", "score drift", "time to notification"]


def render_report(document: dict, figures: dict[str, bytes]) -> str:
    """The HTML text of the report (``figures``: PNG bytes by key)."""
    limits, node = document["limits"], document["node"]
    parts = [f"<h1>Monitoring of the node: {text(document['verdict'])}</h1>",
             f"<p>Made by <code>cxr-device monitor</code> from the node's own records (study.json, node.log, "
             f"status.json); no image and no patient data was read. Window: {text(document['window']['since'] or 'all')}"
             f", days {text(document['window']['first_day'])} to {text(document['window']['last_day'])}. Limits: "
             f"{text(limits['source'])}.</p>"]
    crossings = document["crossings"]
    parts.append("<h2>Limits crossed</h2>")
    parts.append(table(["signal", "where", "observed", "n", "limit"],
                       [[text(c["signal"]), text(c["scope"]), text(observed_text(c["observed"])), text(c["n"]),
                         text(c["limit"])] for c in crossings]) if crossings else "<p>None.</p>")
    if document["not_judged"]:
        parts.append("<h2>Not judged</h2><ul>" + "".join(f"<li>{text(r)}</li>" for r in document["not_judged"])
                     + "</ul>")
    parts += ["<h2>All studies</h2>", table(HEADER, _signal_rows([document["overall"]], lambda _: "all"))]
    flag = limits.get("flag")
    if flag:
        parts.append(f"<p>Expected flag rate: prevalence {_n(flag['prevalence'])} ({text(flag['prevalence_source'])}) "
                     f"x sensitivity {_n(flag['sensitivity'])} + (1 - prevalence) x (1 - specificity "
                     f"{_n(flag['specificity'])}), from {text(flag['basis'])}; exact binomial p-chart limits for "
                     "each n. Refusals are judged against the upper p-chart limit of study.refusal_limit "
                     f"({_n(limits['refusal_limit'])}).</p>")
    for key, alt in (("volume", "studies and images per day"), ("p_charts", "daily flag and refusal shares with limits"),
                     ("scores", "score histograms, reference and in use"), ("ttn", "time to notification histogram")):
        if key in figures:
            parts.append(image(figures[key], alt))
    parts += ["<h2>Per day</h2>", table(HEADER[:5] + HEADER[6:], [row[:5] + row[6:] for row in _signal_rows(
        document["days"], lambda d: text(d["day"]))])]
    for group, title in GROUPS.items():
        parts += [f"<h2>By {text(title)}</h2>",
                  table([text(title), *HEADER[1:]], _signal_rows(document["breakdown"][group], lambda r: text(r["value"])))]
    reasons = document["refusals_by_reason"]
    parts += ["<h2>Refusals by reason</h2>",
              table(["reason (images)", "images"], [[text(k), str(v)] for k, v in reasons["images"].items()])
              if reasons["images"] else "<p>No image refused.</p>",
              table(["store refused by the node (node.log reason code)", "stores"],
                    [[text(k), str(v)] for k, v in reasons["store_refused_by_node"].items()])
              if reasons["store_refused_by_node"] else "<p>No store refused by the node.</p>"]
    ttn = document["overall"]["ttn"]
    parts += ["<h2>Time to notification</h2>",
              f"<p>Last image received to the notification (the result acknowledged by the PACS when the node "
              f"forwards, else the SR written), on the node's monotonic clock: {_ttn(ttn)}; percentiles by "
              f"{text(ttn['percentiles'])}. Notification by: {_counts(ttn['by_notification'])}.</p>"]
    if ttn["not_measured"]:
        parts.append(table(["not measured because", "studies"],
                           [[text(k), str(v)] for k, v in ttn["not_measured"].items()]))
    records, status = document["records"], node["status"]
    parts += ["<h2>The node and its records</h2>",
              f"<p>Study records read {records['read']}, unreadable {records['unreadable']}, before the window "
              f"{records['outside_window']}. Images by answering device: {_counts(document['device']['images_by_device'])}"
              f". Node status: {text(status.get('state') if status else 'no status.json')}"
              f"{'' if not status or not status.get('note') else ' (' + text(status['note']) + ')'}. Log events in the "
              f"window: {_counts(node['log'].get('events') or {})}; unreadable log lines "
              f"{text(node['log'].get('unreadable_lines', 0))}.</p>"]
    if records["unreadable_list"]:
        parts.append(table(["study (sha256 of its UID, first 16)", "why it could not be read"],
                           [[text(u["study"]), text(u["reason"])] for u in records["unreadable_list"]]))
    return page("Monitoring of the node", parts)


def write_report(document: dict, out: Path) -> Path:
    """Write ``report.html`` into ``out``, embedding the figures listed in the document."""
    figures = {key: (out / name).read_bytes() for key, name in document["figures"].items()}
    path = out / document["report"]
    path.write_text(render_report(document, figures), encoding="utf-8")
    return path
