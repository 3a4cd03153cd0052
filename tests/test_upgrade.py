"""V0/V1 -> V2 upgrade against Caffe's own expectations, and one net read the same in every format."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from zooforge.converters.caffe.loader import describe_inputs, parse_prototxt
from zooforge.converters.caffe.upgrade import net_format, upgrade_net

FIXTURES = ("TestSimple", "TestImageNet")  # from Caffe's src/caffe/test/test_upgrade_proto.cpp
FORMATS = ("v1_layers", "v2_input_dim", "v2_input_shape", "v2_input_layer")
FORMAT_GENERATION = {"v1_layers": "V1", "v2_input_dim": "V2", "v2_input_shape": "V2", "v2_input_layer": "V2"}
# Net -> the input every deploy file declares (batch 10 there; zooforge defaults it to 1).
NETS = {
    "models/bvlc_alexnet/deploy.prototxt": (1, 3, 227, 227),
    "models/bvlc_reference_caffenet/deploy.prototxt": (1, 3, 227, 227),
    "models/bvlc_googlenet/deploy.prototxt": (1, 3, 224, 224),
    "models/bvlc_reference_rcnn_ilsvrc13/deploy.prototxt": (1, 3, 227, 227),
    "models/finetune_flickr_style/deploy.prototxt": (1, 3, 227, 227),
    "examples/mnist/lenet.prototxt": (1, 1, 28, 28),
    "examples/cifar10/cifar10_quick.prototxt": (1, 3, 32, 32),
    "examples/cifar10/cifar10_full.prototxt": (1, 3, 32, 32),
}


def _diff(expected, got) -> str:
    import difflib

    lines = difflib.unified_diff(
        text_format.MessageToString(expected).splitlines(),
        text_format.MessageToString(got).splitlines(),
        "expected", "upgraded", lineterm="", n=2,
    )
    return "\n".join(list(lines)[:60])


@pytest.mark.parametrize("fixture", FIXTURES)
@pytest.mark.parametrize("source", ["v0", "expected_v1"])
def test_upgrade_matches_caffe_expected_v2(fixture, source, shared):
    folder = shared / "caffe" / "bvlc" / "upgrade_fixtures"
    old = parse_prototxt(folder / f"{fixture}__{source}_proto.prototxt")
    assert net_format(old) == ("V0" if source == "v0" else "V1")
    expected = parse_prototxt(folder / f"{fixture}__expected_v2_proto.prototxt")
    assert net_format(expected) == "V2" and len(expected.layer) > 0
    upgraded = upgrade_net(old)
    assert upgraded == expected, _diff(expected, upgraded)


@pytest.mark.parametrize("net", sorted(NETS))
def test_every_format_gives_the_same_net(net, shared):
    layer_lists, layer_protos, inputs = {}, {}, {}
    for fmt in FORMATS:
        path = shared / "caffe" / "bvlc" / fmt / net
        parsed = parse_prototxt(path)
        assert net_format(parsed) == FORMAT_GENERATION[fmt], path
        upgraded = upgrade_net(parsed, str(path))
        layers = [layer for layer in upgraded.layer if layer.type != "Input"]
        layer_lists[fmt] = [(l.name, l.type, list(l.bottom), list(l.top)) for l in layers]
        layer_protos[fmt] = [l.SerializeToString(deterministic=True) for l in layers]
        inputs[fmt] = describe_inputs(upgraded, source=str(path))
    reference = layer_lists["v2_input_layer"]
    assert len(reference) > 0
    for fmt in FORMATS:
        assert layer_lists[fmt] == reference, f"{fmt} differs from v2_input_layer for {net}"
        assert layer_protos[fmt] == layer_protos["v2_input_layer"], f"{fmt}: layer parameters differ for {net}"
        assert inputs[fmt] == {"data": NETS[net]}, f"{fmt}: inputs {inputs[fmt]}"


def test_describe_inputs_honours_requested_shape(shared):
    path = shared / "caffe" / "bvlc" / "v2_input_dim" / "models" / "bvlc_alexnet" / "deploy.prototxt"
    net = upgrade_net(parse_prototxt(path))
    assert describe_inputs(net, (4, 3, 227, 227)) == {"data": (4, 3, 227, 227)}
    assert describe_inputs(net, {"data": (2, 3, 227, 227)}) == {"data": (2, 3, 227, 227)}


def test_v0_imagenet_deploy_is_caffenet(shared):
    """The V0 ImageNet deploy net is CaffeNet: after the upgrade its wiring equals today's file."""
    bvlc = shared / "caffe" / "bvlc"
    old = parse_prototxt(bvlc / "v0_layers" / "examples" / "imagenet_deploy.prototxt")
    assert net_format(old) == "V0"
    v0 = upgrade_net(old)
    v2 = upgrade_net(parse_prototxt(bvlc / "v2_input_layer" / "models" / "bvlc_reference_caffenet" / "deploy.prototxt"))

    def wiring(net):
        return [(l.name, l.type, list(l.bottom), list(l.top)) for l in net.layer if l.type != "Input"]

    assert wiring(v0) == wiring(v2)
    assert describe_inputs(v0) == describe_inputs(v2) == {"data": (1, 3, 227, 227)}
    conv1 = next(l for l in v0.layer if l.name == "conv1").convolution_param
    assert (conv1.num_output, list(conv1.kernel_size), list(conv1.stride)) == (96, [11], [4])
