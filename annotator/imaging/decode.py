"""Turn an uploaded file into a radiograph Lungmark can store, show and annotate.

``decode_radiograph`` is the single entry point for uploads. It is a pure function: limits and the
pseudonymisation key are passed in by the caller (the import service), so it runs without Django.
Every problem with the input is reported as ``InvalidImage`` (or its subclass ``FileTooLarge``)
with a message that says what is wrong; no other exception escapes for bad input.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from annotator.errors import FileTooLarge, InvalidImage
from annotator.imaging.deidentify import check_key, deidentify_dicom, pseudonym
from annotator.imaging.dicom import decode_dicom, write_dicom
from annotator.imaging.raster import decode_raster
from annotator.imaging.sniff import describe_unsupported, sniff_kind

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class DecodedRadiograph:
    """A decoded upload. Arrays are 2-D, row-major (height, width) and read-only.

    ``pixels`` keep the source's full bit depth (uint8, or uint16 above 8 bits) after the modality
    LUT; ``display`` is the 8-bit rendering (VOI window or LUT applied). In both, bright means
    dense: MONOCHROME1 sources are inverted. ``window`` is (centre, width) in ``pixels`` units, or
    None when the display came from a non-linear VOI LUT.
    """

    kind: str  # "png" | "jpeg" | "dicom", from the content
    pixels: np.ndarray = field(repr=False)
    bit_depth: int
    display: np.ndarray = field(repr=False)
    width: int
    height: int
    window: tuple[float, float] | None
    view: str | None  # "PA" | "AP" | "LATERAL" | None, from the DICOM View Position
    modality: str | None  # DICOM Modality ("CR", "DX", "CT"...), None for PNG/JPEG
    photometric: str  # the source's photometric interpretation ("MONOCHROME1", "RGB"...)
    patient_pseudonym: str | None  # keyed pseudonym of the DICOM Patient ID
    burned_in: bool | None  # DICOM Burned In Annotation (YES/NO); None when absent or not DICOM
    secondary_capture: bool  # a DICOM Secondary Capture (or converted) image
    deidentified_dicom: bytes | None = field(repr=False)  # the DICOM copy to store, de-identified
    source_metadata: dict[str, Any]  # non-identifying header fields only
    sha256: str  # of the uploaded bytes


def decode_radiograph(
    data: bytes, *, filename: str, max_bytes: int, max_pixels: int, pseudonym_key: bytes
) -> DecodedRadiograph:
    """Recognise, check and decode an uploaded PNG, JPEG or DICOM radiograph.

    ``filename`` is used only in log messages and the error's ``extra``: the type comes from the
    content. ``max_bytes`` is checked before anything is parsed, ``max_pixels`` (width × height ×
    frames) from the header before any pixel is decompressed. Raises ``FileTooLarge`` or
    ``InvalidImage``; a ``ValueError`` only for an unusable (empty) key, a programming error.
    """
    check_key(pseudonym_key)
    extra = {"filename": str(filename)[:200]}
    size = len(data)
    if size == 0:
        raise InvalidImage("the file is empty (0 bytes)", extra=extra)
    if size > max_bytes:
        raise FileTooLarge(
            f"the file is {size} bytes, over the upload limit of {max_bytes} bytes", extra=extra
        )
    kind = sniff_kind(data)
    if kind is None:
        raise InvalidImage(
            f"unsupported file type ({describe_unsupported(data)}): expected PNG, JPEG or DICOM",
            extra=extra,
        )
    try:
        result = _decode(data, kind, max_pixels=max_pixels, key=pseudonym_key)
    except InvalidImage as exc:
        exc.extra = {**extra, **exc.extra}
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise anything on hostile input
        # The file name stays out of the logs: uploads are often named after the patient.
        logger.warning("unexpected %s while decoding a %s file of %d bytes", type(exc).__name__, kind, size, exc_info=True)
        raise InvalidImage(
            f"the {kind.upper()} file could not be decoded ({type(exc).__name__}: {str(exc)[:160]})",
            extra=extra,
        ) from exc
    logger.debug("decoded a %s file of %d bytes: %dx%d", kind, size, result.width, result.height)
    return result


def _decode(data: bytes, kind: str, *, max_pixels: int, key: bytes) -> DecodedRadiograph:
    sha256 = hashlib.sha256(data).hexdigest()
    if kind == "dicom":
        image = decode_dicom(data, max_pixels=max_pixels)
        anonymous = deidentify_dicom(image.dataset, key=key)
        return _build(
            kind,
            image.pixels,
            image.display,
            bit_depth=image.bit_depth,
            window=image.window,
            view=image.view,
            modality=image.modality,
            photometric=image.photometric,
            patient_pseudonym=pseudonym(image.patient_id, key) if image.patient_id else None,
            burned_in=image.burned_in,
            secondary_capture=image.secondary_capture,
            deidentified_dicom=write_dicom(anonymous),
            source_metadata=image.source_metadata,
            sha256=sha256,
        )
    raster = decode_raster(data, kind, max_pixels=max_pixels)
    return _build(
        kind,
        raster.pixels,
        raster.display,
        bit_depth=raster.bit_depth,
        window=raster.window,
        view=None,
        modality=None,
        photometric=raster.photometric,
        patient_pseudonym=None,
        burned_in=None,
        secondary_capture=False,
        deidentified_dicom=None,
        source_metadata=raster.source_metadata,
        sha256=sha256,
    )


def _build(kind: str, pixels: np.ndarray, display: np.ndarray, **fields: Any) -> DecodedRadiograph:
    if pixels.ndim != 2 or display.shape != pixels.shape or display.dtype != np.uint8:
        raise InvalidImage(f"the {kind.upper()} file decoded to an unexpected shape {pixels.shape}")
    if pixels.size == 0:
        raise InvalidImage(f"the {kind.upper()} file contains an empty image")
    for array in (pixels, display):
        array.setflags(write=False)
    height, width = pixels.shape
    return DecodedRadiograph(
        kind=kind, pixels=pixels, display=display, width=width, height=height, **fields
    )
