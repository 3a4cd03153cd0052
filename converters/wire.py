"""Protocol-buffer wire encoding for the few large fields zooforge writes by hand.

Copying hundreds of megabytes of weights into protobuf repeated fields is slow and doubles memory,
so large tensors are encoded straight from NumPy buffers: a length-delimited field is its tag,
its length as a varint, then its bytes.
"""

from __future__ import annotations

LENGTH_DELIMITED = 2


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def field_header(number: int, length: int) -> bytes:
    """Tag and length of a length-delimited field whose payload of ``length`` bytes follows."""
    return varint(number << 3 | LENGTH_DELIMITED) + varint(length)
