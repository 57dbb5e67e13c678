"""Subspace merging methods registered with mergekit's own method registry.

Importing this module registers four methods with ``mergekit.merge_methods``
(idempotently), after which they can be used by name anywhere mergekit
resolves ``merge_method`` -- in a ``MergeConfiguration``, ``run_merge``,
``merge_tensors`` or ``merge_state_dicts``:

Semantics follow the code that produced the paper's numbers, the authors'
mergekit fork (kaganhitit11/mergekit @ 3f031f3, ``mergekit/subspace_helpers.py``,
the helpers of mergekit PR #639).  With task vectors tau_i = theta_i - theta_0, a
"matrix" is a 2-D tensor whose name contains neither ``embed_tokens`` nor
``lm_head``; every other tensor (embeddings, LM head, norms, biases) is a
"non-matrix":

``tsv_merge``
    TSV-Merge (Gargiulo et al., 2025).  Matrix: per task the top
    ``k = max(1, r // T)`` singular triplets, U and V orthogonalised by
    orthogonal Procrustes, Sigma kept.  Non-matrix: mean of the tau_i.
``iso_c``
    Iso-C (Marczak et al., 2025).  Matrix: U diag(mean(S)) V^T from the SVD of
    the *sum* of the tau_i.  Non-matrix: the *mean* of the tau_i.
``ta_subspace_boosting`` / ``ties_subspace_boosting``
    The update of mergekit's own ``task_arithmetic`` resp. ``ties`` (computed by
    calling those registered methods: for TIES the disjoint sum of the
    sign-agreeing top-``density`` entries, divided element-wise by the number
    of agreeing experts when ``normalize``), times ``lambda``, then Subspace
    Boosting (Skorobogat et al., 2025) of the ``.self_attn.{q,k,v,o}_proj.weight``
    and ``.mlp.{gate,up,down}_proj.weight`` matrices: with c_j the cumulative
    singular-value share, the first j* with c_j >= ``beta`` is the cutoff and
    every later singular value is raised to S[j*] (SVDs in float32).

``lambda`` (default 1, the paper's value) scales the TSV-M / Iso-C update; the
authors' code applies none to those two, which is the same at lambda=1.
Per-model ``weight`` (default 1) scales each task vector (the authors' code
has none for TSV-M / Iso-C: all weights 1).

All four require a base model and compute in float32 whatever the load dtype;
the result is returned in the input dtype (mergekit's configured ``dtype``)
and mergekit casts it to ``out_dtype`` when one is configured.

Why not the ``merge_method`` decorator: it derives parameter names from the
kernel's Python signature, and the parameter these methods share with
mergekit's ``task_arithmetic``/``ties`` is called ``lambda`` -- a Python
keyword.  The methods are therefore built exactly as the decorator builds them
(a ``MergeMethodSpec`` wrapped in mergekit's ``FunctionalGroupMergeMethod``)
but with an explicitly written spec, and registered with
``mergekit.merge_methods.register``.

Weight names reach a group kernel as ``group.metadata.name`` (mergekit's
``WeightInfo.name``, e.g. ``model.layers.0.self_attn.q_proj.weight``); the
matrix / non-matrix split is by that name, as in the authors' code.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import torch
from pydantic import Field
from typing_extensions import Annotated

from mergekit.merge_methods import get as _get_method
from mergekit.merge_methods import register as _register
from mergekit.merge_methods import registered_methods as _registered_methods
from mergekit.merge_methods.base import (
    BasePolicy,
    FunctionalGroupMergeMethod,
    InputContract,
    MergeMethod,
    MergeMethodSpec,
    ParameterScope,
    ParameterSpec,
    TensorEntry,
    TensorGroup,
)

__all__ = [
    "METHOD_NAMES",
    "SUBSPACE_BOOST_TARGETS",
    "EMBEDDING_NAME_PARTS",
    "is_embedding_weight",
    "is_matrix",
    "is_subspace_boost_target",
    "tsv_delta",
    "iso_c_delta",
    "subspace_boost",
    "register_methods",
]

METHOD_NAMES = (
    "tsv_merge",
    "iso_c",
    "ta_subspace_boosting",
    "ties_subspace_boosting",
)

#: Substrings of a weight name marking token embeddings / LM heads, which the
#: SVD-based methods leave to plain task arithmetic.
EMBEDDING_NAME_PARTS = ("embed_tokens", "lm_head")

#: Name parts of the matrices Subspace Boosting is applied to (the authors' ``keys_to_eval``).
SUBSPACE_BOOST_TARGETS = (
    ".self_attn.q_proj.weight",
    ".self_attn.k_proj.weight",
    ".self_attn.v_proj.weight",
    ".self_attn.o_proj.weight",
    ".mlp.gate_proj.weight",
    ".mlp.up_proj.weight",
    ".mlp.down_proj.weight",
)

_EPS = 1e-8


# ---------------------------------------------------------------------------
# Name predicates
# ---------------------------------------------------------------------------


def is_embedding_weight(name: Optional[str]) -> bool:
    """True for weights whose name contains ``embed_tokens`` or ``lm_head``."""
    return bool(name) and any(part in name for part in EMBEDDING_NAME_PARTS)


def is_matrix(name: Optional[str], tensor: torch.Tensor) -> bool:
    """A 2-D tensor that is not an embedding or LM head (the authors' test, by name)."""
    return tensor.dim() == 2 and not is_embedding_weight(name)


def is_subspace_boost_target(name: Optional[str]) -> bool:
    """True for attention q/k/v/o and MLP gate/up/down projection weights."""
    return bool(name) and any(part in name for part in SUBSPACE_BOOST_TARGETS)


# ---------------------------------------------------------------------------
# Tensor operations (float32, 2-D), usable on their own
# ---------------------------------------------------------------------------


def tsv_delta(deltas: Sequence[torch.Tensor]) -> torch.Tensor:
    """TSV-Merge update U_perp S V_perp^T of 2-D task vectors (Gargiulo et al. 2025)."""
    if not deltas:
        raise ValueError("tsv_delta needs at least one task vector")
    T = len(deltas)
    rows, cols = deltas[0].shape
    k = max(1, min(rows, cols) // T)
    us, ss, vhs = [], [], []
    for delta in deltas:
        u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
        us.append(u[:, :k])
        ss.append(s[:k])
        vhs.append(vh[:k, :])
        del u, s, vh
    u_cat = torch.cat(us, dim=1)  # rows x T*k
    s_cat = torch.cat(ss)  # T*k   (block-diagonal Sigma)
    vh_cat = torch.cat(vhs, dim=0)  # T*k x cols  (= V^T)
    del us, ss, vhs
    # Orthogonal Procrustes: nearest (semi-)orthogonal factor P Q^T of each basis.
    p_u, _, qh_u = torch.linalg.svd(u_cat, full_matrices=False)
    u_perp = p_u @ qh_u
    # svd(V^T) = Q_V D P_V^T, so its polar factor is (P_V Q_V^T)^T = V_perp^T.
    p_v, _, qh_v = torch.linalg.svd(vh_cat, full_matrices=False)
    vh_perp = p_v @ qh_v
    return (u_perp * s_cat) @ vh_perp


def iso_c_delta(delta: torch.Tensor) -> torch.Tensor:
    """Iso-C: replace all singular values of a 2-D update by their mean."""
    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    return s.mean() * (u @ vh)


def subspace_boost(delta: torch.Tensor, beta: float) -> torch.Tensor:
    """Subspace Boosting of a 2-D update.

    With c_j = sum_{i<=j} s_i / sum_i s_i and j* the first index with
    c_j >= beta, all s_j for j > j* are raised to s_{j*}.  A zero update is
    returned unchanged; if rounding keeps every c_j below beta (beta ~ 1),
    j* is the last index, i.e. nothing is boosted.
    """
    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    total = s.sum()
    if not torch.isfinite(total) or total <= 0:
        return delta.float().clone()
    ratio = torch.cumsum(s, dim=0) / total
    hits = torch.nonzero(ratio >= beta)
    j_star = int(hits[0, 0]) if hits.numel() else s.numel() - 1
    s_boosted = s.clone()
    s_boosted[j_star + 1 :] = s[j_star]
    return (u * s_boosted) @ vh


# ---------------------------------------------------------------------------
# Group kernels
# ---------------------------------------------------------------------------


def _weighted_task_vectors(
    group: TensorGroup, weight: Any
) -> tuple[torch.Tensor, list[torch.Tensor], list[float]]:
    base = group.base.tensor.float()
    weights = [float(weight[entry.id]) for entry in group.non_base]
    deltas = [
        (entry.tensor.float() - base) * w for entry, w in zip(group.non_base, weights)
    ]
    return base, deltas, weights


def _mean(deltas: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Weighted mean of task vectors (the plain mean at unit weights)."""
    mixed = torch.stack(list(deltas)).sum(dim=0)
    divisor = float(sum(weights))
    return mixed / divisor if abs(divisor) >= _EPS else mixed


def _tsv_merge(group: TensorGroup, /, **params: Any) -> torch.Tensor:
    out_dtype = group.base.tensor.dtype
    if not group.non_base:
        return group.base.tensor
    base, deltas, weights = _weighted_task_vectors(group, params["weight"])
    if is_matrix(group.metadata.name, base):
        merged = tsv_delta(deltas)
    else:
        merged = _mean(deltas, weights)
    return (base + params["lambda"] * merged).to(out_dtype)


def _iso_c(group: TensorGroup, /, **params: Any) -> torch.Tensor:
    out_dtype = group.base.tensor.dtype
    if not group.non_base:
        return group.base.tensor
    base, deltas, weights = _weighted_task_vectors(group, params["weight"])
    if is_matrix(group.metadata.name, base):
        merged = iso_c_delta(torch.stack(deltas).sum(dim=0))
    else:
        merged = _mean(deltas, weights)
    return (base + params["lambda"] * merged).to(out_dtype)


def _subspace_boosting_kernel(
    inner_name: str,
) -> Callable[..., torch.Tensor]:
    def kernel(group: TensorGroup, /, **params: Any) -> torch.Tensor:
        out_dtype = group.base.tensor.dtype
        if not group.non_base:
            return group.base.tensor
        inner = _get_method(inner_name)
        base = group.base.tensor.float()
        # Feed mergekit's own task_arithmetic/ties kernel a zero base and the
        # float32 task vectors: it then returns exactly its merged task vector
        # (sparsification, sign consensus, weighting, normalisation, lambda),
        # which is then boosted, in this order as in the authors' code.
        delta_group = TensorGroup(
            entries=(
                TensorEntry(id=group.base.id, tensor=torch.zeros_like(base), is_base=True),
                *(
                    TensorEntry(id=entry.id, tensor=entry.tensor.float() - base)
                    for entry in group.non_base
                ),
            ),
            metadata=group.metadata,
        )
        inner_params = {p.name: params[p.name] for p in inner.spec.parameters}
        merged = inner.merge_group(delta_group, **inner_params).float()
        del delta_group
        if merged.dim() == 2 and is_subspace_boost_target(group.metadata.name):
            merged = subspace_boost(merged, params["beta"])
        return (base + merged).to(out_dtype)

    kernel.__name__ = f"{inner_name}_subspace_boosting"
    return kernel


# ---------------------------------------------------------------------------
# Specs and registration
# ---------------------------------------------------------------------------

_CONTRACT = InputContract(base=BasePolicy.REQUIRED)


def _lambda_spec() -> ParameterSpec:
    return ParameterSpec(
        "lambda",
        float,
        ParameterScope.SHARED,
        default=1.0,
        description="Scale of the merged update: W_0 + lambda * Delta",
    )


def _weight_spec() -> ParameterSpec:
    return ParameterSpec(
        "weight",
        float,
        ParameterScope.NON_BASE,
        default=1.0,
        description="Per-model coefficient on its task vector",
    )


_BETA = ParameterSpec(
    "beta",
    Annotated[float, Field(ge=0.0, le=1.0)],
    ParameterScope.SHARED,
    default=0.2,
    description="Cumulative singular-value energy after which values are boosted",
)


def _build_methods() -> list[MergeMethod]:
    methods: list[MergeMethod] = [
        FunctionalGroupMergeMethod(
            MergeMethodSpec(
                name="tsv_merge",
                pretty_name="TSV-Merge",
                reference_url="https://arxiv.org/abs/2412.00081",
                contract=_CONTRACT,
                parameters=(_lambda_spec(), _weight_spec()),
            ),
            _tsv_merge,
        ),
        FunctionalGroupMergeMethod(
            MergeMethodSpec(
                name="iso_c",
                pretty_name="Iso-C",
                reference_url="https://arxiv.org/abs/2502.04959",
                contract=_CONTRACT,
                parameters=(_lambda_spec(), _weight_spec()),
            ),
            _iso_c,
        ),
    ]
    for inner_name, name, pretty in (
        ("task_arithmetic", "ta_subspace_boosting", "Task Arithmetic + Subspace Boosting"),
        ("ties", "ties_subspace_boosting", "TIES + Subspace Boosting"),
    ):
        inner = _get_method(inner_name)
        parameters = tuple(
            # mergekit's task_arithmetic/ties require `weight`; default it to 1.
            dataclasses.replace(p, default=1.0) if p.name == "weight" else p
            for p in inner.spec.parameters
        ) + (_BETA,)
        methods.append(
            FunctionalGroupMergeMethod(
                MergeMethodSpec(
                    name=name,
                    pretty_name=pretty,
                    reference_url="https://arxiv.org/abs/2506.16506",
                    contract=inner.spec.contract,
                    optional_tensor_policy=inner.spec.optional_tensor_policy,
                    parameters=parameters,
                ),
                _subspace_boosting_kernel(inner_name),
            )
        )
    return methods


def register_methods() -> tuple[str, ...]:
    """Register the methods with mergekit unless already registered; return their names."""
    registered = {m.spec.name for m in _registered_methods()}
    for method in _build_methods():
        if method.spec.name not in registered:
            _register(method)
    return METHOD_NAMES


register_methods()
