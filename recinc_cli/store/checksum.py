"""A checkpoint's payload checksum: sha256 over its content, not over the file's bytes.

The digest walks the checkpoint dict in order and feeds each value with a type tag: tensors
as dtype, shape and raw bytes; strings, numbers, None, lists and dicts canonically. It is
stored inside the file it describes (key ``checksum``) and verified on every load, so a
flipped bit in a tensor, an edited list or a partial copy is caught even where the zip
container would still open.

>>> import torch
>>> a = payload_digest({"w": torch.ones(2), "n": 3})
>>> a == payload_digest({"w": torch.ones(2), "n": 3}), a == payload_digest({"w": torch.zeros(2), "n": 3})
(True, False)
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch


def payload_digest(payload: dict[str, Any]) -> str:
    """Hex sha256 of ``payload`` (a checkpoint dict without its ``checksum`` key)."""
    h = hashlib.sha256()
    _feed(h, payload)
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    # Tags and lengths make the encoding prefix-free: ["ab"] and ["a", "b"] differ.
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():  # an empty tensor's view() is refused; its dtype and shape say it all
            h.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself: no copy
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for k, v in value.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(value, list | tuple):
        h.update(f"L{len(value)}".encode())
        for v in value:
            _feed(h, v)
    elif isinstance(value, str):
        b = value.encode("utf-8", "surrogatepass")
        h.update(f"S{len(b)}:".encode())
        h.update(b)
    elif isinstance(value, bool):  # before int: bool is an int subclass
        h.update(b"B1" if value else b"B0")
    elif isinstance(value, int):
        h.update(f"I{value};".encode())
    elif isinstance(value, float):
        h.update(f"F{value.hex()};".encode())
    elif value is None:
        h.update(b"N")
    else:
        raise TypeError(f"cannot checksum a {type(value).__name__}")
