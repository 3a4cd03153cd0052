"""The hostile-input suite: what a careless user or an attacker hands each command.

Every case asserts exit status 2, one ``error:`` sentence on stderr naming the file, layer or
option at fault, no traceback, the user's files byte-identical afterwards and nothing left beside
the output. Families: data that must never be lost (release folders, output files, leftovers),
nothing wrong published (non-finite weights and tolerances, Caffe parameters Caffe rejects, ONNX
invalid at its declared opset, zoo-verify's blame), one sentence never a traceback (options,
environment, broken weights files, full disks, decompression bombs), and bounded reads.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from zooforge.artifacts.quantization import eval_cli

from zooforge.artifacts.release import package_cli

from zooforge.artifacts.quantization import quantize_cli

from zooforge.artifacts.validation import validate_cli

from zooforge.artifacts.provenance import verify_cli
from zooforge.converters import cli as convert_cli
from zooforge.converters.caffe.weights import read_weights, write_caffemodel
from zooforge.converters.caffe2 import schema
from zooforge.converters.safety import owner_tag

from hostile import assert_refused, invoke, leftovers, snapshot

LENET = ("caffe", "trained", "lenet_mnist_v2")


@pytest.fixture
def lenet(shared: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A writable copy of the trained LeNet (prototxt, caffemodel) in its own folder."""
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("lenet.prototxt", "lenet_iter_10000.caffemodel"):
        shutil.copyfile(shared.joinpath(*LENET, name), folder / name)
    return folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel"


def package(lenet, out: Path, *extra: object, env: dict | None = None):  # noqa: ANN001, ANN201
    prototxt, weights = lenet
    return invoke(package_cli.main, [prototxt, weights, "--name", "lenet", "--opsets", "12", "--test-sets", "1",
                                     "--input-range", "0,1", "--quantize", "none", "--quiet", "--out", out, *extra],
                  env=env)


def convert(*args: object):  # noqa: ANN201
    return invoke(convert_cli.main, args)


# =============================================================================== data never lost
# -- 1. release folders -------------------------------------------------------------------------

def test_out_folder_with_user_files_is_refused(lenet, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    (out / "data").mkdir()
    (out / "data" / "x.csv").write_text("1,2")
    before = snapshot(out, lenet[0].parent)
    assert_refused(package(lenet, out), str(out), "thesis.tex")
    assert snapshot(out, lenet[0].parent) == before
    assert leftovers(tmp_path, "mine") == []


def test_out_dot_is_refused(lenet, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    monkeypatch.chdir(work)
    before = snapshot(work)
    assert_refused(package(lenet, "."), "notes.txt")
    assert snapshot(work) == before


def test_out_folder_holding_the_inputs_is_refused(lenet):
    folder = lenet[0].parent
    before = snapshot(folder)
    assert_refused(package(lenet, folder), "holds the input")
    assert snapshot(folder) == before
    assert leftovers(folder.parent, folder.name) == []


def test_out_root_is_refused_and_nothing_lands_in_root(lenet):
    before = sorted(os.listdir("/"))
    assert_refused(package(lenet, "/"), "file system root")
    assert sorted(os.listdir("/")) == before


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_out_that_is_not_a_folder_is_refused(lenet, tmp_path, kind):
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("a file")
    else:
        (tmp_path / "target").mkdir()
        out.symlink_to(tmp_path / "target")
    before = snapshot(tmp_path / "target" if kind == "symlink" else out, out)
    assert_refused(package(lenet, out), "is not a folder")
    assert snapshot(tmp_path / "target" if kind == "symlink" else out, out) == before


def test_a_previous_release_is_replaced_but_not_one_with_a_user_file_in_it(lenet, tmp_path):
    out = tmp_path / "release"
    assert package(lenet, out).exit_code == 0
    assert package(lenet, out).exit_code == 0  # a zooforge release may be replaced
    (out / "my-notes.md").write_text("mine")
    before = snapshot(out)
    assert_refused(package(lenet, out), "my-notes.md")
    assert snapshot(out) == before


def test_an_empty_folder_may_become_the_release(lenet, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    result = package(lenet, out)
    assert result.exit_code == 0, result.output
    assert (out / "SHA256SUMS").is_file() and leftovers(tmp_path, "empty") == []


# -- 2. output files ----------------------------------------------------------------------------

def _special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / kind
    if kind == "device":
        # A private twin of /dev/full: were the refusal broken, only this node would be replaced
        # (a test writing to the real /dev/full replaced it once, on a machine where that test ran as root
        # against planted bugs).
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        except PermissionError:
            pytest.skip("creating a device node needs root (CAP_MKNOD); the other special files are tested")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    elif kind == "symlink":
        (tmp_path / "elsewhere.onnx").write_bytes(b"precious")
        path.symlink_to(tmp_path / "elsewhere.onnx")
    return path


@pytest.mark.parametrize("kind", ["device", "fifo", "socket", "symlink"])
def test_model_over_a_special_file_is_refused(lenet, tmp_path, kind):
    target = _special(tmp_path, kind)
    mode = target.lstat().st_mode
    watched = [target] + ([tmp_path / "elsewhere.onnx"] if kind == "symlink" else [])
    before = snapshot(*watched)
    assert_refused(convert(*lenet, "-o", target), str(target), "not a regular file")
    assert target.lstat().st_mode == mode and snapshot(*watched) == before


@pytest.mark.parametrize("which", [0, 1], ids=["prototxt", "weights"])
def test_model_over_an_input_is_refused(lenet, which):
    before = snapshot(lenet[0].parent)
    assert_refused(convert(*lenet, "-o", lenet[which]), "it is the input")
    assert snapshot(lenet[0].parent) == before


def test_netdef_outputs_over_the_inputs_are_refused(lenet, tmp_path):
    c2 = tmp_path / "c2"
    assert convert(*lenet, "-o", tmp_path / "m.onnx", "--emit-caffe2", c2).exit_code == 0
    predict, init = c2 / "predict_net.pb", c2 / "init_net.pb"
    before = snapshot(c2)
    assert_refused(convert(predict, "--init-net", init, "--input-shape", "1,1,28,28", "-o", init), "it is the input")
    assert_refused(convert(predict, "--init-net", init, "--input-shape", "1,1,28,28", "-o", tmp_path / "x.onnx",
                           "--emit-caffe2", c2), "it is the input")
    assert snapshot(c2) == before


def test_onnx_model_over_itself_is_refused(lenet, tmp_path):
    model = tmp_path / "m.onnx"
    assert convert(*lenet, "-o", model).exit_code == 0
    before = snapshot(model)
    assert_refused(convert(model, "--to-opset", "13", "-o", model), "it is the input")
    assert_refused(invoke(quantize_cli.main, [model, "--format", "int8", "--preprocess", "mnist", "--samples", "2",
                                              "-o", model]), "it is the input")
    assert snapshot(model) == before


# -- 3. leftovers -------------------------------------------------------------------------------

def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_build_folders_of_dead_builds_are_removed_and_said(lenet, tmp_path):
    dead = f"{_dead_pid()}.1"
    stale = [tmp_path / f".release.building-{dead}-abc", tmp_path / f".release.old-{dead}-def"]
    live = tmp_path / f".release.building-{owner_tag()}-ghi"  # this very process: not stale
    for folder in [*stale, live]:
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half")
    result = package(lenet, tmp_path / "release")
    assert result.exit_code == 0, result.output
    assert all(not p.exists() for p in stale) and live.is_dir()
    assert sum("left by a build that was killed" in line for line in result.stderr.splitlines()) == 2


def test_stale_temporary_file_of_a_killed_writer_is_removed(lenet, tmp_path):
    stale = tmp_path / f".m.onnx.{_dead_pid()}.1-xyz"
    stale.write_bytes(b"half a model")
    assert convert(*lenet, "-o", tmp_path / "m.onnx").exit_code == 0
    assert not stale.exists() and leftovers(tmp_path, "m.onnx") == []


def test_interrupted_convert_leaves_nothing(lenet, tmp_path, monkeypatch):
    import zooforge.converters.onnx.model as model_module

    def interrupt(*args, **kwargs):  # noqa: ANN002, ANN003
        raise KeyboardInterrupt

    monkeypatch.setattr(model_module.OnnxModel, "check", interrupt, raising=False)
    monkeypatch.setattr("zooforge.converters.api.caffe2_to_onnx", interrupt)
    result = convert(*lenet, "-o", tmp_path / "m.onnx")
    assert result.exit_code == 130 and "interrupted" in result.stderr and "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_signal_during_the_final_swap_still_reports_the_release(lenet, tmp_path, monkeypatch):
    import signal

    import zooforge.artifacts.release.build as release

    real_replace = os.replace
    calls = []

    def replace_then_signal(src, dst):  # noqa: ANN001
        real_replace(src, dst)
        if Path(dst).name == "release":
            calls.append(dst)
            os.kill(os.getpid(), signal.SIGINT)  # held back: the swap completes, then it is dropped

    monkeypatch.setattr(release.os, "replace", replace_then_signal)
    # Ctrl-C raises, as in a terminal (a background job, as CI runs the suite, starts with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    out = tmp_path / "release"
    try:
        result = package(lenet, out)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.exit_code == 0, result.output
    assert calls and (out / "SHA256SUMS").is_file()
    assert "SIGINT arrived while the finished release was moved into place" in result.stderr
    assert leftovers(tmp_path, "release") == []


def test_stale_quantization_folders_are_removed(lenet, tmp_path):
    import tempfile

    stale = Path(tempfile.gettempdir()) / f"zooforge-quantize.{_dead_pid()}.1-zzz"
    stale.mkdir(exist_ok=True)
    model = tmp_path / "m.onnx"
    assert convert(*lenet, "-o", model).exit_code == 0
    result = invoke(quantize_cli.main, [model, "--format", "int8", "--preprocess", "mnist", "--samples", "2",
                                        "-o", tmp_path / "q.onnx"])
    assert result.exit_code == 0, result.output
    assert not stale.exists()
    mine = [p for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith(f"zooforge-quantize.{os.getpid()}.")]
    assert mine == []


# ========================================================================= nothing wrong published
# -- 4. NaN and Inf -----------------------------------------------------------------------------

def _poisoned(lenet, layer: str, blob: int, value: float) -> Path:  # noqa: ANN001
    table = read_weights(lenet[1])
    table[layer][blob] = table[layer][blob].copy()
    table[layer][blob].flat[3] = value
    path = lenet[1].with_name("poisoned.caffemodel")
    write_caffemodel(table, path)
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_weight_is_refused_by_layer_and_blob(lenet, tmp_path, value):
    weights = _poisoned(lenet, "ip1", 1, value)
    out = tmp_path / "m.onnx"
    assert_refused(convert(lenet[0], weights, "-o", out), "layer 'ip1'", "weight blob 1", "--allow-non-finite")
    assert not out.exists()
    assert_refused(package((lenet[0], weights), tmp_path / "release"), "layer 'ip1'", "weight blob 1")
    assert not (tmp_path / "release").exists()


def test_allowed_nan_weight_converts_but_fails_parity(lenet, tmp_path):
    weights = _poisoned(lenet, "conv1", 0, np.nan)
    assert convert(lenet[0], weights, "-o", tmp_path / "m.onnx", "--allow-non-finite").exit_code == 0
    result = package((lenet[0], weights), tmp_path / "release", "--allow-non-finite")
    assert_refused(result, "fails parity", "NaN never matches")
    assert not (tmp_path / "release").exists() and leftovers(tmp_path, "release") == []


def test_non_finite_netdef_and_onnx_weights_are_refused(lenet, tmp_path):
    c2 = tmp_path / "c2"
    assert convert(*lenet, "-o", tmp_path / "m.onnx", "--emit-caffe2", c2).exit_code == 0
    init = schema.NetDef()
    init.ParseFromString((c2 / "init_net.pb").read_bytes())
    for arg in init.op[0].arg:
        if arg.name == "values":
            arg.floats[0] = float("inf")
    (c2 / "init_net.pb").write_bytes(init.SerializeToString())
    assert_refused(convert(c2 / "predict_net.pb", "--init-net", c2 / "init_net.pb", "--value-info",
                           c2 / "value_info.json", "-o", tmp_path / "n.onnx"), f"weight '{init.op[0].output[0]}'")
    model = onnx.load(tmp_path / "m.onnx")
    weights = onnx.numpy_helper.to_array(model.graph.initializer[0]).copy()
    weights.flat[0] = np.nan
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(weights, model.graph.initializer[0].name))
    onnx.save(model, tmp_path / "nan.onnx")
    assert_refused(convert(tmp_path / "nan.onnx", "-o", tmp_path / "o.onnx"), "initializer", "NaN")
    assert_refused(invoke(quantize_cli.main, [tmp_path / "nan.onnx", "--format", "qdq", "--preprocess", "mnist",
                                              "-o", tmp_path / "q.onnx"]), "cannot be quantized")


@pytest.mark.parametrize("value", ["nan,1", "1,0", "0,inf", "1e39,1e40", "0,0", "a,b", "1"])
def test_input_range_that_is_not_finite_ordered_float32_is_refused(lenet, tmp_path, value):
    prototxt, weights = lenet
    result = invoke(package_cli.main, [prototxt, weights, "--input-range", value, "--out", tmp_path / "r"])
    assert_refused(result, "--input-range")
    assert not (tmp_path / "r").exists()


# -- 5. Caffe parameters Caffe rejects ----------------------------------------------------------

EDITS = {
    # case: (old text, new text, what the sentence must name)
    "stride-0": ("    kernel_size: 5\n    stride: 1", "    kernel_size: 5\n    stride: 0", ("stride", "at least 1")),
    "kernel-0": ("    kernel_size: 5\n    stride: 1", "    kernel_size: 0\n    stride: 1", ("kernel_size", "at least 1")),
    "dilation-0": ("    kernel_size: 5\n    stride: 1", "    kernel_size: 5\n    stride: 1\n    dilation: 0",
                   ("dilation", "at least 1")),
    "pool-pad-not-below-kernel": ("    kernel_size: 2\n    stride: 2", "    kernel_size: 2\n    stride: 2\n    pad: 2",
                                  ("layer 'pool1'", "smaller than the kernel")),
    "num-output-0": ("    num_output: 20", "    num_output: 0", ("layer 'conv1'", "num_output")),
    "softmax-axis-7": ('type: "Softmax"\n  bottom: "ip2"', 'type: "Softmax"\n  softmax_param { axis: 7 }\n  bottom: "ip2"',
                       ("layer 'prob'", "axis 7 is out of range")),
    "inner-product-axis-9": ("    num_output: 500", "    num_output: 500\n    axis: 9", ("layer 'ip1'", "axis 9")),
    "repeated-top": ('  top: "pool2"', '  top: "pool1"', ("pool1", "already produces")),
    # Caffe's blob counts (Layer::CheckBlobCounts) and what zooforge cannot carry over
    "relu-two-bottoms": ('type: "ReLU"\n  bottom: "ip1"', 'type: "ReLU"\n  bottom: "ip1"\n  bottom: "ip1"',
                         ("layer 'relu1' (ReLU)", "takes 1 bottom blob(s), as Caffe requires, found 2")),
    "softmax-two-tops": ('  top: "prob"', '  top: "prob"\n  top: "prob2"', ("layer 'prob'", "takes 1 top blob(s)")),
    "average-pool-mask-top": ('  top: "pool1"\n  pooling_param {\n    pool: MAX',
                              '  top: "pool1"\n  top: "mask"\n  pooling_param {\n    pool: AVE',
                              ("layer 'pool1'", "takes 1 top blob(s)")),
    "max-pool-mask-top": ('  top: "pool1"\n  pooling_param', '  top: "pool1"\n  top: "mask"\n  pooling_param',
                          ("layer 'pool1'", "the mask top 'mask' of MAX pooling cannot be converted")),
    "convolution-without-kernel": ("    kernel_size: 5\n    stride: 1", "    stride: 1", ("layer 'conv1' (Convolution): kernel_size is required",)),
    "flatten-end-axis-before-axis": ('layer {\n  name: "relu1"',
                                     ('layer {\n  name: "f"\n  type: "Flatten"\n  bottom: "ip1"\n  top: "ip1"\n'
                                      '  flatten_param { axis: 1 end_axis: 0 }\n}\nlayer {\n  name: "relu1"'),
                                     ("layer 'f' (Flatten): end_axis 0 comes before axis 1",)),
    "slice-point-0": ('layer {\n  name: "relu1"',
                      ('layer {\n  name: "s"\n  type: "Slice"\n  bottom: "ip1"\n  top: "a"\n  top: "b"\n'
                       '  slice_param { axis: 1 slice_point: 0 }\n}\nlayer {\n  name: "relu1"'),
                      ("layer 's' (Slice): slice points [0] do not increase within 500",)),
    "convolution-pairs": ('  bottom: "data"\n  top: "conv1"', '  bottom: "data"\n  bottom: "data"\n  top: "conv1"\n  top: "c"',
                          ("layer 'conv1'", "2 bottom/top pairs sharing one set of weights cannot be converted")),
    "convolution-unpaired": ('  bottom: "data"\n  top: "conv1"', '  bottom: "data"\n  bottom: "data"\n  top: "conv1"',
                             ("layer 'conv1'", "has 2 bottoms and 1 tops; Caffe requires one top per bottom")),
    "pooling-of-a-2d-blob": ('layer {\n  name: "relu1"',
                             ('layer {\n  name: "p"\n  type: "Pooling"\n  bottom: "ip1"\n  top: "ip1"\n'
                              '  pooling_param { pool: MAX kernel_size: 2 }\n}\nlayer {\n  name: "relu1"'),
                             ("layer 'p'", "pooling takes a 4-axis (num, channels, height, width) input",
                              "'ip1' has shape [1, 500]")),
    "global-pooling-of-a-2d-blob": ('layer {\n  name: "relu1"',
                                    ('layer {\n  name: "p"\n  type: "Pooling"\n  bottom: "ip1"\n  top: "ip1"\n'
                                     '  pooling_param { pool: AVE global_pooling: true }\n}\nlayer {\n  name: "relu1"'),
                                    ("layer 'p'", "4-axis")),
    # the forks' layers (issue 13), put in place on pool2 (1, 50, 4, 4) before ip1
    **{case: ('layer {\n  name: "ip1"', f'layer {{\n  name: "f"\n  type: "{kind}"\n{bottoms}  top: "pool2"\n'
              f'  {params}\n}}\nlayer {{\n  name: "ip1"', mentions)
       for case, (kind, bottoms, params, mentions) in {
           "shuffle-group-3-of-50": ("ShuffleChannel", '  bottom: "pool2"\n', "shuffle_channel_param { group: 3 }",
                                     ("layer 'f' (ShuffleChannel)", "group 3 does not divide the 50 channels")),
           "shuffle-group-0": ("ShuffleChannel", '  bottom: "pool2"\n', "shuffle_channel_param { group: 0 }",
                               ("layer 'f' (ShuffleChannel)", "group 0")),
           "permute-repeated-axis": ("Permute", '  bottom: "pool2"\n', "permute_param { order: 0 order: 1 order: 1 }",
                                     ("layer 'f' (Permute)", "order [0, 1, 1] is not a list of distinct axes")),
           "permute-axis-9": ("Permute", '  bottom: "pool2"\n', "permute_param { order: 9 }",
                              ("layer 'f' (Permute)", "order [9]", "(0 to 3)")),
           "upsample-scale-negative": ("Upsample", '  bottom: "pool2"\n', "upsample_param { scale: -2 }",
                                       ("layer 'f' (Upsample)", "scale must be at least 1, found -2")),
           "upsample-huge-scale": ("Upsample", '  bottom: "pool2"\n', "upsample_param { scale: 2147483647 }",
                                   ("layer 'ip1'", "weight blob 0 has shape [500, 800]")),
           "upsample-segnet-mask": ("Upsample", '  bottom: "pool2"\n  bottom: "pool2"\n', "upsample_param { scale: 2 }",
                                    ("layer 'f' (Upsample) has 2 bottoms", "SegNet's max-unpooling Upsample")),
           "axpy-scale-not-per-channel": ("Axpy", '  bottom: "pool2"\n' * 3, "",
                                          ("layer 'f' (Axpy)", "the scale bottom 'pool2' has shape [1, 50, 4, 4]")),
       }.items()},
    "depthwise-num-output-50-of-20": ('name: "conv2"\n  type: "Convolution"', 'name: "conv2"\n  type: "ConvolutionDepthwise"',
                                      ("layer 'conv2' (ConvolutionDepthwise)", "num_output 50 differs from the input's "
                                       "20 channels")),
}


def _edited(lenet, old: str, new: str) -> Path:  # noqa: ANN001
    text = lenet[0].read_text()
    assert old in text, old
    path = lenet[0].with_name("edited.prototxt")
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("case", list(EDITS))
def test_caffe_parameter_caffe_rejects(lenet, tmp_path, case):
    old, new, mentions = EDITS[case]
    prototxt = _edited(lenet, old, new)
    assert_refused(convert(prototxt, lenet[1], "-o", tmp_path / "m.onnx"), *mentions)
    assert not (tmp_path / "m.onnx").exists()


def test_concat_axis_3_on_a_2d_blob(lenet, tmp_path):
    prototxt = _edited(lenet, 'layer {\n  name: "prob"', 'layer {\n  name: "cat"\n  type: "Concat"\n  bottom: "ip2"\n'
                       '  bottom: "ip2"\n  top: "cat"\n  concat_param { axis: 3 }\n}\nlayer {\n  name: "prob"')
    assert_refused(convert(prototxt, lenet[1], "-o", tmp_path / "m.onnx"), "layer 'cat'", "axis 3")


def test_extra_weight_blob_and_wrong_shape_of_the_right_size(lenet, tmp_path):
    table = read_weights(lenet[1])
    extra = {**table, "ip2": [*table["ip2"], np.zeros(3, np.float32)]}
    write_caffemodel(extra, tmp_path / "extra.caffemodel")
    assert_refused(convert(lenet[0], tmp_path / "extra.caffemodel", "-o", tmp_path / "m.onnx"),
                   "layer 'ip2'", "gives 3 weight blobs", "takes 2")
    reshaped = {**table, "ip1": [table["ip1"][0].reshape(800, 500), table["ip1"][1]]}
    write_caffemodel(reshaped, tmp_path / "reshaped.caffemodel")
    assert_refused(convert(lenet[0], tmp_path / "reshaped.caffemodel", "-o", tmp_path / "m.onnx"),
                   "layer 'ip1'", "shape [800, 500]", "expected [500, 800]")


# -- 5b. SSD's Normalize and PriorBox parameters Caffe rejects (issue 13) -----------------------

_SSD_NET = """name: "ssd-head"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 dim: 38 dim: 38 } } }
layer { name: "conv4_3_norm" type: "Normalize" bottom: "data" top: "conv4_3_norm"
  norm_param { across_spatial: false channel_shared: false } }
layer { name: "conv4_3_norm_mbox_priorbox" type: "PriorBox" bottom: "conv4_3_norm" bottom: "data"
  top: "conv4_3_norm_mbox_priorbox"
  prior_box_param { min_size: 30 max_size: 60 aspect_ratio: 2 flip: true clip: false
    variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 step: 8 offset: 0.5 } }
"""

SSD_EDITS = {
    # case: (old text, new text, what the sentence must name)
    "prior-box-no-min-size": ("min_size: 30 max_size: 60", "max_size: 60",
                              ("layer 'conv4_3_norm_mbox_priorbox' (PriorBox)", "min_size is required")),
    "prior-box-max-below-min": ("min_size: 30 max_size: 60", "min_size: 30 max_size: 20",
                                ("layer 'conv4_3_norm_mbox_priorbox' (PriorBox)",
                                 "max_size 20 must be greater than min_size 30")),
    "prior-box-variance-2": ("variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2", "variance: 0.1 variance: 0.2",
                             ("layer 'conv4_3_norm_mbox_priorbox' (PriorBox)", "2 variance values; Caffe takes 1 or 4")),
    "prior-box-variance-3": ("variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2",
                             "variance: 0.1 variance: 0.1 variance: 0.2",
                             ("layer 'conv4_3_norm_mbox_priorbox' (PriorBox)", "3 variance values; Caffe takes 1 or 4")),
    "prior-box-offset-h": ("step: 8 offset: 0.5", "step: 8 offset_h: 0.5 offset_w: 0.5",
                           ("layer 'conv4_3_norm_mbox_priorbox' (PriorBox)", "offset_h", "cannot be converted")),
    "prior-box-one-bottom": ('bottom: "conv4_3_norm" bottom: "data"', 'bottom: "conv4_3_norm"',
                             ("layer 'conv4_3_norm_mbox_priorbox' (PriorBox)", "takes 2 bottom blob(s)")),
    "normalize-negative-eps": ("channel_shared: false }", "channel_shared: false eps: -1e-3 }",
                               ("layer 'conv4_3_norm' (Normalize)", "eps -0.001 must be a finite number of at least 0")),
    "normalize-nan-eps": ("channel_shared: false }", "channel_shared: false eps: nan }",
                          ("layer 'conv4_3_norm' (Normalize)", "eps nan must be a finite number")),
    "normalize-shared-but-blob-per-channel": ("channel_shared: false }", "channel_shared: true }",
                                              ("layer 'conv4_3_norm' (Normalize)",
                                               "weight blob 0 has shape [4], expected []")),
}


def _ssd_files(tmp_path: Path, text: str, blobs: list[np.ndarray]) -> tuple[Path, Path]:
    prototxt, weights = tmp_path / "ssd.prototxt", tmp_path / "ssd.caffemodel"
    prototxt.write_text(text)
    write_caffemodel({"conv4_3_norm": blobs}, weights)
    return prototxt, weights


def test_ssd_head_converts(tmp_path):
    prototxt, weights = _ssd_files(tmp_path, _SSD_NET, [np.full(4, 20, np.float32)])
    result = convert(prototxt, weights, "-o", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "m.onnx").is_file()


@pytest.mark.parametrize("case", list(SSD_EDITS))
def test_ssd_parameter_caffe_rejects(tmp_path, case):
    old, new, mentions = SSD_EDITS[case]
    assert old in _SSD_NET, old
    prototxt, weights = _ssd_files(tmp_path, _SSD_NET.replace(old, new, 1), [np.full(4, 20, np.float32)])
    assert_refused(convert(prototxt, weights, "-o", tmp_path / "m.onnx"), *mentions)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("blob", [np.full(3, 20, np.float32), np.full((2, 2), 20, np.float32)], ids=["3", "2x2"])
def test_normalize_scale_of_the_wrong_shape(tmp_path, blob):
    prototxt, weights = _ssd_files(tmp_path, _SSD_NET, [blob])
    assert_refused(convert(prototxt, weights, "-o", tmp_path / "m.onnx"),
                   "layer 'conv4_3_norm' (Normalize)", f"weight blob 0 has shape {list(blob.shape)}", "expected [4]")
    assert not (tmp_path / "m.onnx").exists()


def test_normalize_batch_of_two_at_opset_6_names_the_layer_and_opset_7(tmp_path):
    prototxt, weights = _ssd_files(tmp_path, _SSD_NET, [np.full(4, 20, np.float32)])
    assert_refused(convert(prototxt, weights, "--input-shape", "data=2,4,38,38", "--to-opset", 6,
                           "-o", tmp_path / "m.onnx"),
                   "layer 'conv4_3_norm' (Normalize): Div 'conv4_3_norm_", "before opset 7 cannot express")
    assert not (tmp_path / "m.onnx").exists()


# -- 6. ONNX input checked at its declared opset ------------------------------------------------

def _onnx_case(tmp_path: Path, case: str) -> Path:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    if case == "pad-11-at-7":
        nodes = [helper.make_node("Pad", ["x", "p"], ["y"], mode="constant")]
        init = [onnx.numpy_helper.from_array(np.zeros(8, np.int64), "p")]
        opset, ir = 7, 3
    elif case == "dropout-ratio-at-12":
        nodes, init, opset, ir = [helper.make_node("Dropout", ["x"], ["y"], ratio=0.5)], [], 12, 7
    else:
        nodes, init = [helper.make_node("Relu", ["x"], ["y"])], []
        opset, ir = (999, 7) if case == "opset-999" else (12, 99)
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], init),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir
    path = tmp_path / f"{case}.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("case", ["opset-999", "ir-99", "pad-11-at-7", "dropout-ratio-at-12"])
def test_onnx_invalid_at_its_declared_opset(tmp_path, case):
    model = _onnx_case(tmp_path, case)
    mention = {"opset-999": "declares opset 999", "ir-99": "declares IR version 99"}.get(case, "onnx.checker")
    assert_refused(convert(model, "-o", tmp_path / "out.onnx"), mention)
    assert_refused(invoke(package_cli.main, [model, "--out", tmp_path / "r", "--quiet"]), mention)
    assert_refused(invoke(quantize_cli.main, [model, "--format", "int8", "-o", tmp_path / "q.onnx"]), mention)
    assert not any((tmp_path / name).exists() for name in ("out.onnx", "r", "q.onnx"))


# -- 7. zoo-verify ------------------------------------------------------------------------------

@pytest.fixture
def release(lenet, tmp_path) -> Path:
    out = tmp_path / "release"
    assert package(lenet, out).exit_code == 0
    return out


def test_verify_names_an_added_empty_folder_and_a_link(release):
    (release / "extra").mkdir()
    (release / "link.onnx").symlink_to(release / "lenet-12.onnx")
    result = invoke(verify_cli.main, [release])
    assert result.exit_code == 1
    assert "added: extra/ (a folder with no files)" in result.output
    assert "added: link.onnx (a symbolic link)" in result.output


def test_verify_blames_an_altered_sha256sums_line_not_the_intact_model(release):
    sums = release / "SHA256SUMS"
    lines = sums.read_text().splitlines()
    lines = [("0" * 64 + line[64:]) if line.endswith("lenet-12.onnx") else line for line in lines]
    sums.write_text("\n".join(lines) + "\n")
    result = invoke(verify_cli.main, [release])
    assert result.exit_code == 1
    assert "changed: SHA256SUMS (its line for lenet-12.onnx" in result.output
    assert "changed: lenet-12.onnx\n" not in result.output


# ===================================================================== one sentence, no traceback
# -- 8. options, environment, broken files, full disks, bombs -----------------------------------

@pytest.mark.parametrize("args,mention", [
    (["--rtol", "-1"], "--rtol"), (["--rtol", "nan"], "--rtol"), (["--atol", "inf"], "--atol"),
    (["--seed", "-1"], "--seed"), (["--test-sets", "0"], "--test-sets"),
    (["--name", "a/b"], "--name"), (["--name", ".."], "--name"), (["--name", ""], "--name"),
    (["--name", "x" * 300], "--name"), (["--opsets", "7.5"], "--opsets"), (["--opsets", "12,12"], "--opsets"),
    (["--input-shape", "1,1,0,28"], "at least 1"), (["--input-shape", "100000,100000,28,28"], "elements"),
], ids=lambda v: "_".join(v) if isinstance(v, list) else None)
def test_package_option_refusals(lenet, tmp_path, args, mention):
    prototxt, weights = lenet
    result = invoke(package_cli.main, [prototxt, weights, "--out", tmp_path / "r", *args])
    assert_refused(result, mention)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("case", ["seed-alone", "with-weights", "default-builtin", "builtin", "onnx", "netdef",
                                  "seed-too-big"])
def test_package_synthetic_weights_misuse(lenet, tmp_path, case):
    """--synthetic-weights is for a prototxt without WEIGHTS; --weights-seed needs it: refused before any work,
    --out never created, the user's files untouched."""
    prototxt, weights = lenet
    onnx_model = prototxt.with_name("m.onnx")
    onnx_model.write_bytes(b"not read")
    args, mention = {
        "seed-alone": ([prototxt, "--weights-seed", "1"], "--weights-seed"),
        "with-weights": ([prototxt, weights, "--synthetic-weights"], "give no WEIGHTS"),
        "default-builtin": (["--synthetic-weights"], "needs a .prototxt MODEL"),
        "builtin": (["--builtin", "alexnet", "--synthetic-weights", "--weights-seed", "2"], "built-in"),
        "onnx": ([onnx_model, "--synthetic-weights"], "not an ONNX model"),
        "netdef": ([onnx_model.with_name("predict_net.pb"), "--init-net", weights, "--synthetic-weights"],
                   "not a NetDef pair"),
        "seed-too-big": ([prototxt, "--synthetic-weights", "--weights-seed", str(2**64)], "--weights-seed"),
    }[case]
    before = snapshot(prototxt.parent)
    assert_refused(invoke(package_cli.main, [*args, "--out", tmp_path / "r", "-q"]), mention)
    assert not (tmp_path / "r").exists()
    assert snapshot(prototxt.parent) == before


def test_package_synthetic_weights_keep_the_test_input_seed_apart(lenet, tmp_path):
    """--seed seeds the test inputs, --weights-seed the weights: a release made with each differs where it should."""
    prototxt, _ = lenet
    base = [prototxt, "--synthetic-weights", "--name", "lenet", "--opsets", "12", "--test-sets", "1", "--quantize",
            "none", "--input-range", "0,1", "-q"]
    for name, extra in (("a", []), ("b", ["--seed", "5"]), ("c", ["--weights-seed", "5"])):
        result = invoke(package_cli.main, [*base, *extra, "--out", tmp_path / name])
        assert result.exit_code == 0, result.output
    model = {name: (tmp_path / name / "lenet-12.onnx").read_bytes() for name in "abc"}
    archive = {name: (tmp_path / name / "lenet-12.tar.gz").read_bytes() for name in "abc"}
    assert model["a"] == model["b"] and archive["a"] != archive["b"]  # other test inputs, same weights
    assert model["a"] != model["c"]                                   # other weights


@pytest.mark.parametrize("args,mention", [
    (["--rtol", "-1"], "--rtol"), (["--atol", "nan"], "--atol"), (["--runtime", "tensorrt"], "--runtime")])
def test_validate_option_refusals(shared, args, mention):
    assert_refused(invoke(validate_cli.main, [shared / "onnx" / "simple", *args]), mention)


@pytest.mark.parametrize("epoch", ["-1", str(10**20), "soon"])
def test_source_date_epoch_out_of_range(lenet, tmp_path, epoch):
    assert_refused(package(lenet, tmp_path / "r", env={"SOURCE_DATE_EPOCH": epoch}), "SOURCE_DATE_EPOCH")
    assert not (tmp_path / "r").exists()


def test_seed_refusal_in_quantize(tmp_path):
    assert_refused(invoke(quantize_cli.main, [tmp_path / "m.onnx", "--format", "int8", "--seed", "-1",
                                              "-o", tmp_path / "q.onnx"]), "--seed")


def _h5(path: Path, build) -> Path:  # noqa: ANN001
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as handle:
        build(handle)
    return path


@pytest.mark.parametrize("case", ["junk", "truncated", "blob-names", "not-a-group", "string-blob"])
def test_broken_hdf5_weights(lenet, tmp_path, case):
    weights = tmp_path / "w.caffemodel.h5"
    if case == "junk":
        weights.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(300))
    elif case == "truncated":
        table = read_weights(lenet[1])
        _h5(weights, lambda h: [h.create_dataset(f"data/{name}/{i}", data=b) for name, blobs in table.items()
                                for i, b in enumerate(blobs)])
        weights.write_bytes(weights.read_bytes()[:5000])
    elif case == "blob-names":
        _h5(weights, lambda h: h.create_dataset("data/conv1/weights", data=np.zeros(3)))
    elif case == "not-a-group":
        _h5(weights, lambda h: h.create_dataset("data/conv1", data=np.zeros(3)))
    else:
        _h5(weights, lambda h: h.create_dataset("data/conv1/0", data=np.array([b"x"])))
    assert_refused(convert(lenet[0], weights, "-o", tmp_path / "m.onnx"), str(weights))


def test_negative_blob_dimension(lenet, tmp_path):
    from zooforge.converters.caffe import schema as caffe_schema

    net = caffe_schema.NetParameter()
    layer = net.layer.add(name="conv1")
    blob = layer.blobs.add()
    blob.shape.dim.extend([-20, 1, 5, 5])
    (tmp_path / "neg.caffemodel").write_bytes(net.SerializeToString())
    assert_refused(convert(lenet[0], tmp_path / "neg.caffemodel", "-o", tmp_path / "m.onnx"), "negative dimension")


def test_full_disk_is_one_sentence(lenet, tmp_path, monkeypatch):
    import zooforge.converters.fileio as fileio

    real_fdopen = os.fdopen

    class Full:
        def __init__(self, stream):  # noqa: ANN001
            self.stream = stream

        def write(self, data):  # noqa: ANN001, ANN201
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):  # noqa: ANN204
            return self

        def __exit__(self, *exc):  # noqa: ANN002, ANN204
            self.stream.close()

    monkeypatch.setattr(fileio.os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))
    assert_refused(convert(*lenet, "-o", tmp_path / "m.onnx"), "cannot write", "No space left on device")
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_unwritable_output_folder_is_one_sentence(lenet):
    assert_refused(convert(*lenet, "-o", "/proc/zooforge.onnx"), "/proc")


def test_quantizing_a_weightless_light_model_is_refused(shared, tmp_path):
    light = shared / "onnx" / "light" / "light_bvlc_alexnet.onnx"
    assert_refused(invoke(quantize_cli.main, [light, "--format", "int8", "--preprocess", "inc-alexnet", "--samples", "1",
                                              "-o", tmp_path / "q.onnx"]), "ConstantOfShape")
    assert not (tmp_path / "q.onnx").exists()


def test_decompression_bomb_in_a_dataset(tmp_path, lenet):
    from PIL import Image

    dataset = tmp_path / "bomb"
    dataset.mkdir()
    # 400 million pixels that compress to a few hundred kilobytes: past PIL's bomb limit
    Image.new("1", (20000, 20000)).save(dataset / "bomb.png", optimize=False)
    assert (dataset / "bomb.png").stat().st_size < 5 * 2**20
    (dataset / "labels.tsv").write_text("bomb.png\t0\n")
    model = tmp_path / "m.onnx"
    assert convert(*lenet, "-o", model).exit_code == 0
    assert_refused(invoke(eval_cli.main, [model, "--dataset", dataset, "--preprocess", "mnist"]), "bomb.png")
    assert_refused(invoke(quantize_cli.main, [model, "--format", "int8", "--calibration", dataset,
                                              "--preprocess", "mnist", "--samples", "1", "-o", tmp_path / "q.onnx"]),
                   "bomb.png")


def test_tar_member_2000_folders_deep(tmp_path):
    archive = tmp_path / "deep.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("/".join(["d"] * 2000) + "/model.onnx")
        info.size = 0
        tar.addfile(info)
    assert_refused(invoke(validate_cli.main, [archive]), "folders deep")


# Archive members met while mutation-testing the tarball reader: each refused by member name.
HOSTILE_MEMBERS = {
    "nested-under-a-file": (["top/model.onnx", "top/model.onnx/x"], "inside 'top/model.onnx', which is a file"),
    "drive-letter": (["C:evil/model.onnx"], "with an absolute path"),
    "nul-in-a-pax-name": (["top/\u00e9\x00.onnx"], "with a NUL in its name"),
    "backslash-climb": (["top\\..\\..\\evil"], "climbs out with '..'"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_MEMBERS))
def test_hostile_tar_members_in_zoo_validate(tmp_path, case):
    names, mention = HOSTILE_MEMBERS[case]
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 0
            tar.addfile(info)
    before = snapshot(tmp_path)
    assert_refused(invoke(validate_cli.main, [archive]), str(archive), mention)
    assert snapshot(tmp_path) == before


# -- 9. bounded reads ---------------------------------------------------------------------------

@pytest.fixture
def backend_copy(shared, tmp_path) -> Path:
    folder = tmp_path / "relu"
    shutil.copytree(shared / "onnx" / "pytorch-operator" / "test_operator_add_broadcast", folder)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


@pytest.mark.parametrize("kind", ["dev-zero-link", "fifo", "too-large"])
def test_validate_reads_only_bounded_regular_files(backend_copy, kind):
    tensor = backend_copy / "test_data_set_0" / "input_0.pb"
    tensor.unlink()
    if kind == "dev-zero-link":
        tensor.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(tensor)
    else:
        with open(tensor, "wb") as handle:  # sparse: 3 GB declared, no disk used
            handle.truncate(3 * 2**30)
    result = invoke(validate_cli.main, [backend_copy])
    assert_refused(result, str(tensor))
    assert stat.S_ISLNK(tensor.lstat().st_mode) or tensor.exists()


def test_a_build_killed_mid_swap_gets_its_old_release_back(lenet, tmp_path):
    out = tmp_path / "release"
    assert package(lenet, out).exit_code == 0
    before = snapshot(out)
    dead = f"{_dead_pid()}.1"
    old = tmp_path / f".release.old-{dead}-abc"
    old.mkdir()
    os.replace(out, old / "release")  # killed after the first rename of the swap
    (tmp_path / f".release.building-{dead}-def").mkdir()
    (out.parent / f".release.building-{dead}-def" / "half.onnx").write_bytes(b"half")
    refused = package(lenet, out, "--opsets", "99")  # restored first, then the unknown opset is refused
    assert_refused(refused, "99")
    assert "restored the previous release" in refused.stderr
    assert snapshot(out) == before  # back in place, as it was
    result = package(lenet, out)
    assert result.exit_code == 0, result.output
    assert leftovers(tmp_path, "release") == []


# -- SSD's DetectionOutput (the wt-detout block): what cannot be exported is one sentence ------------

def _detection_prototxt(folder: Path, params: str) -> Path:
    path = folder / "ssd_head.prototxt"
    path.write_text('name: "ssd_head"\n'
                    'input: "loc" input_shape { dim: 1 dim: 32 }\n'
                    'input: "conf" input_shape { dim: 1 dim: 24 }\n'
                    'input: "priors" input_shape { dim: 1 dim: 2 dim: 32 }\n'
                    'layer { name: "detection_out" type: "DetectionOutput" bottom: "loc" bottom: "conf" '
                    'bottom: "priors" top: "detection_out" detection_output_param { num_classes: 3 '
                    f'share_location: true background_label_id: 0 code_type: CENTER_SIZE {params} }} }}\n')
    return path


@pytest.mark.parametrize("params, options, mentions", [
    ("keep_top_k: 5", ("--to-opset", "9"), ("layer 'detection_out' (DetectionOutput", "opset 10")),
    ("keep_top_k: 5", ("--dynamic-batch",), ("layer 'detection_out' (DetectionOutput", "dynamic batch")),
    ("keep_top_k: 5 nms_param { nms_threshold: 0.4 eta: 0.5 }", (), ("layer 'detection_out' (DetectionOutput)",
                                                                      "eta")),
    ("keep_top_k: 2147483647", (), ("layer 'detection_out' (DetectionOutput)", "2147483647 output rows")),
    ("keep_top_k: 5 nms_param { nms_threshold: 0 }", (), ("layer 'detection_out' (DetectionOutput)",
                                                         "nms_threshold")),
])
def test_detection_output_that_cannot_be_exported_is_one_sentence(tmp_path, params, options, mentions):
    prototxt = _detection_prototxt(tmp_path, params)
    weights = tmp_path / "ssd_head.caffemodel"
    write_caffemodel({"detection_out": []}, weights)  # the layer has no weights
    before = snapshot(tmp_path)
    assert_refused(convert(prototxt, weights, "-o", tmp_path / "m.onnx", *options), *mentions)
    assert snapshot(tmp_path) == before
