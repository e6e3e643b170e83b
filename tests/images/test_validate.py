"""process_image on hostile and ordinary bytes: reasons, sizes, colours, determinism."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image, ImageFile

from alignrec_data.images.validate import ImageRejected, ImageSettings, process_image, target_size
from tests.images.helpers import gif_1x1, jpeg_bytes, png_bomb, png_bytes

SETTINGS = ImageSettings(shorter_side=32, jpeg_quality=90, max_pixels=1_000_000, min_side=8)


@pytest.fixture(scope="module")
def small_bomb() -> bytes:
    """8000 x 8000 px (64 Mpx: under Pillow's own limit, over max_pixels) in ~10 kB."""
    return png_bomb(8000)


def reason_of(data: bytes, settings: ImageSettings = SETTINGS) -> str:
    with pytest.raises(ImageRejected) as info:
        process_image(data, settings)
    return info.value.reason


def test_resizes_shorter_side_and_keeps_aspect() -> None:
    out = process_image(jpeg_bytes((120, 90)), SETTINGS)
    assert (out.width, out.height) == (43, 32)
    with Image.open(io.BytesIO(out.data)) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (43, 32)
    assert out.sha256 == hashlib.sha256(out.data).hexdigest()
    assert (out.source_width, out.source_height, out.source_format) == (120, 90, "JPEG")


def test_small_images_are_not_upscaled() -> None:
    out = process_image(jpeg_bytes((20, 30)), SETTINGS)
    assert (out.width, out.height) == (20, 30)
    assert target_size(1000, 3000, 256) == (256, 768)


def test_same_input_gives_byte_identical_output() -> None:
    data = jpeg_bytes((300, 200))
    assert process_image(data, SETTINGS).data == process_image(data, SETTINGS).data
    other = process_image(data, ImageSettings(shorter_side=32, jpeg_quality=50))
    assert other.data != process_image(data, SETTINGS).data


def test_transparent_png_becomes_rgb_on_white() -> None:
    out = process_image(png_bytes((64, 48), "RGBA", (0, 0, 255, 0)), SETTINGS)
    with Image.open(io.BytesIO(out.data)) as im:
        r, g, b = im.convert("RGB").getpixel((10, 10))
    assert min(r, g, b) > 245  # white, not black or blue


def test_exif_orientation_is_applied() -> None:
    im = Image.new("RGB", (100, 50), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif)
    out = process_image(buf.getvalue(), SETTINGS)
    assert (out.width, out.height) == (32, 64)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"<html><body><h1>503 Service Unavailable</h1></body></html>", "not-an-image"),
        (b"\x00" * 5000, "not-an-image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not-an-image"),
        (gif_1x1(), "too-small"),
    ],
    ids=["zero-bytes", "html-error-page", "zeros", "eps-refused", "placeholder-gif"],
)
def test_rejections(data: bytes, reason: str) -> None:
    assert reason_of(data) == reason


def test_truncated_and_damaged_jpeg_are_corrupt() -> None:
    data = jpeg_bytes((400, 300))
    assert reason_of(data[: len(data) // 2]) == "corrupt"
    assert reason_of(data[:200]) == "corrupt"


def test_png_with_bad_crc_is_corrupt() -> None:
    data = bytearray(png_bytes((64, 48), "RGB", (1, 2, 3)))
    idat = data.index(b"IDAT")
    data[idat + 6] ^= 0xFF  # flip a byte inside the compressed data: CRC no longer matches
    assert reason_of(bytes(data)) == "corrupt"


def test_bomb_rejected_from_header_without_decoding(small_bomb: bytes, monkeypatch) -> None:
    assert len(small_bomb) < 100_000  # tiny file ...
    loads = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: loads.append(1) or real_load(self)
    )
    with pytest.raises(ImageRejected, match=r"8000x8000 > max_pixels 1000000") as info:
        process_image(small_bomb, SETTINGS)
    assert info.value.reason == "decompression-bomb"
    assert loads == []  # ... rejected before any pixel was decoded


def test_pillow_bomb_error_is_caught_too() -> None:
    # 13500 x 13500 = 182 Mpx, over twice Pillow's MAX_IMAGE_PIXELS: Image.open itself raises
    # DecompressionBombError, even when max_pixels would allow the size.
    settings = ImageSettings(shorter_side=32, max_pixels=10**12)
    assert reason_of(png_bomb(13_500), settings) == "decompression-bomb"


def test_extreme_aspect_ratio_rejected() -> None:
    buf = io.BytesIO()
    Image.new("L", (70_000, 8)).save(buf, "PNG")
    assert reason_of(buf.getvalue(), ImageSettings(shorter_side=256, min_side=8)) == "bad-aspect"
