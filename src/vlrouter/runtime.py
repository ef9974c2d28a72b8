"""Process-wide defaults, set once when the package is first imported (``vlrouter/__init__.py``).

Only environment defaults that must be in place before numpy, transformers, huggingface_hub or
tokenizers are imported; an operator's own value always wins (``setdefault``).
"""

from __future__ import annotations

import os

DEFAULTS = {
    "HF_HUB_OFFLINE": "1",  # never reach a model hub as a side effect of serving or testing
    "TOKENIZERS_PARALLELISM": "false",  # the tokenizers pool fights the encoders' threads and warns on fork
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # weight-loading bars are noise in a server log
    # numpy's matrix-vector work here is small (the router's attributions, router.explain); OpenBLAS's own
    # thread pool next to torch's oversubscribes the cores: 0.6-0.8 ms single-threaded against 11-40 ms
    # with its default 2 threads on this 2-core VM under load
    "OPENBLAS_NUM_THREADS": "1",
}


def set_process_defaults() -> None:
    """Apply ``DEFAULTS`` to ``os.environ`` where the variable is unset."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
