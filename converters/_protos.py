"""Message classes from our own .proto schemas.

The schemas are compiled to FileDescriptorSets (``*.desc``, see ``scripts/regen_protos.py``) and
turned into classes at import time, so no generated ``_pb2`` module ties us to one protobuf release.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


@lru_cache(maxsize=None)
def _pool_for(desc_path: str) -> descriptor_pool.DescriptorPool:
    fds = descriptor_pb2.FileDescriptorSet.FromString(Path(desc_path).read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for fdp in fds.file:
        pool.Add(fdp)
    return pool


def message_class(desc_path: Path, full_name: str) -> type:
    """Return the message class ``full_name`` (e.g. ``caffe.NetParameter``) from a descriptor set."""
    pool = _pool_for(str(desc_path))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))
