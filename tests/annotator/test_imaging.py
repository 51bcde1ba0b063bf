"""Decoding uploads (PNG, JPEG, DICOM) and encoding what Lungmark stores: no database needed."""
from __future__ import annotations

import io
import os
import struct
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from annotator.errors import FileTooLarge, InvalidImage
from annotator.imaging import (
    DecodedRadiograph,
    decode_mask_png,
    decode_radiograph,
    mask_png_bytes,
    normalise_view,
    png_bytes,
    preview_bytes,
    sniff_kind,
    thumbnail_bytes,
)

SAMPLE = Path(
    os.environ.get(
        "LUNGMARK_SAMPLE_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cxr-sample"
    )
)
KEY = b"test-pseudonym-key-0123456789abcdef"
MAX_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 50_000_000
RSNA_NAME = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"


def decode(data: bytes, **overrides) -> DecodedRadiograph:
    options = {"filename": "upload", "max_bytes": MAX_BYTES, "max_pixels": MAX_PIXELS, "pseudonym_key": KEY}
    return decode_radiograph(data, **{**options, **overrides})


def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def gradient(width: int = 96, height: int = 64) -> np.ndarray:
    return (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)


def assert_valid(result: DecodedRadiograph) -> None:
    assert result.kind in {"png", "jpeg", "dicom"}
    assert result.pixels.ndim == 2 and result.pixels.shape == (result.height, result.width)
    assert result.pixels.dtype in (np.uint8, np.uint16)
    assert result.display.dtype == np.uint8 and result.display.shape == result.pixels.shape
    assert not result.pixels.flags.writeable and not result.display.flags.writeable
    assert 1 <= result.bit_depth <= 16
    assert int(result.pixels.max()) < 2**result.bit_depth
    assert len(result.sha256) == 64


@pytest.fixture(scope="module")
def sample() -> Path:
    if not SAMPLE.is_dir():
        pytest.skip("sample data not available")
    return SAMPLE


@pytest.fixture(scope="module")
def sample_files(sample) -> dict[str, bytes]:
    """One real PNG and one real JPEG (by content: some .jpg files in the sample are PNGs)."""
    found: dict[str, bytes] = {}
    for path in sorted((sample / "images").iterdir()):
        data = path.read_bytes()
        kind = sniff_kind(data)
        if kind in ("png", "jpeg") and kind not in found and len(data) < 2_000_000:
            found[kind] = data
    assert set(found) == {"png", "jpeg"}
    return found


# --- sniffing ------------------------------------------------------------------------------------


def test_the_file_type_comes_from_the_content_not_the_name():
    png = encode(Image.fromarray(gradient()), "PNG")
    jpeg = encode(Image.fromarray(gradient()), "JPEG")
    assert sniff_kind(png) == "png" and sniff_kind(jpeg) == "jpeg"
    assert decode(png, filename="scan.jpg").kind == "png"
    assert decode(jpeg, filename="scan.dcm").kind == "jpeg"
    assert sniff_kind(b"\x00" * 128 + b"DICM" + b"\x02\x00") == "dicom"
    assert sniff_kind(b"%PDF-1.7\n") is None and sniff_kind(b"") is None


def test_upload_names_stay_out_of_the_logs(caplog, monkeypatch):
    # Uploads are often named after the patient; the decoder logs kind and size, never the name.
    import annotator.imaging.decode as decode_module

    name = "Doe_Jane_1956-03-02.png"
    png = encode(Image.fromarray(gradient()), "PNG")
    caplog.set_level("DEBUG", logger=decode_module.__name__)
    assert decode(png, filename=name).kind == "png"

    def broken(*args, **kwargs):
        raise RuntimeError("decoder bug")

    monkeypatch.setattr(decode_module, "_decode", broken)
    with pytest.raises(InvalidImage) as failed:
        decode(png, filename=name)
    assert "could not be decoded" in failed.value.message
    assert "decoded a png file" in caplog.text and "unexpected RuntimeError" in caplog.text
    assert "Doe" not in caplog.text


@pytest.mark.parametrize(
    ("value", "expected"),
    [("PA", "PA"), ("AP", "AP"), ("AP Supine", "AP"), ("ap erect", "AP"), ("LL", "LATERAL"),
     ("RL", "LATERAL"), ("LAT", "LATERAL"), ("L", "LATERAL"), ("LLD", None), ("", None), (None, None)],
)
def test_view_positions_are_normalised(value, expected):
    assert normalise_view(value) == expected


# --- the sample DICOM files ------------------------------------------------------------------------


def test_rsna_jpeg_baseline_dicom_decodes_and_is_deidentified(sample):
    result = decode((sample / "dicom" / RSNA_NAME).read_bytes(), filename=RSNA_NAME)
    assert_valid(result)
    assert (result.kind, result.width, result.height) == ("dicom", 1024, 1024)
    assert (result.bit_depth, result.pixels.dtype) == (8, np.uint8)
    assert (result.view, result.modality, result.photometric) == ("PA", "CR", "MONOCHROME2")
    assert result.patient_pseudonym and result.patient_pseudonym.startswith("LM-")
    assert result.source_metadata["TransferSyntaxUID"] == pydicom.uid.JPEGBaseline8Bit
    assert result.source_metadata["BodyPartExamined"] == "CHEST"
    assert result.display.min() == 0 and result.display.max() == 255  # min-max: no window in the file
    stored = pydicom.dcmread(io.BytesIO(result.deidentified_dicom))
    assert stored.PatientIdentityRemoved == "YES"
    assert stored.PatientID == result.patient_pseudonym


def test_monochrome1_relabel_displays_as_the_inverse_of_the_monochrome2_original(sample):
    original = decode((sample / "dicom" / RSNA_NAME).read_bytes())
    relabelled = decode((sample / "dicom" / "Fake_MONOHR1.dcm").read_bytes())
    assert relabelled.photometric == "MONOCHROME1"
    both = original.display.astype(np.int16) + relabelled.display.astype(np.int16)
    assert np.all(both == 255)
    assert np.all(original.pixels.astype(np.int16) + relabelled.pixels == 255)
    correlation = np.corrcoef(original.display.ravel(), relabelled.display.ravel())[0, 1]
    assert correlation < -0.9
    assert relabelled.patient_pseudonym == original.patient_pseudonym  # same patient, same key


def test_preambleless_10_bit_monochrome1_dicom(sample):
    result = decode((sample / "dicom" / "CR-MONO1-10-chest.dcm").read_bytes())
    assert_valid(result)
    assert (result.bit_depth, result.pixels.dtype, result.photometric) == (10, np.uint16, "MONOCHROME1")
    assert (result.width, result.height, result.view, result.modality) == (440, 440, "PA", "CR")
    assert result.pixels.max() <= 1023
    raw = pydicom.dcmread(SAMPLE / "dicom" / "CR-MONO1-10-chest.dcm", force=True)
    raw.file_meta = pydicom.dataset.FileMetaDataset()
    raw.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    stored = raw.pixel_array.astype(np.int32)
    assert 0 <= stored.min() and stored.max() == 979
    # Inverted so that bright means dense, and the window follows the pixels (550 -> 1023 - 550).
    assert np.array_equal(result.pixels, 1023 - stored)
    assert result.window == (1023 - 550, 1024)
    # Display: window 550/1024 applied to the stored values, then inverted.
    expected = np.clip(((stored - 549.5) / 1023 + 0.5) * 255, 0, 255)
    assert np.abs((255 - expected) - result.display).max() <= 1
    # Dense lungs are dark in the stored MONOCHROME1 values and must be bright in the display.
    assert np.corrcoef(stored.ravel(), result.display.ravel())[0, 1] < -0.9
    # The stored copy gained a preamble and file meta, so it reads without force=True.
    stored_copy = pydicom.dcmread(io.BytesIO(result.deidentified_dicom))
    assert stored_copy.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert np.array_equal(stored_copy.pixel_array, raw.pixel_array)


def test_multiframe_and_signed_dicom_take_the_first_frame_and_offset_the_pixels():
    frames = np.stack([np.full((8, 10), -1000, np.int16), np.full((8, 10), 500, np.int16)])
    frames[0, 0, 0] = 2000
    data = _native_dicom(frames, bits_stored=12, signed=True, RescaleIntercept="-1024", RescaleSlope="1")
    result = decode(data)
    assert_valid(result)
    assert (result.width, result.height, result.bit_depth) == (10, 8, 12)
    # Stored -1000 -> 1048 (offset 2048 for signed 12-bit), stored 2000 -> 4048.
    assert result.pixels[0, 1] == 1048 and result.pixels[0, 0] == 4048
    assert result.display[0, 1] == 0 and result.display[0, 0] == 255
    assert result.source_metadata["NumberOfFrames"] == 2


def test_dicom_window_is_converted_to_pixel_units_through_the_rescale():
    stored = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)
    data = _native_dicom(
        stored[None], bits_stored=12, signed=False, RescaleIntercept="-1024", RescaleSlope="2",
        WindowCenter="40", WindowWidth="400",
    )
    result = decode(data)
    center, width = result.window
    assert center == pytest.approx((40 + 1024) / 2) and width == pytest.approx(200)
    hu = stored.astype(np.float64) * 2 - 1024
    assert np.all(result.display[hu <= 40 - 200] == 0) and np.all(result.display[hu >= 40 + 200] == 255)


def test_dicom_voi_lut_drives_the_display_and_has_no_window():
    stored = np.arange(256, dtype=np.uint16).reshape(16, 16) * 16
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 12]
    lut.add_new(0x00283006, "US", list(range(4095, -1, -1)))  # LUT Data: an inverting curve
    data = _native_dicom(stored[None], bits_stored=12, signed=False, VOILUTSequence=[lut],
                         WindowCenter="2048", WindowWidth="4096")
    result = decode(data)
    assert result.window is None
    assert np.array_equal(result.pixels, stored)
    assert result.display[0, 0] == 255 and result.display[-1, -1] <= 1


def test_sigmoid_window():
    stored = np.arange(256, dtype=np.uint16).reshape(16, 16) * 16
    data = _native_dicom(stored[None], bits_stored=12, signed=False, VOILUTFunction="SIGMOID",
                         WindowCenter="2048", WindowWidth="200")
    result = decode(data)
    assert result.display[0, 0] == 0 and result.display[-1, -1] == 255
    assert abs(int(result.display.ravel()[128]) - 128) <= 2  # stored 2048: the centre


def test_colour_dicom_becomes_grayscale():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red: luminance 0.299 * 200
    ds = Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.999.2"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PlanarConfiguration = 20, 30, 3, 0
    ds.PhotometricInterpretation = "RGB"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = rgb.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    result = decode(buffer.getvalue())
    assert_valid(result)
    assert (result.photometric, result.bit_depth, result.pixels.dtype) == ("RGB", 8, np.uint8)
    assert np.all(result.pixels == round(0.299 * 200))


# --- every sample PNG/JPEG ---------------------------------------------------------------------------


def test_every_sample_image_decodes(sample):
    paths = sorted((sample / "images").iterdir())
    assert paths
    kinds = set()
    for path in paths:
        result = decode(path.read_bytes(), filename=path.name)
        assert_valid(result)
        kinds.add(result.kind)
        assert result.bit_depth == 8 and result.window == (127.5, 255.0)
        assert result.display is result.pixels
        assert result.patient_pseudonym is None and result.deidentified_dicom is None
    assert kinds == {"png", "jpeg"}


# --- conversions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P", "1", "CMYK"])
def test_colour_palette_and_alpha_images_become_grayscale(mode):
    gray = gradient()
    image = Image.fromarray(gray).convert(mode)
    format = "JPEG" if mode == "CMYK" else "PNG"
    result = decode(encode(image, format))
    assert_valid(result)
    assert (result.width, result.height, result.bit_depth) == (96, 64, 8)
    if mode in ("RGB", "RGBA", "LA", "P"):
        assert np.abs(result.pixels.astype(int) - gray).max() <= 1


def test_sixteen_bit_png_keeps_sixteen_bits():
    pixels = (np.arange(64 * 96, dtype=np.uint32).reshape(64, 96) * 10).astype(np.uint16)
    result = decode(encode(Image.fromarray(pixels), "PNG"))
    assert (result.bit_depth, result.pixels.dtype) == (16, np.uint16)
    assert np.array_equal(result.pixels, pixels)
    assert result.display.min() == 0 and result.display.max() == 255


def test_jpeg_exif_orientation_is_honoured():
    gray = np.zeros((40, 100), np.uint8)
    gray[:, :10] = 255  # a bright band on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90° clockwise turn
    result = decode(encode(Image.fromarray(gray), "JPEG", quality=95, exif=exif.tobytes()))
    assert (result.width, result.height) == (40, 100)
    assert result.display[:10].mean() > 200 and result.display[-10:].mean() < 50
    assert result.source_metadata["exif_orientation"] == 6


# --- bad input -----------------------------------------------------------------------------------------


def _png_with_size(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("scan.png", b"not really")
    return buffer.getvalue()


BAD_INPUTS = {
    "zero bytes": (lambda files: b"", "empty"),
    "text": (lambda files: b"Patient: John Smith\nChest X-ray, PA\n", "unsupported file type (text)"),
    "pdf": (lambda files: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "unsupported file type (PDF)"),
    "zip": (lambda files: _zip(), "unsupported file type (ZIP"),
    "random bytes behind a PNG signature": (
        lambda files: b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).bytes(4000), "PNG"),
    "random bytes behind a JPEG signature": (
        lambda files: b"\xff\xd8\xff\xe0" + np.random.default_rng(2).bytes(4000), "JPEG"),
    "first half of a real JPEG": (lambda files: files["jpeg"][: len(files["jpeg"]) // 2], "JPEG"),
    "first half of a real PNG": (lambda files: files["png"][: len(files["png"]) // 2], "PNG"),
    "PNG that declares 100000x100000": (lambda files: _png_with_size(100_000, 100_000), "too many pixels"),
    "PNG that declares 9000x9000": (lambda files: _png_with_size(9000, 9000), "too many pixels"),
    "a real 8000x8000 1-bit PNG (64 M pixels, 50 M allowed)": (
        lambda files: encode(Image.new("1", (8000, 8000)), "PNG"), "too many pixels"),
    "DICOM preamble and nothing else": (lambda files: b"\x00" * 128 + b"DICM", "DICOM"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_rejected_with_a_message(name, sample_files):
    make, message = BAD_INPUTS[name]
    data = make(sample_files)
    with pytest.raises(InvalidImage) as caught:
        decode(data, filename=name)
    assert message in caught.value.message
    assert caught.value.extra["filename"] == name


def test_a_file_over_the_byte_limit_is_refused_before_decoding():
    data = _png_with_size(100_000, 100_000)  # would be a bomb, but the size check comes first
    limit = len(data) - 1
    with pytest.raises(FileTooLarge, match=f"over the upload limit of {limit} bytes"):
        decode(data, max_bytes=limit)


def test_dicom_pixel_limit_is_checked_from_the_header_before_decoding(sample):
    ds = pydicom.dcmread(sample / "dicom" / RSNA_NAME)
    ds.Rows = ds.Columns = 65535
    buffer = io.BytesIO()
    ds.save_as(buffer)
    with pytest.raises(InvalidImage, match="too many pixels"):
        decode(buffer.getvalue())


@pytest.mark.filterwarnings("ignore:End of file reached")
@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_dicom_is_rejected(sample, cut):
    for name in (RSNA_NAME, "CR-MONO1-10-chest.dcm"):
        data = (sample / "dicom" / name).read_bytes()
        with pytest.raises(InvalidImage):
            decode(data[: int(len(data) * cut)])


def test_dicom_without_pixel_data_is_rejected(sample):
    ds = pydicom.dcmread(sample / "dicom" / RSNA_NAME)
    del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer)
    with pytest.raises(InvalidImage, match="no image"):
        decode(buffer.getvalue())


def test_an_encoding_without_a_decoder_is_named(sample):
    ds = pydicom.dcmread(sample / "dicom" / RSNA_NAME)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.HTJ2KLossless  # no HTJ2K plugin is installed
    buffer = io.BytesIO()
    ds.save_as(buffer)
    with pytest.raises(InvalidImage, match="High-Throughput JPEG 2000"):
        decode(buffer.getvalue())


def test_an_empty_key_is_a_programming_error():
    with pytest.raises(ValueError):
        decode(encode(Image.fromarray(gradient()), "PNG"), pseudonym_key=b"")


# --- encoders ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_bytes_round_trip_losslessly(dtype):
    values = np.arange(50 * 70).reshape(50, 70) * (1 if dtype == np.uint8 else 13)
    pixels = (values % (256 if dtype == np.uint8 else 65536)).astype(dtype)
    data = png_bytes(pixels[:, ::-1])  # a non-contiguous view
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == ("L" if dtype == np.uint8 else "I;16")
        assert np.array_equal(np.asarray(image), pixels[:, ::-1])


def test_png_bytes_refuses_other_types():
    with pytest.raises(ValueError):
        png_bytes(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError):
        png_bytes(np.zeros((4, 4, 3), np.uint8))


def test_preview_fits_the_budget_and_keeps_full_size_when_it_can(sample_files):
    display = decode(sample_files["jpeg"]).display
    data, mime = preview_bytes(display)
    assert mime == "image/jpeg" and len(data) <= 300_000
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (display.shape[1], display.shape[0])
    noise = np.random.default_rng(3).integers(0, 256, (1500, 1200), dtype=np.uint8)
    data, mime = preview_bytes(noise, max_bytes=60_000, max_side=1024)
    assert len(data) <= 60_000 and mime in ("image/jpeg", "image/webp")
    with Image.open(io.BytesIO(data)) as image:
        assert max(image.size) <= 1024
        assert image.size[0] / image.size[1] == pytest.approx(1200 / 1500, abs=0.01)


def test_thumbnail_fits_the_box():
    data = thumbnail_bytes(np.zeros((1000, 500), np.uint8), size=256)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.size == (128, 256)


def test_masks_round_trip_and_bad_masks_are_rejected():
    mask = np.zeros((30, 40), bool)
    mask[5:20, 10:30] = True
    data = mask_png_bytes(mask)
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "L" and set(np.unique(np.asarray(image))) == {0, 255}
    assert np.array_equal(decode_mask_png(data, expected_shape=(30, 40)), mask)
    one_bit = encode(Image.fromarray(mask).convert("1"), "PNG")
    assert np.array_equal(decode_mask_png(one_bit, (30, 40)), mask)
    with pytest.raises(InvalidImage, match="the mask is 40x30, the radiograph is 30x40"):
        decode_mask_png(data, (40, 30))
    grey = encode(Image.fromarray(gradient(40, 30)), "PNG")
    with pytest.raises(InvalidImage, match="not binary"):
        decode_mask_png(grey, (30, 40))
    with pytest.raises(InvalidImage, match="single-channel"):
        decode_mask_png(encode(Image.fromarray(mask).convert("RGB"), "PNG"), (30, 40))
    with pytest.raises(InvalidImage):
        decode_mask_png(data[: len(data) // 2], (30, 40))
    with pytest.raises(InvalidImage, match="PNG"):
        decode_mask_png(encode(Image.fromarray(mask).convert("L"), "JPEG"), (30, 40))


def test_sample_masks_decode(sample):
    paths = sorted((sample / "annotations" / "masks").glob("*.png"))[:10]
    for path in paths:
        with Image.open(path) as image:
            shape = (image.size[1], image.size[0])
        mask = decode_mask_png(path.read_bytes(), shape)
        assert mask.dtype == np.bool_ and mask.any()


def test_a_4000_pixel_jpeg_decodes_and_encodes_quickly(sample_files):
    base = decode(sample_files["jpeg"]).display
    large = Image.fromarray(base).resize((4000, 4000), Image.Resampling.BILINEAR)
    data = encode(large, "JPEG", quality=92)
    started = time.perf_counter()
    result = decode(data)
    png_bytes(result.pixels)
    preview_bytes(result.display)
    elapsed = time.perf_counter() - started
    # About 1 s on two slow cores; the bound only catches order-of-magnitude regressions.
    assert elapsed < 6.0, f"decode + PNG + preview took {elapsed:.2f} s"


# --- fuzzing -----------------------------------------------------------------------------------------


def _native_dicom(frames: np.ndarray, *, bits_stored: int, signed: bool, **attributes) -> bytes:
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.10.999.1"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID = "FUZZ-1"
    ds.Modality = "DX"
    ds.ViewPosition = "AP"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = frames.astype(np.int16 if signed else np.uint16).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fuzz_seeds(sample) -> dict[str, bytes]:
    """Small real files to mutate: fuzzing is about headers and streams, not about size."""
    with Image.open(sample / "images" / "00000001_000.png") as image:
        small = image.convert("L").resize((48, 40))
    cr = pydicom.dcmread(sample / "dicom" / "CR-MONO1-10-chest.dcm", force=True)
    cr.file_meta = pydicom.dataset.FileMetaDataset()
    cr.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    crop = cr.pixel_array[200:232, 200:240]
    cr.Rows, cr.Columns = crop.shape
    cr.PixelData = crop.astype(np.uint16).tobytes()
    del cr.file_meta  # keep it without preamble or file meta, like the original
    cr.preamble = None
    buffer = io.BytesIO()
    cr.save_as(buffer, implicit_vr=True, little_endian=True)
    return {
        "png": encode(small, "PNG"),
        "jpeg": encode(small.convert("RGB"), "JPEG", quality=80),
        "dicom": _native_dicom(np.asarray(small, np.uint16)[None] * 4, bits_stored=10, signed=False),
        "bare dicom": buffer.getvalue(),
        "rsna dicom": (sample / "dicom" / RSNA_NAME).read_bytes(),
    }


@st.composite
def mutations(draw, seed: bytes, protect: int) -> bytes:
    """Flip, set, insert, delete or cut bytes; the first ``protect`` bytes (the signature) are
    mostly left alone, so that the decoders rather than the sniffer see the damage."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        low = protect if draw(st.integers(0, 9)) else 0
        if len(data) <= low:
            break
        # Half of the edits land in the first 512 bytes, where the headers are.
        position = draw(
            st.one_of(st.integers(low, max(low, min(511, len(data) - 1))), st.integers(low, len(data) - 1))
        )
        operation = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if operation == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "set":
            data[position] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01]))
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif operation == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        else:
            del data[position:]
    return bytes(data)


PROTECTED_PREFIX = {"png": 8, "jpeg": 3, "dicom": 132, "bare dicom": 0, "rsna dicom": 132}


@pytest.mark.filterwarnings("ignore")  # pydicom and Pillow warn (rightly) about garbage input
@pytest.mark.parametrize("seed_name", ["png", "jpeg", "dicom", "bare dicom", "rsna dicom"])
def test_mutated_files_decode_or_raise_invalid_image(fuzz_seeds, seed_name):
    seed = fuzz_seeds[seed_name]
    assert_valid(decode(seed, max_pixels=2_000_000))

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(data=mutations(seed, protect=PROTECTED_PREFIX[seed_name]))
    def check(data: bytes) -> None:
        try:
            result = decode(data, max_pixels=2_000_000)
        except InvalidImage as exc:
            assert exc.message
        else:
            assert_valid(result)

    check()


@pytest.mark.filterwarnings("ignore")
def test_mutated_masks_decode_or_raise_invalid_image():
    mask = np.zeros((24, 32), bool)
    mask[4:20, 6:30] = True
    seed = mask_png_bytes(mask)

    @settings(max_examples=100, deadline=None, database=None)
    @given(data=mutations(seed, protect=8))
    def check(data: bytes) -> None:
        try:
            decoded = decode_mask_png(data, (24, 32))
        except InvalidImage as exc:
            assert exc.message
        else:
            assert decoded.dtype == np.bool_ and decoded.shape == (24, 32)

    check()
