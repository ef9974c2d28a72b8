"""Encoder registry: image encoders (open_clip SigLIP, transformers SigLIP) and text encoders (BGE).

Every encoder loads from a local path only, maps a batch to an ``(n, dim)`` float32 array of
L2-normalised rows, and is synchronous. Callers run it off the event loop; micro-batching happens a
layer up. ``ENCODERS`` maps a config ``kind`` to its class.

Precision (``EncoderConfig.precision``; ``resolve_precision`` is the rule):

* ``fp32``: the weights as trained, eager PyTorch: the reference.
* ``bf16``: weights and activations in bfloat16 (CPUs with AVX512-BF16/AMX, GPUs).
* ``int8``: W8A8 on every ``nn.Linear`` (``Int8Linear``: int8 weights with per-channel scales, each
  input row quantised with its own scale, ``torch._int_mm``), CPU only. Per-token scales keep the real
  MiniLM at a cosine of ~0.997 to fp32 where ``quantize_dynamic``'s per-call scale gave ~0.976. Rows
  still move with padding when batched, so an int8 encoder runs its items one at a time: batched ==
  single exactly, as for fp32.
* ``fp16``: only through ``features.dtype: float16`` or ``auto`` on CUDA.
* ``auto``: an explicit ``features.dtype`` if one is set (float32 -> fp32 ...); else fp16 on CUDA,
  int8 on an x86 CPU with VNNI (AVX512-VNNI or AVX-VNNI), else fp32.

bf16 and int8 on CPU run the model as a TorchScript trace (``torch.jit.trace``: no Python per layer,
~1.6x faster for a short text) when the trace reproduces the eager model on probe inputs of other
shapes; otherwise eager. An encoder's ``name`` carries its precision when that is not fp32
(``hf_text:bge-small@int8``), so the FeatureSpec records it (see ``features/spec.py``).
"""

from __future__ import annotations

import functools
import json
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from vlrouter._torch_compat import import_torch
from vlrouter.config import EncoderConfig

log = logging.getLogger(__name__)

FLOAT_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}  # precision -> torch dtype name
_TRACED = ("bf16", "int8")


class EncoderLoadError(RuntimeError):
    pass


def resolve_device(device: str, dtype: str) -> tuple[str, Any]:
    """``(device, torch dtype)``; the dtype is None for ``auto``: each encoder's precision decides."""
    torch = import_torch()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return device, None if dtype == "auto" else getattr(torch, dtype)


@functools.cache
def fast_int8_cpu() -> bool:
    """Whether int8 is the fast path here: an x86 CPU with VNNI, and torch's int8 matmul (oneDNN)."""
    torch = import_torch()
    if not hasattr(torch, "_int_mm"):
        return False
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return False
    flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())
    return bool({"avx512_vnni", "avx_vnni"} & flags)


def resolve_precision(precision: str, device: str, dtype: Any = None) -> str:
    """The precision one encoder runs at: ``fp32`` | ``fp16`` | ``bf16`` | ``int8`` (see the module doc)."""
    if precision == "int8" and device != "cpu":
        raise EncoderLoadError(f"precision int8 is CPU-only (dynamic quantisation), the device is {device}: "
                               "use auto, fp32 or bf16")
    if precision != "auto":
        return precision
    if dtype is not None:
        by_dtype = {v: k for k, v in FLOAT_DTYPES.items()}
        return by_dtype[str(dtype).removeprefix("torch.")]
    if device.startswith("cuda"):
        return "fp16"
    return "int8" if fast_int8_cpu() else "fp32"


@functools.cache
def _int8_linear_class():
    torch = import_torch()

    class Int8Linear(torch.nn.Module):
        """``nn.Linear`` as W8A8: int8 weights with one scale per output channel; each call quantises
        every input row (token) with its own scale, multiplies in int8 (``torch._int_mm``, int32
        accumulation) and rescales to float32."""

        def __init__(self, linear):
            super().__init__()
            w = linear.weight.detach().float()
            scale = (w.abs().amax(1) / 127).clamp(min=1e-12)
            self.register_buffer("weight_t", torch.round(w / scale[:, None]).to(torch.int8).t().contiguous())
            self.register_buffer("scale", scale)
            bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros_like(scale)
            self.register_buffer("bias", bias)

        def forward(self, x):
            rows = x.reshape(-1, x.shape[-1])
            s = rows.abs().amax(-1, keepdim=True).div_(127.0).clamp_(min=1e-12)
            q = torch.round(rows / s).to(torch.int8)
            y = torch.addcmul(self.bias, torch._int_mm(q, self.weight_t) * s, self.scale)
            return y.reshape((*x.shape[:-1], y.shape[-1]))

    return Int8Linear


def quantize_int8(module):
    """``module`` with every ``nn.Linear`` (exactly that type) replaced by an ``Int8Linear``, in place."""
    torch = import_torch()
    int8_linear = _int8_linear_class()
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, int8_linear(child))
    return module


def _normalise(x) -> np.ndarray:
    torch = import_torch()
    return torch.nn.functional.normalize(x.float(), dim=-1).cpu().numpy().astype(np.float32)


class Encoder:
    """Subclasses load ``self.model`` in ``_load`` and define ``_inputs`` (items -> model tensors),
    ``_forward`` (the model call on them) and ``_pool`` (its output -> one row per item)."""

    kind: ClassVar[str]
    modality: ClassVar[str]
    traceable: ClassVar[bool] = True

    def __init__(self, config: EncoderConfig, device: str = "cpu", dtype: Any = None):
        torch = import_torch()
        self.config = config
        self.path = Path(config.path)
        if not self.path.exists():
            raise EncoderLoadError(f"{self.kind} encoder: no model at {self.path}")
        self.precision = resolve_precision(config.precision, device, dtype)
        self.device, self.dtype = device, getattr(torch, FLOAT_DTYPES.get(self.precision, "float32"))
        self.name = f"{self.kind}:{self.path.name}" + ("" if self.precision == "fp32" else f"@{self.precision}")
        started = time.perf_counter()
        self._load()
        if self.precision == "int8":
            self.model = quantize_int8(self.model)
        self._run: Callable = self._forward
        self.traced = False
        if self.precision in _TRACED and device == "cpu" and self.traceable:
            self._trace()
        self.dim = int(self.encode([self._probe()]).shape[1])
        log.info("encoder %s: dim %d, loaded in %.2fs on %s%s", self.name, self.dim, time.perf_counter() - started,
                 device, " (traced)" if self.traced else "")

    def _load(self) -> None:
        raise NotImplementedError

    def _probe(self) -> Any:
        return Image.new("RGB", (32, 32)) if self.modality == "image" else "probe"

    def _probes(self) -> list[list[Any]]:
        """Batches that differ in shape from the one traced (``[self._probe()]``)."""
        if self.modality == "image":
            return [[Image.new("RGB", (48, 40), "navy")], [Image.new("RGB", (20, 30), "red"), self._probe()]]
        long = "a longer probe sentence, with more tokens than the one the encoder was traced with"
        return [[long], ["short probe", long]]

    def _inputs(self, items: list[Any]) -> tuple:
        raise NotImplementedError

    def _forward(self, *inputs):
        raise NotImplementedError

    def _pool(self, output, inputs: tuple):
        return output

    def _encode(self, items: list[Any]) -> np.ndarray:
        torch = import_torch()
        inputs = self._inputs(items)
        with torch.inference_mode():
            return _normalise(self._pool(self._run(*inputs), inputs))

    def encode(self, items: list[Any]) -> np.ndarray:
        if self.precision == "int8" and len(items) > 1:  # int8 scales span the call: one item at a time
            return np.concatenate([self._encode([item]) for item in items])
        return self._encode(items)

    def _trace(self) -> None:
        """Swap ``_run`` for a TorchScript trace of ``_forward`` if it reproduces eager on other shapes."""
        torch = import_torch()
        probes = self._probes()
        quiet = logging.getLogger("transformers")  # tracing reads every property, e.g. the unused loss
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            reference = [self._encode(batch) for batch in probes]
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # TracerWarnings about shape-dependent Python values
                traced = torch.jit.trace(_call_module(self.model, self._forward), self._inputs([self._probe()]),
                                         check_trace=False)
            self._run = traced
            for _ in range(2):  # the profiling executor optimises on the first calls
                got = [self._encode(batch) for batch in probes]
            ok = all(np.allclose(g, r, atol=1e-4) for g, r in zip(got, reference, strict=True))
        except Exception as exc:  # any failure: keep the eager model
            log.warning("encoder %s: no TorchScript trace (%s); running eager", self.name, exc)
            ok = False
        finally:
            quiet.setLevel(level)
        self.traced = ok
        if not ok:
            self._run = self._forward


def _call_module(model, fn: Callable):  # a class made on demand: torch is imported lazily
    """``fn(*inputs)`` as a module that owns ``model`` (what ``fn`` calls), for ``torch.jit.trace``."""
    torch = import_torch()

    class Call(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return fn(*inputs)

    return Call()


class OpenClipImageEncoder(Encoder):
    """open_clip vision tower: a ``local-dir`` folder, or a weights file with ``arch``."""

    kind = "open_clip"
    modality = "image"

    def _load(self) -> None:
        import_torch()
        import open_clip

        if self.path.is_dir():
            if not (self.path / "open_clip_config.json").is_file():
                raise EncoderLoadError(f"open_clip encoder: {self.path} has no open_clip_config.json")
            model, _, preprocess = open_clip.create_model_and_transforms(
                f"local-dir:{self.path}", device=self.device)
        else:
            if not self.config.arch:
                raise EncoderLoadError("open_clip encoder: a weights file needs `arch` (e.g. ViT-B-16-SigLIP)")
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.config.arch, pretrained=str(self.path), device=self.device)
        # The text tower is not needed: BGE encodes the text. A plain cast, not open_clip's precision=
        # (whose mixed conversion fails on some native towers' projections).
        self.model = model.visual.to(self.dtype).eval()
        self.preprocess = preprocess
        del model

    def _inputs(self, items: list[Image.Image]) -> tuple:
        torch = import_torch()
        return (torch.stack([self.preprocess(img) for img in items]).to(self.device, self.dtype),)

    def _forward(self, pixels):
        return self.model(pixels)


class HFSiglipImageEncoder(Encoder):
    """transformers ``SiglipModel`` / ``SiglipVisionModel`` folder (pooled MAP-head output)."""

    kind = "hf_siglip"
    modality = "image"
    traceable = False  # eager at every precision

    def _load(self) -> None:
        import_torch()
        from transformers import AutoImageProcessor, AutoModel

        self.processor = AutoImageProcessor.from_pretrained(self.path, local_files_only=True)
        model = AutoModel.from_pretrained(self.path, local_files_only=True, dtype=self.dtype)
        self.model = getattr(model, "vision_model", model).to(self.device).eval()

    def _inputs(self, items: list[Image.Image]) -> tuple:
        return (self.processor(images=items, return_tensors="pt")["pixel_values"].to(self.device, self.dtype),)

    def _forward(self, pixels):
        return self.model(pixel_values=pixels).pooler_output


def _folder_pooling(path: Path) -> str | None:
    """Pooling declared by the folder: sentence-transformers' 1_Pooling or our VLROUTER_MODEL.json."""
    st = path / "1_Pooling" / "config.json"
    if st.is_file():
        cfg = json.loads(st.read_text())
        if cfg.get("pooling_mode_cls_token"):
            return "cls"
        if cfg.get("pooling_mode_mean_tokens"):
            return "mean"
    meta = path / "VLROUTER_MODEL.json"
    if meta.is_file():
        return json.loads(meta.read_text()).get("pooling")
    return None


class HFTextEncoder(Encoder):
    """A transformers encoder (BGE family: CLS pooling; sentence-transformers MiniLM: mean pooling)."""

    kind = "hf_text"
    modality = "text"

    def _load(self) -> None:
        import_torch()
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True, dtype=self.dtype).to(
            self.device).eval()
        pooling = self.config.pooling
        self.pooling = (_folder_pooling(self.path) or "cls") if pooling == "auto" else pooling

    def _inputs(self, items: list[str]) -> tuple:
        batch = self.tokenizer(items, padding=True, truncation=True, max_length=self.config.max_length,
                               return_tensors="pt").to(self.device)
        return batch["input_ids"], batch["attention_mask"]

    def _forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def _pool(self, hidden, inputs: tuple):
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = inputs[1].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


ENCODERS: dict[str, type[Encoder]] = {
    cls.kind: cls for cls in (OpenClipImageEncoder, HFSiglipImageEncoder, HFTextEncoder)
}


def build_encoder(config: EncoderConfig, device: str, dtype: Any = None) -> Encoder:
    return ENCODERS[config.kind](config, device, dtype)
