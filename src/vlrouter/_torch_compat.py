"""Import torch (and make torchvision importable) before transformers or open_clip.

The CPU torch wheel on these machines has no matching CPU torchvision; the available torchvision
build registers its C++ operators against a CUDA torch and fails at import with
``operator torchvision::nms does not exist``. transformers and open_clip only need torchvision's
pure-Python transforms, so we declare the two missing operator schemas before the first import.
The detection ops stay unusable (nothing here calls them). On a matching torch/torchvision pair
this is a no-op.
"""

from __future__ import annotations

import os

_LIBRARY = None  # keep the torch.library.Library alive for the life of the process


def import_torch():
    """Return the torch module with torchvision's operator schemas present."""
    global _LIBRARY
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub as a side effect
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018 - probing the op registry
    except (AttributeError, RuntimeError):
        if _LIBRARY is None:
            _LIBRARY = torch.library.Library("torchvision", "DEF")
            _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    try:  # weight-loading progress bars are noise in a server log
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    return torch
