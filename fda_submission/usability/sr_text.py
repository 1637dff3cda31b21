"""The content of a DICOM Structured Report as a viewer lists it: the product's own text rendering,
used when DCMTK's ``dsrdump`` is not installed.

A PACS shows an SR as its document header (patient, study, series, flags) and its content tree:
one line per content item, indented by depth, with the relationship to its parent, the value
type, the concept name and the value - the same shape as ``dsrdump`` prints, so the usability
summary reads the same whichever rendered it. :func:`sr_text` walks the tree of a dataset
(:func:`content_lines` the items alone).
"""
from __future__ import annotations

from pydicom.dataset import Dataset

INDENT = "  "
#: Short names of the image classes a chest result refers to, as dsrdump prints them.
SHORT_CLASS_NAMES = {"1.2.840.10008.5.1.4.1.1.1": "CR image", "1.2.840.10008.5.1.4.1.1.1.1": "DX image",
                     "1.2.840.10008.5.1.4.1.1.1.1.1": "DX image", "1.2.840.10008.5.1.4.1.1.7": "SC image",
                     "1.2.840.10008.5.1.4.1.1.2": "CT image", "1.2.840.10008.5.1.4.1.1.4": "MR image"}
_RELATIONSHIPS = {"CONTAINS": "contains", "HAS OBS CONTEXT": "has obs context",
                  "HAS CONCEPT MOD": "has concept mod", "HAS ACQ CONTEXT": "has acq context",
                  "HAS PROPERTIES": "has properties", "INFERRED FROM": "inferred from",
                  "SELECTED FROM": "selected from"}


def _code(item: Dataset | None) -> str:
    """A coded entry as ``(value,scheme,"meaning")``."""
    if item is None:
        return "()"
    value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue") or ""
    return f'({value},{item.get("CodingSchemeDesignator", "")},"{item.get("CodeMeaning", "")}")'


def _first(item: Dataset, keyword: str) -> Dataset | None:
    sequence = item.get(keyword)
    return sequence[0] if sequence else None


def _name(item: Dataset) -> str:
    """The concept name as dsrdump prints it by default: its meaning only, ``(,,"meaning")``."""
    concept = _first(item, "ConceptNameCodeSequence")
    return f'(,,"{concept.get("CodeMeaning", "")}")' if concept is not None else "(,,)"


def _value(item: Dataset) -> str:
    """The value of one content item, by its value type."""
    kind = str(item.get("ValueType", ""))
    if kind == "CONTAINER":
        return str(item.get("ContinuityOfContent", ""))
    if kind == "TEXT":
        return f'"{item.get("TextValue", "")}"'
    if kind == "NUM":
        measured = _first(item, "MeasuredValueSequence")
        if measured is None:
            return "(no value)"
        return f'"{measured.get("NumericValue", "")}" {_code(_first(measured, "MeasurementUnitsCodeSequence"))}'
    if kind == "CODE":
        return _code(_first(item, "ConceptCodeSequence"))
    if kind == "UIDREF":
        return f'"{item.get("UID", "")}"'
    if kind in ("IMAGE", "COMPOSITE"):
        reference = _first(item, "ReferencedSOPSequence")
        uid = str(reference.get("ReferencedSOPClassUID", "")) if reference is not None else ""
        return f"({SHORT_CLASS_NAMES.get(uid, uid)},)"
    if kind == "PNAME":
        return f'"{item.get("PersonName", "")}"'
    for keyword in ("DateTime", "Date", "Time"):
        if keyword in item:
            return f'"{item.get(keyword)}"'
    return ""


def content_lines(item: Dataset, depth: int = 0) -> list[str]:
    """One line per content item of the tree below (and including) ``item``."""
    relationship = _RELATIONSHIPS.get(str(item.get("RelationshipType", "")), "")
    head = f"{relationship} " if relationship else ""
    lines = [f"{INDENT * depth}<{head}{item.get('ValueType', '')}:{_name(item)}={_value(item)}>"]
    for child in item.get("ContentSequence") or []:
        lines += content_lines(child, depth + 1)
    return lines


def sr_text(ds: Dataset) -> str:
    """The SR as a viewer lists it: the document header, then the content tree."""
    title = _first(ds, "ConceptNameCodeSequence")
    header = [
        ("Patient", (f"{ds.get('PatientName', '')} ({ds.get('PatientSex', '')}, {ds.get('PatientBirthDate', '')}, "
                     f"#{ds.get('PatientID', '')})")),
        ("Study", f"{ds.get('StudyDescription', '')} (#{ds.get('StudyID', '')})"),
        ("Series", f"{ds.get('SeriesDescription', '')} (#{ds.get('SeriesNumber', '')})"),
        ("Manufacturer", (f"{ds.get('Manufacturer', '')} ({ds.get('ManufacturerModelName', '')}, "
                          f"#{ds.get('DeviceSerialNumber', '')})")),
        ("Preliminary Flag", str(ds.get("PreliminaryFlag", ""))),
        ("Completion Flag", str(ds.get("CompletionFlag", ""))),
        ("Verification Flag", str(ds.get("VerificationFlag", ""))),
        ("Content Date/Time", f"{ds.get('ContentDate', '')} {ds.get('ContentTime', '')}"),
    ]
    width = max(len(label) for label, _ in header)
    lines = [f"{title.get('CodeMeaning', 'Structured Report') if title is not None else 'Structured Report'}", ""]
    lines += [f"{label:<{width}} : {value}" for label, value in header if value.strip(" (#,)")]
    return "\n".join(lines + [""] + content_lines(ds)) + "\n"
