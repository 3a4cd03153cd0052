#!/usr/bin/env python3
"""Compile zooforge's .proto schemas into FileDescriptorSet files.

    python scripts/regen_protos.py          # rewrite the .desc files
    python scripts/regen_protos.py --check  # exit 1 if any .desc is stale

Outputs (binary FileDescriptorSet, no source info, no imports):

    converters/caffe/proto/caffe.desc    from converters/caffe/proto/caffe.proto
    converters/caffe2/proto/caffe2.desc  from converters/caffe2/proto/caffe2.proto

Runtime code loads these through google.protobuf.descriptor_pool and
message_factory.GetMessageClass, so no generated *_pb2.py modules exist and
the installed protobuf version never has to match a code generator.

The compiler is grpc_tools.protoc (pip package grpcio-tools), imported
in-process.  The files are compiled with ``converters/`` as the include
root, so their names inside the descriptors are ``caffe/proto/caffe.proto``
and ``caffe2/proto/caffe2.proto``.  The set is parsed back and re-serialized
with deterministic=True, so the same schema always gives the same bytes.
"""

import argparse
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE_ROOT = os.path.join(REPO, "converters")

# (path relative to INCLUDE_ROOT, output .desc relative to INCLUDE_ROOT)
SCHEMAS = [
    ("caffe/proto/caffe.proto", "caffe/proto/caffe.desc"),
    ("caffe2/proto/caffe2.proto", "caffe2/proto/caffe2.desc"),
]


def compile_schema(proto_rel):
    """Return the deterministic FileDescriptorSet bytes for one .proto."""
    from grpc_tools import protoc
    from google.protobuf import descriptor_pb2

    with tempfile.TemporaryDirectory(prefix="zooforge-protoc-") as work:
        raw_out = os.path.join(work, "out.desc")
        args = [
            "protoc",
            "--proto_path=" + INCLUDE_ROOT,
            "--descriptor_set_out=" + raw_out,
            proto_rel,
        ]
        status = protoc.main(args)
        if status != 0:
            raise SystemExit("protoc failed (exit %d) on %s" % (status, proto_rel))
        with open(raw_out, "rb") as handle:
            raw = handle.read()

    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(raw)
    if len(fds.file) != 1 or fds.file[0].name != proto_rel:
        raise SystemExit("unexpected descriptor set contents for " + proto_rel)
    if fds.file[0].HasField("source_code_info"):
        fds.file[0].ClearField("source_code_info")
    return fds.SerializeToString(deterministic=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if a .desc differs from a fresh compile",
    )
    opts = parser.parse_args(argv)

    stale = []
    for proto_rel, desc_rel in SCHEMAS:
        data = compile_schema(proto_rel)
        desc_path = os.path.join(INCLUDE_ROOT, desc_rel)
        try:
            with open(desc_path, "rb") as handle:
                current = handle.read()
        except FileNotFoundError:
            current = None
        shown = os.path.relpath(desc_path, REPO)
        if current == data:
            print("up to date: %s (%d bytes)" % (shown, len(data)))
            continue
        if opts.check:
            stale.append(shown)
            print("STALE: %s" % shown)
            continue
        tmp_path = desc_path + ".tmp"
        with open(tmp_path, "wb") as handle:
            handle.write(data)
        os.replace(tmp_path, desc_path)
        print("wrote: %s (%d bytes)" % (shown, len(data)))

    if stale:
        print("run: python scripts/regen_protos.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
