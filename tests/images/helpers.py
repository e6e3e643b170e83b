"""Small builders for the images tests: images, a PNG decompression bomb, items tables."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from alignrec_data.schema import ITEMS_FILE, ITEMS_SCHEMA


def jpeg_bytes(size: tuple[int, int] = (120, 90), color=(200, 30, 40), quality: int = 85) -> bytes:
    """A JPEG with a gradient (so resizing and encoding have real work to do)."""
    w, h = size
    im = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    im = Image.blend(im, Image.new("RGB", (w, h), color), 0.5)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(size=(64, 48), mode="RGBA", color=(0, 0, 255, 0)) -> bytes:
    """A PNG of one colour (transparent by default)."""
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, "PNG")
    return buf.getvalue()


def gif_1x1() -> bytes:
    """The 1x1 placeholder GIF image servers answer for dead image ids."""
    buf = io.BytesIO()
    Image.new("P", (1, 1), 0).save(buf, "GIF")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit greyscale PNG of side x side pixels that is only tens of kB on disk.

    Built by hand with zlib, one row at a time, so making it never allocates the image.
    """
    row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte + packed 1-bit pixels
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def write_items(prepared: Path, image_urls: list[list[str]], keys: list[str] | None = None) -> Path:
    """Write a prepared items.parquet with the project schema (one item per URL list)."""
    n = len(image_urls)
    keys = keys or [f"B{i:09d}" for i in range(n)]
    table = pa.table(
        {
            "item_id": list(range(n)),
            "item_key": keys,
            "title": [f"item {k}" for k in keys],
            "brand": ["acme"] * n,
            "categories": [["Baby"]] * n,
            "description": [""] * n,
            "text": [f"item {k}" for k in keys],
            "image_urls": image_urls,
            "has_image": [bool(u) for u in image_urls],
        },
        schema=ITEMS_SCHEMA,
    )
    prepared.mkdir(parents=True, exist_ok=True)
    path = prepared / ITEMS_FILE
    pq.write_table(table, path)
    return path
