"""Security labeling of the DICOM node, generated from the command and the node's source.

* every option of ``cxr-device serve`` with its default and help, read from the command's own
  argument parser (:func:`serve_options`), joined with ``labeling.yaml`` (topic, whether the
  default is the secure choice, what a site should set); :func:`labeling_problems` reports an
  option either side lacks;
* the node's folders, files, log events and DIMSE statuses, read with :mod:`ast` from
  ``cxr_device/runtime/node.py`` (no import: reading them loads no model library);
* the TLS profile from ``cxr_device/runtime/dicom_tls.py`` (minimum version, TLS 1.2 suites);
* backup and restore, the update procedure and decommissioning from ``labeling.yaml``; the end
  of support from the profile (``security.end_of_support``).
"""
from __future__ import annotations

import argparse
import ast
from importlib import resources
from pathlib import Path

from cxr_device.yaml_io import load_yaml

from ..completeness import todo

#: IANA's port for DICOM over TLS ("dicom-tls", PS3.15 Annex B.1): what a site's firewall may expect.
DICOM_TLS_PORT = 2762
from ..software.import_graph import installed_sources

LABELING_FILE = "labeling.yaml"


def labeling_path() -> Path:
    return Path(str(resources.files("fda_submission") / "security" / LABELING_FILE))


def serve_options() -> list[dict]:
    """Every option of ``cxr-device serve`` as ``cxr-device serve --help`` shows it (the real
    top-level parser): ``{"option", "default", "required", "help", "group"}`` in declaration order."""
    from cxr_device.cli import build_parser

    parser = build_parser()
    serve = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["serve"]
    groups = {id(action): group.title for group in serve._action_groups for action in group._group_actions}
    out = []
    for action in serve._actions:
        if not action.option_strings or action.option_strings[0] in ("-h", "--help"):
            continue
        default = False if isinstance(action, argparse._StoreTrueAction) else \
            None if action.default in (None, argparse.SUPPRESS) else action.default
        if isinstance(default, list) and not default:
            default = None
        out.append({"option": action.option_strings[-1], "default": default, "required": bool(action.required),
                    "help": (action.help or "").replace("%(default)s", str(action.default)),
                    "group": groups.get(id(action)) or "options"})
    return out


def load_labeling(path: str | Path | None = None) -> dict:
    """``labeling.yaml`` as plain data."""
    return load_yaml(Path(path or labeling_path()), "security labeling") or {}


def labeling_problems(options: list[dict], labeling: dict) -> list[str]:
    """Options of serve the labeling file does not describe, and entries serve no longer has."""
    have = {o["option"] for o in options}
    described = set(labeling.get("options", {}))
    return [f"{o}: an option of serve the security labeling does not describe" for o in sorted(have - described)] + \
        [f"{o}: described by the security labeling but not an option of serve" for o in sorted(described - have)]


def option_rows(options: list[dict], labeling: dict) -> list[dict]:
    """Each option with its default (as the command defines it) and the labeling's topic,
    secure-default flag and advice."""
    described = labeling.get("options", {})
    return [{**o, "default_text": "required" if o["required"] else "none" if o["default"] is None
             else "off" if o["default"] is False else str(o["default"]),
             **{k: described.get(o["option"], {}).get(k) for k in ("topic", "secure_default", "advice")}}
            for o in options]


def _strings(tree: ast.Module) -> dict[str, object]:
    """Module-level names bound to literals (strings, numbers, tuples of names), resolved."""
    values: dict[str, object] = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            pairs = zip(target.elts, node.value.elts) if isinstance(target, ast.Tuple) and \
                isinstance(node.value, ast.Tuple) else [(target, node.value)]
            for name, value in pairs:
                if not isinstance(name, ast.Name):
                    continue
                if isinstance(value, ast.Constant):
                    values[name.id] = value.value
                elif isinstance(value, ast.Tuple) and all(isinstance(e, ast.Name) and e.id in values for e in value.elts):
                    values[name.id] = tuple(values[e.id] for e in value.elts)
    return values


def _module_tree(relative: str) -> ast.Module:
    root = installed_sources(("cxr_device",))["cxr_device"]
    return ast.parse((root / relative).read_text(encoding="utf-8"))


def node_facts() -> dict:
    """The node's folders, files, default port and AE title, DIMSE statuses and log events, from
    its source: ``{"folders", "files", "port", "ae_title", "statuses", "events"}``."""
    tree = _module_tree("runtime/node.py")
    values = _strings(tree)
    events = sorted({call.args[0].value for call in ast.walk(tree)
                     if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "_log" and call.args
                     and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)})
    statuses = {k: f"0x{v:04X}" for k, v in values.items() if isinstance(v, int) and k.isupper()
                and k in ("SUCCESS", "SOP_CLASS_NOT_SUPPORTED", "OUT_OF_RESOURCES", "CANNOT_UNDERSTAND",
                          "DUPLICATE_SOP_INSTANCE", "DOES_NOT_MATCH_SOP_CLASS")}
    return {"folders": list(values.get("FOLDERS", ())),
            "files": [values[k] for k in ("STATUS_JSON", "NODE_LOG", "LOCK_FILE") if k in values],
            "port": values.get("DEFAULT_PORT"), "ae_title": values.get("DEFAULT_AE_TITLE"),
            "statuses": statuses, "events": events}


def tls_facts() -> dict:
    """The TLS profile of the node, from ``dicom_tls.py``: minimum version and TLS 1.2 suites."""
    tree = _module_tree("runtime/dicom_tls.py")
    minimum = next((ast.unparse(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Attribute) and t.attr == "minimum_version" for t in n.targets)), None)
    return {"minimum_version": (minimum or "not found").replace("ssl.TLSVersion.", "").replace("v1_", " 1."),
            "tls12_ciphers": _strings(tree).get("TLS12_CIPHERS"), "registered_port": DICOM_TLS_PORT}


def security_labeling(profile: dict) -> dict:
    """Everything the security labeling section prints, as plain data."""
    options = serve_options()
    labeling = load_labeling()
    end = profile["security"]["end_of_support"]
    return {"options": option_rows(options, labeling), "problems": labeling_problems(options, labeling),
            "insecure_defaults": [o["option"] for o in option_rows(options, labeling) if o["secure_default"] is False],
            "node": node_facts(), "tls": tls_facts(), "backup": labeling.get("backup", {}),
            "update_steps": labeling.get("update", []), "decommissioning": labeling.get("decommissioning", []),
            "end_of_support": end.isoformat() if end else todo("security.end_of_support",
                                                               "the day support of this version ends")}
