"""attribution: pixel attribution (saliency maps) for minicnn models.

Every method is ``method(model, x, target=None, ...) -> np.ndarray`` with
``x: (N, C, H, W)`` images in [0, 1]; the functions are in
``attribution.methods`` and the one table of them, with titles and default
settings, is ``attribution.METHODS`` (``attribution.registry``).
"""
from .methods import (IG_METHODS, SMOOTHGRAD_VARIANTS, deconvnet, deeplift, deeplift_shap, default_cam_layer,
                      gradient_shap, gradient_x_input, guided_backprop, ig_points,
                      integrated_gradients, occlusion, resize_matrix, scale_01, smoothgrad, upsample,
                      vanilla_gradient)
from .lrp import COMPOSITES, canonize, lrp
from .cam_family import (ablation_cam, cam, eigen_cam, eigen_grad_cam, fullgrad, grad_cam, grad_cam_elementwise,
                         grad_cam_plus_plus, guided, guided_grad_cam, hires_cam, layer_cam, score_cam, xgrad_cam)
from .perturbation import kernel_shap, lime, shapley_values
from .superpixels import slic
from .registry import ALIASES, METHODS, Method, get_method

__all__ = [
    "ALIASES", "IG_METHODS", "METHODS", "Method", "SMOOTHGRAD_VARIANTS", "deconvnet", "deeplift", "default_cam_layer",
    "get_method",
    "grad_cam", "gradient_x_input", "guided_backprop", "guided_grad_cam", "ig_points", "integrated_gradients",
    "occlusion", "resize_matrix", "scale_01", "smoothgrad", "upsample", "vanilla_gradient",
    "COMPOSITES", "canonize", "lrp", "kernel_shap", "lime", "shapley_values", "slic",
    "ablation_cam", "cam", "eigen_cam", "eigen_grad_cam", "fullgrad", "guided", "grad_cam_elementwise",
    "grad_cam_plus_plus", "hires_cam", "layer_cam", "score_cam", "xgrad_cam", "deeplift_shap", "gradient_shap",
]
