"""A prototxt field or layer type zooforge does not know is refused in one sentence naming the layer,
its type and (where zooforge knows it) the fork it comes from -- before the weights are read, and
never as a bare protobuf parse error. Expected sentences are written by hand from the prototxts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zooforge.converters.api import ConvertOptions, convert_caffe
from zooforge.converters.caffe.loader import parse_prototxt
from zooforge.converters.errors import CaffeModelError, InputFileError, UnsupportedLayerError
from zooforge.converters import cli as convert_cli

from hostile import assert_refused, invoke

HEAD = 'name: "n"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "deploy.prototxt"
    path.write_text(HEAD + body)
    return path


def _garbage_weights(tmp_path: Path) -> Path:
    """A weights file that fails to parse: reading it would give a different error."""
    path = tmp_path / "w.caffemodel"
    path.write_bytes(b"\xff\xff\xff not a caffemodel")
    return path


def test_a_known_forks_layer_field_names_layer_type_and_fork(tmp_path):
    prototxt = _write(tmp_path, 'layer {\n  name: "data_ann"\n  type: "AnnotatedData"\n  top: "x"\n'
                                '  annotated_data_param { batch_sampler { } }\n}\n')
    with pytest.raises(UnsupportedLayerError, match=exactly(
            f"{prototxt} line 8: layer 'data_ann' (AnnotatedData) uses annotated_data_param, a field of SSD "
            "(weiliu89/caffe); zooforge cannot convert it")):
        parse_prototxt(prototxt)


def test_an_unknown_layer_field_says_no_fork_defines_it(tmp_path):
    prototxt = _write(tmp_path, 'layer { name: "r" type: "ReLU" bottom: "data" top: "r"\n  frobnicate_param { }\n}\n')
    with pytest.raises(UnsupportedLayerError, match=exactly(
            f"{prototxt} line 5: layer 'r' (ReLU) uses frobnicate_param, a field that neither BVLC Caffe nor the "
            "forks zooforge knows define; zooforge cannot convert it")):
        parse_prototxt(prototxt)


def test_an_unknown_field_inside_a_parameter_message_names_the_message(tmp_path):
    prototxt = _write(tmp_path, 'layer {\n  name: "pool1"\n  type: "Pooling"\n  bottom: "data"\n  top: "p"\n'
                                '  pooling_param {\n    pool: MAX\n    kernel_size: 2\n    pyramid: 3\n  }\n}\n')
    with pytest.raises(UnsupportedLayerError, match=exactly(
            f"{prototxt} line 12: layer 'pool1' (Pooling): PoolingParameter has no field pyramid in BVLC Caffe "
            "or the forks zooforge knows")):
        parse_prototxt(prototxt)


def test_braces_in_comments_and_strings_and_earlier_layers_do_not_mislead(tmp_path):
    body = ('layer { name: "a{" type: "ReLU" bottom: "data" top: "a" }  # } { closing and opening\n'
            'layer {\n  # name: "decoy" }\n  type: "Sigmoid"\n  name: "b"\n  bottom: "a"\n  top: "b"\n'
            '  sigmoid_param { engine: CAFFE }\n  interp_param { zoom_factor: 2 }\n}\n')
    prototxt = _write(tmp_path, body)
    with pytest.raises(UnsupportedLayerError, match=exactly(
            f"{prototxt} line 12: layer 'b' (Sigmoid) uses interp_param, a field of PSPNet / DeepLab "
            "(hszhao/PSPNet, deeplab-public); zooforge cannot convert it")):
        parse_prototxt(prototxt)


def test_an_escaped_quote_does_not_end_a_string(tmp_path):
    """``\\"`` inside a quoted value is part of it: the brace after it is text, not a block."""
    body = ('layer { name: "odd\\"{" type: "ReLU" bottom: "data" top: "a" }\n'
            'layer {\n  name: "b"\n  type: "TanH"\n  bottom: "a"\n  top: "b"\n  reorg_param { stride: 2 }\n}\n')
    prototxt = _write(tmp_path, body)
    with pytest.raises(UnsupportedLayerError, match=exactly(
            f"{prototxt} line 10: layer 'b' (TanH) uses reorg_param, a field of the YOLOv2 ports; "
            "zooforge cannot convert it")):
        parse_prototxt(prototxt)


def test_v1_layers_are_located_too(tmp_path):
    prototxt = _write(tmp_path, 'layers {\n  name: "conv"\n  type: CONVOLUTION\n  bottom: "data"\n  top: "c"\n'
                                '  roi_pooling_param { pooled_h: 6 }\n}\n')
    with pytest.raises(UnsupportedLayerError, match=exactly(
            f"{prototxt} line 9: layer 'conv' (CONVOLUTION) uses roi_pooling_param, a field of Fast R-CNN "
            "(rbgirshick/caffe-fast-rcnn); zooforge cannot convert it")):
        parse_prototxt(prototxt)


def test_a_net_level_unknown_field_keeps_the_parse_sentence(tmp_path):
    prototxt = _write(tmp_path, 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\nbogus_net_field: 1\n')
    with pytest.raises(InputFileError, match="cannot be parsed at line 5, column 1: .*bogus_net_field"):
        parse_prototxt(prototxt)


def test_a_forks_layer_type_is_refused_before_the_weights_are_read(tmp_path):
    prototxt = _write(tmp_path, 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'
                                'layer { name: "roi" type: "ROIPooling" bottom: "r" top: "roi" }\n')
    with pytest.raises(UnsupportedLayerError, match=(
            f"^{re.escape(str(prototxt))}: layer 'roi' has type 'ROIPooling', a layer type of Fast R-CNN "
            r"\(rbgirshick/caffe-fast-rcnn\), which zooforge cannot convert; supported types: .*Convolution")):
        convert_caffe(prototxt, _garbage_weights(tmp_path), ConvertOptions())


def test_an_unknown_layer_type_of_no_known_fork(tmp_path):
    prototxt = _write(tmp_path, 'layer { name: "f" type: "Frobnicate" bottom: "data" top: "f" }\n')
    with pytest.raises(UnsupportedLayerError, match=(
            f"^{re.escape(str(prototxt))}: layer 'f' has type 'Frobnicate' which zooforge cannot convert; "
            "supported types: ")):
        convert_caffe(prototxt, _garbage_weights(tmp_path), ConvertOptions())


def test_a_train_only_layer_of_an_unknown_type_is_not_refused(tmp_path):
    """Caffe drops it at deploy (phase TEST), so the refusal must not fire; the garbage weights then
    are what fails."""
    prototxt = _write(tmp_path, 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'
                                'layer { name: "loss" type: "MultiBoxLoss" bottom: "r" top: "l" include { phase: TRAIN } }\n')
    with pytest.raises(InputFileError, match="w.caffemodel"):
        convert_caffe(prototxt, _garbage_weights(tmp_path), ConvertOptions())


@pytest.mark.filterwarnings("ignore:.*holds weights for layers the net does not have")
def test_round_mode_and_ceil_mode_that_contradict_are_refused(tmp_path):
    prototxt = _write(tmp_path, 'layer { name: "p" type: "Pooling" bottom: "data" top: "p"\n'
                                '  pooling_param { pool: MAX kernel_size: 3 stride: 2 round_mode: CEIL ceil_mode: false } }\n')
    with pytest.raises(CaffeModelError, match=exactly(
            "layer 'p' (Pooling): round_mode CEIL (BVLC) and ceil_mode false (the forks') contradict each other")):
        convert_caffe(prototxt, _no_weights(tmp_path), ConvertOptions())


def _no_weights(tmp_path: Path) -> Path:
    """A weights file holding one layer the net lacks (a net without learned parameters)."""
    import numpy as np

    from zooforge.converters.caffe.weights import write_caffemodel

    path = tmp_path / "other.caffemodel"
    write_caffemodel({"elsewhere": [np.zeros(1, np.float32)]}, path)
    return path


@pytest.mark.parametrize("body,mentions", [
    ('layer { name: "n4" type: "ReLU" bottom: "data" top: "n4"\n  detection_evaluate_param { }\n}\n',
     ("layer 'n4' (ReLU)", "detection_evaluate_param", "SSD (weiliu89/caffe)")),
    ('layer { name: "z" type: "Interp" bottom: "data" top: "z" }\n', ("layer 'z'", "'Interp'", "PSPNet")),
], ids=["ssd-field", "pspnet-type"])
def test_zoo_convert_refuses_in_one_sentence(tmp_path, body, mentions):
    """The hostile-input rule at the command line: exit 2, one ``error:`` sentence, no output file."""
    prototxt = _write(tmp_path, body)
    result = invoke(convert_cli.main, [prototxt, _garbage_weights(tmp_path), "-o", tmp_path / "m.onnx"])
    assert_refused(result, *mentions)
    assert not (tmp_path / "m.onnx").exists()
