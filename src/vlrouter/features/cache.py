"""A thread-safe LRU of embeddings keyed by content hash (sha256 of image bytes or of text)."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class EmbeddingCache:
    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> np.ndarray | None:
        if self.max_entries == 0:
            return None
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: np.ndarray) -> None:
        if self.max_entries == 0:
            return
        value.setflags(write=False)  # shared between requests: never mutated in place
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
