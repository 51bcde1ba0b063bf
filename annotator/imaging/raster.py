"""PNG and JPEG radiographs, decoded with Pillow.

The header is read first (Pillow opens lazily) so that the pixel limit is enforced before any pixel
is decompressed; Pillow is restricted to the one format the content was recognised as. Colour,
palette and alpha images become 8-bit grayscale; 16-bit grayscale PNGs keep their 16 bits.
"""
from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from annotator.errors import InvalidImage

_FORMATS = {"png": "PNG", "jpeg": "JPEG"}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_EXIF_ORIENTATION = 0x0112
_PHOTOMETRIC = {
    "1": "MONOCHROME2",
    "L": "MONOCHROME2",
    "LA": "MONOCHROME2",
    "I": "MONOCHROME2",
    "P": "PALETTE COLOR",
    "PA": "PALETTE COLOR",
    "CMYK": "CMYK",
    "YCbCr": "YBR_FULL",
    **{mode: "MONOCHROME2" for mode in _SIXTEEN_BIT_MODES},
}


@dataclass(frozen=True, eq=False)
class RasterImage:
    pixels: np.ndarray
    display: np.ndarray
    bit_depth: int
    window: tuple[float, float]
    photometric: str
    source_metadata: dict[str, Any]


def decode_raster(data: bytes, kind: str, *, max_pixels: int) -> RasterImage:
    """Decode a PNG or JPEG (``kind`` from ``sniff_kind``) into grayscale arrays."""
    name = _FORMATS[kind]
    try:
        image = Image.open(BytesIO(data), formats=[name])
    except Image.DecompressionBombError as exc:
        raise InvalidImage(f"decompression bomb / too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage(f"corrupt {name} file: its header cannot be read") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"corrupt {name} file: {exc}") from exc

    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise InvalidImage(f"corrupt {name} file: it declares a {width}x{height} image")
        if width * height > max_pixels:
            raise InvalidImage(
                f"decompression bomb / too many pixels: the {name} header declares {width}x{height}, "
                f"over the limit of {max_pixels} pixels"
            )
        source_mode = image.mode
        orientation = _orientation(image)
        if name == "JPEG" and source_mode in ("RGB", "YCbCr"):
            # Let libjpeg produce luma directly: faster than decoding colour and converting.
            image.draft("L", image.size)
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InvalidImage(f"truncated or corrupt {name} file: {exc}") from exc
        if orientation not in (None, 1):
            image = ImageOps.exif_transpose(image)
        pixels, bit_depth = _grayscale(image)

    if bit_depth == 8:
        display, window = pixels, (127.5, 255.0)
    else:
        display, window = _stretch16(pixels)
    metadata: dict[str, Any] = {"format": name, "mode": source_mode}
    if orientation not in (None, 1):
        metadata["exif_orientation"] = orientation
    return RasterImage(
        pixels=pixels,
        display=display,
        bit_depth=bit_depth,
        window=window,
        photometric=_PHOTOMETRIC.get(source_mode, "RGB"),
        source_metadata=metadata,
    )


def _orientation(image: Image.Image) -> int | None:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # noqa: BLE001 - a broken EXIF block is ignored, not fatal
        return None
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _grayscale(image: Image.Image) -> tuple[np.ndarray, int]:
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return np.asarray(image).astype(np.uint16, copy=False), 16
    if mode == "I":  # 16-bit PNGs as opened by older Pillow versions
        return np.clip(np.asarray(image), 0, 65535).astype(np.uint16), 16
    if mode in ("P", "PA"):
        image = image.convert("RGBA")  # applies palette transparency without a warning
    if image.mode != "L":
        try:
            image = image.convert("L")
        except ValueError:
            image = image.convert("RGB").convert("L")
    return np.asarray(image), 8


def _stretch16(pixels: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    low, high = int(pixels.min()), int(pixels.max())
    if high <= low:
        return np.zeros(pixels.shape, dtype=np.uint8), (float(low), 1.0)
    scaled = (pixels.astype(np.float32) - low) * np.float32(255.0 / (high - low))
    display = np.rint(scaled, out=scaled).astype(np.uint8)
    return display, ((low + high) / 2.0, float(high - low))
