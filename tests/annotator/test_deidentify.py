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
from annotator.imaging.basic_profile import Action
from annotator.imaging.deidentify import CLASS_UID_KEYWORDS

from .dicom_markers import MARKER, PATIENT_ID, found_markers, marked_dataset, to_bytes

SAMPLE = Path(
    os.environ.get(
        "LUNGMARK_SAMPLE_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cxr-sample"
    )
)
RSNA_NAME = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
KEY = b"test-pseudonym-key-0123456789abcdef"
OTHER_KEY = b"another-key-for-another-deployment"
@pytest.fixture(scope="module")
def rsna_path() -> Path:
    path = SAMPLE / "dicom" / RSNA_NAME
    if not path.is_file():
        pytest.skip("sample data not available")
    return path


@pytest.fixture(scope="module")
def marked(rsna_path) -> Dataset:
    return marked_dataset(rsna_path)


def decode(data: bytes, key: bytes = KEY):
    return decode_radiograph(data, filename="upload.dcm", max_bytes=64 << 20, max_pixels=50_000_000, pseudonym_key=key)


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


def test_the_allow_list_names_attributes_pydicom_knows():
    assert not [keyword for keyword in basic_profile.ALLOWED if tag_for_keyword(keyword) is None]
    for needed in ("PixelData", "Rows", "Columns", "BitsStored", "PhotometricInterpretation", "WindowCenter",
                   "VOILUTSequence", "RescaleSlope", "PixelSpacing", "ViewPosition", "Modality"):
        assert basic_profile.ALLOWED[needed] in (Action.KEEP, Action.ITEMS), needed
    # Identifying attributes are simply not on the list (and nothing free-text is).
    for gone in ("InstitutionName", "StationName", "OtherPatientIDs", "PatientBirthName", "StudyDescription",
                 "SeriesDescription", "ImageComments", "DeviceSerialNumber", "PatientAge", "RescaleType",
                 "LUTExplanation", "WindowCenterWidthExplanation", "ContentSequence"):
        assert gone not in basic_profile.ALLOWED, gone
    for keyword, action in basic_profile.ALLOWED.items():
        vr = dictionary_VR(tag_for_keyword(keyword))
        if vr in ("LO", "LT", "SH", "ST", "UT", "UC", "PN", "DA", "TM", "DT", "AS", "AE", "UR"):
            assert action in (Action.EMPTY, Action.PSEUDONYM), f"{keyword} ({vr}) would keep free text"


def test_the_metadata_kept_in_the_database_is_on_the_allow_list():
    from annotator.imaging.dicom import SAFE_METADATA_KEYWORDS

    assert set(SAFE_METADATA_KEYWORDS) <= {k for k, a in basic_profile.ALLOWED.items() if a == Action.KEEP}


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


def test_marked_attributes_leave_no_trace_in_the_stored_copy(marked):
    upload = to_bytes(marked)
    assert len(found_markers(upload)) >= 6 and upload.count(MARKER.encode()) > 5000  # really planted
    original_uids = all_uids(pydicom.dcmread(io.BytesIO(upload)))
    assert len(original_uids) > 100

    result = decode(upload)
    stored = result.deidentified_dicom
    assert found_markers(stored) == set()
    assert found_markers(repr(result.source_metadata)) == set()
    assert PATIENT_ID.encode() not in stored
    for uid in original_uids:
        assert uid.encode() not in stored, uid
    assert stored[:128] == b"\0" * 128 and stored[128:132] == b"DICM"

    ds = pydicom.dcmread(io.BytesIO(stored))
    kept = {elem.keyword for elem in ds.iterall()}
    assert kept <= set(basic_profile.ALLOWED) | {
        "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
        "CodeValue", "CodingSchemeDesignator", "CodeMeaning", "LongitudinalTemporalInformationModified",
    }
    assert not [elem for elem in ds.iterall() if elem.tag.is_private]
    assert not [elem for elem in ds.iterall() if elem.VR in ("DA", "DT", "TM") and elem.value]
    assert ds.PatientID == ds.PatientName == result.patient_pseudonym == pseudonym(PATIENT_ID, KEY)
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    # UIDs are replaced consistently: the file meta and a reference to this instance agree.
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID == keyed_uid(marked.SOPInstanceUID, KEY)
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SourceImageSequence[0].ReferencedSOPClassUID == pydicom.uid.ComputedRadiographyImageStorage
    assert ds.SOPClassUID == marked.SOPClassUID
    # Only what the sequence's items may hold survives in them (the class and the instance).
    assert set(ds.SourceImageSequence[0].keys()) == {0x00081150, 0x00081155}


def test_image_describing_attributes_and_pixels_are_kept(rsna_path):
    original = pydicom.dcmread(rsna_path)
    ds = pydicom.dcmread(io.BytesIO(decode(rsna_path.read_bytes()).deidentified_dicom))
    for keyword in ("Rows", "Columns", "BitsStored", "BitsAllocated", "PhotometricInterpretation", "Modality",
                    "ViewPosition", "BodyPartExamined", "PixelSpacing", "SamplesPerPixel", "SOPClassUID"):
        assert ds[keyword].value == original[keyword].value, keyword
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert ds.PixelData == original.PixelData
    assert np.array_equal(ds.pixel_array, original.pixel_array)


def test_same_input_and_key_give_the_same_copy_and_another_key_does_not(marked):
    data = to_bytes(marked)
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
