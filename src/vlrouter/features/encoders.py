"""Encoder registry: image encoders (open_clip SigLIP, transformers SigLIP) and text encoders (BGE).

Every encoder loads from a local path only, maps a batch to an ``(n, dim)`` float32 array of
L2-normalised rows, and is synchronous. Callers run it off the event loop; micro-batching happens a
layer up. ``ENCODERS`` maps a config ``kind`` to its class.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from vlrouter._torch_compat import import_torch
from vlrouter.config import EncoderConfig

log = logging.getLogger(__name__)


class EncoderLoadError(RuntimeError):
    pass


def resolve_device(device: str, dtype: str) -> tuple[str, Any]:
    torch = import_torch()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "float16" if device == "cuda" else "float32"
    return device, getattr(torch, dtype)


def _normalise(x) -> np.ndarray:
    torch = import_torch()
    return torch.nn.functional.normalize(x.float(), dim=-1).cpu().numpy().astype(np.float32)


class Encoder:
    kind: ClassVar[str]
    modality: ClassVar[str]

    def __init__(self, config: EncoderConfig, device: str = "cpu", dtype: Any = None):
        self.config = config
        self.path = Path(config.path)
        if not self.path.exists():
            raise EncoderLoadError(f"{self.kind} encoder: no model at {self.path}")
        self.device, self.dtype = device, dtype
        self.name = f"{self.kind}:{self.path.name}"
        started = time.perf_counter()
        self._load()
        self.dim = int(self.encode([self._probe()]).shape[1])
        log.info("encoder %s: dim %d, loaded in %.2fs on %s", self.name, self.dim, time.perf_counter() - started,
                 device)

    def _load(self) -> None:
        raise NotImplementedError

    def _probe(self) -> Any:
        return Image.new("RGB", (32, 32)) if self.modality == "image" else "probe"

    def encode(self, items: list[Any]) -> np.ndarray:
        raise NotImplementedError


class OpenClipImageEncoder(Encoder):
    """open_clip vision tower: a ``local-dir`` folder, or a weights file with ``arch``."""

    kind = "open_clip"
    modality = "image"

    def _load(self) -> None:
        import_torch()
        import open_clip

        precision = {"float16": "fp16", "bfloat16": "bf16"}.get(str(self.dtype).removeprefix("torch."), "fp32")
        if self.path.is_dir():
            if not (self.path / "open_clip_config.json").is_file():
                raise EncoderLoadError(f"open_clip encoder: {self.path} has no open_clip_config.json")
            model, _, preprocess = open_clip.create_model_and_transforms(
                f"local-dir:{self.path}", device=self.device, precision=precision)
        else:
            if not self.config.arch:
                raise EncoderLoadError("open_clip encoder: a weights file needs `arch` (e.g. ViT-B-16-SigLIP)")
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.config.arch, pretrained=str(self.path), device=self.device, precision=precision)
        self.visual = model.visual.eval()  # the text tower is not needed: BGE encodes the text
        self.preprocess = preprocess
        del model

    def encode(self, items: list[Image.Image]) -> np.ndarray:
        torch = import_torch()
        batch = torch.stack([self.preprocess(img) for img in items]).to(self.device, self.dtype)
        with torch.inference_mode():
            return _normalise(self.visual(batch))


class HFSiglipImageEncoder(Encoder):
    """transformers ``SiglipModel`` / ``SiglipVisionModel`` folder (pooled MAP-head output)."""

    kind = "hf_siglip"
    modality = "image"

    def _load(self) -> None:
        import_torch()
        from transformers import AutoImageProcessor, AutoModel

        self.processor = AutoImageProcessor.from_pretrained(self.path, local_files_only=True)
        model = AutoModel.from_pretrained(self.path, local_files_only=True, dtype=self.dtype)
        self.model = getattr(model, "vision_model", model).to(self.device).eval()

    def encode(self, items: list[Image.Image]) -> np.ndarray:
        torch = import_torch()
        pixels = self.processor(images=items, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
        with torch.inference_mode():
            return _normalise(self.model(pixel_values=pixels).pooler_output)


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

    def encode(self, items: list[str]) -> np.ndarray:
        torch = import_torch()
        batch = self.tokenizer(items, padding=True, truncation=True, max_length=self.config.max_length,
                               return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            return _normalise(pooled)


ENCODERS: dict[str, type[Encoder]] = {
    cls.kind: cls for cls in (OpenClipImageEncoder, HFSiglipImageEncoder, HFTextEncoder)
}


def build_encoder(config: EncoderConfig, device: str, dtype: Any) -> Encoder:
    return ENCODERS[config.kind](config, device, dtype)
