"""The one table of attribution methods: ``METHODS[name]``.

Everything that lists methods reads it: ``attribution explain --methods``,
``attribution demo``, ``attribution evaluate``'s table, the benchmarks and
the tests. An entry is cheap: a function with the common contract
``function(model, x, target=None, **settings)``, a display title, whether the
map is signed, and the settings the registry uses by default.

    import attribution as attr
    attr.METHODS["smoothgrad"](model, x)                          # the registry's defaults
    attr.METHODS["smoothgrad"](model, x, noise_level=0.05)        # one call, another setting
    quick = attr.METHODS["smoothgrad"].with_settings(n_samples=8) # an entry with other defaults

Short names from earlier versions ("vanilla", "guided", "gradcam",
"guided_gradcam") are aliases: ``get_method("gradcam")`` is ``METHODS["grad_cam"]``.
"""
import dataclasses
from typing import Callable, Optional

from . import cam_family as cam
from . import methods as am
from .lrp import lrp
from .perturbation import kernel_shap, lime, shapley_values


@dataclasses.dataclass(frozen=True)
class Method:
    """One attribution method and how the project runs and shows it.

    name: the registry key, also the command-line name.
    function: ``function(model, x, target=None, **settings) -> np.ndarray``.
    title: the column title in figures.
    signed: the sign is evidence for (+) or against (-) the class, so the map
        is summed over channels with its sign and drawn with a diverging
        colormap; False: only the magnitude is read (gradients, Grad-CAM).
    coarse: the map is (N, h, w) at a layer, not (N, C, H, W) at the pixels.
    settings: the registry's defaults, where they differ from the function's.
    sized: settings that depend on the image, ``sized(H, W) -> dict``.
    aliases: other accepted names.
    """
    name: str
    function: Callable
    title: str
    signed: bool = False
    coarse: bool = False
    settings: dict = dataclasses.field(default_factory=dict)
    sized: Optional[Callable] = None
    aliases: tuple = ()

    def __call__(self, model, x, target=None, **overrides):
        settings = dict(self.settings)
        if self.sized is not None:
            settings.update(self.sized(*x.shape[2:]))
        settings.update(overrides)
        return self.function(model, x, target, **settings)

    def accepts(self, setting):
        """Whether the function takes ``setting`` by name."""
        import inspect
        return setting in inspect.signature(self.function).parameters

    def with_settings(self, **settings):
        """The same method with other default settings (an explicit override, say for speed)."""
        return dataclasses.replace(self, settings={**self.settings, **settings})

    @property
    def display(self):
        """How figures draw the map: "overlay" (coarse), "signed" (diverging) or "abs" (grey)."""
        return "overlay" if self.coarse else "signed" if self.signed else "abs"


def smoothgrad_of(model, x, target=None, of="vanilla_gradient", progress=False, **settings):
    """SmoothGrad around the registry method ``of`` (default: the Vanilla Gradient)."""
    return am.smoothgrad(get_method(of), model, x, target, progress=progress, **settings)


def occlusion_window(H, W):
    """A window of 1/8 of the image side, moved by half a window (8 and 4 pixels at 64x64)."""
    return {"window": (max(1, H // 8), max(1, W // 8)), "stride": (max(1, H // 16), max(1, W // 16))}


METHODS = {m.name: m for m in [
    Method("vanilla_gradient", am.vanilla_gradient, "Vanilla Gradient", aliases=("vanilla",)),
    Method("gradient_x_input", am.gradient_x_input, "Gradient x Input", signed=True),
    Method("deconvnet", am.deconvnet, "DeconvNet"),
    Method("guided_backprop", am.guided_backprop, "Guided Backprop", aliases=("guided",)),
    Method("grad_cam", cam.grad_cam, "Grad-CAM", coarse=True, aliases=("gradcam",)),
    Method("guided_grad_cam", cam.guided_grad_cam, "Guided Grad-CAM", aliases=("guided_gradcam",)),
    # the rest of the CAM family (attribution.cam_family): other weightings of the same layer's (A, G) ...
    Method("grad_cam_plus_plus", cam.grad_cam_plus_plus, "Grad-CAM++", coarse=True),
    Method("xgrad_cam", cam.xgrad_cam, "XGrad-CAM", coarse=True),
    Method("hires_cam", cam.hires_cam, "HiResCAM", coarse=True),
    Method("grad_cam_elementwise", cam.grad_cam_elementwise, "Grad-CAM element-wise", coarse=True),
    Method("layer_cam", cam.layer_cam, "LayerCAM", coarse=True),
    Method("eigen_cam", cam.eigen_cam, "Eigen-CAM", coarse=True),
    Method("eigen_grad_cam", cam.eigen_grad_cam, "EigenGrad-CAM", coarse=True),
    # ... channels weighed by forward passes, one per channel ...
    # Score-CAM on the target's probability (the paper's score), not pytorch-grad-cam's logit: masked copies are
    # far from real images, and the shapes model calls a black image a circle at logit 175 (see score_cam)
    Method("score_cam", cam.score_cam, "Score-CAM", coarse=True, settings={"score": "probability"}),
    Method("ablation_cam", cam.ablation_cam, "Ablation-CAM", coarse=True),
    # ... and every bias layer at once, at the image's resolution
    Method("fullgrad", cam.fullgrad, "FullGrad", coarse=True),
    # the paper's 50 samples at 15% noise; seeded, so that a table or figure is the same each time
    Method("smoothgrad", smoothgrad_of, "SmoothGrad", settings={"n_samples": 50, "noise_level": 0.15, "seed": 0}),
    # 32 steps: a power of two, so that Captum's float32 step weights are exact (see the Captum tests)
    Method("integrated_gradients", am.integrated_gradients, "Integrated Gradients", signed=True,
           settings={"steps": 32}),
    Method("occlusion", am.occlusion, "Occlusion", signed=True, sized=occlusion_window),
    # the chapter's other families: DeepLIFT, LRP / Deep Taylor, LIME and SHAP on superpixels
    Method("deeplift", am.deeplift, "DeepLIFT (Rescale)", signed=True),
    # Captum's SHAP estimators: DeepLIFT averaged over a set of baselines, and gradients at random points
    # between random baselines and the image (baselines=None: 8 seeded uniform-noise images)
    Method("deeplift_shap", am.deeplift_shap, "DeepLIFT-SHAP", signed=True),
    Method("gradient_shap", am.gradient_shap, "GradientSHAP", signed=True, settings={"n_samples": 50, "seed": 0}),
    Method("lrp", lrp, "LRP (epsilon-plus-flat)", signed=True, settings={"composite": "epsilon_plus_flat"}),
    Method("deep_taylor", lrp, "Deep Taylor (LRP z+, z-box)", signed=True, settings={"composite": "deep_taylor"}),
    # switched-off segments turn grey, not into their own mean colour (lime_image's default): a segment inside a
    # flat-coloured object keeps its colour under "mean", the object never disappears and gets no credit
    Method("lime", lime, "LIME", signed=True,
           settings={"n_samples": 1000, "n_segments": 50, "baseline": "grey", "seed": 0}),
    Method("kernel_shap", kernel_shap, "KernelSHAP", signed=True,
           settings={"n_samples": 1000, "n_segments": 50, "baseline": "grey", "seed": 0}),
    # exact: 2^M model evaluations, so few segments
    Method("shapley_values", shapley_values, "Shapley values (exact)", signed=True,
           settings={"n_segments": 8, "baseline": "grey"}),
]}

ALIASES = {alias: m.name for m in METHODS.values() for alias in m.aliases}


def get_method(name):
    """``METHODS[name]``, or the method an alias stands for; ValueError naming the valid names."""
    if isinstance(name, Method):
        return name
    if name in METHODS:
        return METHODS[name]
    if name in ALIASES:
        return METHODS[ALIASES[name]]
    raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)} "
                     f"(aliases: {', '.join(f'{a}={n}' for a, n in ALIASES.items())})")
