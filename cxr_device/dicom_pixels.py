"""DICOM pixels to a float32 grayscale image in [0, 1] (H x W), bone bright.

An input is a path, the file's bytes or a ``pydicom.Dataset`` (:data:`DicomSource`); it is
parsed once (:func:`read_dataset`) and the same dataset serves the header rules and the pixels
(:func:`dataset_pixels`). Steps, in DICOM order (PS3.3 C.11):

1. refuse before decoding what the device must not read: no Pixel Data, declared Rows x
   Columns above ``max_pixels`` (decompression bombs), more than one frame, SamplesPerPixel
   other than 1, a RescaleSlope of 0 or a non-finite rescale;
2. decode (pydicom; pylibjpeg + libjpeg/openjpeg plugins for JPEG, JPEG-LS and JPEG 2000);
3. modality LUT: RescaleSlope/Intercept (or a Modality LUT Sequence);
4. VOI: a VOI LUT Sequence or the first window (WindowCenter/Width) when present;
5. scale to [0, 1] by the theoretical output range - derived from BitsStored, the rescale
   and the LUT depth, never from the image's own min/max, so the same stored value always
   maps to the same intensity;
6. MONOCHROME1 is inverted (``1 - x``) so that bone is bright, as in MONOCHROME2;
7. refuse what cannot be trusted: empty, non-finite or constant pixels
   (:class:`PixelTrustError`) - the device never scores a blank or NaN image.
"""
from __future__ import annotations

import io
import math
import stat
import struct
import zlib
from pathlib import Path
from typing import Union

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from .errors import CxrDeviceError

#: Default decompression-bomb guard: 40 megapixels (a 4,280 x 3,520 detector is 15 MP).
DEFAULT_MAX_PIXELS = 40_000_000
DECODER_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"


class DicomReadError(CxrDeviceError):
    """A DICOM file cannot be turned into pixels; the message names the file and the problem."""


class PixelTrustError(DicomReadError):
    """Pixels decoded but must not be scored: empty, non-finite or constant."""


_UNDEFINED_LENGTH = 0xFFFFFFFF
#: Deflated Explicit VR Little Endian: element offsets are in the inflated stream, not the file.
DEFLATED = "1.2.840.10008.1.2.1.99"

#: What a DICOM input may be: a path, the file's bytes, or a dataset already in memory.
DicomSource = Union[str, Path, bytes, bytearray, Dataset]


def source_label(source: DicomSource) -> str:
    """How messages name an input: its path, or what kind of in-memory object it is."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, Dataset):
        return f"dataset {source.get('SOPInstanceUID', '(no SOPInstanceUID)')}"
    return f"<{len(source):,} bytes>"


def read_dataset(source: DicomSource, header_only: bool = False) -> Dataset:
    """Parse a DICOM input once; raise :class:`DicomReadError` naming the problem.

    ``header_only`` defers large values (Pixel Data) for a path: they stay on disk until
    decoded from this same dataset, so one parse serves the header rules and the pixels.
    Uncompressed Pixel Data that a file is too short to hold is reported as truncated here,
    from the element's declared length and the file size, without reading the pixels.
    """
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (bytes, bytearray)):
        return _parse(io.BytesIO(source), source_label(source), None)
    path = Path(source)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise DicomReadError(f"{path}: not a regular file (a folder, pipe or device); nothing was read")
        if path.stat().st_size == 0:
            raise DicomReadError(f"{path}: empty file")
    except FileNotFoundError:
        raise DicomReadError(f"{path}: file not found") from None
    except OSError as err:
        raise DicomReadError(f"{path}: cannot read ({err.strerror or err})") from None
    ds = _parse(path, str(path), 1024 if header_only else None)
    check_not_truncated(ds, path)
    return ds


def read_header(path: str | Path) -> Dataset:
    """A file's header, Pixel Data left on disk (see :func:`read_dataset`)."""
    return read_dataset(path, header_only=True)


def check_not_truncated(ds: Dataset, path: Path) -> None:
    """Refuse a file shorter than the uncompressed Pixel Data it declares."""
    raw = ds.get_item("PixelData", keep_deferred=True) if "PixelData" in ds else None
    length = getattr(raw, "length", _UNDEFINED_LENGTH)
    syntax = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", ""))
    if raw is None or length == _UNDEFINED_LENGTH or syntax == DEFLATED:
        return
    size = path.stat().st_size
    if raw.value_tell + length > size:
        raise DicomReadError(f"{path}: truncated: Pixel Data declares {length:,} bytes from offset "
                             f"{raw.value_tell:,} but the file has {size:,} bytes")


def _parse(where, label: str, defer_size: int | None) -> Dataset:
    try:
        return pydicom.dcmread(where, defer_size=defer_size)
    except InvalidDicomError as err:
        raise DicomReadError(f"{label}: not a DICOM file ({err})") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, struct.error,
            zlib.error, NotImplementedError) as err:
        raise DicomReadError(f"{label}: truncated or corrupt DICOM header ({type(err).__name__}: {err})") from None


def check_decodable(ds: Dataset, path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse, from the header alone, images the device must not read."""
    if "PixelData" not in ds:
        raise DicomReadError(f"{path}: no Pixel Data element (7FE0,0010): not an image")
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError) as err:
        raise DicomReadError(f"{path}: Rows, Columns, NumberOfFrames or SamplesPerPixel is not a number ({err})") \
            from None
    if rows <= 0 or cols <= 0:
        raise DicomReadError(f"{path}: missing or zero Rows/Columns ({rows} x {cols})")
    if rows * cols > max_pixels:
        raise DicomReadError(
            f"{path}: declared size {rows} x {cols} = {rows * cols:,} pixels is over the limit of "
            f"{max_pixels:,}; refused before decoding (possible decompression bomb)"
        )
    if frames > 1:
        raise DicomReadError(f"{path}: {frames} frames; the device reads single-frame radiographs only")
    if samples != 1:
        raise DicomReadError(
            f"{path}: SamplesPerPixel {samples} ({ds.get('PhotometricInterpretation', '?')}): colour images "
            "are not radiographs the device can read; expected 1 (MONOCHROME1/2)"
        )


def read_dicom_pixels(source: DicomSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a single-frame grayscale DICOM (path, bytes or dataset) to float32 in [0, 1],
    shape (Rows, Columns)."""
    return dataset_pixels(read_dataset(source), source_label(source), max_pixels)


def dataset_pixels(ds: Dataset, label: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The pixels of a parsed dataset as float32 in [0, 1]; refuses what cannot be trusted
    (see :func:`check_trustworthy`)."""
    check_decodable(ds, label, max_pixels)
    _check_rescale(ds, label)
    stored = _decode(ds, label)
    try:
        identity = "ModalityLUTSequence" not in ds and float(ds.get("RescaleSlope", 1) or 1) == 1.0 \
            and float(ds.get("RescaleIntercept", 0) or 0) == 0.0
        values = stored if identity else apply_modality_lut(stored, ds)  # keep integers: the VOI LUT wants them
        lo, hi = _modality_range(ds)
        if "VOILUTSequence" in ds:
            values = apply_voi_lut(values, ds, index=0, prefer_lut=True)
            lo, hi = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
        elif "WindowCenter" in ds and "WindowWidth" in ds:
            values = apply_voi_lut(values, ds, index=0, prefer_lut=False)
    except (ValueError, AttributeError, TypeError, IndexError, KeyError) as err:
        raise DicomReadError(f"{label}: invalid rescale/VOI attributes ({err})") from None
    values = np.asarray(values, dtype=np.float64)
    check_trustworthy(values, label, "after the modality and VOI LUTs")
    image = (values - lo) / max(hi - lo, 1e-12)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        image = 1.0 - image
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    check_trustworthy(image, label, "after scaling to the output range")
    return image


def check_trustworthy(image: np.ndarray, label: str, stage: str = "") -> None:
    """Refuse pixels the device must never score: empty, non-finite or constant."""
    where = f" {stage}" if stage else ""
    if image.size == 0:
        raise PixelTrustError(f"{label}: empty pixel data: nothing to score")
    finite = np.isfinite(image)
    if not finite.all():
        raise PixelTrustError(f"{label}: {int((~finite).sum()):,} of {image.size:,} pixel values are not finite"
                              f"{where} (NaN or infinity); the image cannot be trusted")
    lo, hi = float(image.min()), float(image.max())
    if hi - lo <= 1e-6 * max(1.0, abs(hi)):
        raise PixelTrustError(f"{label}: constant image: every pixel has the same value ({lo:g}){where}; a "
                              "blank image carries nothing to score")


def _check_rescale(ds: Dataset, label: str) -> None:
    """RescaleSlope must be a finite non-zero number and RescaleIntercept finite."""
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        if keyword not in ds or ds[keyword].value in (None, ""):
            continue
        try:
            value = float(ds[keyword].value)
        except (TypeError, ValueError):
            raise DicomReadError(f"{label}: {keyword} {ds[keyword].value!r} is not a number") from None
        if not math.isfinite(value) or (keyword == "RescaleSlope" and value == 0):
            raise PixelTrustError(f"{label}: {keyword} is {value:g}: the modality LUT would make every pixel "
                                  f"{'non-finite' if not math.isfinite(value) else 'equal'}; the image cannot "
                                  "be trusted")


def _decode(ds: Dataset, path: str) -> np.ndarray:
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        array = ds.pixel_array
    except (NotImplementedError, RuntimeError) as err:
        name = getattr(syntax, "name", str(syntax))
        label = str(syntax) if name == str(syntax) else f"{name} ({syntax})"
        raise DicomReadError(
            f"{path}: cannot decode transfer syntax {label}: {str(err).splitlines()[0]}. "
            f"Install the decoders: {DECODER_HINT}"
        ) from None
    except (ValueError, EOFError, OSError, KeyError, TypeError, AttributeError) as err:
        raise DicomReadError(f"{path}: truncated or corrupt pixel data ({type(err).__name__}: {err})") from None
    if array.ndim != 2:
        raise DicomReadError(f"{path}: decoded pixel array has shape {array.shape}; expected one grayscale frame")
    return array


def _modality_range(ds: Dataset) -> tuple[float, float]:
    """Theoretical range after the modality LUT, as pydicom's windowing uses it (PS3.3 C.11.1)."""
    if "ModalityLUTSequence" in ds:
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    if int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = sorted((lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)))
    return lo, hi
