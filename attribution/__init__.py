"""attribution: pixel attribution (saliency maps) for minicnn models.

Every method is ``method(model, x, target=None, ...) -> np.ndarray`` with
``x: (N, C, H, W)``; see ``attribution.methods``.
"""
from .methods import (IG_METHODS, METHODS, SMOOTHGRAD_VARIANTS, deconvnet, default_cam_layer, grad_cam,
                      gradient_x_input, guided_backprop, guided_grad_cam, ig_points, integrated_gradients,
                      occlusion, resize_matrix, scale_01, smoothgrad, upsample, vanilla_gradient)

__all__ = [
    "IG_METHODS", "METHODS", "SMOOTHGRAD_VARIANTS", "deconvnet", "default_cam_layer", "grad_cam",
    "gradient_x_input", "guided_backprop", "guided_grad_cam", "ig_points", "integrated_gradients", "occlusion",
    "resize_matrix", "scale_01", "smoothgrad", "upsample", "vanilla_gradient",
]
