"""Per-key rate limits: requests and tokens per minute, as token buckets, with OpenAI's headers.

The key is the request's bearer token (the API key), or ``anonymous`` without one. A request is
admitted while its key has a request left and its token budget is not exhausted; tokens are charged
after the answer, from its real usage (prompt + completion), so one request may take the budget
below zero and the next waits until it has refilled. Every answer to a limited route carries
``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests``
and the same three for tokens; a refused request gets 429 ``rate_limit_exceeded`` with
``Retry-After``.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict

from vlrouter.api.errors import error_response
from vlrouter.api.middleware import SERVING_ROUTES, bearer_token
from vlrouter.config import RateLimitConfig
from vlrouter.errors import RequestError


class TokenBucket:
    """``capacity`` units refilled evenly over a minute; ``level`` may go below zero when charged."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.capacity, self.rate, self.clock = float(per_minute), per_minute / 60.0, clock
        self.level, self.updated = float(per_minute), clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def available(self, need: float) -> bool:
        self._refill()
        return self.level >= need

    def charge(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def wait_s(self, need: float) -> float:
        """Seconds until ``need`` units are available."""
        return max(0.0, (need - self.level) / self.rate)

    def reset_s(self) -> float:
        """Seconds until the bucket is full again (OpenAI's ``x-ratelimit-reset-*``)."""
        return max(0.0, (self.capacity - self.level) / self.rate)


def _key(headers: dict[bytes, bytes]) -> str:
    token = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
    return "anonymous" if token is None else hashlib.sha256(token.encode()).hexdigest()[:16]  # never keep keys


class RateLimiter:
    """The buckets of every key seen lately (at most ``max_keys``, least recently used dropped)."""

    def __init__(self, config: RateLimitConfig, clock=time.monotonic, max_keys: int = 100_000):
        self.config, self.clock, self.max_keys = config, clock, max_keys
        self._keys: OrderedDict[str, tuple[TokenBucket | None, TokenBucket | None]] = OrderedDict()

    def buckets(self, key: str) -> tuple[TokenBucket | None, TokenBucket | None]:
        pair = self._keys.get(key)
        if pair is None:
            cfg = self.config
            pair = (TokenBucket(cfg.requests_per_minute, self.clock) if cfg.requests_per_minute else None,
                    TokenBucket(cfg.tokens_per_minute, self.clock) if cfg.tokens_per_minute else None)
            self._keys[key] = pair
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        self._keys.move_to_end(key)
        return pair

    def headers(self, key: str) -> list[tuple[bytes, bytes]]:
        out = []
        for kind, bucket in zip(("requests", "tokens"), self.buckets(key), strict=True):
            if bucket is not None:
                out += [(f"x-ratelimit-limit-{kind}".encode(), str(int(bucket.capacity)).encode()),
                        (f"x-ratelimit-remaining-{kind}".encode(), str(max(0, math.floor(bucket.level))).encode()),
                        (f"x-ratelimit-reset-{kind}".encode(), f"{bucket.reset_s():.3f}s".encode())]
        return out


class RateLimitMiddleware:
    """Admit, refuse (429) or charge requests to the limited routes by key (pure ASGI).

    The pipeline adds each answer's tokens to ``scope["state"]["usage_tokens"]``; they are charged
    once the response has been sent."""

    def __init__(self, app, limiter: RateLimiter):
        self.app, self.limiter = app, limiter

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or (scope.get("method"), scope.get("path")) not in SERVING_ROUTES:
            return await self.app(scope, receive, send)
        key = _key(dict(scope["headers"]))
        requests, tokens = self.limiter.buckets(key)
        short = [(b, need) for b, need in ((requests, 1.0), (tokens, 1.0)) if b is not None and not b.available(need)]
        if short:
            wait = max(b.wait_s(need) for b, need in short)
            err = RequestError(429, f"rate limit reached for this key: retry in {wait:.1f}s",
                               code="rate_limit_exceeded")
            headers = {k.decode(): v.decode() for k, v in self.limiter.headers(key)}
            headers["retry-after"] = str(max(1, math.ceil(wait)))
            return await error_response(err, headers=headers)(scope, receive, send)
        if requests is not None:
            requests.charge(1)
        state = scope.setdefault("state", {})
        state["usage_tokens"] = 0

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.limiter.headers(key)]}
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        finally:
            if tokens is not None:
                tokens.charge(state.get("usage_tokens", 0))
