"""The CPU this process runs on: its model name and the vector extensions that decide which kernels win."""

import os
import platform
from dataclasses import dataclass
from pathlib import Path

VECTOR_EXTENSIONS = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512F",
    "avx512_vnni": "AVX-512 VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "avx512_fp16": "AVX-512 FP16",
    "avx_vnni": "AVX-VNNI",
    "amx_tile": "AMX",
    "amx_bf16": "AMX BF16",
    "amx_int8": "AMX INT8",
}
"""``/proc/cpuinfo`` flag -> the name docs and benchmark reports use, for the extensions that change
which convolution kernels are fastest."""

BFLOAT16_EXTENSIONS = ("AVX-512 BF16", "AMX BF16")
"""The `VECTOR_EXTENSIONS` names that give oneDNN bfloat16 arithmetic, where bfloat16 training pays."""


@dataclass(frozen=True)
class CpuIdentity:
    """What a speed measurement on this CPU is valid for.

    Attributes:
        model: the model name, e.g. ``AMD EPYC 7B13`` (``/proc/cpuinfo``), else the platform's.
        extensions: the `VECTOR_EXTENSIONS` names the CPU has, in that table's order.
        logical_cpus: CPUs this process may run on.
        onednn_max_isa: ``ONEDNN_MAX_CPU_ISA`` if set: it caps the instructions TensorFlow's oneDNN uses.
    """

    model: str
    extensions: tuple[str, ...]
    logical_cpus: int
    onednn_max_isa: str = ""

    @property
    def bfloat16_units(self) -> tuple[str, ...]:
        """The extensions that give oneDNN bfloat16 arithmetic here (AVX-512 BF16, AMX BF16), where
        bfloat16 pays; empty where it does not."""
        return tuple(name for name in BFLOAT16_EXTENSIONS if name in self.extensions)

    def key(self) -> str:
        """One string naming all of it, for caches of per-CPU measurements."""
        parts = [self.model, "+".join(self.extensions) or "no-avx2", f"{self.logical_cpus} cpus"]
        if self.onednn_max_isa:
            parts.append(f"ONEDNN_MAX_CPU_ISA={self.onednn_max_isa}")
        return " | ".join(parts)


def usable_cpus() -> int:
    """How many CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def this_cpu(cpuinfo: str | None = None) -> CpuIdentity:
    """The CPU this process runs on (`cpuinfo`: the text of ``/proc/cpuinfo``, read if not given)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = platform.processor() or platform.machine(), set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name" and value.strip():
            model = value.strip()
        elif name.strip() == "flags":
            flags = set(value.split())
            break
    extensions = tuple(label for flag, label in VECTOR_EXTENSIONS.items() if flag in flags)
    return CpuIdentity(model=model, extensions=extensions, logical_cpus=usable_cpus(),
                       onednn_max_isa=os.environ.get("ONEDNN_MAX_CPU_ISA", ""))
