"""Recognise an uploaded file by its first bytes, never by its name.

Browsers and scanners lie about extensions: in the sample set, ten ``.jpg`` files are PNGs. Only
the content decides which decoder runs, and each decoder is then restricted to that one format.
"""
from __future__ import annotations

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"

# Formats people upload by mistake, named in the error message so that the user knows what happened.
_OTHER_FORMATS: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP archive (or a DOCX/XLSX document)"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000 codestream"),
    (b"\x1f\x8b", "gzip archive"),
)

# Explicit VRs that may follow a group 0x0002/0x0008 tag at the start of a preamble-less file.
_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR "
    b"US UT UV".split()
)


def sniff_kind(data: bytes) -> str | None:
    """Return ``"png"``, ``"jpeg"`` or ``"dicom"`` for a file's bytes, or None for anything else."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC:
        return "dicom"
    if looks_like_bare_dicom(data):
        return "dicom"
    return None


def looks_like_bare_dicom(data: bytes) -> bool:
    """True for a DICOM data set stored without the 128-byte preamble and "DICM" prefix.

    Old ACR-NEMA style files (such as ``CR-MONO1-10-chest.dcm``) start directly with a little-endian
    element of group 0x0002 (file meta) or 0x0008 (identifying information). The first element
    must also look like one: either an explicit VR or an implicit 32-bit length that fits the file.
    """
    if len(data) < 8 or data[0:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    if data[4:6] in _VRS:
        return True
    implicit_length = int.from_bytes(data[4:8], "little")
    return implicit_length <= len(data) - 8


def describe_unsupported(data: bytes) -> str:
    """A short description of a file that is not PNG, JPEG or DICOM, for the error message."""
    for magic, name in _OTHER_FORMATS:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "HEIF/AVIF"
    head = data[:512]
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "text"
    return "unrecognised content"
