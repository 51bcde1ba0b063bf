"""DICOM radiographs: read the header, check it, decode the first frame and render it for display.

The rendering follows the DICOM grayscale pipeline (PS3.3 C.11): stored values → Modality LUT or
rescale → VOI LUT or window (linear, linear-exact or sigmoid) → 8-bit display, falling back to a
min-max stretch when the file carries no VOI. pydicom never inverts MONOCHROME1, so this module
does: every output is "bright = dense".
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder, pixel_array
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from annotator.errors import InvalidImage
from annotator.imaging.sniff import DICOM_MAGIC, DICOM_MAGIC_OFFSET

logger = logging.getLogger(__name__)

_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_VIEWS = {
    "PA": "PA",
    "AP": "AP",
    "LL": "LATERAL",
    "RL": "LATERAL",
    "LAT": "LATERAL",
    "L": "LATERAL",
    "LATERAL": "LATERAL",
}
_CODE_STRING = re.compile(r"^[A-Z0-9 _]{1,16}$")
# What ``safe_metadata`` copies into the database: all on the de-identification allow-list.
_SAFE_CODE_STRINGS = ("Modality", "ViewPosition", "BodyPartExamined", "PhotometricInterpretation")
_SAFE_INTEGERS = ("BitsStored", "Rows", "Columns")
SAFE_METADATA_KEYWORDS = (*_SAFE_CODE_STRINGS, *_SAFE_INTEGERS, "PixelSpacing")
# Secondary Capture SOP classes (PS3.4 B.5): scanned films, screenshots, figures from papers, where
# text is often part of the pixels.
SECONDARY_CAPTURE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",
        "1.2.840.10008.5.1.4.1.1.7.1",
        "1.2.840.10008.5.1.4.1.1.7.2",
        "1.2.840.10008.5.1.4.1.1.7.3",
        "1.2.840.10008.5.1.4.1.1.7.4",
    }
)


@dataclass(frozen=True, eq=False)
class DicomImage:
    """What ``decode_dicom`` extracts; ``dataset`` is the original, still identifying, data set."""

    pixels: np.ndarray
    display: np.ndarray
    bit_depth: int
    window: tuple[float, float] | None
    photometric: str
    view: str | None
    modality: str | None
    patient_id: str | None
    burned_in: bool | None  # Burned In Annotation: YES, NO, or None when absent or unreadable
    secondary_capture: bool  # a Secondary Capture SOP class, or a Conversion Type is present
    source_metadata: dict[str, Any]
    dataset: Dataset


def read_dicom(data: bytes) -> Dataset:
    """Parse a DICOM file (with or without preamble and file meta) that has pixel data."""
    has_preamble = data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC
    try:
        ds = pydicom.dcmread(BytesIO(data), force=not has_preamble)
    except EOFError as exc:
        raise InvalidImage(f"truncated DICOM file: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for malformed input
        raise InvalidImage(f"not a readable DICOM file: {_short(exc)}") from exc
    if "PixelData" not in ds:
        raise InvalidImage("DICOM file contains no image (no Pixel Data element)")
    if not isinstance(getattr(ds, "file_meta", None), FileMetaDataset):
        ds.file_meta = FileMetaDataset()
    if not ds.file_meta.get("TransferSyntaxUID"):
        # A preamble-less ACR-NEMA style file: tell pydicom how its pixels are encoded.
        implicit, little = ds.original_encoding
        if implicit in (True, None):
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        else:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    return ds


def decode_dicom(data: bytes, *, max_pixels: int) -> DicomImage:
    """Read ``data``, check its declared size against ``max_pixels``, decode the first frame."""
    ds = read_dicom(data)
    rows = _int(ds, "Rows", 0)
    columns = _int(ds, "Columns", 0)
    frames = _int(ds, "NumberOfFrames", 1) or 1
    samples = _int(ds, "SamplesPerPixel", 1)
    bits_allocated = _int(ds, "BitsAllocated", 0)
    bits_stored = _int(ds, "BitsStored", bits_allocated)
    # Old ACR-NEMA style headers may leave these out; their defaults are unambiguous.
    _set_default(ds, "SamplesPerPixel", samples)
    _set_default(ds, "BitsStored", bits_stored)
    _set_default(ds, "PixelRepresentation", _int(ds, "PixelRepresentation", 0))
    if rows <= 0 or columns <= 0 or frames < 0:
        raise InvalidImage("DICOM header gives no valid image size (Rows, Columns, Number of Frames)")
    if rows * columns * frames > max_pixels:
        raise InvalidImage(
            f"decompression bomb / too many pixels: the DICOM header declares {frames} frame(s) of "
            f"{columns}x{rows}, over the limit of {max_pixels} pixels"
        )
    if samples not in (1, 3):
        raise InvalidImage(f"unsupported DICOM image: {samples} samples per pixel")
    if bits_allocated not in (1, 8, 16, 32) or not 1 <= bits_stored <= bits_allocated:
        raise InvalidImage(
            f"unsupported DICOM image: {bits_stored} bits stored in {bits_allocated} allocated"
        )
    photometric = str(_get(ds, "PhotometricInterpretation") or "").strip().upper()
    if not photometric:
        photometric = "MONOCHROME2" if samples == 1 else "RGB"
        ds.PhotometricInterpretation = photometric
    if samples == 1 and photometric not in (*_MONOCHROME, "PALETTE COLOR"):
        raise InvalidImage(f"unsupported DICOM photometric interpretation {photometric!r}")

    _check_decoder(ds)
    try:
        frame = pixel_array(ds, index=0)
    except NotImplementedError as exc:  # before RuntimeError, its base class
        raise InvalidImage(f"unsupported DICOM pixel encoding: {_short(exc)}") from exc
    except (EOFError, ValueError, RuntimeError) as exc:  # RuntimeError: the JPEG codecs
        raise InvalidImage(f"truncated or corrupt DICOM pixel data: {_short(exc)}") from exc
    except (AttributeError, KeyError, TypeError) as exc:
        raise InvalidImage(f"incomplete or invalid DICOM image header: {_short(exc)}") from exc
    if frame.shape[:2] != (rows, columns):
        raise InvalidImage(
            f"DICOM pixel data decodes to {frame.shape[:2]}, but the header says {(rows, columns)}"
        )

    if samples == 3 or photometric == "PALETTE COLOR":
        pixels, display, bit_depth, window = _colour(frame, ds, photometric, bits_stored)
    else:
        pixels, display, bit_depth, window = _grayscale(frame, ds, photometric, bits_stored)

    patient_id = str(_get(ds, "PatientID") or "").strip() or None
    return DicomImage(
        pixels=pixels,
        display=display,
        bit_depth=bit_depth,
        window=window,
        photometric=photometric,
        view=normalise_view(_get(ds, "ViewPosition")),
        modality=_code_string(_get(ds, "Modality")),
        patient_id=patient_id,
        burned_in={"YES": True, "NO": False}.get(_code_string(_get(ds, "BurnedInAnnotation")) or ""),
        secondary_capture=is_secondary_capture(ds),
        source_metadata=safe_metadata(ds, frames=frames),
        dataset=ds,
    )


def write_dicom(ds: Dataset) -> bytes:
    """Serialise a data set as a standard DICOM file (preamble, "DICM", file meta)."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def normalise_view(value: object) -> str | None:
    """Map a View Position (or a view label such as "AP Supine") to "PA", "AP", "LATERAL" or None.

    Decubitus (LLD/RLD) and oblique views are not one of the three and give None.
    """
    if value is None:
        return None
    tokens = re.split(r"[^A-Z]+", str(value).upper())
    first = next((token for token in tokens if token), "")
    return _VIEWS.get(first)


def is_secondary_capture(ds: Dataset) -> bool:
    """Whether the image was captured from something else (a film, a screen, a figure)."""
    return str(_get(ds, "SOPClassUID") or "").strip() in SECONDARY_CAPTURE_CLASSES or bool(
        str(_get(ds, "ConversionType") or "").strip()
    )


def safe_metadata(ds: Dataset, *, frames: int) -> dict[str, Any]:
    """Header fields that describe the image and identify nobody, as JSON-ready values."""
    metadata: dict[str, Any] = {}
    for keyword in _SAFE_CODE_STRINGS:
        value = _code_string(_get(ds, keyword))
        if value:
            metadata[keyword] = value
    for keyword in _SAFE_INTEGERS:
        metadata[keyword] = _int(ds, keyword, 0)
    metadata["NumberOfFrames"] = frames
    spacing = _get(ds, "PixelSpacing")
    try:
        row_mm, column_mm = (float(v) for v in spacing)  # type: ignore[union-attr]
        if all(math.isfinite(v) and v > 0 for v in (row_mm, column_mm)):
            metadata["PixelSpacing"] = [row_mm, column_mm]
    except (TypeError, ValueError):
        pass
    metadata["TransferSyntaxUID"] = str(ds.file_meta.get("TransferSyntaxUID", ""))
    return metadata


# --- pixel pipelines -------------------------------------------------------------------------


def _grayscale(
    frame: np.ndarray, ds: Dataset, photometric: str, bits_stored: int
) -> tuple[np.ndarray, np.ndarray, int, tuple[float, float] | None]:
    """Monochrome frame → (pixels, display, bit depth, window in pixel units).

    ``pixels`` are the modality values mapped onto unsigned integers ``0 .. 2**bit_depth - 1``:
    for a rescale that is the stored value (offset when signed, mirrored when the slope is
    negative, so that pixels always grow with the modality value), for a Modality LUT its output.
    Any affine map keeps windowing meaningful, and the window is converted alongside.
    """
    invert = photometric == "MONOCHROME1"
    modality_lut = _first_item(ds, "ModalityLUTSequence")
    if modality_lut is not None:
        modality = np.asarray(apply_modality_lut(frame, ds))
        bit_depth = int(np.clip(_lut_bits(modality_lut, modality), 1, 16))
        full = (1 << bit_depth) - 1
        pixels = np.clip(modality, 0, full)
        to_pixels = (1.0, 0.0)  # pixel = modality * a + b
    else:
        slope = _float(ds, "RescaleSlope", 1.0) or 1.0
        intercept = _float(ds, "RescaleIntercept", 0.0)
        signed = _int(ds, "PixelRepresentation", 0) == 1
        shift = max(bits_stored - 16, 0)  # more than 16 bits stored: keep the top 16
        bit_depth = bits_stored - shift
        full = (1 << bit_depth) - 1
        offset = (1 << (bits_stored - 1)) if signed else 0
        stored = frame
        if signed:
            stored = frame.astype(np.int64 if frame.dtype.itemsize > 2 else np.int32) + offset
        if stored.size and (stored.min() < 0 or stored.max() > (1 << bits_stored) - 1):
            stored = np.clip(stored, 0, (1 << bits_stored) - 1)  # garbage in the unused high bits
        pixels = stored >> shift if shift else stored
        # pixel = ((modality - intercept) / slope + offset) / 2**shift
        scale = 1.0 / (slope * (1 << shift))
        to_pixels = (scale, (offset - intercept / slope) / (1 << shift))
        if slope < 0:
            pixels = full - pixels
            to_pixels = (-to_pixels[0], full - to_pixels[1])
        if slope == 1.0 and intercept == 0.0:
            modality = frame
        else:
            modality = frame.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    if invert:
        pixels = full - pixels
        to_pixels = (-to_pixels[0], full - to_pixels[1])
    pixels = pixels.astype(np.uint8 if bit_depth <= 8 else np.uint16, copy=False)

    display, header_window = _voi(modality, ds)
    if invert:
        display = 255 - display
    if header_window is not None:
        center, width = header_window
        a, b = to_pixels
        window: tuple[float, float] | None = (center * a + b, width * abs(a))
    elif _first_item(ds, "VOILUTSequence") is not None:
        window = None  # a non-linear VOI LUT has no equivalent centre/width
    else:
        window = _minmax_window(pixels)
    return pixels, display, bit_depth, window


def _voi(modality: np.ndarray, ds: Dataset) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Apply the VOI LUT or the first window; (display, window used in modality units or None)."""
    voi_lut = _first_item(ds, "VOILUTSequence")
    if voi_lut is not None:
        try:
            lut = np.asarray(voi_lut.LUTData, dtype=np.float64)
            values = apply_voi(np.asarray(modality), ds, index=0).astype(np.float32)
            return _stretch(values, float(lut.min()), float(lut.max())), None
        except Exception as exc:  # noqa: BLE001 - a broken VOI LUT should not reject the image
            logger.info("ignoring unusable VOI LUT: %s", _short(exc))
    window = _header_window(ds)
    if window is not None:
        center, width = window
        function = str(_get(ds, "VOILUTFunction") or "LINEAR").strip().upper()
        values = modality.astype(np.float32, copy=False)
        if function == "SIGMOID":
            with np.errstate(over="ignore"):  # exp overflows to inf far from the centre: fine
                unit = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
        elif function == "LINEAR_EXACT":
            unit = (values - center) / width + 0.5
        elif width > 1:  # LINEAR, PS3.3 C.11.2.1.2.1
            unit = (values - (center - 0.5)) / (width - 1) + 0.5
        else:
            unit = (values > center - 0.5).astype(np.float32)
        return _to_uint8(unit), window
    return _stretch(modality, float(modality.min()), float(modality.max())), None


def _colour(
    frame: np.ndarray, ds: Dataset, photometric: str, bits_stored: int
) -> tuple[np.ndarray, np.ndarray, int, tuple[float, float] | None]:
    """RGB, YBR (already converted to RGB by pydicom) or palette colour → luminance."""
    rgb = np.asarray(apply_color_lut(frame, ds)) if photometric == "PALETTE COLOR" else frame
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InvalidImage(f"unexpected DICOM colour pixel layout {rgb.shape}")
    luminance = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if rgb.dtype.itemsize == 1:
        gray = np.rint(luminance).astype(np.uint8)
        return gray, gray, 8, (127.5, 255.0)
    bit_depth = 16 if photometric == "PALETTE COLOR" else min(bits_stored, 16)
    gray = np.clip(np.rint(luminance), 0, (1 << bit_depth) - 1).astype(np.uint16)
    display = _stretch(gray, float(gray.min()), float(gray.max()))
    return gray, display, bit_depth, _minmax_window(gray)


def _check_decoder(ds: Dataset) -> None:
    """Name the encoding when no installed plugin decodes it (e.g. HTJ2K), instead of a stack trace."""
    syntax = ds.file_meta.TransferSyntaxUID
    name = getattr(syntax, "name", str(syntax))
    try:
        decoder = get_decoder(syntax)
    except (NotImplementedError, ValueError) as exc:
        raise InvalidImage(f"unsupported DICOM transfer syntax: {name}") from exc
    if not decoder.is_available:
        raise InvalidImage(f"DICOM pixel encoding {name} is not supported (no decoder installed)")


# --- small helpers -----------------------------------------------------------------------------


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if not high > low:
        return np.zeros(values.shape, dtype=np.uint8)
    unit = (values.astype(np.float32, copy=False) - np.float32(low)) * np.float32(1.0 / (high - low))
    return _to_uint8(unit)


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    """[0, 1] floats (clipped) → uint8."""
    scaled = np.clip(unit * np.float32(255.0), 0.0, 255.0)
    return np.rint(scaled, out=scaled).astype(np.uint8)


def _minmax_window(pixels: np.ndarray) -> tuple[float, float]:
    low, high = float(pixels.min()), float(pixels.max())
    return (low + high) / 2.0, max(high - low, 1.0)


def _header_window(ds: Dataset) -> tuple[float, float] | None:
    center, width = _get(ds, "WindowCenter"), _get(ds, "WindowWidth")
    try:
        center = float(center[0] if _is_multi(center) else center)  # type: ignore[index]
        width = float(width[0] if _is_multi(width) else width)  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return None
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        return None
    return center, width


def _lut_bits(item: Dataset, output: np.ndarray) -> int:
    try:
        return int(item.LUTDescriptor[2])
    except Exception:  # noqa: BLE001 - fall back to what the LUT actually produced
        return max(int(output.max()).bit_length(), 1)


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    sequence = _get(ds, keyword)
    try:
        return sequence[0] if sequence else None  # type: ignore[index]
    except (TypeError, IndexError):
        return None


def _is_multi(value: object) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


def _get(ds: Dataset, keyword: str) -> Any:
    """An element's value, or None when absent or unreadable (malformed values are common)."""
    try:
        return ds.get(keyword)
    except Exception:  # noqa: BLE001
        return None


def _int(ds: Dataset, keyword: str, default: int) -> int:
    value = _get(ds, keyword)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidImage(f"invalid DICOM {keyword}: {str(value)[:40]!r}") from exc


def _set_default(ds: Dataset, keyword: str, value: int) -> None:
    if _get(ds, keyword) in (None, ""):
        setattr(ds, keyword, value)


def _float(ds: Dataset, keyword: str, default: float) -> float:
    value = _get(ds, keyword)
    try:
        number = float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _code_string(value: object) -> str | None:
    """A clean DICOM code string (CS), or None: keeps free text out of stored metadata."""
    if value is None:
        return None
    text = str(value).strip().upper()
    return text if _CODE_STRING.match(text) else None


def _short(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
