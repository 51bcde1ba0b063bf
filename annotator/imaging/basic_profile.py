"""What a stored DICOM copy may keep: one allow-list, applied at every depth.

De-identification works by allow-list, not by block-list: an attribute reaches the stored copy only
when this table names it, whatever the uploaded file carries (public or private, known or unknown to
the data dictionary). The table holds what Lungmark needs to show and annotate a radiograph (the
Image Pixel module and the grayscale rendering pipeline, the view, the modality) and what the PS3.15
Annex E Basic Application Level Confidentiality Profile retains or replaces (Table E.1-1): instance
UIDs (U), the pseudonymised patient (D) and the Type 2 attributes it empties (Z). Sequences are kept
only where named, and their items are filtered by this same table.

Attributes are named by their pydicom keyword (checked against pydicom's data dictionary by the
tests). Transcribed against the 2024b edition of the standard.
"""
from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    KEEP = "keep"  # copied unchanged: describes the image, identifies nobody
    EMPTY = "empty"  # Z: kept with a zero-length value, so IODs where it is Type 2 stay valid
    UID = "uid"  # U: an instance UID, replaced by a keyed UID (references stay consistent)
    CLASS_UID = "class_uid"  # names a kind of thing: kept when well known, else replaced like U
    PSEUDONYM = "pseudonym"  # D: the Patient ID becomes a keyed pseudonym
    ITEMS = "items"  # a sequence: kept, each item filtered by this same table


_K, _Z, _U, _C, _P, _S = Action.KEEP, Action.EMPTY, Action.UID, Action.CLASS_UID, Action.PSEUDONYM, Action.ITEMS

ALLOWED: dict[str, Action] = {
    # Image Pixel module (PS3.3 C.7.6.3): the pixels and how to read them.
    "SamplesPerPixel": _K, "PhotometricInterpretation": _K, "Rows": _K, "Columns": _K,
    "BitsAllocated": _K, "BitsStored": _K, "HighBit": _K, "PixelRepresentation": _K,
    "PlanarConfiguration": _K, "PixelAspectRatio": _K, "NumberOfFrames": _K,
    "SmallestImagePixelValue": _K, "LargestImagePixelValue": _K,
    "PixelPaddingValue": _K, "PixelPaddingRangeLimit": _K,
    "PixelData": _K, "FloatPixelData": _K, "DoubleFloatPixelData": _K,
    "ExtendedOffsetTable": _K, "ExtendedOffsetTableLengths": _K,
    "RedPaletteColorLookupTableDescriptor": _K, "GreenPaletteColorLookupTableDescriptor": _K,
    "BluePaletteColorLookupTableDescriptor": _K, "AlphaPaletteColorLookupTableDescriptor": _K,
    "RedPaletteColorLookupTableData": _K, "GreenPaletteColorLookupTableData": _K,
    "BluePaletteColorLookupTableData": _K, "AlphaPaletteColorLookupTableData": _K,
    "SegmentedRedPaletteColorLookupTableData": _K, "SegmentedGreenPaletteColorLookupTableData": _K,
    "SegmentedBluePaletteColorLookupTableData": _K, "SegmentedAlphaPaletteColorLookupTableData": _K,
    "SpecificCharacterSet": _K,
    # Grayscale rendering (PS3.3 C.11): modality LUT or rescale, VOI LUT or window, presentation.
    # Their free-text explanations (LUTExplanation, WindowCenterWidthExplanation) are not kept.
    "RescaleIntercept": _K, "RescaleSlope": _K,
    "ModalityLUTSequence": _S, "VOILUTSequence": _S, "LUTDescriptor": _K, "LUTData": _K,
    "WindowCenter": _K, "WindowWidth": _K, "VOILUTFunction": _K, "PresentationLUTShape": _K,
    "PixelIntensityRelationship": _K, "PixelIntensityRelationshipSign": _K,
    # Geometry and what the image shows: spacing, view, side, body part, modality.
    "PixelSpacing": _K, "ImagerPixelSpacing": _K, "PixelSpacingCalibrationType": _K,
    "EstimatedRadiographicMagnificationFactor": _K,
    "ViewPosition": _K, "PatientOrientation": _K, "PatientPosition": _K,
    "ImageLaterality": _K, "Laterality": _K, "BodyPartExamined": _K, "Modality": _K,
    "ImageType": _K, "PresentationIntentType": _K,
    "LossyImageCompression": _K, "LossyImageCompressionRatio": _K, "LossyImageCompressionMethod": _K,
    # Whether the pixels themselves may identify someone (read at import, kept for whoever reuses it).
    "BurnedInAnnotation": _K, "RecognizableVisualFeatures": _K, "ConversionType": _K,
    # Basic Profile, U: instance UIDs replaced consistently; class UIDs kept.
    "SOPClassUID": _C, "SOPInstanceUID": _U, "StudyInstanceUID": _U, "SeriesInstanceUID": _U,
    "FrameOfReferenceUID": _U,
    "SourceImageSequence": _S, "ReferencedImageSequence": _S,
    "ReferencedSOPClassUID": _C, "ReferencedSOPInstanceUID": _U,
    # Basic Profile, D: the patient becomes a keyed pseudonym (the name is set to it afterwards).
    "PatientID": _P, "PatientName": _Z,
    # Basic Profile, Z: Type 2 in the image IODs Lungmark stores, kept empty.
    "PatientBirthDate": _Z, "PatientSex": _Z, "StudyDate": _Z, "StudyTime": _Z,
    "AccessionNumber": _Z, "ReferringPhysicianName": _Z, "StudyID": _Z,
    "SeriesNumber": _Z, "InstanceNumber": _Z,
}
