"""Image decoding guards, on real photos and hand-made bad data."""

from __future__ import annotations

import base64
import io

import pytest
from fastapi import Request
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


def test_remote_fetch_connects_to_the_address_it_checked(tmp_path):
    """Resolved once, checked, and fetched from that address with the original Host: a second lookup
    (DNS rebinding to a private address) never happens."""
    import asyncio
    import socket

    import httpx
    from fastapi import FastAPI, Response

    from tests.conftest import ThreadServer
    from vlrouter.media import fetch_remote_image

    seen, lookups = {}, []
    app = FastAPI()

    @app.get("/cat.png")
    async def cat(request: Request):  # Request: imported at module level, where FastAPI resolves it
        seen["host"] = request.headers["host"]
        return Response(encode(Image.new("RGB", (8, 8), "red"), "PNG"), media_type="image/png")

    def resolve(host, port, **kwargs):  # the name resolves to loopback, once; a rebinding answer would differ
        lookups.append(host)
        return socket.getaddrinfo("127.0.0.1", port, **kwargs)

    limits = ImageLimits(allow_remote=True, allowed_hosts=["images.test"], allow_private=True)
    with ThreadServer(app) as server:
        url = f"http://images.test:{server.port}/cat.png"

        async def go():
            async with httpx.AsyncClient() as client:
                return await fetch_remote_image(url, limits, client, resolve=resolve)

        image = asyncio.run(go())
    assert image.image.size == (8, 8)
    assert seen["host"] == f"images.test:{server.port}" and lookups == ["images.test"]
    pinned = check_remote_url(url, limits, resolve=resolve)
    assert pinned.url == f"http://127.0.0.1:{server.port}/cat.png" and pinned.hostname == "images.test"
    with pytest.raises(MediaError, match="non-public"):  # the same name without allow_private
        check_remote_url(url, ImageLimits(allow_remote=True, allowed_hosts=["images.test"]), resolve=resolve)
