"""The floor: the plain FastAPI + uvicorn + ONNX Runtime endpoint most users start from.

No batching, no binary tensors: the V2 JSON request body is parsed by the framework, turned
into an array with ``np.asarray``, run through one ``InferenceSession`` and the answer returned
as V2 JSON. The ONNX Runtime session uses the same settings as Shipyard's defaults (read from
``shipyard.config.OnnxRuntimeConfig`` by the caller and passed in ``FLOOR_ORT``).

``FLOOR_FRAMEWORK=starlette`` serves the same handler as a plain Starlette endpoint, for
machines where FastAPI is not installed; the results label which one ran.

Run by ``serve_overhead.py`` as ``uvicorn floor_app:app`` with uvicorn's defaults (uvloop and
httptools when installed), access log off.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort

__all__ = ["app"]

MODEL_PATH = os.environ["FLOOR_MODEL"]
SETTINGS: dict[str, Any] = json.loads(os.environ.get("FLOOR_ORT", "{}"))
FRAMEWORK = os.environ.get("FLOOR_FRAMEWORK", "fastapi")


def _session() -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = SETTINGS.get("intra_op_threads", 1)
    options.inter_op_num_threads = SETTINGS.get("inter_op_threads", 1)
    spin = "1" if SETTINGS.get("allow_spinning", False) else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return ort.InferenceSession(MODEL_PATH, options, providers=["CPUExecutionProvider"])


session = _session()
input_name = session.get_inputs()[0].name


def predict(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The handler a user writes: JSON in, ``session.run``, JSON out."""
    tensor = body["inputs"][0]
    x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    (y,) = session.run(None, {input_name: x})
    return {
        "model_name": name,
        "outputs": [
            {
                "name": "probabilities",
                "datatype": "FP32",
                "shape": list(y.shape),
                "data": y.ravel().tolist(),
            }
        ],
    }


if FRAMEWORK == "fastapi":
    from fastapi import Body, FastAPI

    app: Any = FastAPI()

    @app.post("/v2/models/{name}/infer")
    def infer(name: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        # A plain ``def``: FastAPI runs it in its thread pool, as its docs advise for blocking
        # calls such as session.run.
        return predict(name, body)

    @app.get("/v2/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

else:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def _infer(request: Request) -> JSONResponse:
        body = await request.json()
        result = await run_in_threadpool(predict, request.path_params["name"], body)
        return JSONResponse(result)

    async def _ready(request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    app = Starlette(
        routes=[
            Route("/v2/models/{name}/infer", _infer, methods=["POST"]),
            Route("/v2/health/ready", _ready, methods=["GET"]),
        ]
    )
