"""De-identification of DICOM data sets and keyed pseudonyms.

Implements the PS3.15 Annex E Basic Application Level Confidentiality Profile for the copy of an
uploaded DICOM file that Lungmark stores, by allow-list:

* Only the attributes that ``basic_profile.ALLOWED`` names are kept, at any depth; everything else
  goes, known or unknown, public or private (dates, names, free text, device and institution data,
  overlays, curves, group lengths, private blocks and their creators).
* Patient ID and Patient's Name become a keyed pseudonym (HMAC-SHA256 of the Patient ID), so the
  same patient gets the same pseudonym across uploads without the original being recoverable
  without the key.
* Every instance UID is replaced by a keyed deterministic UID, so references between instances of
  one study stay consistent; class UIDs are kept when they are well known (SOP classes).
* The preamble (which can hide a whole TIFF in "dual personality" files) and the file meta group
  are rebuilt from scratch.

The key is passed in by the caller: this module does not read settings.
"""
from __future__ import annotations

import copy
import hashlib
import hmac

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    UID_dictionary,
    generate_uid,
)

from annotator.imaging import basic_profile
from annotator.imaging.basic_profile import Action

PSEUDONYM_PREFIX = "LM-"
# LO allows 64 characters; this is exactly 64.
DEIDENTIFICATION_METHOD = "Lungmark: PS3.15 Basic Application Level Confidentiality Profile"
# PS3.16 CID 7050: "Basic Application Confidentiality Profile".
_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")

# UI attributes that name a kind of thing (a SOP class, an encoding), not an instance: the stored
# copy's class UIDs and its file meta's.
CLASS_UID_KEYWORDS = frozenset(
    {keyword for keyword, action in basic_profile.ALLOWED.items() if action == Action.CLASS_UID}
    | {"MediaStorageSOPClassUID", "TransferSyntaxUID", "ImplementationClassUID"}
)


def pseudonym(value: str, key: bytes) -> str:
    """Keyed pseudonym of an identifier: ``"LM-"`` + the first 16 hex digits of HMAC-SHA256.

    Surrounding whitespace is ignored (DICOM pads values with spaces). The same value and key always
    give the same pseudonym; without the key it cannot be reversed or recomputed.
    """
    check_key(key)
    digest = hmac.new(key, value.strip().encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{PSEUDONYM_PREFIX}{digest[:16]}"


def keyed_uid(uid: str, key: bytes) -> str:
    """A deterministic replacement UID: ``2.25.<decimal of 128 bits of HMAC-SHA256(uid)>``.

    The 2.25 arc (ISO/IEC 9834-8) needs no registered root; the result is at most 44 characters.
    """
    check_key(key)
    digest = hmac.new(key, b"uid:" + uid.strip().encode("ascii", "replace"), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def deidentify_dicom(ds: Dataset, *, key: bytes) -> Dataset:
    """Return a de-identified copy of ``ds`` (the input is left untouched).

    Pixel data and the attributes that describe the image (Rows, Columns, Bits Stored, Photometric
    Interpretation, windows, View Position, Modality, Body Part Examined, Pixel Spacing...) are kept.
    The result has a fresh file meta group and no preamble, ready for ``save_as(...,
    enforce_file_format=True)``.
    """
    check_key(key)
    out = copy.deepcopy(ds)
    patient_id = str(_value(out, "PatientID") or "").strip()
    original_meta = getattr(ds, "file_meta", None) or FileMetaDataset()

    _clean(out, key)

    alias = pseudonym(patient_id, key) if patient_id else ""
    out.PatientID = alias
    out.PatientName = alias
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = DEIDENTIFICATION_METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = _PROFILE_CODE
    out.DeidentificationMethodCodeSequence = Sequence([code])
    out.LongitudinalTemporalInformationModified = "REMOVED"

    out.preamble = None
    out.file_meta = _file_meta(out, ds, original_meta, key)
    return out


def check_key(key: bytes) -> None:
    """Refuse a missing key: an unkeyed hash of a patient ID can be reversed by trying IDs."""
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise ValueError("a non-empty bytes key is required for pseudonymisation")


def _clean(ds: Dataset, key: bytes) -> None:
    """Keep what the allow-list names at one data set level, recursing into kept sequences."""
    for tag in list(ds.keys()):
        tag = BaseTag(tag)
        try:
            elem = ds[tag]  # converts a raw element: this is where a malformed value would fail
        except Exception:  # noqa: BLE001 - an element we cannot even read is not kept
            del ds[tag]
            continue
        # Private elements have no keyword of their own, but a private dictionary may lend one.
        action = None if tag.is_private else basic_profile.ALLOWED.get(elem.keyword)
        if action is None:
            del ds[tag]
        elif action == Action.EMPTY:
            elem.value = Sequence() if elem.VR == "SQ" else None
        elif action == Action.PSEUDONYM:
            elem.value = pseudonym(str(elem.value or ""), key) if elem.value else ""
        elif action in (Action.UID, Action.CLASS_UID):
            _replace_uids(elem, key, keep_known=action == Action.CLASS_UID)
        elif action == Action.ITEMS:
            if elem.VR != "SQ":
                del ds[tag]  # a value where a sequence belongs cannot be filtered item by item
                continue
            for item in elem.value or ():
                _clean(item, key)


def _replace_uids(elem: DataElement, key: bytes, *, keep_known: bool) -> None:
    """Instance UIDs are always replaced; a class UID is kept only when the standard defines it (a
    private SOP class UID carries its vendor's or site's root)."""
    if elem.VM == 0:
        return
    values = list(elem.value) if elem.VM > 1 else [elem.value]
    new = [str(v) if keep_known and str(v) in UID_dictionary else keyed_uid(str(v), key) for v in values]
    elem.value = new if len(new) > 1 else new[0]


def _file_meta(out: Dataset, original: Dataset, meta: FileMetaDataset, key: bytes) -> FileMetaDataset:
    """A new file meta group: nothing of the original's (source AE title, private meta) survives."""
    fresh = FileMetaDataset()
    fresh.MediaStorageSOPClassUID = UID(
        str(
            _value(out, "SOPClassUID")
            or _value(meta, "MediaStorageSOPClassUID")
            or SecondaryCaptureImageStorage
        )
    )
    instance = _value(out, "SOPInstanceUID")
    if not instance:
        original_instance = _value(meta, "MediaStorageSOPInstanceUID")
        instance = keyed_uid(str(original_instance), key) if original_instance else generate_uid()
    fresh.MediaStorageSOPInstanceUID = UID(str(instance))
    fresh.TransferSyntaxUID = _value(meta, "TransferSyntaxUID") or _transfer_syntax_as_read(original)
    return fresh


def _value(ds: Dataset, keyword: str) -> object:
    """An element's value, or None when absent or too malformed to convert."""
    try:
        return ds.get(keyword)
    except Exception:  # noqa: BLE001
        return None


def _transfer_syntax_as_read(ds: Dataset) -> UID:
    """The encoding pydicom detected when reading a file without file meta."""
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit in (True, None):
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little in (True, None) else ExplicitVRBigEndian
