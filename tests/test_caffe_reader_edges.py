"""The Caffe reader's edges, with expected values written by hand from Caffe's own rules.

Layer filtering follows Caffe's ``Net::StateMeetsRule`` (net.cpp) for the deploy state: phase
TEST, level 0, no stages. Input shapes follow the data layers' own parameters (caffe.proto).
Spatial parameters follow the ``kernel_h``/``kernel_w`` rule of ``ConvolutionLayer::LayerSetUp``.
Written against the survivors of ``scripts/mutation.py --group caffe-reader``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from zooforge.converters.caffe import schema
from zooforge.converters.caffe.loader import build_net, describe_inputs, load_caffe, parse_prototxt, prototxt_stem
from zooforge.converters.caffe.params import spatial
from zooforge.converters.caffe.weights import read_weights, write_caffemodel
from zooforge.converters.errors import CaffeModelError, InputFileError


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def net_of(text: str):
    return text_format.Parse(text, schema.NetParameter())


INPUT = 'input: "data" input_shape { dim: 1 dim: 1 dim: 2 dim: 2 }\n'


def relu(name: str, rules: str = "") -> str:
    return f'layer {{ name: "{name}" type: "ReLU" bottom: "data" top: "{name}" {rules} }}\n'


# Deploy state: phase TEST, level 0, no stage. Each rule and whether Caffe keeps the layer.
RULES = {
    "no_rule": ("", True),
    "layer_phase_train": ("phase: TRAIN", False),
    "layer_phase_test": ("phase: TEST", True),
    "include_train": ("include { phase: TRAIN }", False),
    "include_test": ("include { phase: TEST }", True),
    "include_min_level_1": ("include { min_level: 1 }", False),
    "include_min_level_0": ("include { min_level: 0 }", True),
    "include_min_level_neg": ("include { min_level: -1 }", True),
    "include_max_level_neg": ("include { max_level: -1 }", False),
    "include_max_level_0": ("include { max_level: 0 }", True),
    "include_stage": ('include { stage: "deploy" }', False),
    "include_not_stage": ('include { not_stage: "train" }', True),
    "include_any_of_two": ("include { phase: TRAIN } include { phase: TEST }", True),
    "exclude_test": ("exclude { phase: TEST }", False),
    "exclude_train": ("exclude { phase: TRAIN }", True),
    "exclude_stage": ('exclude { stage: "x" }', True),
    "exclude_min_level_1": ("exclude { min_level: 1 }", True),
    "exclude_max_level_neg": ("exclude { max_level: -1 }", True),
}


def test_layers_are_kept_exactly_where_caffe_keeps_them_at_deploy():
    net = net_of(INPUT + "".join(relu(name, rules) for name, (rules, _) in RULES.items()))
    kept = [layer.name for layer in build_net(net, {}).layers]
    assert kept == [name for name, (_, keep) in RULES.items() if keep]


@pytest.mark.parametrize("layer, shape", [
    ('layer { name: "m" type: "MemoryData" top: "data" top: "label" '
     "memory_data_param { batch_size: 5 channels: 3 height: 7 width: 9 } }", (1, 3, 7, 9)),
    ('layer { name: "d" type: "DummyData" top: "data" '
     "dummy_data_param { shape { dim: 4 dim: 2 dim: 6 dim: 8 } shape { dim: 4 } } }", (1, 2, 6, 8)),
    ('layer { name: "d" type: "DummyData" top: "data" '
     "dummy_data_param { num: 4 channels: 2 height: 6 width: 8 num: 9 channels: 9 height: 9 width: 9 } }",
     (1, 2, 6, 8)),
])
def test_data_layers_state_their_shapes(layer, shape):
    assert describe_inputs(net_of(layer)) == {"data": shape}


def test_a_data_layer_without_a_stated_shape_needs_input_shape():
    net = net_of('layer { name: "d" type: "Data" top: "data" top: "label" }')
    with pytest.raises(CaffeModelError, match=exactly(
            "n.prototxt: input 'data' has no declared shape; pass --input-shape N,C,H,W")):
        describe_inputs(net, source="n.prototxt")
    assert describe_inputs(net, (2, 3, 4, 5)) == {"data": (2, 3, 4, 5)}


@pytest.mark.parametrize("weights, message", [
    ({}, "layer 's' (Scale) has learned parameters, but w.caffemodel holds no weights for it"),
])
def test_one_bottom_scale_needs_weights_and_two_bottoms_do_not(weights, message):
    one = net_of(INPUT + 'layer { name: "s" type: "Scale" bottom: "data" top: "s" }')
    with pytest.raises(CaffeModelError, match=exactly(message)):
        build_net(one, weights, weights_source="w.caffemodel")
    for kind in ("Scale", "Bias"):
        two = net_of(INPUT + 'input: "f" input_shape { dim: 1 dim: 1 }\n'
                     f'layer {{ name: "s" type: "{kind}" bottom: "data" bottom: "f" top: "s" }}')
        assert [layer.name for layer in build_net(two, {}).layers] == ["s"]
    bias = net_of(INPUT + 'layer { name: "b" type: "Bias" bottom: "data" top: "b" }')
    with pytest.raises(CaffeModelError, match=r"^layer 'b' \(Bias\) has learned parameters"):
        build_net(bias, {})


def test_load_caffe_names_its_files_in_errors_and_the_net(tmp_path):
    prototxt = tmp_path / "tiny.prototxt"
    prototxt.write_text(INPUT + 'layer { name: "s" type: "Scale" bottom: "data" top: "s" }')
    with pytest.raises(CaffeModelError, match=exactly(
            "layer 's' (Scale) has learned parameters, but {} holds no weights for it")):
        load_caffe(prototxt, {})
    missing = tmp_path / "missing.caffemodel"
    with pytest.raises(InputFileError, match=re.escape(str(missing))):
        load_caffe(prototxt, missing)
    weights = tmp_path / "w.caffemodel"
    write_caffemodel({"s": [np.ones(1, np.float32)]}, weights)
    net = load_caffe(prototxt, weights, {"data": (2, 1, 2, 2)})
    assert net.name == "tiny" and net.inputs == {"data": (2, 1, 2, 2)}
    (tmp_path / "bad.prototxt").write_text('layer { name: "r" type: "ReLU" bottom: "x" top: "y" }')
    with pytest.raises(CaffeModelError, match=exactly(f"{tmp_path / 'bad.prototxt'} declares no input "
                                                      "(no Input or data layer, no 'input')")):
        load_caffe(tmp_path / "bad.prototxt", None)


def test_a_net_without_a_name_is_named_after_its_file():
    assert prototxt_stem("models/alexnet.prototxt") == "alexnet"
    assert prototxt_stem("") == "net"
    assert build_net(net_of(INPUT), {}, source="x/lenet.prototxt").name == "lenet"


# ------------------------------------------------------------------------- spatial parameters


def conv(text: str):
    return net_of(f'layer {{ name: "c" type: "Convolution" convolution_param {{ {text} }} }}').layer[0].convolution_param


@pytest.mark.parametrize("text, expected", [
    ("kernel_size: 3", (3, 3)),
    ("kernel_size: 3 kernel_size: 5", (3, 5)),
    ("kernel_h: 2 kernel_w: 7", (2, 7)),
    ("kernel_size: 3 kernel_h: 2 kernel_w: 7", (2, 7)),  # the _h/_w pair wins
])
def test_kernel_sizes(text, expected):
    assert spatial(conv(text), "kernel_size", None, "c", pair="kernel", minimum=1) == expected


@pytest.mark.parametrize("text, message", [
    ("kernel_h: 2", "c: kernel_h and kernel_w must be given together"),
    ("kernel_w: 2", "c: kernel_h and kernel_w must be given together"),
    ("", "c: kernel_size is required"),
    ("kernel_size: 1 kernel_size: 2 kernel_size: 3", "c: only 2-D kernel_size is supported, found [1, 2, 3]"),
    ("kernel_size: 0", "c: kernel_size [0, 0] must be at least 1"),
])
def test_bad_kernels_are_named(text, message):
    with pytest.raises(CaffeModelError, match=exactly(message)):
        spatial(conv(text), "kernel_size", None, "c", pair="kernel", minimum=1)


@pytest.mark.parametrize("text, expected", [("", (0, 0)), ("pad: 2", (2, 2)), ("pad_h: 1 pad_w: 3", (1, 3))])
def test_pads_default_and_pair(text, expected):
    assert spatial(conv(text), "pad", 0, "c") == expected


def test_a_scalar_field_is_read_only_when_set():
    pool = net_of('layer { name: "p" type: "Pooling" pooling_param { stride: 3 } }').layer[0].pooling_param
    assert spatial(pool, "stride", 1, "p") == (3, 3)
    unset = net_of('layer { name: "p" type: "Pooling" pooling_param { } }').layer[0].pooling_param
    assert spatial(unset, "stride", 1, "p") == (1, 1)
    assert spatial(unset, "pad", 0, "p") == (0, 0)


# ------------------------------------------------------------------------------------- weights


def caffemodel(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "w.caffemodel"
    path.write_bytes(text_format.Parse(text, schema.NetParameter()).SerializeToString())
    return path


def test_legacy_blob_dimensions_and_double_data(tmp_path):
    path = caffemodel(tmp_path, 'layer { name: "a" blobs { num: 1 channels: 2 height: 1 width: 3 '
                      'data: [1, 2, 3, 4, 5, 6] } blobs { shape { dim: 2 } double_data: [0.5, 0.1] } }')
    (first, second) = read_weights(path)["a"]
    assert first.shape == (1, 2, 1, 3) and first.dtype == np.float32
    np.testing.assert_array_equal(first.ravel(), [1, 2, 3, 4, 5, 6])
    assert second.dtype == np.float32 and second.tolist() == [0.5, float(np.float32(0.1))]  # each double rounded once


def test_a_blob_with_no_shape_is_flat(tmp_path):
    (blob,) = read_weights(caffemodel(tmp_path, 'layer { name: "a" blobs { data: [1, 2, 3] } }'))["a"]
    assert blob.shape == (3,)


def test_a_zero_sized_dimension_is_a_shape_not_an_error(tmp_path):
    (blob,) = read_weights(caffemodel(tmp_path, 'layer { name: "a" blobs { shape { dim: 0 dim: 3 } } }'))["a"]
    assert blob.shape == (0, 3)


def test_a_blob_whose_size_disagrees_with_its_shape_is_named(tmp_path):
    path = caffemodel(tmp_path, 'layer { name: "a" blobs { shape { dim: 2 dim: 2 } data: [1, 2, 3] } }')
    with pytest.raises(CaffeModelError, match=exactly(
            f"{path}, layer 'a', blob 0: blob declares shape [2, 2] (4 values) but holds 3 values")):
        read_weights(path)


def test_v0_weights_sit_on_the_inner_layer(tmp_path):
    path = caffemodel(tmp_path, 'layers { layer { name: "old" blobs { shape { dim: 1 } data: [7] } } }')
    (blob,) = read_weights(path)["old"]
    assert blob.tolist() == [7.0]


def test_a_weights_file_without_layers_is_named(tmp_path):
    path = tmp_path / "empty.caffemodel"
    path.write_bytes(schema.NetParameter(name="x").SerializeToString())
    with pytest.raises(InputFileError, match=exactly(f"{path} holds no Caffe layers; is it a weights file?")):
        read_weights(path)


def test_layers_without_blobs_are_a_weights_file_with_no_weights(tmp_path):
    """Layers but no blobs (a net saved before training, say): no weights, not "no Caffe layers"."""
    assert read_weights(caffemodel(tmp_path, 'layer { name: "relu" type: "ReLU" }')) == {}
    assert read_weights(caffemodel(tmp_path, 'layers { name: "relu" }')) == {}


def test_a_fortran_ordered_array_is_written_in_caffes_c_order(tmp_path):
    weights = np.asfortranarray(np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 8)
    path = tmp_path / "w.caffemodel"
    write_caffemodel({"conv": [weights]}, path)
    parsed = schema.NetParameter.FromString(path.read_bytes())
    assert list(parsed.layer[0].blobs[0].data) == [i / 8 for i in range(24)]  # row-major, as Caffe reads it


def test_written_caffemodels_carry_the_net_name_and_layer_types(tmp_path):
    net = build_net(net_of('name: "mynet"\n' + INPUT + 'layer { name: "s" type: "Scale" bottom: "data" top: "s" }'),
                    {"s": [np.arange(6, dtype=np.float64).reshape(2, 3)]})
    path = tmp_path / "w.caffemodel"
    write_caffemodel(net, path)
    parsed = schema.NetParameter()
    parsed.ParseFromString(path.read_bytes())
    assert parsed.name == "mynet"
    (layer,) = parsed.layer
    assert layer.name == "s" and layer.type == "Scale"
    assert list(layer.blobs[0].shape.dim) == [2, 3] and list(layer.blobs[0].data) == [0, 1, 2, 3, 4, 5]


def test_written_weight_tables_carry_names_only(tmp_path):
    path = tmp_path / "w.caffemodel"
    write_caffemodel({"fc": [np.float32(2.5), np.ones((1, 2), ">f8")]}, path)
    parsed = schema.NetParameter()
    parsed.ParseFromString(path.read_bytes())
    assert parsed.name == "" and [(l.name, l.type) for l in parsed.layer] == [("fc", "")]
    scalar, matrix = parsed.layer[0].blobs
    assert scalar.HasField("shape") and list(scalar.shape.dim) == [] and list(scalar.data) == [2.5]
    assert list(matrix.shape.dim) == [1, 2] and list(matrix.data) == [1.0, 1.0]


# ---------------------------------------------------------------------------------------- HDF5


def hdf5(tmp_path: Path, build) -> Path:
    """An HDF5 weights file made by ``build(handle)``; skips only the HDF5 tests where h5py is absent."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "w.caffemodel.h5"
    with h5py.File(path, "w") as handle:
        build(handle)
    return path


def test_hdf5_blobs_are_read_in_numeric_order_as_float32(tmp_path):
    def build(handle):
        layer = handle.create_group("data/conv")
        for index in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9):
            layer.create_dataset(str(index), data=np.full((2,), index, dtype=np.float64))
        handle.create_dataset("data/fc/0", data=np.arange(6, dtype=np.int32).reshape(2, 3))
    table = read_weights(hdf5(tmp_path, build))
    assert [int(blob[0]) for blob in table["conv"]] == list(range(11))
    assert all(blob.dtype == np.float32 for blob in table["conv"])
    assert table["fc"][0].tolist() == [[0, 1, 2], [3, 4, 5]] and table["fc"][0].dtype == np.float32


@pytest.mark.parametrize("build, message", [
    (lambda h: h.create_dataset("other", data=[1]), "{path} is HDF5 but has no 'data' group of Caffe layer weights"),
    (lambda h: h.create_dataset("data", data=[1]), "{path} is HDF5 but has no 'data' group of Caffe layer weights"),
    (lambda h: (h.create_dataset("data/l/0", data=[1]), h.create_dataset("data/l/2", data=[1])),
     "{path}: the blobs of layer 'l' are named ['0', '2'], not 0, 1, ..."),
    (lambda h: h.create_dataset("data/l/w", data=[1]), "{path}: the blobs of layer 'l' are named ['w'], not 0, 1, ..."),
    (lambda h: h.create_dataset("data/l/0", data=np.array([b"text"])),
     "{path}: data/l/0 is not a numeric dataset"),
    (lambda h: h.create_group("data/l/0"), "{path}: data/l/0 is not a numeric dataset"),
])
def test_malformed_hdf5_weights_are_named(tmp_path, build, message):
    path = hdf5(tmp_path, build)
    with pytest.raises(InputFileError, match=exactly(message.format(path=path))):
        read_weights(path)


def test_hdf5_magic_is_detected_from_the_first_bytes(tmp_path):
    path = hdf5(tmp_path, lambda h: h.create_dataset("data/l/0", data=[1.5]))
    renamed = tmp_path / "weights.caffemodel"  # no .h5 suffix: the content decides
    path.rename(renamed)
    assert read_weights(renamed)["l"][0].tolist() == [1.5]


def test_parse_prototxt_reads_utf8_names(tmp_path):
    path = tmp_path / "n.prototxt"
    path.write_text(INPUT.replace('"data"', '"données"'), encoding="utf-8")
    assert list(parse_prototxt(path).input) == ["données"]


# ------------------------------------------------------------------------------------ upgrades
# Expected V2 text written by hand from Caffe's upgrade_proto.cpp (UpgradeV0LayerParameter,
# UpgradeV0PaddingLayers, UpgradeV1LayerParameter).


def upgraded_layers(text: str) -> list:
    from zooforge.converters.caffe.upgrade import upgrade_net

    return list(upgrade_net(net_of(text), "old.prototxt").layer)


def test_v1_parallel_lists_become_param_specs():
    (layer,) = upgraded_layers(
        'layers { name: "c" type: CONVOLUTION bottom: "x" top: "y" param: "a" param: "b" param: "c" '
        "blob_share_mode: PERMISSIVE blobs_lr: 1 blobs_lr: 2 weight_decay: 3 }")
    expected = net_of('layer { name: "c" type: "Convolution" bottom: "x" top: "y" '
                      'param { name: "a" share_mode: PERMISSIVE lr_mult: 1 decay_mult: 3 } '
                      'param { name: "b" lr_mult: 2 } param { name: "c" } }').layer[0]
    assert layer == expected


@pytest.mark.parametrize("lists, count", [
    ("blobs_lr: 1 blobs_lr: 2", 2), ("weight_decay: 1 weight_decay: 1 weight_decay: 0", 3),
    ('param: "p"', 1), ("blob_share_mode: STRICT blob_share_mode: STRICT", 2), ("", 0),
])
def test_every_v1_list_alone_gives_one_spec_per_entry(lists, count):
    (layer,) = upgraded_layers(f'layers {{ name: "c" type: INNER_PRODUCT {lists} }}')
    assert len(layer.param) == count
    assert not layer.HasField("phase")


def test_v1_fields_that_v2_has_are_kept_and_the_layer_is_renamed():
    (layer,) = upgraded_layers('layers { name: "p" type: POOLING bottom: "x" top: "y" '
                               "pooling_param { pool: AVE kernel_size: 3 } include { phase: TEST } }")
    assert layer == net_of('layer { name: "p" type: "Pooling" bottom: "x" top: "y" '
                           "include { phase: TEST } pooling_param { pool: AVE kernel_size: 3 } }").layer[0]


def test_v0_padding_layers_fold_into_the_next_convolution():
    layers = upgraded_layers(
        'layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" } '
        'layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 3 pad: 9 biasterm: false '
        'blobs_lr: 1 weight_decay: 0 } bottom: "pad1" top: "conv1" } '
        'layers { layer { name: "pool1" type: "pool" pool: MAX kernelsize: 2 stride: 2 } bottom: "conv1" top: "pool1" } '
        'layers { layer { name: "drop" type: "dropout" dropout_ratio: 0.25 } bottom: "pool1" top: "pool1" }')
    assert layers == list(net_of(
        'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" param { lr_mult: 1 decay_mult: 0 } '
        "convolution_param { num_output: 4 bias_term: false pad: 2 kernel_size: 3 } } "
        'layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" '
        "pooling_param { pool: MAX kernel_size: 2 stride: 2 } } "
        'layer { name: "drop" type: "Dropout" bottom: "pool1" top: "pool1" dropout_param { dropout_ratio: 0.25 } }'
    ).layer)


def test_v0_fields_of_other_layer_types_are_ignored_as_caffe_did():
    (layer,) = upgraded_layers('layers { layer { name: "r" type: "relu" num_output: 3 kernelsize: 5 } '
                               'bottom: "x" top: "x" }')
    assert layer == net_of('layer { name: "r" type: "ReLU" bottom: "x" top: "x" }').layer[0]


@pytest.mark.parametrize("text, message", [
    ('layers { layer { name: "p" type: "padding" pad: 1 } bottom: "a" bottom: "b" top: "c" }',
     "old.prototxt: padding layer 'p' needs one bottom and one top"),
    ('layers { layer { name: "p" type: "padding" pad: 1 } bottom: "a" top: "b" } '
     'layers { layer { name: "q" type: "pool" } bottom: "b" top: "c" }',
     "old.prototxt: padding layer output 'b' feeds 'q' (pool); only convolutions may follow a V0 padding layer"),
    ('layers { layer { name: "z" type: "zap" } }', "old.prototxt: V0 layer 'z' has unknown type 'zap'"),
    ('layers { name: "z" type: NONE }', "old.prototxt: V1 layer 'z' has unknown type NONE"),
    ('layers { name: "a" type: RELU } layer { name: "b" type: "ReLU" }',
     "old.prototxt mixes V1 'layers' and V2 'layer' entries; Caffe cannot read such a net either"),
])
def test_upgrade_refusals_are_named(text, message):
    with pytest.raises(CaffeModelError, match=exactly(message)):
        upgraded_layers(text)


# --------------------------------------------------------------------- reader sentences, wiring


def test_prototxt_errors_name_file_line_and_column(tmp_path):
    missing = tmp_path / "missing.prototxt"
    with pytest.raises(InputFileError, match=exactly(f"net definition {missing} does not exist")):
        parse_prototxt(missing)
    bad = tmp_path / "bad.prototxt"
    bad.write_text('name: "x"\nbogus: 1\n')
    with pytest.raises(InputFileError, match=exactly(
            f'{bad} cannot be parsed at line 2, column 1: Message type "caffe.NetParameter" has no field named "bogus".')):
        parse_prototxt(bad)


def test_wiring_errors_name_the_net_layer_and_blob():
    reads = net_of(INPUT + 'layer { name: "r" type: "ReLU" bottom: "nothing" top: "r" }')
    with pytest.raises(CaffeModelError, match=exactly(
            "n.prototxt: layer 'r' (ReLU) reads blob 'nothing', which no input or earlier layer produces")):
        build_net(reads, {}, source="n.prototxt")
    overwrites = net_of(INPUT + 'layer { name: "r" type: "ReLU" bottom: "data" top: "data2" } '
                                'layer { name: "s" type: "Sigmoid" bottom: "data" top: "data2" }')
    with pytest.raises(CaffeModelError, match=exactly(
            "n.prototxt: layer 's' (Sigmoid) writes top 'data2', which another layer or input already produces "
            "(Caffe allows that only in place, as the same bottom)")):
        build_net(overwrites, {}, source="n.prototxt")
    in_place = net_of(INPUT + 'layer { name: "r" type: "ReLU" bottom: "data" top: "data" }')
    assert [layer.tops for layer in build_net(in_place, {}).layers] == [["data"]]


def test_missing_weights_name_the_default_weights_source():
    net = net_of(INPUT + 'layer { name: "s" type: "Scale" bottom: "data" top: "s" }')
    with pytest.raises(CaffeModelError, match=exactly(
            "layer 's' (Scale) has learned parameters, but <weights> holds no weights for it")):
        build_net(net, {})


def test_a_data_layer_without_a_top_is_named():
    with pytest.raises(CaffeModelError, match=exactly("n.prototxt: data layer 'd' has no top")):
        describe_inputs(net_of('layer { name: "d" type: "Data" }'), source="n.prototxt")


def test_an_input_layer_gives_each_top_its_own_shape():
    net = net_of('layer { name: "in" type: "Input" top: "a" top: "b" '
                 "input_param { shape { dim: 3 dim: 2 } shape { dim: 5 dim: 4 dim: 1 } } }")
    assert describe_inputs(net) == {"a": (1, 2), "b": (1, 4, 1)}
    shared = net_of('layer { name: "in" type: "Input" top: "a" top: "b" input_param { shape { dim: 3 dim: 2 } } }')
    assert describe_inputs(shared) == {"a": (1, 2), "b": (1, 2)}


def test_input_shape_for_an_unknown_input_is_named():
    with pytest.raises(CaffeModelError, match=exactly(
            "--input-shape names ['x', 'y'], but the net's inputs are ['data']")):
        describe_inputs(net_of(INPUT), {"y": (1,), "x": (1,), "data": (1, 1, 2, 2)})


def test_weights_for_layers_the_net_lacks_are_named_in_a_warning_at_the_caller():
    from zooforge.converters.caffe.loader import WeightsWithoutLayerWarning

    with pytest.warns(WeightsWithoutLayerWarning) as caught:
        build_net(net_of(INPUT), {"zeta": [np.ones(1)], "alpha": [np.ones(1)]}, weights_source="w.caffemodel")
    (warning,) = caught
    assert str(warning.message) == "w.caffemodel holds weights for layers the net does not have, ignored: alpha, zeta"
    # stacklevel points past the loader to whoever called it (here this file; under mutmut, its trampoline)
    assert not warning.filename.endswith(("loader.py", "warnings.py")), warning.filename


def test_attached_blobs_are_c_ordered_float32_and_0d_stays_0d():
    net = net_of(INPUT + 'layer { name: "s" type: "Scale" bottom: "data" top: "s" }')
    fortran = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    (layer,) = build_net(net, {"s": [fortran, np.float64(2.0)]}).layers
    matrix, scalar = layer.blobs
    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous and matrix.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert scalar.shape == () and scalar.dtype == np.float32


def test_v0_fields_after_one_another_type_ignores_are_still_read():
    (layer,) = upgraded_layers('layers { layer { name: "p" type: "pool" num_output: 3 kernelsize: 2 stride: 2 } '
                               'bottom: "x" top: "y" }')
    assert layer == net_of('layer { name: "p" type: "Pooling" bottom: "x" top: "y" '
                           "pooling_param { kernel_size: 2 stride: 2 } }").layer[0]
