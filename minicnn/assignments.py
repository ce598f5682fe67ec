"""Where the assignments live, and how a student release of the library calls the student's own code.

In the instructor's repository every graded body in the library sits between two marker comments, a line
``# BEGIN SOLUTION <assignment>.<function>(<arguments>)`` before it and a line ``# END SOLUTION`` after it
(see ``ReLU.backward``). ``python -m attribution.course release OUT/`` writes a student release in which
each such block becomes
``return student_solution("relu_maxpool", "relu_backward_gradient")(dout, x)``: the library then runs the
student's function from ``tutorials/assignments/``, so finishing an assignment unlocks every method built on
it, and a function still to be written stops with a message that names the assignment and the file.
"""
import importlib.util
import os
from pathlib import Path

import numpy as np

# {assignment: its student file in tutorials/assignments/}
FILES = {"relu_maxpool": "a_relu_maxpool.py", "conv_backward": "b_conv_backward.py",
         "gradcam_smoothgrad": "c_gradcam_smoothgrad.py", "deeplift_lrp": "d_deeplift_lrp.py",
         "residual": "e_residual.py", "cam_weightings": "f_cam_weightings.py",
         "pixel_flipping": "g_pixel_flipping.py"}

_loaded = {}


def assignments_folder():
    """tutorials/assignments/ of the checkout this package sits in (a student release keeps that layout)."""
    return Path(__file__).resolve().parent.parent / "tutorials" / "assignments"


def student_solution(assignment, function):
    """The student's ``function`` from their file of ``assignment``, loaded once per change of the file, wrapped
    so that a function still raising NotImplementedError says which assignment unlocks the library's call."""
    path = assignments_folder() / FILES[assignment]
    if not path.is_file():
        raise NotImplementedError(f"this needs {function} from assignment {assignment}, and {path} is missing")
    key = (str(path), os.stat(path).st_mtime_ns)
    if key not in _loaded:
        spec = importlib.util.spec_from_file_location(f"_student_{assignment}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _loaded[key] = module
    student = getattr(_loaded[key], function, None)
    if student is None:
        raise NotImplementedError(f"this needs {function} from assignment {assignment}; {path} has no such function")

    def call(*args, **kwargs):
        try:
            return student(*args, **kwargs)
        except NotImplementedError:
            raise NotImplementedError(f"this needs your {function} (assignment {assignment}): write it in "
                                      f"{path}, then run this again") from None
    return call


# --------------------------------------------------------------------------
# Adapters: the library's general code calling a student's narrower function
# --------------------------------------------------------------------------

class RecordedPass:
    """The model interface assignment C's ``grad_cam`` uses (``forward``, ``outputs``, ``backward(dout,
    until=)``) over a pass already made: the activations A (N, K, h, w) at a layer and the gradient G of each
    image's score there. It has one "logit" per image, so ``backward`` returns G times that logit's dout.
    The library's ``grad_cam_map(A, G)`` runs a student's ``grad_cam`` on it in a student release."""

    layer = "recorded"

    def __init__(self, A, G):
        self.outputs, self._G = {self.layer: A}, G

    def forward(self, x):
        return np.zeros((len(self._G), 1), self._G.dtype)

    def backward(self, dout, until=None):
        if until != self.layer:
            raise ValueError(f"this recorded pass holds the gradient at {self.layer!r} only, not at {until!r}")
        return self._G * dout[:, 0].reshape(-1, 1, 1, 1)


def recorded_pass(A, G):
    """(model, x, targets, layer): the arguments of assignment C's ``grad_cam`` that give its map for the
    recorded A and G (``RecordedPass``)."""
    model = RecordedPass(A, G)
    return model, np.zeros((len(A), 1, 1, 1), A.dtype), np.zeros(len(A), dtype=int), model.layer

