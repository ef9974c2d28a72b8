"""Decoding untrusted images: data URLs, base64, uploads and (opt-in) remote URLs.

Every path ends in ``decode_image_bytes``, which checks the byte size, reads only the header to
check the pixel count *before* decoding (decompression bombs), decodes fully (truncated files fail
here, not later in a model) and converts to RGB. Failures raise ``MediaError`` carrying the HTTP
status and OpenAI error code the API returns.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import ipaddress
import socket
import warnings
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from PIL import Image, UnidentifiedImageError

from vlrouter.config import ImageLimits
from vlrouter.errors import VLRouterError


class MediaError(VLRouterError, ValueError):
    """An image that is malformed (400), too large (413) or not allowed; ``code`` says which."""

    status = 400

    def __init__(self, message: str, *, code: str, status: int = 400, param: str | None = None):
        super().__init__(message, status=status, code=code, param=param)


@dataclass
class DecodedImage:
    data: bytes  # the original encoded bytes (forwarded unchanged to HTTP backends)
    mime: str
    image: Image.Image = field(repr=False)  # decoded, RGB

    @property
    def pixels(self) -> int:
        return self.image.width * self.image.height

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode()}"


def decode_image_bytes(data: bytes, limits: ImageLimits, param: str | None = None) -> DecodedImage:
    if not data:
        raise MediaError("image is empty", code="invalid_image", param=param)
    if len(data) > limits.max_image_bytes:
        raise MediaError(
            f"image is {len(data)} bytes; the limit is {limits.max_image_bytes}",
            code="image_too_large", status=413, param=param,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # reads the header only
            width, height = img.size
            if width * height > limits.max_pixels:
                raise MediaError(
                    f"image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}",
                    code="image_too_large", status=413, param=param,
                )
            img.load()
            fmt = (img.format or "png").lower()
            rgb = img.convert("RGB")
    except MediaError:
        raise
    except Image.DecompressionBombError as exc:
        raise MediaError(str(exc), code="image_too_large", status=413, param=param) from exc
    except UnidentifiedImageError as exc:
        raise MediaError("data is not a recognised image format", code="invalid_image", param=param) from exc
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise MediaError(f"image could not be decoded: {exc}", code="invalid_image", param=param) from exc
    return DecodedImage(data=data, mime=f"image/{'jpeg' if fmt == 'jpg' else fmt}", image=rgb)


def decode_base64_image(value: str, limits: ImageLimits, param: str | None = None) -> DecodedImage:
    """Decode ``data:image/...;base64,...`` or bare base64."""
    payload = value.strip()
    if payload.startswith("data:"):
        header, sep, payload = payload.partition(",")
        if not sep or not header.endswith(";base64"):
            raise MediaError("data URL must be base64-encoded (data:image/...;base64,...)",
                             code="invalid_image", param=param)
        if not header[5:].startswith("image/"):
            raise MediaError(f"data URL media type {header[5:-7]!r} is not an image",
                             code="invalid_image", param=param)
    # 4/3 expansion: refuse before decoding what could not fit the byte limit anyway
    if len(payload) > limits.max_image_bytes * 4 // 3 + 4:
        raise MediaError(f"image is larger than {limits.max_image_bytes} bytes",
                         code="image_too_large", status=413, param=param)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaError(f"invalid base64 image data: {exc}", code="invalid_base64", param=param) from exc
    return decode_image_bytes(data, limits, param)


def _host_allowed(host: str, allowed: list[str]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == a.lower() or host.endswith("." + a.lower().lstrip(".")) for a in allowed)


@dataclass(frozen=True)
class PinnedURL:
    """A remote image URL resolved once and checked: ``url`` names the checked ``address``; ``host``
    (the original name, with any port) goes in the Host header and TLS verifies against ``hostname``."""

    url: str
    host: str
    hostname: str
    address: str


def check_remote_url(url: str, limits: ImageLimits, param: str | None = None,
                     resolve=socket.getaddrinfo) -> PinnedURL:
    """Validate an http(s) image URL against the policy and pin it to the address it resolved to.

    Every address the name resolves to must be public (unless ``images.allow_private``); the fetch
    then connects to the first of them, so a second lookup cannot answer differently (DNS
    rebinding). Blocking (DNS): call it in a thread."""
    if not limits.allow_remote:
        raise MediaError("remote image URLs are disabled on this server; send a data URL",
                         code="image_url_forbidden", param=param)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MediaError("image URL must be http(s) or a data URL", code="invalid_image_url", param=param)
    host = parts.hostname
    if not _host_allowed(host, limits.allowed_hosts):
        raise MediaError(f"image host {host!r} is not in the allow-list", code="image_url_forbidden", param=param)
    try:
        infos = resolve(host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise MediaError(f"image host {host!r} does not resolve", code="invalid_image_url", param=param) from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for addr in addresses:
        if not addr.is_global and not limits.allow_private:
            raise MediaError(f"image host {host!r} resolves to a non-public address ({addr})",
                             code="image_url_forbidden", param=param)
    if not addresses:
        raise MediaError(f"image host {host!r} does not resolve", code="invalid_image_url", param=param)
    pinned = f"[{addresses[0]}]" if addresses[0].version == 6 else str(addresses[0])
    netloc = pinned + (f":{parts.port}" if parts.port else "")
    return PinnedURL(url=urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
                     host=parts.netloc.rpartition("@")[2], hostname=host, address=str(addresses[0]))


async def fetch_remote_image(url: str, limits: ImageLimits, client, param: str | None = None,
                             resolve=socket.getaddrinfo) -> DecodedImage:
    """Fetch an allow-listed public image URL from the address it was checked at (no second DNS
    lookup, no redirects), with size and time limits."""
    import asyncio

    import httpx

    pinned = await asyncio.to_thread(check_remote_url, url, limits, param, resolve)
    extensions = {"sni_hostname": pinned.hostname} if pinned.url.startswith("https:") else {}
    request = client.build_request("GET", pinned.url, headers={"Host": pinned.host}, extensions=extensions,
                                   timeout=limits.fetch_timeout_s)
    try:
        resp = await client.send(request, stream=True, follow_redirects=False)
        try:
            if resp.status_code != 200:
                raise MediaError(f"image URL returned HTTP {resp.status_code}", code="invalid_image_url", param=param)
            chunks, size = [], 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > limits.max_image_bytes:
                    raise MediaError(f"image is larger than {limits.max_image_bytes} bytes",
                                     code="image_too_large", status=413, param=param)
                chunks.append(chunk)
        finally:
            await resp.aclose()
    except httpx.HTTPError as exc:
        raise MediaError(f"could not fetch image URL: {exc}", code="invalid_image_url", param=param) from exc
    return decode_image_bytes(b"".join(chunks), limits, param)
