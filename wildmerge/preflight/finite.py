"""NaN/Inf in checkpoint weights, read one tensor at a time (safetensors ``safe_open``).

A checkpoint with a non-finite tensor still loads and scores (near chance), so it would
enter the tables silently; pre-flight and the merge step use this to stop instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["NonFiniteWeightsError", "nonfinite_tensors", "explain_nonfinite_merge"]


class NonFiniteWeightsError(FloatingPointError):
    """A checkpoint (or a merge) holds NaN/Inf; the message names it and the tensors."""


def _safetensors_files(model_dir: Path) -> list[Path]:
    return sorted(model_dir.glob("*.safetensors"))


def _describe(name: str, tensor) -> str | None:  # noqa: ANN001 (torch.Tensor)
    import torch

    if not tensor.is_floating_point() or tensor.numel() == 0:
        return None
    lo, hi = torch.aminmax(tensor)  # NaN/Inf whenever any element is: one cheap reduction
    if bool(torch.isfinite(lo) & torch.isfinite(hi)):
        return None
    nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
    return f"{name} ({nan} NaN, {inf} Inf of {tensor.numel()})"


def nonfinite_tensors(model_dir: str | Path, names: Iterable[str] | None = None) -> list[str]:
    """'<tensor> (k NaN, j Inf of n)' for every tensor of ``model_dir`` with NaN/Inf
    (only ``names`` if given); one tensor is in memory at a time."""
    from safetensors import safe_open

    wanted = set(names) if names is not None else None
    bad: list[str] = []
    for file in _safetensors_files(Path(model_dir)):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not iterable)
                if wanted is not None and name not in wanted:
                    continue
                found = _describe(name, handle.get_tensor(name))
                if found:
                    bad.append(found)
    return bad


def explain_nonfinite_merge(bad_tensors: list[str], base: str | Path, experts: Mapping[str, str | Path]) -> str:
    """Which inputs of the offending merged tensors are non-finite: the experts named, or
    none (the method / parameters / dtype overflowed on finite inputs)."""
    names = [t.split(" (")[0] for t in bad_tensors]
    culprits = {e: nonfinite_tensors(d, names) for e, d in experts.items()}
    culprits = {e: t for e, t in culprits.items() if t}
    base_bad = nonfinite_tensors(base, names)
    if culprits or base_bad:
        parts = [f"expert '{e}' ({'; '.join(t[:3])})" for e, t in sorted(culprits.items())]
        if base_bad:
            parts.append(f"the base ({'; '.join(base_bad[:3])})")
        return "the non-finite values come from " + ", ".join(parts) + ": fix or drop that checkpoint"
    return (
        f"the inputs of these tensors are finite in the base and in every expert ({', '.join(sorted(experts))}): "
        f"the method's parameters or the merge dtype overflow; lower lambda or use merge.dtype: float32"
    )
