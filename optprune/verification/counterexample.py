"""The one check every counterexample passes before it is reported ``sat``.

A point is clipped to the property's input box, run forward in float64 through
the reference network and, when the model came from ONNX, through onnxruntime
in the model's own precision, the element type its graph input declares
(float32 for most models, as VNN-COMP judges them; float64, float16); it must
satisfy the output condition (strict VNN-LIB inequalities strictly) in both. Used by the MIP pipeline
(:mod:`optprune.verification`) and by branch and bound (:mod:`optprune.verification.bab`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from optprune.errors import FileFormatError
from optprune.network import Network
from optprune.verification.vnnlib import VNNLibCase

__all__ = ["CHECK_TOL", "OnnxChecker", "check_counterexample", "confirm_point", "case_confirm"]

CHECK_TOL = 1e-6  # box tolerance of the counterexample check (inputs)

# onnxruntime's input type strings -> the NumPy dtype its ``run`` accepts for them
_ORT_INPUT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


def check_counterexample(reference: Network | Callable, case: VNNLibCase, x: np.ndarray) -> tuple[bool, np.ndarray]:
    """Float64 forward pass of ``reference``: is ``x`` in the box and its output in the unsafe set?"""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    forward = reference.forward if isinstance(reference, Network) else reference
    y = np.asarray(forward(x), dtype=np.float64).reshape(-1)
    return case.violated_by(x, y, tol=CHECK_TOL), y


class OnnxChecker:
    """Forward passes of an ONNX model by onnxruntime in its own precision, for the counterexample check.

    VNN-COMP judges a counterexample by running the ONNX file; a point that
    holds only in our float64 pass (a margin of 1e-9 that float32 rounding
    flips) is not a counterexample for the model the user gave. The point is
    fed in the element type the graph input declares (``dtype``: float32,
    float64 or float16), so a float64 model is checked in float64.
    """

    def __init__(self, model) -> None:
        # Built on first use (a counterexample to check, or ``dtype``): importing onnxruntime and building the
        # session cost a fraction of a second that a run decided by its bounds never needs.
        self._model = model
        self._session = None

    def _open(self):
        if self._session is not None:
            return self._session
        import onnxruntime as ort

        model = self._model
        # A ModelProto (``onnx`` is then imported already) goes in serialised; a path is read by onnxruntime.
        source = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        first = session.get_inputs()[0]
        if first.type not in _ORT_INPUT_DTYPES:
            raise FileFormatError(
                f"ONNX input {first.name!r} has type {first.type}; the counterexample check runs onnxruntime on "
                f"inputs of type {', '.join(_ORT_INPUT_DTYPES)}"
            )
        self.input_name = first.name
        self.input_shape = [d if isinstance(d, int) and d > 0 else 1 for d in first.shape]
        self._dtype = np.dtype(_ORT_INPUT_DTYPES[first.type])
        self._session = session
        return session

    @property
    def session(self):
        """The onnxruntime session (built on first use)."""
        return self._open()

    @property
    def dtype(self) -> np.dtype:
        """The element type the graph input declares, in which points are fed."""
        self._open()
        return self._dtype

    @property
    def precision(self) -> str:
        """The precision the model runs in, as named in messages (``float32``, ``float64``, ``float16``)."""
        return self.dtype.name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        session = self._open()
        feed = np.asarray(x, dtype=np.float64).astype(self._dtype).reshape(self.input_shape)
        return np.asarray(session.run(None, {self.input_name: feed})[0], dtype=np.float64).reshape(-1)


def confirm_point(
    reference, onnx_check: OnnxChecker | None, case: VNNLibCase, x: np.ndarray
) -> tuple[bool, np.ndarray, np.ndarray, str]:
    """Clip ``x`` to the box and check it in float64 (and by onnxruntime in the model's precision):
    ``(ok, x, y, why_not)``."""
    x = np.clip(np.asarray(x, dtype=np.float64).reshape(-1), case.lower, case.upper)
    ok, y = check_counterexample(reference, case, x)
    if not ok:
        return False, x, y, "float64 forward pass of the reference network"
    if onnx_check is not None and not case.violated_by(x, onnx_check(x), tol=CHECK_TOL):
        return False, x, y, f"{onnx_check.precision} onnxruntime pass of the ONNX model"
    return True, x, y, ""


def case_confirm(reference, onnx_check: OnnxChecker | None, case: VNNLibCase):
    """:func:`confirm_point` for one case without the reason, ``x -> (ok, x, y)``: the ``confirm`` of
    :func:`optprune.verification.bab.bab_verify_case` (whose default is this check on the network itself)."""

    def confirm(x: np.ndarray) -> tuple[bool, np.ndarray, np.ndarray]:
        ok, x, y, _ = confirm_point(reference, onnx_check, case, x)
        return ok, x, y

    return confirm
