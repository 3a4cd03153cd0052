"""Models that zooforge ships itself: a net definition of our own plus synthetic weights.

They let every stage of the pipeline run without downloading a trained model. The weights are
seeded and deterministic, not trained: predictions are meaningless, but every operator is
exercised with values of realistic magnitude, and every conversion can be checked against the
source model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from zooforge.converters.caffe.loader import InputShapes, build_net, parse_prototxt
from zooforge.converters.caffe.net import CaffeNet
from zooforge.converters.caffe.upgrade import upgrade_net
from zooforge.converters.builtin.synthetic import WeightScale, skeleton_net, synthetic_weights
from zooforge.converters.caffe2.translate import TRANSLATORS
from zooforge.converters.caffe.loader import check_layer_types
from zooforge.converters.errors import ZooforgeError
from zooforge.converters.sources import SyntheticWeights

# Caffe-preprocessed ImageNet images (BGR 0-255 minus the mean) are roughly uniform in [-128, 128].
IMAGENET_CAFFE_STD = 128.0 / math.sqrt(3.0)
# The logits' standard deviation aimed at for any prototxt's --synthetic-weights (WeightScale's
# default). Measured on seeded uniform [-1, 1] inputs (seed 0): LeNet and CIFAR-10 quick/full
# (10 classes) give top probabilities of 0.17-0.96, CaffeNet and GoogLeNet (1000 classes) 0.017-0.38;
# 4.0 (the built-in AlexNet's) saturates LeNet (0.999), which has no ReLU between its convolutions.
# Inputs off zero ([0, 1]) would saturate it too (every input the same class) but for the input
# mean, which the first layers' biases cancel (WeightScale.input_mean).
SYNTHETIC_LOGIT_STD = 2.0


class UnknownBuiltinModelError(ZooforgeError):
    """A built-in model name that zooforge does not have."""


@dataclass(frozen=True)
class BuiltinModel:
    """A built-in model: its net definition, the seed of its weights and their scale."""

    name: str
    prototxt: Path
    seed: int
    description: str
    scale: WeightScale = WeightScale()
    input_shape: tuple[int, ...] | None = None  # the interface it is published with; None: the prototxt's


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "alexnet": BuiltinModel(
        name="alexnet",
        prototxt=Path(__file__).with_name("alexnet.prototxt"),
        seed=2012,
        description="BVLC AlexNet architecture with seeded synthetic weights; input 1x3x224x224 BGR, as the "
                    "ONNX model zoo's AlexNet takes it (BVLC's deploy.prototxt declares 227x227)",
        scale=WeightScale(input_std=IMAGENET_CAFFE_STD, logit_std=4.0),
        input_shape=(1, 3, 224, 224),
    ),
}


def builtin_model(name: str) -> BuiltinModel:
    """The built-in model called ``name``; an unknown name lists the available ones."""
    try:
        return BUILTIN_MODELS[name]
    except KeyError:
        raise UnknownBuiltinModelError(
            f"no built-in model '{name}'; available: {', '.join(sorted(BUILTIN_MODELS))}"
        ) from None


def load_builtin(name: str, input_shapes: InputShapes = None) -> CaffeNet:
    """Load a built-in model as a ``CaffeNet`` with ``synthetic_weights`` set.

    Without ``input_shapes`` the net takes the model's published ``input_shape`` (AlexNet:
    1x3x224x224, the ONNX zoo's interface; Caffe's ceil pooling gives 54 -> 27 -> 13 -> 6 there).
    The weights are made for the net's declared input shape, so they are the same whatever
    ``input_shapes`` asks for (as trained weights would be).
    """
    model = builtin_model(name)
    source = str(model.prototxt)
    net_param = upgrade_net(parse_prototxt(model.prototxt), source)
    table = synthetic_weights(skeleton_net(net_param, source=source), model.seed, model.scale)
    if input_shapes is None:
        input_shapes = model.input_shape
    net = build_net(
        net_param, table, input_shapes, source=source,
        weights_source=f"synthetic weights (seed {model.seed})",
    )
    net.synthetic_weights = True
    return net


def synthetic_scale(input_range: tuple[float, float]) -> WeightScale:
    """The scale of a prototxt's --synthetic-weights for inputs uniform in ``input_range``: their
    mean (cancelled by the first layers' biases) and their standard deviation about it,
    (high - low) / sqrt(12): 1/sqrt(3) for [-1, 1], 1/sqrt(12) for [0, 1]."""
    low, high = (float(v) for v in input_range)
    return WeightScale(input_std=(high - low) / math.sqrt(12.0), logit_std=SYNTHETIC_LOGIT_STD,
                       input_mean=(low + high) / 2.0, calibrated=True)


def synthetic_settings(seed: int, scale: WeightScale) -> dict[str, float | int]:
    """The lineage's ``synthetic_weights`` setting: what makes the weights again, bit for bit."""
    settings = {"seed": int(seed), "input_std": float(scale.input_std), "logit_std": float(scale.logit_std)}
    if scale.input_mean:
        settings["input_mean"] = float(scale.input_mean)
    if scale.calibrated:
        settings["calibrated"] = True
    return settings


def builtin_settings(name: str) -> dict[str, float | int]:
    model = builtin_model(name)
    return synthetic_settings(model.seed, model.scale)


def load_synthetic(prototxt: Path, recipe: SyntheticWeights, input_shapes: InputShapes = None) -> CaffeNet:
    """A prototxt with seeded synthetic weights (``synthetic_weights`` set), as ``load_builtin``
    makes the built-in models: the same prototxt, seed and input range give bit-identical weights.
    The weights are made at ``input_shapes`` (default: the prototxt's declared shapes)."""
    source = str(prototxt)
    net_param = upgrade_net(parse_prototxt(Path(prototxt)), source)
    check_layer_types(net_param, TRANSLATORS, source)
    skeleton = skeleton_net(net_param, input_shapes, source=source)
    table = synthetic_weights(skeleton, recipe.seed, synthetic_scale(recipe.input_range))
    net = build_net(net_param, table, input_shapes, source=source,
                    weights_source=f"synthetic weights (seed {recipe.seed})")
    net.synthetic_weights = True
    return net
