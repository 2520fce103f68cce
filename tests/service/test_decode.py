"""Image intake: formats by content, conversions, EXIF orientation, limits, corrupt files."""

import io

import numpy as np
import pytest
from PIL import Image

from service.errors import CorruptImage, ImageTooLarge, UnsupportedImage
from service.pipeline.decode import decode_image, sniff_format

LIMIT = 10_000_000


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_accepted_formats_decode_to_rgb(fmt):
    img = Image.new("RGB", (64, 48), (200, 100, 50))
    rgb = decode_image(encode(img, fmt), LIMIT)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert abs(int(rgb[10, 10, 0]) - 200) < 8


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_formats_are_unsupported(fmt):
    with pytest.raises(UnsupportedImage):
        decode_image(encode(Image.new("RGB", (8, 8)), fmt), LIMIT)


def test_format_is_judged_by_content_not_name():
    assert sniff_format(b"GIF89a....") is None
    assert sniff_format(encode(Image.new("RGB", (4, 4)), "PNG")) == "PNG"
    with pytest.raises(UnsupportedImage):
        decode_image(b"%PDF-1.7 not an image", LIMIT)


@pytest.mark.parametrize(
    "mode,fmt",
    [
        ("L", "JPEG"),
        ("CMYK", "JPEG"),
        ("RGBA", "PNG"),
        ("LA", "PNG"),
        ("P", "PNG"),
        ("I;16", "PNG"),
        ("RGBA", "WEBP"),
    ],
)
def test_modes_are_converted_to_rgb(mode, fmt):
    rgb = decode_image(encode(Image.new(mode, (20, 10)), fmt), LIMIT)
    assert rgb.shape == (10, 20, 3) and rgb.dtype == np.uint8


def test_sixteen_bit_is_scaled_not_clipped():
    arr = np.full((4, 4), 65535, dtype=np.uint16)
    rgb = decode_image(encode(Image.fromarray(arr), "PNG"), LIMIT)
    assert rgb.min() == 255


def test_alpha_is_composited_on_white():
    rgb = decode_image(encode(Image.new("RGBA", (4, 4), (0, 0, 0, 0)), "PNG"), LIMIT)
    assert rgb.min() == 255


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (60, 30), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rgb = decode_image(encode(img, "JPEG", exif=exif), LIMIT)
    assert rgb.shape == (60, 30, 3)


def test_pixel_limit_stops_bombs_before_decoding():
    data = encode(Image.new("L", (4000, 4000)), "PNG")  # compresses to a few kB
    assert len(data) < 100_000
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_pixels=1_000_000)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_files_are_corrupt(fmt):
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)), fmt)
    with pytest.raises(CorruptImage):
        decode_image(data[: len(data) // 2], LIMIT)


def test_garbage_after_magic_is_corrupt():
    with pytest.raises(CorruptImage):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, LIMIT)
