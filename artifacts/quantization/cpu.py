"""The CPU that computed a release's quantized outputs, as far as onnxruntime's int8 kernels care.

MLAS picks its integer GEMM and convolution kernels from the CPU's features when onnxruntime
loads: AMX, AVX512-VNNI or AVX-VNNI accumulate uint8 x int8 products in int32, while plain AVX2
and AVX512BW add pairs of them in a saturating int16 first (VPMADDUBSW), so int8 test data made on
one kind of CPU need not reproduce bit for bit on another (onnx/models #526, #533, #568). A release
records :func:`cpu_record` beside its quantized outputs so a mismatch can be traced to the machine.

On Linux the facts come from ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``); elsewhere, or when
the file cannot be read, every field says ``"unknown"``.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["CPUINFO", "INT8_FLAGS", "UNKNOWN", "best_int8_extension", "cpu_record", "parse_cpuinfo"]

CPUINFO = Path("/proc/cpuinfo")
UNKNOWN = "unknown"

# The flags (as Linux names them) that select onnxruntime's int8 kernels, weakest first per family.
INT8_FLAGS = (
    "sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "amx_tile", "amx_int8",                       # x86
    "asimd", "asimddp", "i8mm", "sve", "sve2",   # Arm (aarch64 "Features")
)
# How uint8 x int8 products are summed by the kernels each extension selects.
ACCUMULATION = {"amx_int8": "int32", "avx512_vnni": "int32", "avx_vnni": "int32", "i8mm": "int32",
                "asimddp": "int32", "avx512bw": "int16 pairs, saturating (VPMADDUBSW)",
                "avx2": "int16 pairs, saturating (VPMADDUBSW)", "sse4_1": "int16 pairs, saturating (PMADDUBSW)"}
# Most capable first: the first present names the kind of int8 accumulation the CPU offers.
_EXTENSIONS = ("amx_int8", "avx512_vnni", "avx_vnni", "avx512bw", "avx2", "sse4_1", "i8mm", "asimddp", "asimd")


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor's ``key: value`` lines of a ``/proc/cpuinfo`` text (keys lower-cased)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the end of the first processor's block
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def best_int8_extension(flags: Mapping[str, bool]) -> str:
    """The most capable int8 extension among ``flags`` ("avx512_vnni", "avx2", ...), or "none"."""
    return next((name for name in _EXTENSIONS if flags.get(name)), "none")


def _onnxruntime_version() -> str:
    try:
        return metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_record(cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """Vendor, model name, family/model/stepping, each of :data:`INT8_FLAGS` (true or false), the
    best int8 extension, how its kernels sum uint8 x int8 products, and onnxruntime's version; ``"unknown"`` for what this system does not say."""
    record: dict[str, Any] = {"source": UNKNOWN, "machine": platform.machine() or UNKNOWN,
                              "vendor": UNKNOWN, "model_name": UNKNOWN, "family": UNKNOWN, "model": UNKNOWN,
                              "stepping": UNKNOWN, "int8_flags": UNKNOWN, "best_int8_extension": UNKNOWN,
                              "u8s8_accumulation": UNKNOWN,
                              "onnxruntime": _onnxruntime_version()}
    try:
        fields = parse_cpuinfo(cpuinfo.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return record
    raw = fields.get("flags", fields.get("features"))
    if raw is None:
        return record
    present = set(raw.split())
    flags = {name: name in present for name in INT8_FLAGS}
    record.update(
        source=str(cpuinfo),
        vendor=fields.get("vendor_id", fields.get("cpu implementer", UNKNOWN)),
        model_name=fields.get("model name", fields.get("cpu part", UNKNOWN)),
        family=fields.get("cpu family", fields.get("cpu architecture", UNKNOWN)),
        model=fields.get("model", fields.get("cpu variant", UNKNOWN)),
        stepping=fields.get("stepping", fields.get("cpu revision", UNKNOWN)),
        int8_flags=flags,
        best_int8_extension=best_int8_extension(flags),
        u8s8_accumulation=ACCUMULATION.get(best_int8_extension(flags), UNKNOWN),
    )
    return record
