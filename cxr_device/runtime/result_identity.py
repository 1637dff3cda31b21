"""The source's identity in a DICOM result: patient and study, byte for byte.

A result that a PACS files under the wrong patient or study is the worst thing the device can do,
so every attribute of the source's Patient, General Study and Patient Study modules (the module
tables are highdicom's, read from the standard) is copied into each result exactly as it was
received: the element's bytes as read, with the source's Specific Character Set, so a name in
ISO 2022 IR 87 or a PatientID longer than its VR allows reaches the SR unchanged. Nothing is
blanked, repaired or re-encoded.

Values that are not valid for their VR are copied too (a PACS knows the patient by exactly that
value) and counted by keyword (:meth:`SourceIdentity.invalid_keywords`), never quoted. Two
things make an image unanswerable instead (:func:`uid_problem`): a StudyInstanceUID or
SOPInstanceUID that is missing or not a UID at all, because a result must be filed under, and
reference, exactly that string.
"""
from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache

from pydicom import config
from pydicom.charset import convert_encodings, default_encoding, python_encoding
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filewriter import correct_ambiguous_vr
from pydicom.tag import BaseTag
from pydicom.valuerep import validate_value

#: The modules whose root attributes identify the patient and the study (highdicom's keys).
IDENTITY_MODULES = ("patient", "general-study", "patient-study")
CHARSET = BaseTag(0x00080005)
_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI",
                         "UR", "UT"})
#: What a results file can be filed under: digits and dots, at most 64 characters (PS3.5 9.1;
#: a component with a leading zero is a defect of the sender, but unambiguous: kept as it is).
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


@cache
def identity_keywords() -> tuple[str, ...]:
    """Every root attribute of the Patient, General Study and Patient Study modules (highdicom's
    tables of the standard; read on first use, since importing highdicom takes a while)."""
    from highdicom._standard_utils import get_module_attribute_map

    table = get_module_attribute_map()
    return tuple(dict.fromkeys(item["keyword"] for module in IDENTITY_MODULES for item in table[module]
                               if not item["path"]))


@cache
def identity_tags() -> frozenset[BaseTag]:
    """The tags of :func:`identity_keywords`."""
    return frozenset(BaseTag(tag_for_keyword(k)) for k in identity_keywords())


def uid_problem(ds: Dataset, keyword: str) -> str:
    """'' when ``ds`` has a usable ``keyword`` UID, else why not (the value is never quoted)."""
    value = str(ds.get(keyword, "") or "").strip("\0 ")
    if not value:
        return f"the dataset has no {keyword}"
    if len(value) > 64 or not _UID.fullmatch(value):
        return f"its {keyword} is not a DICOM UID (digits and dots, at most 64 characters)"
    return ""


def charset_problem(ds: Dataset) -> str:
    """'' when every term of the Specific Character Set is one pydicom decodes, else why not."""
    element = ds.get(CHARSET)
    if element is None:
        return ""
    terms = element.value if element.VM > 1 else [element.value]
    unknown = [str(t).strip() for t in terms if str(t or "").strip() and str(t).strip() not in python_encoding]
    if unknown:
        shown = ", ".join(repr(t[:32]) for t in unknown)
        return (f"SpecificCharacterSet {shown} is not a defined term this device can decode (PS3.3 C.12.1.1.2): "
                "names and identifiers could not be read reliably")
    return ""


@dataclass
class SourceIdentity:
    """The source's identity elements as read, and its Specific Character Set."""

    elements: dict[BaseTag, DataElement | RawDataElement] = field(default_factory=dict)
    charset: DataElement | RawDataElement | None = None

    @classmethod
    def capture(cls, ds: Dataset) -> SourceIdentity:
        """Take the identity elements of ``ds`` before anything converts them (raw bytes kept)."""
        elements = {tag: _portable(ds, tag) for tag in sorted(identity_tags()) if tag in ds}
        return cls(elements, _portable(ds, CHARSET) if CHARSET in ds else None)

    @property
    def encodings(self) -> str | list[str]:
        """The Python codecs of the source's character set (what pydicom decodes with)."""
        if self.charset is None:
            return default_encoding
        holder = Dataset()
        holder[CHARSET] = copy.copy(self.charset)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return convert_encodings(holder[CHARSET].value)

    def apply(self, result: Dataset) -> None:
        """Copy the identity into ``result`` (replacing what a builder put there) and mark the
        result as encoded like its source, so pydicom writes the copied bytes as they are."""
        for tag, element in self.elements.items():
            result[tag] = copy.copy(element)
        if self.charset is not None:
            result[CHARSET] = copy.copy(self.charset)
        elif CHARSET in result:
            del result[CHARSET]
        correct_ambiguous_vr(result, True)  # what the writer would otherwise do, converting every element
        result.set_original_encoding(False, True, self.encodings)

    def invalid_keywords(self) -> list[str]:
        """The keywords whose values are not valid for their VR (values are never returned)."""
        holder = Dataset()
        if self.charset is not None:
            holder[CHARSET] = copy.copy(self.charset)
        invalid = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for tag, element in self.elements.items():
                holder[tag] = copy.copy(element)
                try:
                    converted = holder[tag]
                except Exception:  # noqa: BLE001 - a value pydicom cannot even convert is invalid
                    invalid.append(_keyword(tag))
                    continue
                if converted.VR != "SQ" and not _valid(converted.VR, _components(converted.value)):
                    invalid.append(_keyword(tag))
        return invalid


def _portable(ds: Dataset, tag: BaseTag) -> DataElement | RawDataElement:
    """The element as read, made writable into an explicit VR little endian result: raw bytes
    for text (endianness does not touch them), a converted copy for sequences and binary values
    of another byte order."""
    element = ds.get_item(tag)
    if isinstance(element, RawDataElement):
        vr = element.VR or _dictionary_vr(tag)
        if vr in _STRING_VRS and element.value is not None:
            return RawDataElement(tag, vr, len(element.value), element.value, 0, False, True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            element = ds[tag]
    return copy.deepcopy(element)


def _dictionary_vr(tag: BaseTag) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _components(value) -> list[str]:
    """The value's components as the strings the VR rules are written for."""
    if value is None or value == "":
        return []
    values = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    return [getattr(v, "original_string", None) or str(v) for v in values if v is not None and str(v) != ""]


def _valid(vr: str, components: Iterable[str]) -> bool:
    try:
        for component in components:
            validate_value(vr, component, config.RAISE)
    except (ValueError, TypeError):
        return False
    return True


def _keyword(tag: BaseTag) -> str:
    return keyword_for_tag(tag) or f"({tag.group:04X},{tag.element:04X})"
