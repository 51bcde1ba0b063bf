"""De-identification of stored DICOM copies (PS3.15 Basic Profile) and keyed pseudonyms."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from annotator.imaging import decode_radiograph, deidentify_dicom, keyed_uid, pseudonym
from annotator.imaging import basic_profile
from annotator.imaging.deidentify import CLASS_UID_KEYWORDS

SAMPLE = Path(
    os.environ.get(
        "LUNGMARK_SAMPLE_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cxr-sample"
    )
)
RSNA_NAME = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
KEY = b"test-pseudonym-key-0123456789abcdef"
OTHER_KEY = b"another-key-for-another-deployment"
MARKER = "LMKMARKER"
PATIENT_ID = "LMKMARKER-PATIENT-0042"
# Distinctive values for the element types that cannot hold the text marker.
DATE, TIME, DATETIME, AGE = "19770707", "071707", "19770707071707", "077Y"
DECIMAL, INTEGER = "7707.77", "770777"
TEXT_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}


@pytest.fixture(scope="module")
def rsna_path() -> Path:
    path = SAMPLE / "dicom" / RSNA_NAME
    if not path.is_file():
        pytest.skip("sample data not available")
    return path


def decode(data: bytes, key: bytes = KEY):
    return decode_radiograph(data, filename="upload.dcm", max_bytes=64 << 20, max_pixels=50_000_000, pseudonym_key=key)


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def profile_keywords() -> list[str]:
    return sorted(basic_profile.REMOVE | basic_profile.EMPTY | basic_profile.CLEAN)


def all_uids(ds: Dataset) -> set[str]:
    """Every instance UID in a data set (and its file meta), at any depth."""
    found: set[str] = set()

    def visit(dataset: Dataset, elem) -> None:
        if elem.VR == "UI" and elem.keyword not in CLASS_UID_KEYWORDS and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            found.update(str(v) for v in values if str(v) not in pydicom.uid.UID_dictionary)

    ds.walk(visit)
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.walk(visit)
    return found


def marked_dataset(path: Path) -> Dataset:
    """The RSNA sample with an identifying value in every attribute the profile handles."""
    ds = pydicom.dcmread(path)
    ds.preamble = MARKER.encode().ljust(128, b"\0")  # "dual personality" files hide data here
    ds.PatientID = PATIENT_ID
    ds.PatientName = "LMKMARKER^PATIENT"
    for number, keyword in enumerate(profile_keywords()):
        tag = tag_for_keyword(keyword)
        if tag >> 16 == 0:
            continue  # command elements (Affected/Requested SOP Instance UID) cannot be in a file
        vr = dictionary_VR(tag).split(" or ")[0]
        if vr in TEXT_VRS:
            value = MARKER
        elif vr == "SQ":
            item = Dataset()
            if keyword not in basic_profile.CLEAN:  # kept sequences: only their UIDs change
                item.CodeMeaning = MARKER
            item.ReferencedSOPClassUID = pydicom.uid.ComputedRadiographyImageStorage
            item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.10.777.{number}"
            value = Sequence([item])
        elif vr == "UI":
            value = f"1.2.826.0.1.3680043.10.778.{number}"
        else:
            value = {
                "DA": DATE, "TM": TIME, "DT": DATETIME, "AS": AGE, "DS": DECIMAL, "IS": INTEGER,
                "OB": MARKER.encode() + b"\0", "OW": MARKER.encode() + b"\0", "UN": MARKER.encode() + b"\0",
            }.get(vr, 7)
        ds.add_new(tag, vr, value)
    # Dates, names, free text and UIDs that the table does not list: removed or replaced by rule.
    ds.DateOfGainCalibration = DATE
    ds.TimeOfGainCalibration = TIME
    ds.StudyUpdateDateTime = DATETIME
    ds.EvaluatorName = MARKER
    ds.CalibrationNotes = MARKER
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.10.779.1"
    ds.RetrieveURL = f"https://pacs.example/{MARKER}/studies/{ds.StudyInstanceUID}"
    ds.add_new(0x0018FFF0, "LO", MARKER)  # a public (even group) tag that is in no dictionary
    # A private block, a private element inside a kept sequence, and an overlay.
    block = ds.private_block(0x0011, "LMK TEST", create=True)
    block.add_new(0x01, "LO", MARKER)
    source = ds.SourceImageSequence[0]
    source.ReferencedSOPInstanceUID = ds.SOPInstanceUID  # a reference to this very instance
    source.add_new(0x00091010, "LO", MARKER)
    source.add_new(0x00080090, "PN", MARKER)  # a name nested in a kept sequence
    ds.add_new(0x60003000, "OW", MARKER.encode() + b"\0")
    ds.add_new(0x60004000, "LT", MARKER)
    return ds


def test_the_table_names_attributes_pydicom_knows():
    keywords = profile_keywords()
    assert len(keywords) > 500
    assert not [keyword for keyword in keywords if tag_for_keyword(keyword) is None]
    assert not basic_profile.REMOVE & basic_profile.EMPTY
    for required in ("AccessionNumber", "InstitutionName", "ReferringPhysicianName", "StudyDate", "OtherPatientIDs",
                     "PatientBirthName", "PatientMotherBirthName", "EthnicGroup", "Occupation", "StudyDescription",
                     "SeriesDescription", "ImageComments", "ProtocolName", "DeviceSerialNumber", "StationName",
                     "RequestAttributesSequence", "DerivationDescription", "PatientAge", "PatientWeight"):
        assert required in basic_profile.REMOVE | basic_profile.EMPTY, required


def test_pseudonyms_are_keyed_stable_and_opaque():
    first = pseudonym("12345", KEY)
    assert first == pseudonym(" 12345 ", KEY)
    assert first.startswith("LM-") and len(first) == 19
    assert first != pseudonym("12346", KEY) and first != pseudonym("12345", OTHER_KEY)
    assert "12345" not in first
    uid = keyed_uid("1.2.3.4", KEY)
    assert uid == keyed_uid("1.2.3.4", KEY) and uid != keyed_uid("1.2.3.4", OTHER_KEY)
    assert uid.startswith("2.25.") and len(uid) <= 64 and pydicom.uid.UID(uid).is_valid
    with pytest.raises(ValueError):
        pseudonym("12345", b"")


def test_marked_attributes_leave_no_trace_in_the_stored_copy(rsna_path):
    marked = marked_dataset(rsna_path)
    upload = to_bytes(marked)
    assert upload.count(MARKER.encode()) > 100  # the test really planted them
    original_uids = all_uids(pydicom.dcmread(io.BytesIO(upload)))
    assert len(original_uids) > 10

    result = decode(upload)
    stored = result.deidentified_dicom
    for planted in (MARKER, PATIENT_ID, DATE, TIME, DATETIME, AGE, DECIMAL, INTEGER):
        assert planted.encode() not in stored, planted
        assert planted not in repr(result.source_metadata), planted
    for uid in original_uids:
        assert uid.encode() not in stored, uid
    assert stored[:128] == b"\0" * 128 and stored[128:132] == b"DICM"

    ds = pydicom.dcmread(io.BytesIO(stored))
    assert not [elem for elem in ds.iterall() if elem.tag.is_private]
    assert not [elem for elem in ds.iterall() if elem.VR in ("DA", "DT", "TM") and elem.value]
    assert 0x60003000 not in ds and 0x60004000 not in ds
    for keyword in basic_profile.REMOVE:
        assert keyword not in ds, keyword
    for keyword in basic_profile.EMPTY:
        assert keyword not in ds or not ds[keyword].value, keyword
    assert ds.PatientID == ds.PatientName == result.patient_pseudonym == pseudonym(PATIENT_ID, KEY)
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    # UIDs are replaced consistently: the file meta and a reference to this instance agree.
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID == keyed_uid(marked.SOPInstanceUID, KEY)
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SourceImageSequence[0].ReferencedSOPClassUID == pydicom.uid.ComputedRadiographyImageStorage
    assert ds.SOPClassUID == marked.SOPClassUID


def test_image_describing_attributes_and_pixels_are_kept(rsna_path):
    original = pydicom.dcmread(rsna_path)
    ds = pydicom.dcmread(io.BytesIO(decode(rsna_path.read_bytes()).deidentified_dicom))
    for keyword in ("Rows", "Columns", "BitsStored", "BitsAllocated", "PhotometricInterpretation", "Modality",
                    "ViewPosition", "BodyPartExamined", "PixelSpacing", "SamplesPerPixel", "SOPClassUID"):
        assert ds[keyword].value == original[keyword].value, keyword
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert ds.PixelData == original.PixelData
    assert np.array_equal(ds.pixel_array, original.pixel_array)


def test_same_input_and_key_give_the_same_copy_and_another_key_does_not(rsna_path):
    data = to_bytes(marked_dataset(rsna_path))
    first, second, other = decode(data), decode(data), decode(data, key=OTHER_KEY)
    assert first.deidentified_dicom == second.deidentified_dicom
    assert first.patient_pseudonym == second.patient_pseudonym != other.patient_pseudonym
    ds_first = pydicom.dcmread(io.BytesIO(first.deidentified_dicom))
    ds_other = pydicom.dcmread(io.BytesIO(other.deidentified_dicom))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert ds_first[keyword].value != ds_other[keyword].value


def test_the_input_dataset_is_not_modified(rsna_path):
    ds = pydicom.dcmread(rsna_path)
    before = to_bytes(ds)
    deidentified = deidentify_dicom(ds, key=KEY)
    assert to_bytes(ds) == before
    assert deidentified.PatientID != ds.PatientID


def test_a_preambleless_file_gets_a_valid_file_meta():
    path = SAMPLE / "dicom" / "CR-MONO1-10-chest.dcm"
    if not path.is_file():
        pytest.skip("sample data not available")
    original = pydicom.dcmread(path, force=True)
    result = decode(path.read_bytes())
    ds = pydicom.dcmread(io.BytesIO(result.deidentified_dicom))  # no force: a standard file
    assert ds.file_meta.MediaStorageSOPClassUID == original.SOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID != original.SOPInstanceUID
    for gone in ("InstitutionName", "AccessionNumber", "AcquisitionDate", "InstitutionalDepartmentName"):
        assert gone not in ds or not ds[gone].value, gone
    assert (ds.WindowCenter, ds.WindowWidth) == (550, 1024)
    assert b"FUJI95714" not in result.deidentified_dicom  # the accession number
