"""Device and precision choice, shared by the Stylizer, the CLI, benchmarks and training."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

import torch

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Debian's libjemalloc2 on either architecture (the Makefile looks in the same two places)
_JEMALLOC_PATHS = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2")
JEMALLOC = next((p for p in _JEMALLOC_PATHS if Path(p).exists()), _JEMALLOC_PATHS[0])
# jemalloc told to keep freed pages: glibc returns and re-faults the large conv buffers every step
JEMALLOC_ENV = {"LD_PRELOAD": JEMALLOC, "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1,retain:true"}


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmul/conv run natively (about 2x fp32 here); otherwise emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return (" avx512_bf16" in flags or " amx_bf16" in flags) and not isa_capped_below_bf16()


# oneDNN's ISA names that include native bf16; a cap below them (ONEDNN_MAX_CPU_ISA=AVX2, say) makes
# bf16 emulated even on a CPU that has it, so the service must choose fp32 as on an AVX2-only CPU.
_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX512_CORE_AMX", "AVX10_1_512_AMX",
              "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "ALL", "DEFAULT")


def isa_capped_below_bf16() -> bool:
    """True when ONEDNN_MAX_CPU_ISA keeps oneDNN below the instructions that run bf16 natively."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).strip().upper()
    return bool(cap) and cap not in _BF16_ISAS


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else is passed to torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available")
    return dev


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """'auto' -> fp16 on CUDA, bf16 on CPUs with native bf16, else fp32."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else torch.float32
    if precision == "int8":
        raise ValueError("int8 runs on the onnxruntime backend (--backend onnxruntime, ADAIN_BACKEND=onnxruntime)")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("fp16 is for GPUs; use bf16 or fp32 on the CPU")
    return PRECISIONS[precision]


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for training and evaluation (None = fp32). Auto: bf16 on GPUs that have it
    (no loss scaling needed), fp16 on older GPUs, bf16 on CPUs with native bf16."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, {', '.join(PRECISIONS)}; got {precision!r}")
    return None if precision == "fp32" else PRECISIONS[precision]


def precision_name(dtype: torch.dtype) -> str:
    return next(k for k, v in PRECISIONS.items() if v == dtype)


def reexec_with_jemalloc(argv: list[str]) -> None:
    """On the CPU, restart this process as ``python *argv`` under jemalloc (2-4x faster training and
    evaluation on these VMs, see ENVIRONMENT.md). No-op on CUDA machines, when jemalloc is missing or
    already loaded, or with ADAIN_NO_JEMALLOC=1."""
    if os.environ.get("ADAIN_NO_JEMALLOC") or "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    if not Path(JEMALLOC).exists() or torch.cuda.is_available():
        return
    os.execve(sys.executable, [sys.executable, *argv], {**os.environ, **JEMALLOC_ENV})
