"""Fields a person still has to fill: visible markers in the documents, and the report of them.

A document never renders an empty field: where a profile value is missing (``null``) it prints
``[TO BE COMPLETED: what (profile: key)]``. :func:`completeness_report` reads the markers back
out of the rendered documents, so the report lists exactly what a reader of the documents sees.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

PREFIX = "TO BE COMPLETED"
MARKER = re.compile(r"\[TO BE COMPLETED: ([^\]\n]+)\]")


def todo(key: str, what: str) -> str:
    """The marker of a missing value, saying ``what`` belongs there: ``key`` is a profile key
    (``manufacturer``, ``predicate.name``), a command option (``--junit``) or a file the
    maintainers keep and the entry in it (``fda_submission/security/support.yaml: numpy``)."""
    where = f"option {key} of cxr-device submission" if key.startswith("--") else \
        key if ".yaml" in key.split(":")[0] else f"profile: {key}"
    return f"[{PREFIX}: {what} ({where})]"


def value_or_todo(value: object, key: str, what: str) -> str:
    """``value`` as text, or the marker when it is missing (None or empty)."""
    if value is None or value == "" or value == []:
        return todo(key, what)
    return value if isinstance(value, str) else str(value)  # a traced text stays traced


@dataclass
class CompletenessItem:
    """One field to fill: what the marker says, and the documents that show it."""

    field: str
    documents: list[str] = field(default_factory=list)
    occurrences: int = 0


def completeness_report(texts: dict[str, str]) -> list[CompletenessItem]:
    """Every distinct marker in ``texts`` (document name -> text), in order of first appearance."""
    items: dict[str, CompletenessItem] = {}
    for document, text in texts.items():
        for match in MARKER.finditer(text):
            item = items.setdefault(match.group(1), CompletenessItem(match.group(1)))
            item.occurrences += 1
            if document not in item.documents:
                item.documents.append(document)
    return list(items.values())
