"""The files of an export snapshot (format ``lungmark-export/1``): writers that hash as they write.

Everything here is about bytes on disk, not the database: copying a stored 8-bit PNG without its
ancillary chunks, encoding full-size 0/255 masks, COCO run-length encoding, and streaming the
snapshot's ``labels.csv`` and ``coco.json`` so that memory stays flat however many images there are.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import struct
import zlib
from pathlib import Path
from typing import IO, Any, Iterable, Sequence

import numpy as np
from PIL import Image

# The format and labels.csv columns are the training reader's: one definition of the contract.
from training.export import EXPORT_FORMAT, LABEL_COLUMNS

from ..constants import FINDINGS
from ..errors import InvalidImage


# COCO category ids are fixed so that every snapshot numbers them the same way.
LUNG_CATEGORIES = {"right": (1, "Right Lung"), "left": (2, "Left Lung")}
# attributes.box_source of a lung box in coco.json (``box_annotation``).
BOX_DRAWN, BOX_FROM_OUTLINE = "drawn", "outline"
FINDING_CATEGORIES = {f.label: f.coco_id for f in FINDINGS}  # (the ids are written in the findings table)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The only chunks a grayscale PNG needs; text, time, EXIF and colour-profile chunks are dropped
# so that nothing but pixels leaves the system.
_PNG_KEEP = {b"IHDR", b"IDAT", b"IEND"}
# zlib's run-length strategy: mask rows are long runs of 0 and 255, which Z_RLE compresses about as
# well as the default strategy in a fraction of its time.
_Z_RLE = zlib.Z_RLE


def write_file(root: Path, rel: str, data: bytes) -> str:
    """Write ``data`` to ``root/rel`` (folders created as needed); returns its sha256."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


# --- images -------------------------------------------------------------------------------------


def png_gray8_clean(data: bytes, *, width: int, height: int) -> bytes:
    """The same 8-bit grayscale PNG with only IHDR/IDAT/IEND kept (pixels untouched, not decoded).

    A PNG that is not 8-bit grayscale of the given size is decoded and re-encoded as one;
    a corrupt one raises ``InvalidImage``.
    """
    chunks = _png_chunks(data)
    if chunks is not None:
        ihdr = chunks[0][1]
        w, h, depth, colour, _compression, _filter, _interlace = struct.unpack(">IIBBBBB", ihdr)
        if (w, h, depth, colour) == (width, height, 8, 0):
            out = [PNG_MAGIC]
            for kind, body in chunks:
                if kind in _PNG_KEEP:
                    out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
            return b"".join(out)
    return _png_reencode_gray8(data, width=width, height=height)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """The chunks of a well-formed PNG (CRCs checked), or None when it is not one."""
    if not data.startswith(PNG_MAGIC):
        return None
    chunks, pos, end = [], len(PNG_MAGIC), len(data)
    while pos + 12 <= end:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length or pos + 12 + length > end:
            return None
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            return None
        chunks.append((kind, body))
        pos += 12 + length
        if kind == b"IEND":
            break
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND" or len(chunks[0][1]) != 13:
        return None
    return chunks


def _png_reencode_gray8(data: bytes, *, width: int, height: int) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.size != (width, height):
                raise InvalidImage(f"the stored image is {image.size[0]}x{image.size[1]}, not {width}x{height}")
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.uint32)
                gray = Image.fromarray((array >> 8).astype(np.uint8) if array.max() > 255 else array.astype(np.uint8))
            else:
                gray = image.convert("L")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"the stored image cannot be read: {exc}") from exc
    buffer = io.BytesIO()
    gray.save(buffer, "PNG", compress_level=4)
    return buffer.getvalue()


# --- masks --------------------------------------------------------------------------------------


def mask_png(mask: np.ndarray) -> bytes:
    """A full-size mask as an 8-bit 0/255 grayscale PNG.

    Masks are mostly long runs of identical rows (filled boxes, empty bands), and a run is
    compressed once per ~64 KiB block, whatever its length (see ``_RowDeflater``): a filled-box
    lung mask of 2000x2000 takes about 1 ms instead of ~10 ms, at zlib's file size.
    """
    m = np.asarray(mask)
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"a mask must be a non-empty 2-D array, not shape {m.shape}")
    height, width = m.shape
    stride = width + 1  # filter byte + one byte per pixel
    # Runs of identical rows, found on the bit-packed rows (an eighth of the bytes to compare).
    packed = np.packbits(m, axis=1)
    changes = (np.flatnonzero((packed[1:] != packed[:-1]).any(axis=1)) + 1).tolist() if height > 1 else []
    stream = _RowDeflater(stride)
    adler, plain_from = 1, 0
    for start, end in zip([0, *changes], [*changes, height]):
        if not stream.reusable(end - start):
            continue
        if plain_from < start:
            adler = stream.plain(m[plain_from:start], adler)
        row = b"\x00" + ((m[start] != 0).view(np.uint8) * np.uint8(255)).tobytes()
        adler = _adler32_combine(adler, _adler32_repeat(zlib.adler32(row), stride, end - start), stride * (end - start))
        stream.rows(row, end - start)
        plain_from = end
    if plain_from < height:
        adler = stream.plain(m[plain_from:height], adler)
    data = b"\x78\x01" + stream.finish() + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_MAGIC + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


_ADLER_BASE = 65521


def _adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """Adler-32 of A+B from those of A and B (zlib's ``adler32_combine``)."""
    rem = len2 % _ADLER_BASE
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % _ADLER_BASE
    sum1 = (sum1 + (adler2 & 0xFFFF) + _ADLER_BASE - 1) % _ADLER_BASE
    sum2 = (sum2 + ((adler1 >> 16) & 0xFFFF) + ((adler2 >> 16) & 0xFFFF) + _ADLER_BASE - rem) % _ADLER_BASE
    return sum1 | (sum2 << 16)


def _adler32_repeat(adler: int, length: int, count: int) -> int:
    """Adler-32 of a block repeated ``count`` times, from the block's own (by doubling)."""
    result, result_len = 1, 0
    block, block_len = adler, length
    while count:
        if count & 1:
            result, result_len = _adler32_combine(result, block, block_len), result_len + block_len
        block, block_len = _adler32_combine(block, block, block_len), block_len * 2
        count >>= 1
    return result


_WINDOW = 32768  # deflate's history
_BLOCK_BYTES = 1 << 16  # about how much one reusable compressed block of a repeated row covers


class _RowDeflater:
    """A raw deflate stream of PNG scanlines in which long runs of one row reuse compressed blocks.

    Within a run of identical rows, every stretch of R rows that follows at least a window's worth
    of the same row decompresses from the same bytes: zlib compresses it once (with the row
    repeated as its dictionary, flushed to a byte boundary), and those bytes are written as often
    as needed. Everything else goes through zlib as usual, with the real history as dictionary.
    """

    def __init__(self, stride: int) -> None:
        self.stride = stride
        self.window_rows = max(1, _WINDOW // stride)
        self.block_rows = max(1, _BLOCK_BYTES // stride)
        self.parts: list[bytes] = []
        self.pending: list[bytes] = []
        self.history = b""  # the last 32 KiB of uncompressed output already emitted

    def reusable(self, count: int) -> bool:
        """Whether a run of ``count`` identical rows is long enough to reuse a compressed block."""
        return count - self.window_rows >= self.block_rows

    def plain(self, rows: np.ndarray, adler: int) -> int:
        """Mask rows written as they are (filter byte 0, then 0/255); returns the Adler-32 continued."""
        raw = np.zeros((rows.shape[0], self.stride), dtype=np.uint8)
        # Compared with 0, not cast: a boolean array from Pillow may hold True as 255.
        np.multiply(rows != 0, np.uint8(255), out=raw[:, 1:])
        data = memoryview(raw).cast("B")  # zlib reads the array's buffer: no copy
        self.pending.append(data)
        return zlib.adler32(data, adler)

    def rows(self, row: bytes, count: int) -> None:
        """A run of ``count`` copies of ``row`` (filter byte included); ``reusable(count)`` must hold."""
        blocks, rest = divmod(count - self.window_rows, self.block_rows)
        self.pending.append(row * self.window_rows)
        self._flush_pending(final=False)
        window = row * self.window_rows
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15, 9, _Z_RLE, zdict=window)
        block = compressor.compress(row * self.block_rows) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self.parts.append(block * blocks)
        self.history = window[-_WINDOW:]
        if rest:
            self.pending.append(row * rest)

    def _flush_pending(self, *, final: bool) -> None:
        data = b"".join(self.pending) if len(self.pending) != 1 else self.pending[0]
        self.pending.clear()
        if not data and not final:
            return
        options = {"zdict": self.history} if self.history else {}
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15, 9, _Z_RLE, **options)
        self.parts.append(compressor.compress(data) + compressor.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH))
        self.history = (self.history + bytes(data[-_WINDOW:]))[-_WINDOW:]

    def finish(self) -> bytes:
        self._flush_pending(final=True)
        return b"".join(self.parts)


def rle_encode(*, crop: np.ndarray, box: Sequence[int], width: int, height: int) -> dict[str, Any]:
    """COCO uncompressed RLE of a full-size mask given as a crop at ``box`` (column-major counts,
    starting with a run of zeros)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    columns = np.zeros((x1 - x0, height), dtype=bool)
    columns[:, y0:y1] = np.asarray(crop, dtype=bool)[: y1 - y0, : x1 - x0].T
    flat = columns.ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).astype(np.int64)
    before, after = x0 * height, (width - x1) * height
    if flat.size and flat[0]:
        runs = np.concatenate(([0], runs))
    counts = runs.tolist()
    counts[0] += before
    if len(counts) % 2 == 1:  # ends in zeros
        counts[-1] += after
    elif after:
        counts.append(after)
    return {"size": [height, width], "counts": counts}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """A full-size boolean mask from COCO uncompressed RLE."""
    height, width = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.size == 0 or (counts < 0).any() or counts.sum() != height * width:
        raise ValueError("RLE counts do not add up to the image size")
    values = np.zeros(counts.size, dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(width, height).T


# --- labels.csv and coco.json, streamed -----------------------------------------------------------


class LabelsWriter:
    """``labels.csv`` written row by row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] = open(path, "w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._fh, fieldnames=LABEL_COLUMNS, lineterminator="\n")
        self._writer.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow(row)

    def close(self) -> None:
        self._fh.close()


class CocoWriter:
    """``coco.json`` assembled from two spooled parts (images, annotations) so that neither list is
    ever held in memory."""

    def __init__(self, path: Path, *, info: dict[str, Any]) -> None:
        self.path = path
        self.info = info
        self._images_path = path.with_name(path.name + ".images")
        self._annotations_path = path.with_name(path.name + ".annotations")
        self._images = open(self._images_path, "w", encoding="utf-8")
        self._annotations = open(self._annotations_path, "w", encoding="utf-8")
        self._n_images = 0
        self._n_annotations = 0

    def add_image(self, image: dict[str, Any]) -> None:
        self._images.write(("," if self._n_images else "") + "\n" + json.dumps(image, separators=(",", ":")))
        self._n_images += 1

    def add_annotation(self, annotation: dict[str, Any]) -> int:
        self._n_annotations += 1
        annotation = {"id": self._n_annotations, **annotation}
        self._annotations.write(("," if self._n_annotations > 1 else "") + "\n" + json.dumps(annotation, separators=(",", ":")))
        return self._n_annotations

    def close(self) -> None:
        self._images.close()
        self._annotations.close()
        categories = [{"id": cid, "name": name, "supercategory": "lung"} for cid, name in LUNG_CATEGORIES.values()]
        categories += [{"id": cid, "name": name, "supercategory": "finding"} for name, cid in FINDING_CATEGORIES.items()]
        with open(self.path, "w", encoding="utf-8") as out:
            out.write('{"info":' + json.dumps(self.info) + ',"licenses":[],"categories":' + json.dumps(categories))
            for key, part in (("images", self._images_path), ("annotations", self._annotations_path)):
                out.write(f',"{key}":[')
                with open(part, encoding="utf-8") as fh:
                    while chunk := fh.read(1 << 20):
                        out.write(chunk)
                out.write("\n]")
                os.remove(part)
            out.write("}\n")


def box_annotation(*, image_id: int, side: str, box: Sequence[int], source: str = BOX_DRAWN) -> dict[str, Any]:
    """A lung box in COCO; ``attributes.box_source`` says whether people drew it (``drawn``: drawn,
    edited or accepted on the annotate page, or imported from a box file) or it was computed from an
    imported lung outline (``outline``): the two follow different conventions."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return {
        "image_id": image_id,
        "category_id": LUNG_CATEGORIES[side][0],
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": (x1 - x0) * (y1 - y0),
        "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
        "iscrowd": 0,
        "attributes": {"box_source": source},
    }


def make_read_only(paths: Iterable[Path]) -> None:
    for path in paths:
        os.chmod(path, 0o444)
