"""Upgrade old Caffe net definitions to today's V2 form.

Caffe's history left three layouts: V0 (``layers { layer { type: "conv" } }`` with flat
parameters), V1 (``layers { type: CONVOLUTION }`` with enum types and ``blobs_lr``) and V2
(``layer { type: "Convolution" }``). ``upgrade_net`` rewrites any of them, in place of Caffe's own
upgrade_proto, into V2 so the rest of zooforge sees a single form. Net inputs declared with
``input`` + ``input_dim``/``input_shape`` are left for the loader, which turns them into inputs.
"""

from __future__ import annotations

from typing import Any

from zooforge.converters.caffe import schema
from zooforge.converters.errors import CaffeModelError

# V1 enum name -> V2 type string.
V1_TYPE_NAMES: dict[str, str] = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DATA": "Data", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

# V0 type string -> V1 enum name.
V0_TYPE_NAMES: dict[str, str] = {
    "accuracy": "ACCURACY", "bnll": "BNLL", "concat": "CONCAT", "conv": "CONVOLUTION",
    "data": "DATA", "dropout": "DROPOUT", "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN", "hdf5_data": "HDF5_DATA", "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL", "images": "IMAGE_DATA", "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT", "lrn": "LRN", "multinomial_logistic_loss":
    "MULTINOMIAL_LOGISTIC_LOSS", "pool": "POOLING", "relu": "RELU", "sigmoid": "SIGMOID",
    "softmax": "SOFTMAX", "softmax_loss": "SOFTMAX_LOSS", "split": "SPLIT", "tanh": "TANH",
    "window_data": "WINDOW_DATA",
}

# V0 flat field -> (V1 sub-message per layer type, field in it). ``None`` sub-message means the
# field lives on the layer itself. Types not listed for a field ignore it, as Caffe did.
_V0_FIELDS: dict[str, dict[str, tuple[str | None, str]]] = {
    "num_output": {"conv": ("convolution_param", "num_output"),
                   "innerproduct": ("inner_product_param", "num_output")},
    "biasterm": {"conv": ("convolution_param", "bias_term"),
                 "innerproduct": ("inner_product_param", "bias_term")},
    "weight_filler": {"conv": ("convolution_param", "weight_filler"),
                      "innerproduct": ("inner_product_param", "weight_filler")},
    "bias_filler": {"conv": ("convolution_param", "bias_filler"),
                    "innerproduct": ("inner_product_param", "bias_filler")},
    "pad": {"conv": ("convolution_param", "pad"), "pool": ("pooling_param", "pad")},
    "kernelsize": {"conv": ("convolution_param", "kernel_size"),
                   "pool": ("pooling_param", "kernel_size")},
    "group": {"conv": ("convolution_param", "group")},
    "stride": {"conv": ("convolution_param", "stride"), "pool": ("pooling_param", "stride")},
    "pool": {"pool": ("pooling_param", "pool")},
    "dropout_ratio": {"dropout": ("dropout_param", "dropout_ratio")},
    "local_size": {"lrn": ("lrn_param", "local_size")},
    "alpha": {"lrn": ("lrn_param", "alpha")},
    "beta": {"lrn": ("lrn_param", "beta")},
    "k": {"lrn": ("lrn_param", "k")},
    "source": {"data": ("data_param", "source"), "hdf5_data": ("hdf5_data_param", "source"),
               "images": ("image_data_param", "source"),
               "window_data": ("window_data_param", "source"),
               "infogain_loss": ("infogain_loss_param", "source")},
    "scale": {"data": ("transform_param", "scale"), "images": ("transform_param", "scale"),
              "window_data": ("transform_param", "scale")},
    "meanfile": {"data": ("transform_param", "mean_file"),
                 "images": ("transform_param", "mean_file"),
                 "window_data": ("transform_param", "mean_file")},
    "batchsize": {"data": ("data_param", "batch_size"),
                  "hdf5_data": ("hdf5_data_param", "batch_size"),
                  "images": ("image_data_param", "batch_size"),
                  "window_data": ("window_data_param", "batch_size")},
    "cropsize": {"data": ("transform_param", "crop_size"),
                 "images": ("transform_param", "crop_size"),
                 "window_data": ("transform_param", "crop_size")},
    "mirror": {"data": ("transform_param", "mirror"), "images": ("transform_param", "mirror"),
               "window_data": ("transform_param", "mirror")},
    "rand_skip": {"data": ("data_param", "rand_skip"),
                  "images": ("image_data_param", "rand_skip")},
    "shuffle_images": {"images": ("image_data_param", "shuffle")},
    "new_height": {"images": ("image_data_param", "new_height")},
    "new_width": {"images": ("image_data_param", "new_width")},
    "concat_dim": {"concat": ("concat_param", "concat_dim")},
    "det_fg_threshold": {"window_data": ("window_data_param", "fg_threshold")},
    "det_bg_threshold": {"window_data": ("window_data_param", "bg_threshold")},
    "det_fg_fraction": {"window_data": ("window_data_param", "fg_fraction")},
    "det_context_pad": {"window_data": ("window_data_param", "context_pad")},
    "det_crop_mode": {"window_data": ("window_data_param", "crop_mode")},
    "hdf5_output_param": {"hdf5_output": (None, "hdf5_output_param")},
}
# Fields copied verbatim from the V0 layer onto the V1 layer.
_V0_COMMON = ("name", "blobs", "blobs_lr", "weight_decay")


def net_format(net: Any) -> str:
    """Name the generation of a parsed ``NetParameter``: ``"V0"``, ``"V1"`` or ``"V2"``."""
    if any(layer.HasField("layer") for layer in net.layers):
        return "V0"
    if len(net.layers):
        return "V1"
    return "V2"


def upgrade_net(net: Any, source: str = "<net>") -> Any:
    """Return a V2 copy of ``net`` (a ``caffe.NetParameter`` of any generation)."""
    if len(net.layer) and len(net.layers):
        raise CaffeModelError(
            f"{source} mixes V1 'layers' and V2 'layer' entries; Caffe cannot read such a net either"
        )
    fmt = net_format(net)
    if fmt == "V2":
        return net
    if fmt == "V0":
        net = _v0_to_v1(net, source)
    return _v1_to_v2(net, source)


def _v0_to_v1(net: Any, source: str) -> Any:
    out = schema.NetParameter()
    out.CopyFrom(net)
    del out.layers[:]
    padding: dict[str, tuple[str, int]] = {}  # padding layer top -> (its bottom, pad)
    for old in net.layers:
        v0 = old.layer
        if v0.type == "padding":
            if len(old.bottom) != 1 or len(old.top) != 1:
                raise CaffeModelError(f"{source}: padding layer '{v0.name}' needs one bottom and one top")
            padding[old.top[0]] = (old.bottom[0], v0.pad)
            continue
        new = out.layers.add()
        new.bottom.extend(old.bottom)
        new.top.extend(old.top)
        _convert_v0_layer(v0, new, source)
        for index, bottom in enumerate(new.bottom):
            if bottom in padding:
                if v0.type != "conv":
                    raise CaffeModelError(
                        f"{source}: padding layer output '{bottom}' feeds '{v0.name}' "
                        f"({v0.type}); only convolutions may follow a V0 padding layer"
                    )
                real_bottom, pad = padding[bottom]
                new.bottom[index] = real_bottom
                del new.convolution_param.pad[:]
                new.convolution_param.pad.append(pad)
    return out


def _convert_v0_layer(v0: Any, v1: Any, source: str) -> None:
    if v0.type not in V0_TYPE_NAMES:
        raise CaffeModelError(f"{source}: V0 layer '{v0.name}' has unknown type '{v0.type}'")
    v1.type = schema.V1LayerParameter.LayerType.Value(V0_TYPE_NAMES[v0.type])
    for name in _V0_COMMON:
        _copy_field(v0, name, v1, name)
    for descriptor, value in v0.ListFields():
        targets = _V0_FIELDS.get(descriptor.name)
        if targets is None:
            continue
        target = targets.get(v0.type)
        if target is None:
            continue
        sub_name, field_name = target
        holder = v1 if sub_name is None else getattr(v1, sub_name)
        _assign(holder, field_name, value)


def _v1_to_v2(net: Any, source: str) -> Any:
    out = schema.NetParameter()
    out.CopyFrom(net)
    del out.layers[:]
    v2_fields = {f.name for f in schema.LayerParameter.DESCRIPTOR.fields}
    for old in net.layers:
        new = out.layer.add()
        type_name = schema.V1LayerParameter.LayerType.Name(old.type)
        if type_name not in V1_TYPE_NAMES:
            raise CaffeModelError(f"{source}: V1 layer '{old.name}' has unknown type {type_name}")
        new.type = V1_TYPE_NAMES[type_name]
        for descriptor, value in old.ListFields():
            name = descriptor.name
            # type is an enum in V1 and a string in V2; param names a blob in V1 and is a ParamSpec
            # in V2 (built below with blobs_lr, weight_decay and blob_share_mode, which V2 lacks)
            if name in ("type", "param"):
                continue
            if name in v2_fields:
                _assign(new, name, value)
        _upgrade_param_specs(old, new)
    return out


def _upgrade_param_specs(old: Any, new: Any) -> None:
    """V1 kept learning-rate and decay multipliers (and sharing names) as parallel lists."""
    count = max(len(old.blobs_lr), len(old.weight_decay), len(old.param), len(old.blob_share_mode))
    for index in range(count):
        spec = new.param.add()
        if index < len(old.param):
            spec.name = old.param[index]
        if index < len(old.blob_share_mode):
            spec.share_mode = old.blob_share_mode[index]
        if index < len(old.blobs_lr):
            spec.lr_mult = old.blobs_lr[index]
        if index < len(old.weight_decay):
            spec.decay_mult = old.weight_decay[index]


def _copy_field(src: Any, name: str, dst: Any, dst_name: str) -> None:
    descriptor = src.DESCRIPTOR.fields_by_name[name]
    if _is_repeated(descriptor):
        if len(getattr(src, name)):
            _assign(dst, dst_name, getattr(src, name))
    elif src.HasField(name):
        _assign(dst, dst_name, getattr(src, name))


def _assign(holder: Any, name: str, value: Any) -> None:
    """Set field ``name`` of ``holder`` from ``value``: scalars, messages and repeated fields alike."""
    descriptor = holder.DESCRIPTOR.fields_by_name[name]
    target = getattr(holder, name)
    if _is_repeated(descriptor):
        del target[:]
        items = value if _is_sequence(value) else [value]
        if descriptor.type == descriptor.TYPE_MESSAGE:
            for item in items:
                target.add().CopyFrom(item)
        else:
            target.extend(items)
    elif descriptor.type == descriptor.TYPE_MESSAGE:
        target.CopyFrom(value)
    else:
        setattr(holder, name, value)  # (enums are plain ints on every protobuf backend)


def _is_sequence(value: Any) -> bool:
    return hasattr(value, "__len__") and not isinstance(value, (str, bytes))


def _is_repeated(descriptor: Any) -> bool:
    """Whether a field is repeated, on protobuf releases before and after ``label`` was removed."""
    flag = getattr(descriptor, "is_repeated", None)
    return bool(flag) if flag is not None else descriptor.label == descriptor.LABEL_REPEATED
