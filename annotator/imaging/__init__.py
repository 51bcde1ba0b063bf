"""Image decoding, DICOM de-identification and image encoding for Lungmark.

Pure functions, no Django: callers pass limits and keys in. Modules:

* ``decode``       ``decode_radiograph``: an upload (PNG, JPEG, DICOM) → ``DecodedRadiograph``
* ``raster``       PNG/JPEG decoding with Pillow
* ``dicom``        DICOM reading and the grayscale display pipeline
* ``deidentify``   PS3.15 Basic Profile de-identification, keyed pseudonyms and UIDs
* ``basic_profile`` the PS3.15 Table E.1-1 attribute lists
* ``encode``       PNG, preview, thumbnail and mask encoders; mask decoding
* ``sniff``        file type from the content
"""
from annotator.imaging.decode import DecodedRadiograph, decode_radiograph
from annotator.imaging.deidentify import deidentify_dicom, keyed_uid, pseudonym
from annotator.imaging.dicom import normalise_view
from annotator.imaging.encode import (
    decode_mask_png,
    mask_png_bytes,
    png_bytes,
    preview_bytes,
    thumbnail_bytes,
)
from annotator.imaging.sniff import sniff_kind

__all__ = [
    "DecodedRadiograph",
    "decode_mask_png",
    "decode_radiograph",
    "deidentify_dicom",
    "keyed_uid",
    "mask_png_bytes",
    "normalise_view",
    "png_bytes",
    "preview_bytes",
    "pseudonym",
    "sniff_kind",
    "thumbnail_bytes",
]
