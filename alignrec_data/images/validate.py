"""Decode, verify, normalise and re-encode one untrusted image.

:func:`process_image` turns response bytes into the stored JPEG:

1. reject empty bodies (``"empty"``) and anything Pillow cannot identify as one of
   :data:`ALLOWED_FORMATS` (``"not-an-image"``: HTML error pages, random bytes; other formats
   are refused on purpose, e.g. EPS would start Ghostscript);
2. read only the header and reject ``width * height > max_pixels`` BEFORE decoding
   (``"decompression-bomb"``; Pillow's own ``DecompressionBombError`` maps to the same
   reason), images whose shorter side is below ``min_side`` (``"too-small"``: Amazon answers
   dead image ids with a 1x1 GIF) and strips too long for a JPEG (``"bad-aspect"``);
3. verify and decode (``"corrupt"`` for truncated or damaged data), apply the EXIF orientation,
   flatten transparency onto white, convert to RGB;
4. resize with Lanczos so the shorter side is ``shorter_side`` (never upscaled: smaller images
   keep their size); JPEGs are decoded at a reduced DCT scale first (``Image.draft``), which is
   fast and deterministic;
5. re-encode as baseline JPEG with fixed quality and chroma subsampling, no EXIF, no ICC
   profile, no ``optimize``: the same source bytes and settings give byte-identical output.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

# Formats accepted from image servers (what Amazon serves); anything else is "not-an-image".
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
# Largest side a baseline JPEG can hold.
JPEG_MAX_SIDE = 65_500


class ImageRejected(Exception):
    """The bytes are not an acceptable image.

    Attributes:
        reason: Short reason recorded in the index (``"not-an-image"``, ``"corrupt"``...).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageSettings:
    """How images are checked and stored (a subset of the ``images`` params).

    Attributes:
        shorter_side: Target length of the shorter side in pixels (never upscaled).
        jpeg_quality: JPEG quality of the stored image (1-95).
        jpeg_subsampling: Chroma subsampling: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0.
        max_pixels: Largest ``width * height`` accepted before decoding.
        min_side: Smallest shorter side accepted, in pixels.
    """

    shorter_side: int = 256
    jpeg_quality: int = 90
    jpeg_subsampling: int = 2
    max_pixels: int = 40_000_000
    min_side: int = 16


@dataclass(frozen=True)
class StoredImage:
    """A re-encoded image ready to store.

    Attributes:
        data: The JPEG bytes.
        width: Width in pixels.
        height: Height in pixels.
        sha256: Hex sha256 of ``data``.
        source_format: Format of the source (``"JPEG"``, ``"PNG"``...).
        source_width: Width of the source image.
        source_height: Height of the source image.
    """

    data: bytes
    width: int
    height: int
    sha256: str
    source_format: str
    source_width: int
    source_height: int


def target_size(width: int, height: int, shorter_side: int) -> tuple[int, int]:
    """Size with the shorter side ``shorter_side`` and the aspect ratio kept (no upscaling).

    Args:
        width: Source width.
        height: Source height.
        shorter_side: Wanted length of the shorter side.

    Returns:
        ``(width, height)``; the source size when it is already small enough.
    """
    if min(width, height) <= shorter_side:
        return width, height
    if width <= height:
        return shorter_side, max(1, round(height * shorter_side / width))
    return max(1, round(width * shorter_side / height)), shorter_side


@contextmanager
def _rejecting() -> Iterator[None]:
    """Turn what Pillow raises on untrusted bytes into :class:`ImageRejected`."""
    try:
        yield
    except Image.DecompressionBombError as err:
        raise ImageRejected("decompression-bomb", str(err)) from err
    except UnidentifiedImageError as err:
        raise ImageRejected("not-an-image", str(err)) from err
    except Exception as err:  # noqa: BLE001 - truncated/damaged data raises many types
        raise ImageRejected("corrupt", f"{type(err).__name__}: {err}") from err


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB copy of ``im``; transparent pixels become white."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        im = im.convert("L")  # 16-bit / float greyscale: Pillow converts these via L
    return im.convert("RGB") if im.mode != "RGB" else im


def process_image(data: bytes, settings: ImageSettings) -> StoredImage:
    """Validate untrusted image bytes and return the normalised JPEG to store.

    Args:
        data: The response body.
        settings: Limits and output format.

    Returns:
        The stored image.

    Raises:
        ImageRejected: ``empty``, ``not-an-image``, ``decompression-bomb``, ``too-small``,
            ``bad-aspect`` or ``corrupt`` (see the module docstring).
    """
    if not data:
        raise ImageRejected("empty")
    with _rejecting():
        im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    fmt = im.format or "?"
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageRejected("corrupt", f"size {width}x{height}")
    if width * height > settings.max_pixels:
        raise ImageRejected(
            "decompression-bomb", f"{width}x{height} > max_pixels {settings.max_pixels}"
        )
    if min(width, height) < settings.min_side:
        raise ImageRejected("too-small", f"{width}x{height} < min_side {settings.min_side}")
    tw, th = target_size(width, height, settings.shorter_side)
    if max(tw, th) > JPEG_MAX_SIDE:
        raise ImageRejected("bad-aspect", f"{width}x{height} resized to {tw}x{th}")
    with _rejecting():
        im.verify()  # structure and checksums (PNG CRCs) without decoding pixels
        im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        if fmt == "JPEG" and (tw, th) != (width, height):
            im.draft("RGB", (tw, th))  # decode at a reduced DCT scale, still >= target
        im.load()
        im = ImageOps.exif_transpose(im) or im
        rgb = _to_rgb(im)
    w, h = rgb.size
    tw, th = target_size(w, h, settings.shorter_side)
    rgb = rgb.resize((tw, th), Image.Resampling.LANCZOS)  # a copy when the size is kept
    buf = io.BytesIO()
    rgb.save(
        buf,
        "JPEG",
        quality=settings.jpeg_quality,
        subsampling=settings.jpeg_subsampling,
        optimize=False,
        progressive=False,
    )
    out = buf.getvalue()
    return StoredImage(
        data=out,
        width=tw,
        height=th,
        sha256=hashlib.sha256(out).hexdigest(),
        source_format=fmt,
        source_width=width,
        source_height=height,
    )
