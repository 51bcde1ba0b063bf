"""The export's file writers and its split rule, without a database: mask PNGs that any PNG reader
decodes to exactly the mask, COCO run-length masks, stripped image copies, and the frozen split."""
from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from annotator.errors import InvalidImage
from annotator.services.export_files import mask_png, png_gray8_clean, rle_decode, rle_encode
from annotator.services.exports import export_zip_stream
from annotator.services.export_split import SubjectGroup, covid_stratum, split_assign


def test_the_writer_and_the_training_reader_agree_on_the_format():
    from training import export as reader

    from annotator.services import export_files

    assert export_files.EXPORT_FORMAT == reader.EXPORT_FORMAT
    assert export_files.LABEL_COLUMNS == reader.LABEL_COLUMNS


def decode(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG" and image.mode == "L"
    return np.asarray(image)


@st.composite
def box_masks(draw, max_side: int = 3000):
    """Masks made of filled rectangles, the shape of lung boxes and crops of regions; tall enough
    that long runs of identical rows take the reused-block path."""
    height = draw(st.integers(1, max_side))
    width = draw(st.integers(1, 600))
    mask = np.zeros((height, width), dtype=bool)
    for _ in range(draw(st.integers(0, 4))):
        y0, y1 = sorted(draw(st.integers(0, height)) for _ in range(2))
        x0, x1 = sorted(draw(st.integers(0, width)) for _ in range(2))
        mask[y0:y1, x0:x1] = ~mask[y0:y1, x0:x1] if draw(st.booleans()) else True
    return mask


@settings(max_examples=60, deadline=None)
@given(box_masks())
def test_mask_png_decodes_to_exactly_the_mask(mask):
    pixels = decode(mask_png(mask))
    assert pixels.shape == mask.shape
    assert set(np.unique(pixels)) <= {0, 255}
    assert np.array_equal(pixels == 255, mask)


def test_mask_png_of_a_large_box_mask_is_small_and_exact():
    mask = np.zeros((3000, 2500), dtype=bool)
    mask[500:2600, 200:1150] = True
    mask[450:2500, 1300:2300] = True
    data = mask_png(mask)
    assert np.array_equal(decode(data) == 255, mask)
    assert len(data) < 60_000  # as small as zlib makes it, not one byte per pixel


def test_mask_png_accepts_pillow_booleans_and_irregular_shapes():
    canvas = Image.new("1", (900, 700))
    from PIL import ImageDraw

    ImageDraw.Draw(canvas).ellipse((50, 40, 420, 650), fill=1)
    mask = np.asarray(canvas, dtype=bool)
    assert np.array_equal(decode(mask_png(mask)) == 255, mask)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60), st.data())
def test_rle_round_trip_matches_the_full_mask(height, width, data):
    x0, x1 = sorted(data.draw(st.integers(0, width)) for _ in range(2))
    y0, y1 = sorted(data.draw(st.integers(0, height)) for _ in range(2))
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    if x1 > width or y1 > height:
        return
    crop = np.asarray(data.draw(st.lists(st.booleans(), min_size=(y1 - y0) * (x1 - x0), max_size=(y1 - y0) * (x1 - x0)))).reshape(y1 - y0, x1 - x0)
    full = np.zeros((height, width), dtype=bool)
    full[y0:y1, x0:x1] = crop
    rle = rle_encode(crop=crop, box=[x0, y0, x1, y1], width=width, height=height)
    assert rle["size"] == [height, width]
    assert sum(rle["counts"]) == height * width
    assert all(c > 0 for c in rle["counts"][1:])  # only the leading run of zeros may be empty
    assert np.array_equal(rle_decode(rle), full)
    # COCO counts are column-major, starting with zeros.
    flat = full.T.ravel()
    expected, value, run = [], False, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            expected.append(run)
            value, run = pixel, 1
    expected.append(run)
    assert rle["counts"] == expected


def test_image_copy_keeps_pixels_and_drops_text_chunks():
    pixels = (np.arange(60 * 80, dtype=np.uint32) % 251).astype(np.uint8).reshape(60, 80)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "patient Jane Doe")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", pnginfo=info)
    assert b"Jane Doe" in buffer.getvalue()
    clean = png_gray8_clean(buffer.getvalue(), width=80, height=60)
    assert b"Jane Doe" not in clean
    assert np.array_equal(decode(clean), pixels)


def test_image_copy_converts_other_pngs_to_8_bit_gray_and_refuses_corrupt_ones():
    rgb = Image.new("RGB", (20, 10), (10, 200, 30))
    buffer = io.BytesIO()
    rgb.save(buffer, "PNG")
    assert decode(png_gray8_clean(buffer.getvalue(), width=20, height=10)).shape == (10, 20)
    with pytest.raises(InvalidImage):
        png_gray8_clean(buffer.getvalue()[:40], width=20, height=10)
    with pytest.raises(InvalidImage):
        png_gray8_clean(buffer.getvalue(), width=21, height=10)
    corrupt = bytearray(mask_png(np.ones((10, 20), dtype=bool)))
    corrupt[corrupt.index(b"IDAT") + 6] ^= 0xFF  # one flipped byte in the pixel data
    with pytest.raises(InvalidImage):
        png_gray8_clean(bytes(corrupt), width=20, height=10)


def test_zip_stream_comes_in_bounded_pieces_and_unpacks_to_the_same_files(tmp_path):
    import os
    import zipfile

    big = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.png").write_bytes(big)
    (tmp_path / "labels.csv").write_text("image_id\n1\n" * 1000)
    chunks = list(export_zip_stream(tmp_path, prefix="snap", chunk_size=256 * 1024))
    assert len(chunks) >= 12
    assert max(len(c) for c in chunks) <= 256 * 1024 + 1024  # never the whole file at once
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.read("snap/images/1.png") == big
    assert archive.read("snap/labels.csv") == (tmp_path / "labels.csv").read_bytes()


# --- the split ------------------------------------------------------------------------------------


def groups(n: int, *, stratum: str = "positive", current: str = "", prefix: str = "s") -> list[SubjectGroup]:
    return [SubjectGroup(key=f"{prefix}{i}", subject_ids=(i,), current=current, stratum=stratum) for i in range(n)]


def test_covid_stratum_of_a_subject():
    assert covid_stratum(["negative", "positive", "unknown"]) == "positive"
    assert covid_stratum(["unknown", "negative"]) == "negative"
    assert covid_stratum(["unknown"]) == "unknown"


def test_new_subjects_split_80_20_within_each_covid_stratum_deterministically():
    subjects = groups(50, stratum="positive", prefix="p") + groups(30, stratum="negative", prefix="n") + groups(5, stratum="unknown", prefix="u")
    first = split_assign(groups=subjects, seed=7)
    assert first == split_assign(groups=list(reversed(subjects)), seed=7)
    for prefix, n in (("p", 50), ("n", 30), ("u", 5)):
        assert sum(first[f"{prefix}{i}"] == "test" for i in range(n)) == round(0.2 * n)
    assert first != split_assign(groups=subjects, seed=8)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["", "train", "test"]), st.sampled_from(["positive", "negative", "unknown"])), max_size=80),
    st.integers(0, 2**31 - 1),
)
def test_assigned_subjects_never_move_and_new_ones_fill_test_up_to_a_fifth(subjects, seed):
    subject_groups = [SubjectGroup(key=f"k{i}", subject_ids=(i,), current=c, stratum=s) for i, (c, s) in enumerate(subjects)]
    result = split_assign(groups=subject_groups, seed=seed)
    assert set(result) == {g.key for g in subject_groups}
    assert set(result.values()) <= {"train", "test"}
    for group in subject_groups:
        if group.current:
            assert result[group.key] == group.current
    for stratum in ("positive", "negative", "unknown"):
        members = [g for g in subject_groups if g.stratum == stratum]
        tests = sum(result[g.key] == "test" for g in members)
        old_tests = sum(g.current == "test" for g in members)
        new = [g for g in members if not g.current]
        # As close to a fifth as possible without moving anyone already assigned.
        assert tests == max(old_tests, min(old_tests + len(new), round(0.2 * len(members))))


def test_zlib_stream_of_a_mask_checks_out():
    """The hand-assembled deflate stream carries a correct Adler-32 (zlib verifies it)."""
    mask = np.zeros((2500, 300), dtype=bool)
    mask[100:2400, 10:200] = True
    data = mask_png(mask)
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8 : start - 4], "big")
    raw = zlib.decompress(data[start : start + length])
    assert len(raw) == 2500 * 301
