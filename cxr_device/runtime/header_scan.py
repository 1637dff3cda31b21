"""The fast header reader behind ``check-dicom``: the attributes the rules name, from the first
kilobytes of a plainly encoded file, converted by pydicom exactly as a full parse would.

It walks the element structure of a little-endian file (implicit or explicit VR, native or
encapsulated pixels), keeps the raw bytes of the wanted top-level attributes and notes where
Pixel Data is without reading the pixels. Whenever a file is not plainly encoded (deflated, big
endian, no File Meta, a VR switch, an unknown VR, a length past the end of the file: anything
pydicom would have to guess at or would report), it gives up (returns None) and the full parse
(:func:`~cxr_device.dicom_pixels.read_header`) decides - so results, findings and reasons are
those of the full parse for every file (tests/test_header_fast_path.py).
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from functools import lru_cache
from struct import Struct

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import (
    RawDataElement,
    convert_raw_data_element,
    empty_value_for_VR,
)
from pydicom.dataset import Dataset
from pydicom.filereader import ENCODED_VR, EXPLICIT_VR_LENGTH_32
from pydicom.tag import BaseTag
from pydicom.uid import (
    AllTransferSyntaxes,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pydicom.valuerep import AMBIGUOUS_VR, VR

_PIXEL_DATA = 0x7FE00010
_CHARSET = 0x00080005
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_ITEM_BYTES, _SEQUENCE_END_BYTES = b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0"
_UNDEFINED = 0xFFFFFFFF
_HEAD = 8192  # bytes read first: the whole header of a typical radiograph (1-3 kB)
_CHUNK = 4096  # bytes read at any later position (a long header, elements after Pixel Data)
#: Tags always kept: the instance UID for the report, the character set pydicom decodes text with.
_ALWAYS = frozenset({0x00080018, _CHARSET})
_PHI_TAGS = frozenset(tag_for_keyword(k) for k in ("PatientName", "PatientID", "PatientBirthDate"))
#: The two-letter VRs pydicom reads (bytes -> the str pydicom puts in a RawDataElement).
_VRS = {vr: vr.decode("ascii") for vr in ENCODED_VR if len(vr) == 2}
_LONG_VRS = frozenset(vr for vr, name in _VRS.items() if name in EXPLICIT_VR_LENGTH_32)
#: File Meta VRs whose conversion cannot fail (text or bytes), and fixed-width ones (checked).
_META_TEXT_VRS = frozenset({"UI", "SH", "AE", "OB", "LO", "CS", "ST", "LT"})
_META_WIDTH_VRS = {"UL": 4, "US": 2}
_EXPLICIT = Struct("<HH2sH").unpack_from
_IMPLICIT = Struct("<HHL").unpack_from
_LENGTH = Struct("<L").unpack_from
#: Transfer syntaxes pydicom reads as plain little endian -> implicit VR: native, and the
#: encapsulated ones (explicit VR). Big endian, deflated, private and unknown ones are not here.
_PLAIN_SYNTAXES = {
    str(ImplicitVRLittleEndian): True,
    str(ExplicitVRLittleEndian): False,
    **{str(uid): False for uid in AllTransferSyntaxes
       if uid.is_encapsulated and uid.is_little_endian and not uid.is_deflated},
}


class _GiveUp(Exception):
    """The fast reader cannot vouch for this file; the full parse decides."""


@dataclass(frozen=True)
class ScannedHeader:
    """What :func:`scan_header` read: the kept top-level attributes and where Pixel Data is
    (value offset, length; the length is 0xFFFFFFFF when encapsulated), None when absent."""

    dataset: Dataset
    pixel_data: tuple[int, int] | None


@lru_cache(maxsize=64)
def wanted_tags(rule_tags: frozenset[int], show_phi: bool) -> frozenset[int] | None:
    """The tags the fast reader keeps for these rules, or None when it must not be used: a rule
    on Pixel Data itself, or on an attribute whose VR depends on others (US or SS, OB or OW)."""
    for tag in rule_tags:
        try:
            if tag == _PIXEL_DATA or dictionary_VR(tag) in AMBIGUOUS_VR:
                return None
        except Exception:  # noqa: BLE001 - not a tag of the dictionary: leave it to the full parse
            return None
    return rule_tags | _ALWAYS | (_PHI_TAGS if show_phi else frozenset())


class _File:
    """Positioned reads of one open file through a window of its bytes."""

    __slots__ = ("buf", "fd", "size", "start")

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size
        self.start, self.buf = 0, os.pread(fd, min(size, _HEAD), 0)

    def at(self, pos: int, n: int) -> int:
        """Offset of file position ``pos`` in ``buf``, with ``n`` bytes from there in ``buf``."""
        off = pos - self.start
        if off < 0 or off + n > len(self.buf):
            if pos + n > self.size:
                raise _GiveUp
            self.buf, self.start, off = os.pread(self.fd, max(n, _CHUNK), pos), pos, 0
            if len(self.buf) < n:
                raise _GiveUp
        return off


def scan_header(path: str, wanted: frozenset[int]) -> ScannedHeader | None:
    """The top-level attributes ``wanted`` (tags) of a plainly encoded DICOM file and where its
    Pixel Data is, without reading pixel values; None when the file is not plainly encoded or
    not well formed (then the full parse must decide).

    The dataset holds what ``pydicom.dcmread`` would hold for these tags (same bytes, VR,
    offsets and character set), converted by pydicom's own function. Never raises: a file it
    cannot open, or a character set pydicom refuses, is also left to the full parse."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size < 140:
            return None
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            file = _File(fd, info.st_size)
            if file.buf[128:132] != b"DICM":
                return None
            pos, implicit = _file_meta(file)
            raw, pixel_data = _dataset(file, pos, implicit, wanted)
        finally:
            os.close(fd)
        ds = Dataset(raw)
        ds.set_original_encoding(implicit, True, ds._character_set)  # as dcmread does last
        _convert(ds)
    except Exception:  # noqa: BLE001 - _GiveUp, OSError, or pydicom refusing the character set
        return None
    return ScannedHeader(ds, pixel_data)


def _convert(ds: Dataset) -> None:
    """Convert the kept raw elements now, in one go, exactly as ``Dataset.__getitem__`` does on
    first access (same function, same character set; faster than one by one through the
    dataset). Left raw, to be converted on access as usual: sequences (their items get the pixel
    representation on access), ambiguous VRs, and an element whose conversion fails - it then
    fails the same way when a rule reads it."""
    encoding = ds.original_character_set or ds._character_set
    elements = ds._dict
    for tag, raw in list(elements.items()):
        if not isinstance(raw, RawDataElement):
            continue
        try:
            elem = convert_raw_data_element(raw, encoding=encoding, ds=ds)
        except Exception:  # noqa: BLE001, S112 - converted again, and reported, when a rule reads it
            continue
        if elem.VR != VR.SQ and elem.VR not in AMBIGUOUS_VR:
            elements[tag] = elem


def _file_meta(file: _File) -> tuple[int, bool]:
    """Walk the File Meta group (explicit VR little endian): where the dataset starts and
    whether it is implicit VR, from a transfer syntax read as plain little endian."""
    pos, syntax, group = 132, None, 2
    while True:
        off = file.at(pos, 8)
        group, elem, vr_bytes, length = _EXPLICIT(file.buf, off)
        if group != 2:
            break
        vr = _VRS.get(vr_bytes)
        if vr is None or (vr_bytes in _LONG_VRS and vr != "OB"):
            raise _GiveUp  # pydicom would guess (implicit File Meta) or read a value we do not expect
        if vr == "OB":
            length = _LENGTH(file.buf, file.at(pos + 8, 4))[0]
            pos += 12
        else:
            pos += 8
        if length == _UNDEFINED or pos + length > file.size:
            raise _GiveUp
        if vr not in _META_TEXT_VRS and length % _META_WIDTH_VRS.get(vr, 0x10000) != 0:
            raise _GiveUp  # a value pydicom might fail to convert
        if elem == 0x0010:
            off = file.at(pos, length)
            syntax = file.buf[off:off + length]
        pos += length
    if pos == 132 or syntax is None or group == 0:  # no File Meta, no transfer syntax, a command set
        raise _GiveUp
    if syntax.endswith(b"\0"):
        syntax = syntax[:-1]
    implicit = _PLAIN_SYNTAXES.get(syntax.decode("latin-1"))
    if implicit is None:
        raise _GiveUp
    return pos, implicit


def _dataset(file: _File, pos: int, implicit: bool,
             wanted: frozenset[int]) -> tuple[dict, tuple[int, int] | None]:
    """Walk the top-level dataset to the end of the file: the raw elements ``wanted`` and
    (offset, length) of Pixel Data. Gives up on anything pydicom would treat specially."""
    size = file.size
    _check_encoding(file, pos, implicit, in_sequence=False)
    raw: dict = {}
    pixel_data = None
    buf, start = file.buf, file.start
    while pos < size:  # once per element: kept lean, this loop is most of the reader's time
        off = pos - start
        if off < 0 or off + 12 > len(buf):
            if size - pos < 8:
                raise _GiveUp  # pydicom silently drops a partial element header; let it
            off = file.at(pos, min(12, size - pos))
            buf, start = file.buf, file.start
        if implicit:
            group, elem, length = _IMPLICIT(buf, off)
            vr = None
            value_pos = pos + 8
        else:
            group, elem, vr_bytes, length = _EXPLICIT(buf, off)
            vr = _VRS.get(vr_bytes)
            if vr is None:
                raise _GiveUp  # an implicit VR switch or an unknown VR
            if vr_bytes in _LONG_VRS:
                if off + 12 > len(buf):
                    raise _GiveUp
                length = _LENGTH(buf, off + 8)[0]
                value_pos = pos + 12
            else:
                value_pos = pos + 8
        if group == 0xFFFE:
            raise _GiveUp  # an item or delimiter tag at the top level
        tag = group << 16 | elem
        if length == _UNDEFINED:
            if tag in wanted:
                raise _GiveUp
            if tag == _PIXEL_DATA:
                pixel_data = (value_pos, length)
                pos = _skip_fragments(file, value_pos)
            elif _is_sequence(tag, vr):
                pos = _skip_sequence(file, value_pos, implicit)
            else:
                raise _GiveUp
            buf, start = file.buf, file.start
            continue
        pos = value_pos + length
        if pos > size:
            raise _GiveUp  # (truncated Pixel Data is reported by the full parse, in its words)
        if tag in wanted:
            if length:
                off = file.at(value_pos, length)
                buf, start = file.buf, file.start
                value = buf[off:off + length]
            else:
                value = empty_value_for_VR(vr, raw=True)
            key = BaseTag(tag)
            raw[key] = RawDataElement(key, vr, length, value, value_pos, implicit, True)
        elif tag == _PIXEL_DATA:
            pixel_data = (value_pos, length)
    return raw, pixel_data


def _check_encoding(file: _File, pos: int, implicit: bool, in_sequence: bool) -> None:
    """pydicom looks at the first element's VR bytes and switches VR encoding on a mismatch
    (in a sequence item: from explicit to implicit, silently). Give up on any switch."""
    if pos + 6 > file.size or (in_sequence and implicit):
        return
    off = file.at(pos, 6)
    b0, b1 = file.buf[off + 4], file.buf[off + 5]
    if (not (0x40 < b0 < 0x5B and 0x40 < b1 < 0x5B)) != implicit:
        raise _GiveUp


def _is_sequence(tag: int, vr: str | None) -> bool:
    if vr is not None:
        return vr == "SQ"  # (UN of undefined length: pydicom reads it as a sequence; give up)
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:  # a private tag: pydicom peeks at the value; give up
        return False


def _skip_fragments(file: _File, pos: int) -> int:
    """Past encapsulated Pixel Data: its items up to the sequence delimiter, walked as pydicom
    walks them (pydicom falls back to a byte scan when they do not parse; we give up)."""
    fd, size = file.fd, file.size
    while True:
        off = pos - file.start
        if 0 <= off and off + 8 <= len(file.buf):
            head = file.buf[off:off + 8]
        else:
            head = os.pread(fd, 8, pos)  # 8 bytes, not a window: fragments are far apart
            if len(head) < 8:
                raise _GiveUp
        if head[:4] == _SEQUENCE_END_BYTES:
            return pos + 8
        if head[:4] != _ITEM_BYTES:
            raise _GiveUp
        pos += 8 + _LENGTH(head, 4)[0]
        if pos > size:
            raise _GiveUp


def _skip_sequence(file: _File, pos: int, implicit: bool) -> int:
    """Past a sequence of undefined length (pydicom parses every item): the position after its
    delimiter."""
    while True:
        off = file.at(pos, 8)
        group, elem, length = _IMPLICIT(file.buf, off)
        tag = group << 16 | elem
        if tag == _SEQUENCE_END:
            return pos + 8
        if tag != _ITEM:
            raise _GiveUp
        pos += 8
        if length == _UNDEFINED:
            pos = _skip_item(file, pos, implicit, None)
        else:
            end = pos + length
            if end > file.size or (length and _skip_item(file, pos, implicit, end) != end):
                raise _GiveUp
            pos = end


def _skip_item(file: _File, pos: int, implicit: bool, end: int | None) -> int:
    """Past the dataset of one sequence item: to ``end`` (defined length; the last element
    must end exactly there) or past its item delimiter (undefined length)."""
    size = file.size
    first = True
    while end is None or pos < end:
        off = file.at(pos, 8)
        group, elem, length = _IMPLICIT(file.buf, off)
        tag = group << 16 | elem
        if tag == _ITEM_END:
            if end is not None:
                raise _GiveUp
            return pos + 8
        if group == 0xFFFE:
            raise _GiveUp
        if first:
            _check_encoding(file, pos, implicit, in_sequence=True)
            first = False
        if implicit:
            vr, value_pos = None, pos + 8
        else:
            group, elem, vr_bytes, length = _EXPLICIT(file.buf, off)
            vr = _VRS.get(vr_bytes)
            if vr is None:
                raise _GiveUp
            if vr_bytes in _LONG_VRS:
                length = _LENGTH(file.buf, file.at(pos + 8, 4))[0]
                value_pos = pos + 12
            else:
                value_pos = pos + 8
        if length == _UNDEFINED:
            if not _is_sequence(tag, vr):
                raise _GiveUp
            pos = _skip_sequence(file, value_pos, implicit)
            continue
        pos = value_pos + length
        if pos > size:
            raise _GiveUp
    return pos
