"""Import torch (and make torchvision importable) before transformers or open_clip.

The CPU torch wheel on these machines has no matching CPU torchvision; the available torchvision
build registers its C++ operators against a CUDA torch and fails at import with
``operator torchvision::nms does not exist``. transformers and open_clip only need torchvision's
pure-Python transforms, so we declare the two missing operator schemas before the first import.
The detection ops stay unusable (nothing here calls them). On a matching torch/torchvision pair
this is a no-op.
"""

from __future__ import annotations

_LIBRARY = None  # keep the torch.library.Library alive for the life of the process


def import_torch():
    """Import and return torch, with torchvision's operator schemas present (see the module docstring)."""
    global _LIBRARY
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018 - probing the op registry
    except (AttributeError, RuntimeError):
        if _LIBRARY is None:
            _LIBRARY = torch.library.Library("torchvision", "DEF")
            _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    return torch
