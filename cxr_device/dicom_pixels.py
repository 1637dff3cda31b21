"""DICOM pixels to a float32 grayscale image in [0, 1] (H x W), bone bright.

Steps, in DICOM order (PS3.3 C.11):

1. refuse before decoding what the device must not read: declared Rows x Columns above
   ``max_pixels`` (decompression bombs), more than one frame, SamplesPerPixel other than 1;
2. decode (pydicom; pylibjpeg + libjpeg/openjpeg plugins for JPEG, JPEG-LS and JPEG 2000);
3. modality LUT: RescaleSlope/Intercept (or a Modality LUT Sequence);
4. VOI: a VOI LUT Sequence or the first window (WindowCenter/Width) when present;
5. scale to [0, 1] by the theoretical output range - derived from BitsStored, the rescale
   and the LUT depth, never from the image's own min/max, so the same stored value always
   maps to the same intensity;
6. MONOCHROME1 is inverted (``1 - x``) so that bone is bright, as in MONOCHROME2.
"""
from __future__ import annotations

from pathlib import Path

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


_UNDEFINED_LENGTH = 0xFFFFFFFF


def read_header(path: str | Path) -> Dataset:
    """Read a DICOM header without loading pixel data; raise :class:`DicomReadError` naming
    the problem. Uncompressed pixel data that the file is too short to hold is caught here too:
    the element's declared length is compared with the file size, without reading the pixels."""
    path = Path(path)
    ds = _read(path, header_only=True)
    raw = ds.get_item("PixelData", keep_deferred=True) if "PixelData" in ds else None
    length = getattr(raw, "length", _UNDEFINED_LENGTH)
    if length != _UNDEFINED_LENGTH:
        size = path.stat().st_size
        if raw.value_tell + length > size:
            raise DicomReadError(f"{path}: truncated: Pixel Data declares {length:,} bytes from offset "
                                 f"{raw.value_tell:,} but the file has {size:,} bytes")
    return ds


def _read(path: Path, header_only: bool) -> Dataset:
    try:
        if path.stat().st_size == 0:
            raise DicomReadError(f"{path}: empty file")
        # defer_size keeps large values (pixel data) on disk until asked for
        return pydicom.dcmread(path, defer_size=1024 if header_only else None)
    except FileNotFoundError:
        raise DicomReadError(f"{path}: file not found") from None
    except InvalidDicomError as err:
        raise DicomReadError(f"{path}: not a DICOM file ({err})") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise DicomReadError(f"{path}: truncated or corrupt DICOM header ({type(err).__name__}: {err})") from None


def check_decodable(ds: Dataset, path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse, from the header alone, images the device must not read."""
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows <= 0 or cols <= 0:
        raise DicomReadError(f"{path}: missing or zero Rows/Columns ({rows} x {cols})")
    if rows * cols > max_pixels:
        raise DicomReadError(
            f"{path}: declared size {rows} x {cols} = {rows * cols:,} pixels is over the limit of "
            f"{max_pixels:,}; refused before decoding (possible decompression bomb)"
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DicomReadError(f"{path}: {frames} frames; the device reads single-frame radiographs only")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise DicomReadError(
            f"{path}: SamplesPerPixel {samples} ({ds.get('PhotometricInterpretation', '?')}): colour images "
            "are not radiographs the device can read; expected 1 (MONOCHROME1/2)"
        )


def read_dicom_pixels(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a single-frame grayscale DICOM to float32 in [0, 1], shape (Rows, Columns)."""
    path = Path(path)
    ds = _read(path, header_only=False)
    check_decodable(ds, path, max_pixels)
    if "PixelData" not in ds:
        raise DicomReadError(f"{path}: no Pixel Data element (7FE0,0010): not an image")
    stored = _decode(ds, path)
    try:
        values = apply_modality_lut(stored, ds)
        lo, hi = _modality_range(ds)
        if "VOILUTSequence" in ds:
            values = apply_voi_lut(values, ds, index=0, prefer_lut=True)
            lo, hi = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
        elif "WindowCenter" in ds and "WindowWidth" in ds:
            values = apply_voi_lut(values, ds, index=0, prefer_lut=False)
    except (ValueError, AttributeError, TypeError, IndexError) as err:
        raise DicomReadError(f"{path}: invalid rescale/VOI attributes ({err})") from None
    image = (np.asarray(values, dtype=np.float64) - lo) / max(hi - lo, 1e-12)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        image = 1.0 - image
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _decode(ds: Dataset, path: Path) -> np.ndarray:
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
