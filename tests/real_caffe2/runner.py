"""Drive the REAL historical Caffe2 (torch 1.10.2, Python 3.8) for zooforge's tests.

This file runs inside the historical interpreter built by ``shared/tools/caffe2-historical-setup.sh``
(``ROOT/venv38/bin/python`` with ``PYTHONPATH=ROOT/bvlc``), never inside zooforge's own. It reads
one JSON request per line on stdin and answers one JSON line per request on the file descriptor
named by ``--reply-fd`` (stdout itself is handed to Caffe2's logging). Requests:

``{"cmd": "run", "predict_net": P, "init_net": P, "feeds": NPZ, "out": NPZ, "fetch": [names] | null}``
    Run the init net, feed the arrays of ``feeds``, run the predict net once, save the fetched
    blobs (default: the external outputs; ``"*"``: every blob an operator wrote) to ``out``.
``{"cmd": "translate", "prototxt": P, "caffemodel": P, "predict_net": P, "init_net": P}``
    The historical ``caffe2.python.caffe_translator``, exactly as its command line does it.
``{"cmd": "frontend", "predict_net": P, "init_net": P, "value_info": {...}, "out": P}``
    The historical onnx-caffe2 frontend (``caffe2_net_to_onnx_model``, opset 9).
``{"cmd": "schemas", "operators": [types]}``
    Each operator schema's input and output count bounds.
``{"cmd": "versions"}``
    The versions of torch, onnx and protobuf in this interpreter.

Every answer is ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. Written for Python 3.8.
"""

import argparse
import json
import os
import sys
import traceback


def _run(request):
    import numpy as np
    from caffe2.proto import caffe2_pb2
    from caffe2.python import workspace

    predict = _read_net(caffe2_pb2, request["predict_net"])
    init = _read_net(caffe2_pb2, request["init_net"])
    workspace.ResetWorkspace()
    workspace.RunNetOnce(init)
    with np.load(request["feeds"]) as feeds:
        for name in feeds.files:
            workspace.FeedBlob(name, feeds[name])
    workspace.RunNetOnce(predict)
    fetch = request.get("fetch")
    if fetch == "*":
        fetch = []
        for op in predict.op:
            fetch.extend(name for name in op.output if name not in fetch)
    elif fetch is None:
        fetch = list(predict.external_output)
    values = {}
    for name in fetch:
        if workspace.HasBlob(name):
            value = workspace.FetchBlob(name)
            if isinstance(value, np.ndarray):
                values[name] = value
    np.savez(request["out"], **values)
    return {"fetched": sorted(values)}


def _translate(request):
    from caffe.proto import caffe_pb2
    from caffe2.python import caffe_translator
    from google.protobuf import text_format

    caffenet = caffe_pb2.NetParameter()
    pretrained = caffe_pb2.NetParameter()
    with open(request["prototxt"]) as handle:
        text_format.Merge(handle.read(), caffenet)
    with open(request["caffemodel"], "rb") as handle:
        pretrained.ParseFromString(handle.read())
    net, params = caffe_translator.TranslateModel(caffenet, pretrained, is_test=True)
    # What caffe_translator's command line does next: one input, one output.
    external_input = net.op[0].input[0]
    net.external_input.extend([external_input])
    net.external_input.extend([param.name for param in params.protos])
    net.external_output.extend([net.op[-1].output[0]])
    init = caffe_translator.ConvertTensorProtosToInitNet(params, external_input)
    with open(request["predict_net"], "wb") as handle:
        handle.write(net.SerializeToString())
    with open(request["init_net"], "wb") as handle:
        handle.write(init.SerializeToString())
    return {"input": external_input, "output": net.external_output[0]}


def _frontend(request):
    import onnx
    from caffe2.proto import caffe2_pb2
    from caffe2.python.onnx import frontend

    predict = _read_net(caffe2_pb2, request["predict_net"])
    init = _read_net(caffe2_pb2, request["init_net"])
    value_info = {name: (int(info[0]), tuple(info[1])) for name, info in request["value_info"].items()}
    model = frontend.caffe2_net_to_onnx_model(predict, init, value_info)
    onnx.save(model, request["out"])
    return {"opset": model.opset_import[0].version, "producer": model.producer_name}


def _versions(request):
    import google.protobuf
    import numpy
    import onnx
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "protobuf": google.protobuf.__version__,
            "numpy": numpy.__version__, "python": sys.version.split()[0]}


def _schemas(request):
    from caffe2.python import workspace

    limits = {}
    for op_type in request["operators"]:
        schema = workspace.C.OpSchema.get(op_type)
        if schema is not None:
            limits[op_type] = [schema.min_input, schema.max_input, schema.min_output, schema.max_output]
    return {"schemas": limits}


def _read_net(caffe2_pb2, path):
    net = caffe2_pb2.NetDef()
    with open(path, "rb") as handle:
        net.ParseFromString(handle.read())
    return net


COMMANDS = {"run": _run, "translate": _translate, "frontend": _frontend, "versions": _versions,
            "schemas": _schemas}


def _message(exc):
    text = str(exc).strip() or type(exc).__name__
    # Caffe2's enforce messages end with a C++ backtrace ("frame #0: ..."): keep the reason.
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("frame #")]
    return "{}: {}".format(type(exc).__name__, " ".join(line.strip() for line in lines if line.strip())[:2000])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reply-fd", type=int, required=True)
    args = parser.parse_args()
    reply = os.fdopen(args.reply_fd, "w", buffering=1)
    os.environ.setdefault("GLOG_minloglevel", "2")
    from caffe2.python import workspace

    workspace.GlobalInit(["caffe2", "--caffe2_log_level=2"])
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            answer = COMMANDS[request["cmd"]](request)
            answer["ok"] = True
        except Exception as exc:  # every failure goes back to the test as a sentence
            answer = {"ok": False, "error": _message(exc), "traceback": traceback.format_exc()[-4000:]}
        reply.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
