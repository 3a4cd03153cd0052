"""The built-in AlexNet through the files a user would keep: the NetDef pair written by
``--emit-caffe2`` converts back to the same ONNX model (only the recorded lineage differs: each
names the files it was read from, and only the first, made where the weights are, records their
seed and scale), labelled synthetic both times, and
the streamed ONNX writer produces a model that onnx's own checker accepts from disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from click.testing import CliRunner

from zooforge.converters.cli import main
from zooforge.converters.lineage import read_lineage


def _cli(*args: object) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_builtin_alexnet_netdef_roundtrip_is_byte_identical(tmp_path: Path, onnx_run) -> None:
    direct, again, c2 = tmp_path / "direct.onnx", tmp_path / "again.onnx", tmp_path / "c2"
    output = _cli("--builtin", "alexnet", "--input-shape", "1,3,224,224", "-o", direct, "--emit-caffe2", c2)
    assert "SYNTHETIC" in output
    _cli(c2 / "predict_net.pb", "--init-net", c2 / "init_net.pb", "--value-info", c2 / "value_info.json",
         "-o", again)
    # The same model, except for the lineage each records: what it was read from.
    first, second = onnx.load(str(direct)), onnx.load(str(again))
    lineages = [read_lineage(m) for m in (first, second)]
    assert [(s.name, s.role) for s in lineages[0].sources] == [("alexnet.prototxt", "prototxt")]
    assert {(s.name, s.role, s.sha256) for s in lineages[1].sources} == {
        (name, role, hashlib.sha256((c2 / name).read_bytes()).hexdigest())
        for name, role in (("predict_net.pb", "predict_net"), ("init_net.pb", "init_net"),
                           ("value_info.json", "value_info"))}
    settings = [dict(lin.settings) for lin in lineages]
    assert settings[0].pop("input_shape") == (1, 3, 224, 224)  # given on the command line
    assert settings[1].pop("input_shape") is None                 # taken from value_info.json
    made = settings[0].pop("synthetic_weights")  # how the weights were made: known where they are made
    assert made["seed"] == 2012 and made["logit_std"] == 4.0 and "synthetic_weights" not in settings[1]
    assert settings[0] == settings[1] and all(lin.synthetic for lin in lineages)
    for m in (first, second):
        del m.metadata_props[:]
        m.doc_string = ""
    assert first.SerializeToString() == second.SerializeToString()

    onnx.checker.check_model(str(direct), full_check=True)
    model = onnx.load(str(direct), load_external_data=False)
    assert "SYNTHETIC" in model.doc_string
    assert {p.key: p.value for p in model.metadata_props}["zooforge.synthetic_weights"] == "true"
    assert [i.name for i in model.graph.input] == ["data_0"]
    assert [o.name for o in model.graph.output] == ["prob_1"]
    # 16 weights and biases of 61M parameters in all, as the BVLC architecture has.
    weights = [i for i in model.graph.initializer if i.name.endswith(("_w_0", "_b_0"))]
    assert len(weights) == 16
    assert sum(int(np.prod(i.dims)) for i in weights) == 60_965_224

    x = np.random.default_rng(7).uniform(-128, 128, (1, 3, 224, 224)).astype(np.float32)
    prob = onnx_run(direct, {"data_0": x})["prob_1"]
    assert prob.shape == (1, 1000)
    assert abs(float(prob.sum()) - 1.0) < 1e-4
