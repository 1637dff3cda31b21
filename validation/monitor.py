"""``cxr-device monitor``: the signals of the post-market plan, computed from what a node recorded.

From the node's study records (:mod:`validation.node_records`) and the locked bundle it runs:

* **volume**: studies and images per day (UTC day of the study's last image received);
* **refusals**: studies of which no image was scored (every image refused or unreadable), judged
  against the upper p-chart limit of the profile's ``study.refusal_limit`` for the studies counted
  (:func:`validation.control_limits.p_chart`: the limit widens for fewer studies); images by reason;
  the node's store refusals from its log;
* **flag rate**: studies whose chosen image the device flagged, among the studies it scored, against
  the exact binomial p-chart limits of the expected rate prevalence x sensitivity + (1 - prevalence)
  x (1 - specificity) (:func:`validation.control_limits.flag_rate_limits`, as the post-market plan
  computes it), with the locked device's internal test operating point (device.json
  ``threshold.test``) and the profile's ``expected_prevalence`` (else the test split's, from the
  run's metrics.json the bundle locked);
* **score drift** of the probabilities of the accepted images against the bundle's reference
  distribution (:mod:`validation.drift`);
* **time to notification** (:mod:`validation.ttn`).

Each is computed over the whole window, per day (volume, refusals, flag rate, time to notification)
and per calling AE title, manufacturer and model name; a limit crossed anywhere is listed in
``crossings``, and so are study records that could not be read. The flag rate and the drift count
only the images answered by the ``--bundle`` device (or whose record names no device); images
another device answered are counted apart.
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np

from cxr_device.hashing import sha256_file
from cxr_device.provenance import producer
from cxr_device.run_layout import RunLayout
from cxr_device.runtime.inference import POSITIVE
from cxr_device.runtime.pipeline import ACCEPTED

from . import ttn as notification
from .control_limits import flag_rate_limits, p_chart
from .drift import score_drift
from .monitor_limits import MonitorLimits
from .node_records import NodeRecords

MONITOR, REPORT, FORMAT = "monitor.json", "report.html", "cxr-device-monitor/1"
GROUPS = {"calling_ae": "calling AE title", "manufacturer": "manufacturer", "model_name": "model name"}
NOT_RECORDED = "(not recorded)"
THIS, OTHER, UNKNOWN = "this device", "another device", "not recorded"
WITHIN, CROSSED = "within limits", "limit crossed"


# --- what the bundle says the device should do ---------------------------------------------------
def expectations(bundle, limits: MonitorLimits) -> dict:
    """The expected flag rate's inputs and the reference scores of ``bundle`` (None: not given),
    each with the reason when it cannot be had."""
    out = {"device_sha256": None, "bundle": None, "flag": None, "flag_not_judged": None, "reference": None,
           "drift_not_judged": None}
    if bundle is None:
        out["flag_not_judged"] = out["drift_not_judged"] = "no --bundle given (the locked device is the reference)"
        return out
    out.update(device_sha256=bundle.device_sha256, bundle=str(bundle.folder))
    test = bundle.meta.get("threshold", {}).get("test") or {}
    prevalence, where = _prevalence(bundle, limits)
    if not all(isinstance(test.get(k), (int, float)) for k in ("sensitivity", "specificity")):
        out["flag_not_judged"] = "the bundle's device.json has no threshold.test sensitivity and specificity"
    elif prevalence is None:
        out["flag_not_judged"] = where
    else:
        out["flag"] = {"prevalence": prevalence, "prevalence_source": where, "sensitivity": float(test["sensitivity"]),
                       "specificity": float(test["specificity"]),
                       "basis": "the locked device's internal test split (device.json threshold.test)"}
    scores = (bundle.meta.get("reference_scores") or {}).get("probabilities")
    if not isinstance(scores, list) or not scores or not all(isinstance(p, (int, float)) and 0 <= p <= 1
                                                             for p in scores):
        out["drift_not_judged"] = ("the bundle stores no reference score distribution (device.json reference_scores: "
                                   "lock it again with cxr-device evaluate)")
    else:
        out["reference"] = np.asarray(scores, dtype=float)
        out["reference_source"] = str((bundle.meta.get("reference_scores") or {}).get("source", ""))
    return out


def _prevalence(bundle, limits: MonitorLimits) -> tuple[float | None, str]:
    if limits.prevalence is not None:
        return limits.prevalence, "profile: expected_prevalence"
    metrics = RunLayout(bundle.folder.parent).metrics
    locked = (bundle.meta.get("evaluation") or {}).get("metrics_json_sha256")
    if not metrics.is_file() or not locked or sha256_file(metrics) != locked:
        return None, ("no expected prevalence: the profile sets no expected_prevalence and the run's "
                      "evaluation/metrics.json the bundle locked is not beside it (give --profile)")
    value = json.loads(metrics.read_text()).get("splits", {}).get("test", {}).get("prevalence")
    if not isinstance(value, (int, float)) or not 0 <= value <= 1:
        return None, f"{metrics}: no splits.test.prevalence (give --profile with expected_prevalence)"
    return float(value), "evaluation/metrics.json: splits.test.prevalence (locked with the bundle)"


# --- rows ------------------------------------------------------------------------------------------
def rows(node: NodeRecords, device_sha256: str | None) -> tuple[list[dict], list[dict]]:
    """(studies, images): one row per study and per answered image, with its day, its origin and
    whether this device answered it."""
    studies, images = [], []
    for item in node.studies:
        record, day = item["record"], item["time"].date().isoformat() if item["time"] else None
        answers = record["images"]
        chosen = next((i for i in answers if i.get("sop_instance_uid") == record.get("chosen")
                       and i.get("status") == ACCEPTED), None)
        seconds, basis, reason = notification.study_ttn(record)
        lead = chosen or max(answers, key=lambda i: str(i.get("received_at") or ""), default={})
        studies.append({"study": item["study"], "day": day, "n_images": len(answers), "scored": chosen is not None,
                        "flagged": chosen is not None and chosen.get("decision") == POSITIVE,
                        "device": _device(chosen or {}, device_sha256), "ttn_s": seconds, "ttn_basis": basis,
                        "ttn_reason": reason, **{g: _value(lead.get(g)) for g in GROUPS}})
        for image in answers:
            probability = image.get("probability")
            images.append({"study": item["study"], "day": day, "status": image["status"],
                           "refusal": None if image["status"] == ACCEPTED else str(image.get("refusal") or
                                                                                   image["status"])[:120],
                           "probability": float(probability) if isinstance(probability, (int, float))
                           and math.isfinite(probability) else None,
                           "device": _device(image, device_sha256), **{g: _value(image.get(g)) for g in GROUPS}})
    return studies, images


def _value(value) -> str:
    return str(value) if value not in (None, "") else NOT_RECORDED


def _device(image: dict, device_sha256: str | None) -> str:
    recorded = image.get("device_sha256")
    if not recorded or device_sha256 is None:
        return UNKNOWN
    return THIS if recorded == device_sha256 else OTHER


# --- signals ---------------------------------------------------------------------------------------
def signals(studies: list[dict], images: list[dict], expect: dict, limits: MonitorLimits,
            with_drift: bool = True) -> dict:
    """Volume, refusals, flag rate, drift and time to notification of one set of studies and images."""
    answered = [s for s in studies if s["n_images"]]
    refused = sum(not s["scored"] for s in answered)
    refusal = {"n_studies": len(answered), "not_scored": refused, "share": refused / len(answered) if answered else None,
               "limit": limits.refusal_limit, "upper": None, "crossed": False}
    if answered:
        refusal["upper"] = p_chart(limits.refusal_limit, len(answered)).upper
        refusal["crossed"] = refusal["share"] > refusal["upper"]
    ours = [s for s in studies if s["scored"] and s["device"] != OTHER]
    flagged = sum(s["flagged"] for s in ours)
    flag = {"n_studies": len(ours), "flagged": flagged, "share": flagged / len(ours) if ours else None,
            "expected": None, "lower": None, "upper": None, "crossed": False, "judged": False}
    if ours and expect["flag"]:
        f = expect["flag"]
        band = flag_rate_limits(f["prevalence"], f["sensitivity"], f["specificity"], len(ours), f["basis"])
        flag.update(expected=band["rate"], lower=band["lower"], upper=band["upper"], judged=True,
                    crossed=not band["lower"] <= flag["share"] <= band["upper"])
    out = {"volume": {"studies": len(studies), "images": len(images),
                      "images_by_status": dict(sorted(Counter(i["status"] for i in images).items()))},
           "refusal": refusal, "flag": flag, "ttn": _ttn(studies)}
    if with_drift:
        scores = [i["probability"] for i in images if i["status"] == ACCEPTED and i["device"] != OTHER
                  and i["probability"] is not None]
        post = limits.postmarket
        out["drift"] = score_drift(expect["reference"], np.asarray(scores), post.psi_limit, post.drift_p_value,
                                   post.drift_min_scores) if expect["reference"] is not None else None
    return out


def _ttn(studies: list[dict]) -> dict:
    measured = [s for s in studies if s["ttn_s"] is not None]
    return {**notification.summary([s["ttn_s"] for s in measured]),
            "by_notification": dict(sorted(Counter(s["ttn_basis"] for s in measured).items())),
            "not_measured": dict(sorted(Counter(s["ttn_reason"] for s in studies if s["ttn_s"] is None).items()))}


def _crossings(scope: str, found: dict) -> list[dict]:
    """The limits ``found`` (signals of one scope) crosses."""
    out = []
    r, f, d = found["refusal"], found["flag"], found.get("drift")
    if r["crossed"]:
        out.append({"signal": "refusal share", "scope": scope, "observed": r["share"], "n": r["n_studies"],
                    "limit": f"above {r['upper']:.4f} (p-chart upper limit of refusal_limit {r['limit']:g})"})
    if f["crossed"]:
        out.append({"signal": "flag rate", "scope": scope, "observed": f["share"], "n": f["n_studies"],
                    "limit": f"outside {f['lower']:.4f} to {f['upper']:.4f} (expected {f['expected']:.4f})"})
    if d and d["crossed"]:
        out.append({"signal": "score drift", "scope": scope, "observed": {"psi": d["psi"], "ks_p_value": d["ks_p_value"]},
                    "n": d["n_observed"], "limit": f"PSI above {d['psi_limit']:g} or KS p below {d['p_value_limit']:g}"})
    return out


# --- the whole report ------------------------------------------------------------------------------
def monitor(node: NodeRecords, bundle, limits: MonitorLimits, since: datetime | None, out: Path | None = None) -> dict:
    """monitor.json's content for a node's records (see the module); with ``out``, also write
    monitor.json, the figures and report.html there."""
    expect = expectations(bundle, limits)
    studies, images = rows(node, expect["device_sha256"])
    document = _document(node, expect, studies, images, limits, since)
    if out is not None:
        from .monitor_report import draw_figures, write_report

        document["figures"] = draw_figures(out, document, expect["reference"], studies, images)
        document["report"] = REPORT
        write(document, out)
        write_report(document, out)
    return document


def _document(node: NodeRecords, expect: dict, studies: list[dict], images: list[dict], limits: MonitorLimits,
              since: datetime | None) -> dict:
    overall = signals(studies, images, expect, limits)
    days = []
    for day in sorted({s["day"] for s in studies}, key=lambda d: (d is None, d or "")):
        found = signals([s for s in studies if s["day"] == day], [i for i in images if i["day"] == day], expect,
                        limits, with_drift=False)
        days.append({"day": day or "undated", **found})
    breakdown = {}
    for group in GROUPS:
        by_value = defaultdict(lambda: ([], []))
        for s in studies:
            by_value[s[group]][0].append(s)
        for i in images:
            by_value[i[group]][1].append(i)
        breakdown[group] = [{"value": value, **signals(*by_value[value], expect, limits)} for value in sorted(by_value)]
    crossings = _crossings("all studies", overall)
    for day in days:
        crossings += _crossings(f"day {day['day']}", day)
    for group, values in breakdown.items():
        for row in values:
            crossings += _crossings(f"{GROUPS[group]} {row['value']}", row)
    if node.unreadable:
        crossings.append({"signal": "study records", "scope": "node", "observed": len(node.unreadable),
                          "n": len(node.unreadable) + len(node.studies) + node.outside_window + node.undated,
                          "limit": "any study.json that cannot be read (listed under records.unreadable)"})
    not_judged = [f"flag rate: {expect['flag_not_judged']}"] if expect["flag_not_judged"] else []
    not_judged += [f"score drift: {expect['drift_not_judged']}"] if expect["drift_not_judged"] else []
    drift = overall.get("drift")
    if drift is not None and not drift["judged"]:
        not_judged.append(f"score drift: {drift['n_observed']} accepted score(s), fewer than "
                          f"postmarket.drift_min_scores ({drift['min_scores']})")
    return {
        "format": FORMAT,
        "verdict": CROSSED if crossings else WITHIN,
        "crossings": crossings,
        "not_judged": not_judged,
        "node": {"folder": str(node.folder), "status": _status(node.status), "log": node.log},
        "window": {"since": since.isoformat().replace("+00:00", "Z") if since else None,
                   "first_day": next((d["day"] for d in days if d["day"] != "undated"), None),
                   "last_day": next((d["day"] for d in reversed(days) if d["day"] != "undated"), None)},
        "records": {"read": len(node.studies), "unreadable": len(node.unreadable),
                    "outside_window": node.outside_window, "undated_outside_window": node.undated,
                    "unreadable_list": node.unreadable, "without_answered_image":
                        sorted(s["study"] for s in studies if not s["n_images"])},
        "device": {"bundle": expect["bundle"], "device_sha256": expect["device_sha256"],
                   "images_by_device": dict(sorted(Counter(i["device"] for i in images).items())),
                   "reference_scores": None if expect["reference"] is None else
                   {"n": int(len(expect["reference"])), "source": expect.get("reference_source")}},
        "limits": {**limits.as_dict(), "flag": expect["flag"]},
        "overall": overall,
        "refusals_by_reason": {"images": dict(sorted(Counter(i["refusal"] for i in images if i["refusal"]).items())),
                               "store_refused_by_node": node.log.get("store_refused_by_reason", {})},
        "days": days,
        "breakdown": breakdown,
        "figures": {},
        "report": None,
        "produced_by": producer("monitor", {"since": since.isoformat() if since else None,
                                            "limits": limits.as_dict()}),
    }


def _status(status: dict | None) -> dict | None:
    """The node's status, the fields monitoring needs (no pid, no address)."""
    if status is None:
        return None
    keep = ("state", "alive", "note", "updated", "ae_title", "forward", "bundle_sha256", "queue", "outbox", "counts")
    return {k: status[k] for k in keep if k in status}


def write(document: dict, out: Path) -> Path:
    """Write monitor.json (sorted keys, strict JSON) into ``out``."""
    from .metrics import finite

    path = out / MONITOR
    path.write_text(json.dumps(finite(document), indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def summary_lines(document: dict) -> list[str]:
    """What ``monitor`` prints: the window, each signal over all studies, then every crossing."""
    o, r = document["overall"], document["records"]
    lines = [f"monitor: {o['volume']['studies']} studies, {o['volume']['images']} images "
             f"({document['window']['first_day'] or 'no day'} to {document['window']['last_day'] or 'no day'}); "
             f"{r['unreadable']} study record(s) unreadable, {r['outside_window']} before --since"]
    ref, flag, ttn = o["refusal"], o["flag"], o["ttn"]
    if ref["n_studies"]:
        lines.append(f"  refusals     {ref['not_scored']} of {ref['n_studies']} studies not scored ({_pct(ref['share'])}; "
                     f"upper limit {_pct(ref['upper'])})")
    if flag["judged"]:
        lines.append(f"  flag rate    {flag['flagged']} of {flag['n_studies']} ({_pct(flag['share'])}); expected "
                     f"{_pct(flag['expected'])}, limits {_pct(flag['lower'])} to {_pct(flag['upper'])}")
    drift = o.get("drift")
    if drift and drift["psi"] is not None:
        lines.append(f"  score drift  PSI {drift['psi']:.3f} (limit {drift['psi_limit']:g}), KS p "
                     f"{drift['ks_p_value']:.3g} (limit {drift['p_value_limit']:g}) on {drift['n_observed']} scores"
                     + ("" if drift["judged"] else " (not judged: too few scores)"))
    if ttn["n"]:
        lines.append(f"  time to notification  p50 {ttn['p50_s']:.2f} s, p95 {ttn['p95_s']:.2f} s, max "
                     f"{ttn['max_s']:.2f} s over {ttn['n']} studies")
    lines += [f"  not judged: {reason}" for reason in document["not_judged"]]
    for c in document["crossings"]:
        lines.append(f"  CROSSED {c['signal']} ({c['scope']}): {observed_text(c['observed'])}, {c['limit']}")
    lines.append(f"verdict: {document['verdict']}")
    return lines


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def observed_text(value) -> str:
    """An observed value of a crossing as text (PSI and KS p of a drift)."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.4g}" for k, v in value.items() if v is not None)
    return f"{value:.4g}" if isinstance(value, float) else str(value)
