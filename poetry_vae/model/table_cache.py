"""Tables made from a model's weights alone (a decoding stepper's per-token gates and transposed projections), kept
with the model so that each generation request does not make them again.

A table set is rebuilt when any of the model's parameters or buffers has changed since it was made: replaced (a new
storage) or written in place (an optimiser step, ``load_state_dict``; PyTorch counts each tensor's in-place writes).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any

from torch import nn

MAX_KEYS = 4  # table sets kept per model (one per verse form and precision asked for; each a few tens of MB)

_TABLES: weakref.WeakKeyDictionary[nn.Module, dict[Hashable, tuple[tuple, Any]]] = weakref.WeakKeyDictionary()


def weights_fingerprint(model: nn.Module) -> tuple | None:
    """What changes when any weight of ``model`` does: each tensor's storage and its in-place write count. None
    for a model holding inference tensors (made under ``torch.inference_mode``), which count no writes."""
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.is_inference() for t in tensors):
        return None
    return tuple((t.data_ptr(), t._version) for t in tensors)


def cached_tables(model: nn.Module, key: Hashable, build: Callable[[], Any]) -> Any:
    """``build()``'s result for ``model`` and ``key``, made again only when the model's weights have changed."""
    fingerprint = weights_fingerprint(model)
    if fingerprint is None:
        return build()
    kept = _TABLES.setdefault(model, {})
    hit = kept.get(key)
    if hit is not None and hit[0] == fingerprint:
        return hit[1]
    tables = build()
    kept.pop(key, None)
    while len(kept) >= MAX_KEYS:  # the oldest set goes first
        kept.pop(next(iter(kept)))
    kept[key] = (fingerprint, tables)
    return tables
