"""The context of the cybersecurity document (CYB) and the package's SBOM file, gathered from the
modules of this package: :func:`cybersecurity` returns plain data for the template,
:func:`security_problems` what the consistency check reports, :func:`sbom_text` the
``sbom.cdx.json`` the package carries, and :func:`vulnerability_plan` the management plan.
"""
from __future__ import annotations

from pathlib import Path

from ..completeness import todo, value_or_todo
from ..known_issues import load_anomalies
from ..software.import_graph import installed_sources
from .labeling import security_labeling
from .sbom import SUPPORT_FILE, UNKNOWN, build_sbom, sbom_record
from .testing import security_testing
from .threat_model import load_threat_model, threat_problems, threat_rows
from .views import draw_global_view, load_views, view_problems
from .vulnerabilities import NOT_SCANNED, SCAN_FILE, read_scan, scan_summary

#: Figures this document adds to the package (drawn by :func:`draw_figures`).
FIGURES = ("security_global_view",)
#: Where known vulnerabilities of the components are looked for (the plan's monitoring sources).
MONITORING = (
    ("PyPI advisory database (OSV data) for every SBOM component", ("pip-audit over the SBOM: `cxr-device sbom "
                                                                     "--audit`, at each release and each routine review")),
    ("GitHub security advisories of the components' repositories", "watched for the components of the SBOM"),
    ("CISA ICS medical advisories and FDA cybersecurity communications", "read at each routine review"),
    ("NVD entries for the CVEs the advisories name", "for the exploitability and the CVSS vector of a finding"),
    ("reports to the manufacturer's disclosure contact", "triaged as they arrive"),
)


def _support_marker(row: dict) -> str:
    """The support cell of one component: the table's values, with a visible marker for what is unknown."""
    support = row["support"]
    missing = [k.replace("_", " ") for k in ("level", "end_of_support") if support[k] == UNKNOWN]
    if not missing:
        return ""
    label = f"{row['name']} {row['version']}" if "name" in row else f"Python {row['version']}"
    return todo(f"fda_submission/security/{SUPPORT_FILE}: {row.get('name', 'python')}",
                f"{' and '.join(missing)} of {label}")


def vulnerability_plan(profile: dict) -> dict:
    """Owners (profile fields, markers when null), monitoring sources and timelines."""
    s = profile["security"]
    return {"owner": value_or_todo(s["vulnerability_owner"], "security.vulnerability_owner",
                                   "role or team that manages vulnerabilities"),
            "contact": value_or_todo(s["disclosure_contact"], "security.disclosure_contact",
                                     "where vulnerabilities are reported"),
            "policy": value_or_todo(s["disclosure_policy"], "security.disclosure_policy",
                                    "the published coordinated-disclosure policy"),
            "communicate_days": s["communicate_days"], "remediate_days": s["remediate_days"],
            "routine": value_or_todo(s["routine_update_months"], "security.routine_update_months",
                                     "months between routine updates"),
            "monitoring": [{"source": a, "how": b} for a, b in MONITORING]}


def cybersecurity(context: dict, junit: str | Path | None = None) -> dict:
    """Everything document CYB prints: ``{"threats", "views", "sbom", "scan", "testing",
    "labeling", "plan", "problems"}`` (plain data)."""
    model = load_threat_model()
    anomalies = load_anomalies()
    trace = context["trace"]
    problems = [p.line() for p in threat_problems(model, {r["id"] for r in context["requirements"]}, trace,
                                                  {h["id"] for h in context["hazards"]}, {a["id"] for a in anomalies})]
    views = load_views()
    problems += view_problems(views, model)
    labeling = security_labeling(context["profile"])
    problems += labeling["problems"]
    record = sbom_record()
    scan = read_scan(context["run"]["path"])
    for row in record["components"]:
        row["support_marker"] = _support_marker(row)
        row["scan"] = scan_summary(scan, row["name"]) if scan else None
    record["python"]["support_marker"] = _support_marker(record["python"])
    source = installed_sources(("cxr_device",))["cxr_device"]
    return {"threats": threat_rows(model, trace), "views": views, "sbom": record,
            "anomalies": {a["id"]: a["title"] for a in anomalies},
            "scan": {"record": scan, "summary": scan_summary(scan), "file": str(SCAN_FILE),
                     "scanned": bool(scan) and scan["status"] != NOT_SCANNED},
            "testing": security_testing(junit, Path(source).parent / "tests"),
            "labeling": labeling, "plan": vulnerability_plan(context["profile"]), "problems": problems}


def security_problems(security: dict) -> list[str]:
    """What the consistency check reports: threats and controls that do not resolve, views naming
    unknown threats or controls, serve options the labeling misses."""
    return list(security["problems"])


def sbom_text(context: dict) -> str:
    """The package's ``sbom.cdx.json``: the measured runtime, the device, the run's scan record."""
    return build_sbom(context["identity"], context["security"]["sbom"], context["issue_date"]["text"],
                      context["profile"]["manufacturer"], context["security"]["scan"]["record"])


def draw_figures(context: dict, figures_dir: str | Path) -> dict[str, Path]:
    """Draw the global system view into ``figures_dir``: figure key -> PNG path."""
    return {"security_global_view": draw_global_view(context["security"]["views"],
                                                     Path(figures_dir) / "security_global_view.png")}
