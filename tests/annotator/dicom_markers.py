"""A DICOM file with a marker in every text-like attribute of pydicom's data dictionary.

Every string VR gets a value valid for its VR but unique to this test (a marker date, a marker code
string...), at the top level, inside sequence items, inside sequences nested in those items, and in
private blocks (their private creator included). Only the attributes the image itself needs (the
pixel module and its rendering: what ``basic_profile`` keeps unchanged) carry the real file's values:
without them there is no image to import.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import pydicom
from pydicom.datadict import DicomDictionary
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from annotator.imaging.basic_profile import ALLOWED, Action

# Values valid for their VR, and found nowhere else.
MARKER = "MRKR"  # every text marker starts with it (searched case-insensitively)
DATE, TIME, DATETIME, AGE = "19450317", "031745", "19450317031745", "087Y"
DECIMAL, INTEGER = "1945.0317", "19450317"
UID_ROOT = "1.2.826.0.1.3680043.10.1945"
BINARY = b"MRKRBINARY\0"
PATIENT_ID = "MRKRPATIENT-0042"
FILE_NAME = f"{MARKER}SURNAME_{MARKER}GIVEN_MRN12345_{DATE}.dcm"

TEXT_VALUES = {
    "AE": f"{MARKER}AE", "CS": f"{MARKER}1", "LO": f"{MARKER} long string", "SH": f"{MARKER}SH",
    "LT": f"{MARKER} long text", "ST": f"{MARKER} short text", "UT": f"{MARKER} unlimited text",
    "UC": f"{MARKER} unlimited characters", "PN": f"{MARKER}SURNAME^{MARKER}GIVEN",
    "UR": f"https://{MARKER.lower()}.example/{MARKER}", "DA": DATE, "TM": TIME, "DT": DATETIME,
    "AS": AGE, "DS": DECIMAL, "IS": INTEGER,
}
BINARY_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
# Searched for in bytes and text: every marker above, and how a date might be re-formatted.
NEEDLES = (MARKER, DATE, "1945-03-17", TIME, AGE, DECIMAL, UID_ROOT, "MRN12345")
_NEEDLE = re.compile("|".join(re.escape(n) for n in NEEDLES), re.IGNORECASE)


def found_markers(text: str | bytes) -> set[str]:
    """The markers present in ``text`` (bytes are searched as Latin-1, so nothing is lost)."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    return {match.group(0).upper() for match in _NEEDLE.finditer(text)}


def _marker_value(vr: str, number: int) -> object:
    if vr == "UI":
        return f"{UID_ROOT}.{number}"
    if vr in BINARY_VRS:
        return BINARY
    return TEXT_VALUES.get(vr)


def _marked_item(number: int, *, depth: int) -> Dataset:
    """A sequence item with markers in every string VR, a private block and (once) a nested sequence."""
    item = Dataset()
    item.CodeValue = f"{MARKER}{number}"[:16]
    item.CodeMeaning = TEXT_VALUES["LO"]
    item.PersonName = TEXT_VALUES["PN"]
    item.ObservationDateTime = DATETIME
    item.Date = DATE
    item.TextValue = TEXT_VALUES["UT"]
    item.ReferencedSOPClassUID = pydicom.uid.ComputedRadiographyImageStorage
    item.ReferencedSOPInstanceUID = f"{UID_ROOT}.9{number}"
    block = item.private_block(0x0029, f"{MARKER} NESTED CREATOR", create=True)
    block.add_new(0x10, "LO", TEXT_VALUES["LO"])
    if depth < 2:
        item.ContentSequence = Sequence([_marked_item(number, depth=depth + 1)])
    return item


def marked_dataset(path: Path, *, burned_in: str | None = "NO") -> Dataset:
    """The DICOM at ``path`` with every text-like attribute of the data dictionary set to a marker."""
    ds = pydicom.dcmread(path, force=True)
    ds.preamble = BINARY.ljust(128, b"\0")  # "dual personality" files hide a whole TIFF here
    kept = {keyword for keyword, action in ALLOWED.items() if action in (Action.KEEP, Action.ITEMS)}
    kept.add("SOPClassUID")  # the real class: whether it is a secondary capture matters
    for number, (tag, entry) in enumerate(sorted(DicomDictionary.items())):
        vr, keyword = entry[0], entry[4]
        group = tag >> 16
        if group in (0x0000, 0x0002, 0xFFFE, 0xFFFC) or keyword in kept:
            continue  # command, file meta and item delimiters cannot be in a data set
        if vr == "SQ":
            ds.add_new(tag, vr, Sequence([_marked_item(number, depth=0)]))
            continue
        value = _marker_value(vr, number)
        if value is not None:
            ds.add_new(tag, vr, value)
    ds.PatientID = PATIENT_ID
    # The kept sequences that point at other images: their items carry markers too.
    ds.SourceImageSequence = Sequence([_marked_item(1, depth=0)])
    ds.ReferencedImageSequence = Sequence([_marked_item(2, depth=0)])
    ds.SourceImageSequence[0].ReferencedSOPInstanceUID = ds.SOPInstanceUID  # a reference to itself
    # Private blocks with marker creators, an unknown public tag, overlays and curves.
    for group, creator in ((0x0009, f"{MARKER} CREATOR"), (0x0011, "SIEMENS CSA HEADER")):
        block = ds.private_block(group, creator, create=True)
        block.add_new(0x10, "LO", TEXT_VALUES["LO"])
        block.add_new(0x11, "UN", BINARY)
        block.add_new(0x12, "DA", DATE)
    ds.add_new(0x0018FFF0, "LO", TEXT_VALUES["LO"])
    ds.add_new(0x60003000, "OW", BINARY)
    ds.add_new(0x60004000, "LT", TEXT_VALUES["LT"])
    ds.add_new(0x50002000, "LO", TEXT_VALUES["LO"])
    if burned_in is None:
        ds.pop("BurnedInAnnotation", None)
    else:
        ds.BurnedInAnnotation = burned_in
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
