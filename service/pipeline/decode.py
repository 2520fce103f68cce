"""Image intake: sniff the format from the bytes, guard against bombs, decode to RGB uint8."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from service.errors import CorruptImage, ImageTooLarge, UnsupportedImage

# Formats are recognised by their leading bytes, never by a declared content type or file name.
_SIGNATURES: tuple[tuple[str, bytes, int], ...] = (
    ("JPEG", b"\xff\xd8\xff", 0),
    ("PNG", b"\x89PNG\r\n\x1a\n", 0),
)


def sniff_format(data: bytes) -> str | None:
    """Return "JPEG", "PNG" or "WEBP" when the bytes start like one, else None."""
    for name, magic, offset in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


_TRANSPOSING = (5, 6, 7, 8)  # EXIF orientations that swap width and height
DRAFT_SCALES = (8, 4, 2)  # the reductions libjpeg decodes to directly (from its DCT coefficients)


@dataclass(frozen=True)
class Decoded:
    """A decoded photo, possibly reduced: ``rgb`` pixel (x, y) covers original pixels
    [x * scale, (x + 1) * scale) (continuous coordinates scale by ``scale`` exactly)."""

    rgb: np.ndarray  # (h, w, 3) uint8
    scale: int  # original pixels per decoded pixel: 1, or 2, 4, 8 for a JPEG decoded reduced
    width: int  # the original size, EXIF orientation applied
    height: int


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode an uploaded photo to an (H, W, 3) uint8 RGB array with EXIF orientation applied.

    Grayscale, palette, CMYK, 16-bit and alpha images are converted to 8-bit RGB (alpha is
    composited on white). The pixel count is checked from the header, before any pixel is
    decompressed, so a decompression bomb is refused without allocating it.
    """
    return decode_reduced(data, max_pixels).rgb


def decode_reduced(data: bytes, max_pixels: int, min_side: int | None = None, max_scale: int = 8) -> Decoded:
    """``decode_image``, but a JPEG is decoded reduced by the largest of 2, 4, 8 (at most
    ``max_scale``) that leaves its longer side at least ``min_side`` (None: full size).

    libjpeg then computes the reduced pixels from the DCT coefficients (PIL's draft mode): the
    full-size image is never allocated, and each reduced pixel is the mean of its block (no
    aliasing). Other formats are decoded at full size (``scale`` 1).
    """
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedImage("the upload is not a JPEG, PNG or WebP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = img.size
            if width <= 0 or height <= 0:
                raise CorruptImage("the image has no pixels")
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"the image is {width}x{height} = {width * height} pixels, the limit is {max_pixels}",
                    width=width,
                    height=height,
                    max_pixels=max_pixels,
                )
            scale = _draft(img, min_side, max_scale) if fmt == "JPEG" else 1
            img.load()
            if img.getexif().get(ExifTags.Base.Orientation, 1) in _TRANSPOSING:
                width, height = height, width
            img = ImageOps.exif_transpose(img) or img
            rgb = _to_rgb(img)
    except (ImageTooLarge, CorruptImage):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"the image exceeds the decoder's pixel limit: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise CorruptImage(f"the {fmt} image could not be decoded: {exc}") from exc
    return Decoded(rgb, scale, width, height)


def _draft(img: Image.Image, min_side: int | None, max_scale: int) -> int:
    """Configure the JPEG decoder for the largest allowed reduction; returns it (1: none)."""
    if min_side is None:
        return 1
    width, height = img.size
    for scale in DRAFT_SCALES:
        if scale <= max_scale and max(width, height) // scale >= min_side:
            img.draft(img.mode, (width // scale, height // scale))
            break
    for scale in DRAFT_SCALES:  # the reduction the decoder was configured for (none: 1)
        if img.size == (-(-width // scale), -(-height // scale)):
            return scale
    return 1


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)
