"""Image decoding guards, on real photos and hand-made bad data."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from vlrouter.config import ImageLimits
from vlrouter.media import MediaError, check_remote_url, decode_base64_image, decode_image_bytes

LIMITS = ImageLimits()


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def test_real_photo_round_trip(photo_jpeg):
    decoded = decode_base64_image("data:image/jpeg;base64," + base64.b64encode(photo_jpeg).decode(), LIMITS)
    assert decoded.image.size == (512, 512) and decoded.image.mode == "RGB"
    assert decoded.mime == "image/jpeg" and decoded.data == photo_jpeg
    assert decode_base64_image(decoded.data_url(), LIMITS).sha256 == decoded.sha256


def test_modes_are_converted_to_rgb():
    for mode in ("L", "RGBA", "P", "1"):
        assert decode_image_bytes(encode(Image.new(mode, (8, 8)), "PNG"), LIMITS).image.mode == "RGB"


@pytest.mark.parametrize(
    ("payload", "code", "status"),
    [
        ("!!!", "invalid_base64", 400),
        ("data:image/png,abc", "invalid_image", 400),
        ("data:text/html;base64,PGI+", "invalid_image", 400),
        (base64.b64encode(b"GIF89a but not really").decode(), "invalid_image", 400),
        ("", "invalid_image", 400),
    ],
)
def test_bad_payloads(payload, code, status):
    with pytest.raises(MediaError) as info:
        decode_base64_image(payload, LIMITS)
    assert (info.value.code, info.value.status) == (code, status)


def test_truncated_image_is_rejected(photo_jpeg):
    with pytest.raises(MediaError) as info:
        decode_image_bytes(photo_jpeg[: len(photo_jpeg) // 2], LIMITS)
    assert info.value.code == "invalid_image"


def test_pixel_cap_applies_before_decoding():
    bomb = encode(Image.new("1", (30000, 30000)), "PNG")  # 900 Mpx in ~100 kB
    assert len(bomb) < 200_000
    with pytest.raises(MediaError) as info:
        decode_image_bytes(bomb, LIMITS)
    assert (info.value.code, info.value.status) == ("image_too_large", 413)


def test_byte_cap():
    limits = ImageLimits(max_image_bytes=2048)
    with pytest.raises(MediaError) as info:
        decode_image_bytes(b"\0" * 4096, limits)
    assert info.value.status == 413
    with pytest.raises(MediaError):
        decode_base64_image(base64.b64encode(b"\0" * 4096).decode(), limits)


def test_remote_url_policy():
    with pytest.raises(MediaError, match="disabled"):
        check_remote_url("https://example.com/a.png", LIMITS)
    enabled = ImageLimits(allow_remote=True, allowed_hosts=["localhost", "example.com"])
    with pytest.raises(MediaError, match="allow-list"):
        check_remote_url("https://evil.test/a.png", enabled)
    with pytest.raises(MediaError, match="non-public"):
        check_remote_url("http://localhost:8080/a.png", enabled)
    with pytest.raises(MediaError, match="http"):
        check_remote_url("file:///etc/passwd", enabled)
