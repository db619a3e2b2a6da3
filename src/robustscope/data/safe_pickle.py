"""A restricted unpickler for data files (CIFAR batches) that must never run code.

Only plain containers, strings, bytes and numbers (which need no global) and
numpy array reconstruction are allowed. Every other global — ``os.system``,
``builtins.eval``, any class — is refused *before* anything is called, with a
:class:`~robustscope.errors.DataError` naming the file and the global.

Allowed globals:

* ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``,
  ``numpy.ndarray``, ``numpy.dtype`` (how ``ndarray.__reduce__`` pickles arrays,
  in numpy 1 and numpy 2 spelling);
* ``numpy.core.numeric._frombuffer`` / ``numpy._core.numeric._frombuffer``
  (numpy's pickle-protocol-5 form of the same);
* ``builtins.set``/``frozenset``/``bytearray`` (and python 2's ``__builtin__``);
* ``_codecs.encode`` restricted to ``latin1`` text, which is how python 3 writes
  ``bytes`` with pickle protocols below 3.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from robustscope.errors import DataError

_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise DataError(f"refusing _codecs.encode with encoding {encoding!r}")
    if not isinstance(text, str):
        raise DataError("refusing _codecs.encode of a non-string")
    return text.encode("latin1", errors)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("__builtin__", "bytearray"): bytearray,
    ("_codecs", "encode"): _latin1_encode,
}


class _Refused(Exception):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.glob = f"{module}.{name}"


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(module, name) from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent_id", repr(pid)[:40])


def load_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` (python-2 strings become ``bytes``) allowing only data, never code.

    Raises:
        DataError: naming the file, for a refused global ("refusing to unpickle
            global os.system"), an unreadable file, or a corrupt/truncated pickle.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            return _RestrictedUnpickler(f, encoding="bytes").load()
    except _Refused as e:
        raise DataError(
            f"{p}: refusing to unpickle global {e.glob} "
            "(only containers, strings, numbers and numpy arrays are allowed)"
        ) from None
    except DataError as e:
        raise DataError(f"{p}: {e}") from None
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e})") from e
    except Exception as e:  # UnpicklingError, EOFError, ValueError, TypeError, ...
        raise DataError(f"{p}: corrupt or truncated pickle ({type(e).__name__}: {e})") from e
