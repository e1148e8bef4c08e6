"""A Python worker process: load the user's code once, then run one batch per message.

Started by :mod:`shipyard.backends.python` as ``python -m shipyard.backends.python_worker FD``
with a connected Unix socket on ``FD``. The first message says what to load (a
:class:`~shipyard.PythonModel` subclass or a function, from a module of the version folder);
every later one is a batch. Inputs arrive as views on shared memory; outputs are checked
against the declared signature, cast within their kind (float64 → FP32), and sent back.

A Python exception is answered with its traceback (the server logs it; clients never see
it), except :class:`~shipyard.errors.InvalidInputError`, whose message is for the client
(400). A crash ends the process, which the server sees as the socket closing. The worker
exits when the server closes the socket, and ignores SIGINT and SIGTERM (Ctrl-C in a terminal
or a service manager reaches the whole process group; the server decides when workers stop).
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib.util
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shipyard.backends.python_ipc import Arena, Channel, PeerClosedError, pack, unpack
from shipyard.backends.python_model import ModelContext, PythonModel
from shipyard.errors import InvalidInputError
from shipyard.types import DataType, TensorSpec

__all__ = ["ContractError", "check_outputs", "load_callable", "main"]

Array = npt.NDArray[Any]
Predict = Callable[[dict[str, Array]], Mapping[str, Array]]


class ContractError(Exception):
    """The user's code broke the contract (a missing output, a wrong shape or datatype)."""


def _spec(item: Mapping[str, Any]) -> TensorSpec:
    return TensorSpec(item["name"], DataType(item["datatype"]), tuple(item["shape"]))


def _import(version_dir: Path, module: str) -> Any:
    """Import ``<version_dir>/<module>.py`` (its sibling modules importable too)."""
    path = version_dir / f"{module}.py"
    if not path.is_file():
        raise ContractError(f"{path} does not exist")
    if module in sys.modules:
        raise ContractError(
            f"{module}.py has the name of a module Python has already imported; rename it"
        )
    sys.path.insert(0, str(version_dir))
    spec = importlib.util.spec_from_file_location(module, path)
    if spec is None or spec.loader is None:
        raise ContractError(f"cannot import {path}")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def load_callable(function: str, context: ModelContext) -> Predict:
    """Import ``"module:name"`` from the version folder; return what runs one batch.

    ``name`` is a :class:`PythonModel` subclass (instantiated, then ``load(context)``) or a
    function taking the batch dict.
    """
    module_name, _, attribute = function.partition(":")
    module = _import(context.version_dir, module_name)
    target = getattr(module, attribute, None)
    if target is None:
        raise ContractError(
            f"{module_name}.py defines no {attribute!r} (a subclass of shipyard.PythonModel"
            f"{'' if attribute == 'Model' else ' or a function'})"
        )
    if isinstance(target, type):
        if not issubclass(target, PythonModel):
            raise ContractError(
                f"{module_name}.{attribute} is a class but not a subclass of shipyard.PythonModel"
            )
        model = target()
        model.load(context)
        return model.predict
    if not callable(target):
        raise ContractError(f"{module_name}.{attribute} is neither a function nor a class")
    predict: Predict = target
    return predict


def check_outputs(
    returned: Any, wanted: list[str], specs: Mapping[str, TensorSpec], rows: int | None
) -> dict[str, Array]:
    """The outputs ``wanted`` out of what ``predict`` returned, checked against ``specs``.

    ``rows`` is the batch size when the model batches (dim 0 must match). Numeric outputs
    are cast to the declared datatype when the cast keeps their kind (float64 → FP32).
    """
    if not isinstance(returned, Mapping):
        raise ContractError(
            f"predict() must return a dict of output name → array, not {type(returned).__name__}"
        )
    outputs: dict[str, Array] = {}
    for name in wanted:
        if name not in returned:
            raise ContractError(
                f"predict() returned no output {name!r} (it returned "
                f"{', '.join(map(repr, returned)) or 'none'})"
            )
        spec = specs[name]
        array = np.asarray(returned[name])
        if spec.datatype is DataType.BYTES:
            if array.dtype.kind not in ("O", "S", "U"):
                raise ContractError(
                    f"output {name!r} is declared BYTES but predict() returned {array.dtype}"
                )
        elif array.dtype != spec.datatype.numpy:
            target = spec.datatype.numpy
            if array.dtype.hasobject or not np.can_cast(array.dtype, target, "same_kind"):
                raise ContractError(
                    f"output {name!r} is declared {spec.datatype.value} but predict() returned "
                    f"{array.dtype}, which does not cast to it within its kind"
                )
            array = array.astype(target)
        shape = array.shape
        if spec.shape and (
            len(shape) != len(spec.shape)
            or any(s != -1 and s != d for s, d in zip(spec.shape, shape, strict=True))
        ):
            raise ContractError(
                f"output {name!r} has shape {list(shape)}, but model.toml declares "
                f"{list(spec.shape)} (-1 = any size)"
            )
        if rows is not None and (not shape or shape[0] != rows):
            raise ContractError(
                f"output {name!r} has shape {list(shape)}; dim 0 must be the batch size {rows}"
            )
        outputs[name] = array
    return outputs


def _serve(channel: Channel, arena: Arena, predict: Predict, load: Mapping[str, Any]) -> None:
    specs = {item["name"]: _spec(item) for item in load["context"]["outputs"]}
    batching = int(load["context"]["max_batch_size"]) > 0
    while True:
        try:
            header, payload = channel.recv()
        except PeerClosedError:
            return
        if header.get("op") == "stop":
            return
        batch = unpack(header["inputs"], arena, payload, copy=False)
        rows = next(iter(batch.values())).shape[0] if batching and batch else None
        try:
            outputs = check_outputs(predict(batch), header["outputs"], specs, rows)
            described, buffers, _ = pack(outputs, arena, int(header["free"]))
        except ContractError as exc:
            channel.send({"ok": False, "kind": "contract", "message": str(exc)})
            continue
        except InvalidInputError as exc:  # the user's code refuses the request's data
            channel.send({"ok": False, "kind": "invalid", "message": exc.message})
            continue
        except Exception as exc:
            channel.send(
                {
                    "ok": False,
                    "kind": "exception",
                    "type": type(exc).__name__,
                    "traceback": traceback.format_exc(),
                }
            )
            continue
        del batch
        channel.send({"ok": True, "outputs": described}, buffers)


def main(argv: list[str]) -> int:
    """Serve the socket whose file descriptor is ``argv[0]`` until the server closes it."""
    # Signals to the whole process group (Ctrl-C, a service manager stopping the group) are
    # for the server, which drains and then closes the socket; a crash dumps the Python stack
    # of every thread to stderr (the server's log).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    faulthandler.enable()
    channel = Channel(socket.socket(fileno=int(argv[0])))
    try:
        load, _ = channel.recv()
    except PeerClosedError:
        return 0
    arena = Arena(int(load["memory_fd"]), int(load["memory_bytes"]))
    raw = load["context"]
    context = ModelContext(
        name=raw["name"],
        version=int(raw["version"]),
        version_dir=Path(raw["version_dir"]),
        inputs=tuple(_spec(item) for item in raw["inputs"]),
        outputs=tuple(_spec(item) for item in raw["outputs"]),
        max_batch_size=int(raw["max_batch_size"]),
        settings=dict(raw["settings"]),
        worker=int(raw["worker"]),
    )
    try:
        predict = load_callable(load["function"], context)
    except ContractError as exc:
        channel.send({"ok": False, "kind": "contract", "message": str(exc)})
        return 1
    except BaseException as exc:  # load() may raise anything, SystemExit included
        channel.send(
            {
                "ok": False,
                "kind": "exception",
                "type": type(exc).__name__,
                "message": str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                "traceback": traceback.format_exc(),
            }
        )
        return 1
    channel.send({"ok": True})
    with contextlib.suppress(PeerClosedError):
        _serve(channel, arena, predict, load)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
