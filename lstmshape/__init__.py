"""lstmshape: raw ``.npy``/``.npz``/``.h5`` arrays in, LSTM-ready ``(samples, timesteps, features)``
tensors out, with a JSON shape manifest.

The library API (each name is imported on first use, so ``import lstmshape`` stays fast)::

    import lstmshape
    seqs = lstmshape.read("sensors.npz")                  # a SequenceSet
    padded = lstmshape.pad(seqs, maxlen="p95")            # PadResult(tensor, lengths)
    lstmshape.write("train.npz", padded.tensor, lengths=padded.lengths)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "SequenceSet": ("lstmshape.sequences", "SequenceSet"),
    "LstmshapeError": ("lstmshape.errors", "LstmshapeError"),
    "read": ("lstmshape.api", "read"),
    "write": ("lstmshape.api", "write"),
    "inspect": ("lstmshape.api", "inspect"),
    "pad": ("lstmshape.ops.pad", "pad"),
    "truncate": ("lstmshape.ops.truncate", "truncate"),
    "split": ("lstmshape.ops.truncate", "split"),
    "add_feature": ("lstmshape.ops.add_feature", "add_feature"),
    "batch": ("lstmshape.ops.batch", "batch"),
    "window": ("lstmshape.ops.window", "window"),
    "normalize": ("lstmshape.ops.normalize", "normalize"),
    "partition": ("lstmshape.ops.partition", "partition"),
    "verify": ("lstmshape.commands.verify", "verify_file"),
}

__all__ = ["__version__", *_LAZY]


#: Submodules reached as attributes; ``lstmshape.tf`` and ``lstmshape.torch`` import TensorFlow
#: and PyTorch only when used.
_SUBMODULES = ("tf", "torch")


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"lstmshape.{name}")
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'lstmshape' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too, for tab completion in notebooks."""
    return sorted({*__all__, *_SUBMODULES, *(n for n in globals() if n.startswith("__"))})
