"""The machine model: per GPU kind its peak rates, and an efficiency per kind of work.

A job's time is the sum over the kinds of work it does of ``units / (peak rate x efficiency)``,
plus a start-up per job. Every constant has a source and is printed with the plan; any of
them is overridden with ``--set KEY=VALUE`` (e.g. ``--set net_Bps=1e9 --set eff.forward=0.5``),
and the efficiencies are replaced by calibrated ones (:mod:`wildmerge.plan.calibrate`) once
jobs have run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

#: kinds of work: what units each is counted in, and which peak rate serves it
KINDS: dict[str, tuple[str, str]] = {
    "startup": ("jobs", ""),  # imports, CUDA context, model construction: seconds per job
    "download": ("bytes", "net_Bps"),  # hub downloads
    "read": ("bytes", "storage_Bps"),  # checkpoint/model files read (pre-flight, merges, evaluation loads)
    "write": ("bytes", "storage_Bps"),  # merged models written
    "tensor": ("bytes", "mem_Bps"),  # elementwise merge arithmetic on float32 task vectors
    "svd": ("flop", "fp32_flops"),  # SVDs (float32)
    "forward": ("flop", "bf16_flops"),  # evaluation forward passes
}


@dataclass(frozen=True)
class Constant:
    value: float
    source: str


def _c(value: float, source: str) -> Constant:
    return Constant(float(value), source)


_H100 = "NVIDIA H100 SXM datasheet"
_ASSUMED = "assumed; replaced by calibration (python -m wildmerge.plan after jobs ran)"
_SITE = "assumed, site-dependent: override with --set"

#: GPU kinds: peak rates (per GPU) and start-up seconds. "cpu" is one core of a CPU-only
#: machine (the demo's local runs), where the efficiencies are calibrated from the demo.
MACHINES: dict[str, dict[str, Constant]] = {
    "h100": {
        "bf16_flops": _c(989e12, _H100 + ", BF16 tensor core, dense (half the sparsity figure)"),
        "fp32_flops": _c(67e12, _H100 + ", FP32 (non-tensor)"),
        "mem_Bps": _c(3.35e12, _H100 + ", HBM3"),
        "storage_Bps": _c(2e9, "node-local NVMe / parallel file system read, " + _SITE),
        "net_Bps": _c(0.5e9, "hub download per job (4 in parallel: profiles/slurm hub_downloads), " + _SITE),
        "startup_s": _c(60, "Python imports + CUDA context + model construction per job, " + _ASSUMED),
    },
    "h200": {
        "bf16_flops": _c(989e12, "NVIDIA H200 SXM datasheet (dense)"),
        "fp32_flops": _c(67e12, "NVIDIA H200 SXM datasheet, FP32"),
        "mem_Bps": _c(4.8e12, "NVIDIA H200 SXM datasheet, HBM3e"),
        "storage_Bps": _c(2e9, _SITE),
        "net_Bps": _c(0.5e9, _SITE),
        "startup_s": _c(60, _ASSUMED),
    },
    "a100": {
        "bf16_flops": _c(312e12, "NVIDIA A100 SXM datasheet (dense)"),
        "fp32_flops": _c(19.5e12, "NVIDIA A100 SXM datasheet, FP32"),
        "mem_Bps": _c(2.04e12, "NVIDIA A100 80GB SXM datasheet"),
        "storage_Bps": _c(2e9, _SITE),
        "net_Bps": _c(0.5e9, _SITE),
        "startup_s": _c(60, _ASSUMED),
    },
    "cpu": {
        "bf16_flops": _c(50e9, "one x86 core with AVX2 FMA at ~3 GHz (fp32; CPU jobs compute in float32), " + _SITE),
        "fp32_flops": _c(50e9, "as bf16_flops, " + _SITE),
        "mem_Bps": _c(10e9, "one core's DRAM bandwidth, " + _SITE),
        "storage_Bps": _c(1e9, "page cache / SSD, " + _SITE),
        "net_Bps": _c(0.1e9, _SITE),
        "startup_s": _c(1.0, "a job forked from the warm worker (wildmerge/warm.py), " + _ASSUMED),
    },
}

#: efficiency (share of the peak rate reached) per kind of work, before calibration
EFFICIENCY: dict[str, Constant] = {
    "startup": _c(1.0, "startup_s is in seconds"),
    "download": _c(1.0, _ASSUMED),
    "read": _c(0.5, _ASSUMED),
    "write": _c(0.5, _ASSUMED),
    "tensor": _c(0.3, _ASSUMED),
    # cuSOLVER/LAPACK SVDs are latency bound: a few % of the FP32 peak
    "svd": _c(0.03, "a few % of FP32 peak for a dense SVD (bidiagonalisation is memory bound), " + _ASSUMED),
    # lm-eval loglikelihood batches (padding, short sequences, batch_size auto): a third of the MFU of training
    "forward": _c(0.25, "model FLOP utilisation of padded inference batches, " + _ASSUMED),
}


@dataclass
class Machine:
    """One GPU kind with its constants, overrides and efficiencies applied."""

    kind: str
    rates: dict[str, Constant]
    eff: dict[str, Constant] = field(default_factory=lambda: dict(EFFICIENCY))

    @classmethod
    def of(cls, kind: str, overrides: dict[str, float] | None = None) -> Machine:
        if kind not in MACHINES:
            raise ValueError(f"--gpu {kind}: unknown kind; choose one of {sorted(MACHINES)}")
        m = cls(kind, dict(MACHINES[kind]))
        for key, value in (overrides or {}).items():
            m.set(key, value, "--set")
        return m

    def set(self, key: str, value: float, source: str) -> None:
        if key.startswith("eff."):
            kind = key[4:]
            if kind not in KINDS:
                raise ValueError(f"--set {key}: no kind of work '{kind}'; kinds: {sorted(KINDS)}")
            self.eff[kind] = Constant(float(value), source)
        elif key in self.rates:
            self.rates[key] = Constant(float(value), source)
        else:
            raise ValueError(f"--set {key}: no such constant; constants: {sorted(self.rates)} and eff.<kind>")

    def seconds_per_unit(self, kind: str) -> float:
        """Seconds one unit of ``kind`` takes at its efficiency."""
        rate_key = KINDS[kind][1]
        if kind == "startup":
            return self.rates["startup_s"].value / self.eff[kind].value
        return 1.0 / (self.rates[rate_key].value * self.eff[kind].value)

    def seconds(self, work: dict[str, float]) -> float:
        return sum(units * self.seconds_per_unit(k) for k, units in work.items() if units)

    def with_efficiency(self, eff: dict[str, float], source: str) -> Machine:
        m = replace(self, rates=dict(self.rates), eff=dict(self.eff))
        for k, v in eff.items():
            m.eff[k] = Constant(v, source)
        return m

    def constants(self) -> list[tuple[str, float, str]]:
        rows = [(k, c.value, c.source) for k, c in self.rates.items()]
        rows += [(f"eff.{k}", c.value, c.source) for k, c in self.eff.items() if k != "startup"]
        return rows


def parse_overrides(items: list[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--set {item}: expected KEY=NUMBER") from None
        if not sep:
            raise ValueError(f"--set {item}: expected KEY=NUMBER")
    return out
