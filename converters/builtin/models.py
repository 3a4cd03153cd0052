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
from zooforge.converters.errors import ZooforgeError

# Caffe-preprocessed ImageNet images (BGR 0-255 minus the mean) are roughly uniform in [-128, 128].
IMAGENET_CAFFE_STD = 128.0 / math.sqrt(3.0)


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
