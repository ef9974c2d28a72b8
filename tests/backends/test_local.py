"""The local backend on the demo VLM: real SmolLM2 decoder, loaded through AutoModelForImageTextToText."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import ROOT
from vlrouter.backends.base import BackendRejected, GenerationRequest, Message
from vlrouter.backends.local import LocalVLMBackend, ModelLoadError
from vlrouter.config import LocalBackendConfig
from vlrouter.media import decode_image_bytes
from vlrouter.meters.energy import EnergyLedger


@pytest.fixture(scope="module")
def demo_vlm(tmp_path_factory) -> Path:
    built = ROOT / "models" / "demo-vlm"
    if (built / "config.json").is_file():
        return built
    from vlrouter.demo_models import build_demo_vlm

    return build_demo_vlm(tmp_path_factory.mktemp("demo") / "demo-vlm")


def backend(path: Path, energy: EnergyLedger | None = None) -> LocalVLMBackend:
    config = LocalBackendConfig(kind="local", tier="edge", model_path=path, threads=2)
    return LocalVLMBackend("edge", config, energy=energy)


@pytest.mark.slow
def test_demo_vlm_answers_with_the_real_decoder(demo_vlm, photo_jpeg):
    async def go():
        b = backend(demo_vlm)
        await b.start()
        try:
            text = await b.generate(GenerationRequest(
                messages=[Message("user", ["What is the capital of France?"])], max_tokens=16))
            image = decode_image_bytes(photo_jpeg, _limits())
            seen = await b.generate(GenerationRequest(
                messages=[Message("user", [image, "Describe the image."])], max_tokens=4))
            return text, seen
        finally:
            await b.aclose()

    text, seen = asyncio.run(go())
    assert "Paris" in text.text
    assert text.finish_reason == "stop" and text.first_token_at is not None and text.queue_s >= 0
    assert seen.prompt_tokens > 49 and seen.completion_tokens == 4 and seen.finish_reason == "length"


def _limits():
    from vlrouter.config import ImageLimits

    return ImageLimits()


def test_context_overflow_is_rejected(tiny_vlm):
    async def go():
        b = backend(tiny_vlm)
        await b.start()
        try:
            await b.generate(GenerationRequest(messages=[Message("user", ["hi"])], max_tokens=4000))
        finally:
            await b.aclose()

    with pytest.raises(BackendRejected, match="context"):
        asyncio.run(go())


def test_a_huge_prompt_is_refused_before_the_worker_and_does_not_delay_others(tiny_vlm):
    """5 MB of text is over any context by the character bound: refused without tokenising, while a
    small request on the same worker still answers."""
    huge = GenerationRequest(messages=[Message("user", ["word " * 1_000_000])], max_tokens=4)
    small = GenerationRequest(messages=[Message("user", ["hi"])], max_tokens=2)

    async def go():
        b = backend(tiny_vlm)
        await b.start()
        try:
            return await asyncio.gather(*(b.generate(huge) for _ in range(3)), b.generate(small),
                                        return_exceptions=True)
        finally:
            await b.aclose()

    results = asyncio.run(go())
    # "at least N tokens" is the character bound's message: the worker never tokenised these
    assert all(isinstance(r, BackendRejected) and "at least" in str(r) and r.status == 400 for r in results[:3])
    assert not isinstance(results[3], BaseException) and results[3].completion_tokens >= 1


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match=r"backends\.edge\.model_path"):
        asyncio.run(backend(tmp_path / "nothing").start())


def test_the_ledger_given_at_construction_meters_each_generation(tiny_vlm):
    counter = iter(range(0, 10**6, 5))  # a cumulative joule counter that moves 5 J a read
    ledger = EnergyLedger(lambda: float(next(counter)), "estimate")

    async def go():
        b = backend(tiny_vlm, energy=ledger)
        await b.start()
        try:
            return await b.generate(GenerationRequest(messages=[Message("user", ["hi"])], max_tokens=2))
        finally:
            await b.aclose()

    reading = asyncio.run(go()).energy
    assert reading is not None and reading.joules == 5.0
    assert (reading.source, reading.attribution) == ("estimate", "exclusive")
