"""Independent NumPy reference of the study's seven merge methods (float64).

Written from the method semantics of the authors' code as stated in issue 9
(kaganhitit11/mergekit @ 3f031f3, ``mergekit/subspace_helpers.py``) and the
paper's equations -- never from wildmerge's code.  Task vectors tau_i =
theta_i - theta_0 are formed in float32 (as any float32 merge forms them, so
TIES' top-k sees identical magnitudes) and then computed with in float64.

"Matrix" = a 2-D tensor whose name contains neither ``embed_tokens`` nor
``lm_head``; every other tensor is a "non-matrix".
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

Array = np.ndarray

SB_TARGETS = (
    ".self_attn.q_proj.weight",
    ".self_attn.k_proj.weight",
    ".self_attn.v_proj.weight",
    ".self_attn.o_proj.weight",
    ".mlp.gate_proj.weight",
    ".mlp.up_proj.weight",
    ".mlp.down_proj.weight",
)


def is_matrix(name: str, x: Array) -> bool:
    return x.ndim == 2 and "embed_tokens" not in name and "lm_head" not in name


def is_sb_target(name: str) -> bool:
    return any(t in name for t in SB_TARGETS)


def task_vectors(base: Array, experts: Sequence[Array]) -> list[Array]:
    b = base.astype(np.float32)
    return [(e.astype(np.float32) - b).astype(np.float64) for e in experts]


# -- update rules ------------------------------------------------------------


def ta_update(taus: Sequence[Array], normalize: bool) -> Array:
    total = np.sum(taus, axis=0)
    return total / len(taus) if normalize else total


def ties_update(taus: Sequence[Array], density: float, normalize: bool) -> Array:
    """Top-``density`` magnitudes per expert, elected sign = sign of the sum
    (>= 0 -> +), disjoint sum of the agreeing entries, divided element-wise by
    the number of agreeing experts when ``normalize``."""
    trimmed = []
    for t in taus:
        flat = np.abs(t).ravel()
        k = max(1, int(density * flat.size)) if density < 1 else flat.size
        keep = np.zeros(flat.size, dtype=bool)
        keep[np.argsort(-flat, kind="stable")[:k]] = True
        trimmed.append(np.where(keep.reshape(t.shape), t, 0.0))
    stack = np.stack(trimmed)
    elected = np.where(stack.sum(axis=0) >= 0, 1.0, -1.0)
    agree = np.sign(stack) == elected
    total = np.where(agree, stack, 0.0).sum(axis=0)
    if not normalize:
        return total
    return total / np.maximum(agree.sum(axis=0), 1)


def tsv_matrix_update(taus: Sequence[Array]) -> Array:
    """Per-task top k = max(1, r // T) triplets; Procrustes on U and V; Sigma kept."""
    T = len(taus)
    k = max(1, min(taus[0].shape) // T)
    us, ss, vs = [], [], []
    for t in taus:
        u, s, vt = np.linalg.svd(t, full_matrices=False)
        us.append(u[:, :k])
        ss.append(s[:k])
        vs.append(vt[:k].T)
    U, S, V = np.hstack(us), np.concatenate(ss), np.hstack(vs)
    pu, _, qut = np.linalg.svd(U, full_matrices=False)
    pv, _, qvt = np.linalg.svd(V, full_matrices=False)
    return (pu @ qut) @ np.diag(S) @ (pv @ qvt).T


def iso_c_matrix_update(taus: Sequence[Array]) -> Array:
    """U diag(mean(S)) V^T of the SVD of the *sum* of the task vectors."""
    u, s, vt = np.linalg.svd(np.sum(taus, axis=0), full_matrices=False)
    return u @ np.diag(np.full_like(s, s.mean())) @ vt


def boost(update: Array, beta: float) -> Array:
    """Cutoff = first index with cumsum(S)/sum(S) >= beta; later values raised to S[cutoff]."""
    u, s, vt = np.linalg.svd(update, full_matrices=False)
    share = np.cumsum(s) / s.sum()
    hits = np.nonzero(share >= beta)[0]
    cutoff = hits[0] if hits.size else s.size - 1
    return u @ np.diag(np.maximum(s, s[cutoff])) @ vt


# -- methods: (name, base, experts) -> merged tensor --------------------------


def task_arithmetic(name: str, base: Array, experts: Sequence[Array], lam: float = 1.0, normalize: bool = True) -> Array:
    return base + lam * ta_update(task_vectors(base, experts), normalize)


def ties(name: str, base: Array, experts: Sequence[Array], lam: float = 0.1, density: float = 0.1, normalize: bool = True) -> Array:
    return base + lam * ties_update(task_vectors(base, experts), density, normalize)


def model_stock(name: str, base: Array, experts: Sequence[Array]) -> Array:
    """Model Stock (Jang et al. 2024), whole tensor: t = n cos / (1 + (n-1) cos)."""
    w0 = base.astype(np.float64).ravel()
    offs = [e.astype(np.float64).ravel() - w0 for e in experts]
    cos = [
        offs[i] @ offs[j] / (np.linalg.norm(offs[i]) * np.linalg.norm(offs[j]))
        for i in range(len(offs))
        for j in range(i + 1, len(offs))
    ]
    c, n = float(np.mean(cos)), len(experts)
    t = n * c / (1 + (n - 1) * c)
    avg = np.mean([e.astype(np.float64) for e in experts], axis=0)
    return t * avg + (1 - t) * base


def tsv_merge(name: str, base: Array, experts: Sequence[Array], lam: float = 1.0) -> Array:
    taus = task_vectors(base, experts)
    update = tsv_matrix_update(taus) if is_matrix(name, base) else np.mean(taus, axis=0)
    return base + lam * update


def iso_c(name: str, base: Array, experts: Sequence[Array], lam: float = 1.0) -> Array:
    taus = task_vectors(base, experts)
    update = iso_c_matrix_update(taus) if is_matrix(name, base) else np.mean(taus, axis=0)
    return base + lam * update


def ta_subspace_boosting(name: str, base: Array, experts: Sequence[Array], lam: float = 1.0, normalize: bool = True, beta: float = 0.2) -> Array:
    update = lam * ta_update(task_vectors(base, experts), normalize)
    if is_sb_target(name):
        update = boost(update, beta)
    return base + update


def ties_subspace_boosting(
    name: str, base: Array, experts: Sequence[Array], lam: float = 0.1, density: float = 0.1, normalize: bool = True, beta: float = 0.2
) -> Array:
    update = lam * ties_update(task_vectors(base, experts), density, normalize)
    if is_sb_target(name):
        update = boost(update, beta)
    return base + update


#: How close a float32 merge comes to this reference (tests/test_methods.py,
#: tests/test_architectures.py): every weight within RTOL of its tensor's largest magnitude.
RTOL = 1e-5
#: TSV-M's weights in whole-model merges, whose task vectors are about half the size of the
#: weights: TSV-M keeps each task vector's top floor(r/T) singular vectors, and where the singular
#: values at that cut nearly coincide (tests/test_methods.py's fixture: 0.08722 vs 0.08704, a gap
#: of 1.5e-3 of the largest) which vectors a float32 SVD returns is ill-conditioned (error ~
#: float32 eps x |tau| / gap): measured 1.8e-5 (test_methods) and 2.1e-5 (test_architectures) of
#: the largest weight; the same kernel in float64 is within 2e-14 of this reference.
TSV_RTOL = 5e-5


#: The paper's seven methods at its hyperparameters (Sec. 3.2, 4.2, App. C):
#: mergekit method -> (wildmerge/mergekit params, reference).
PAPER: dict[str, tuple[dict, Callable[[str, Array, Sequence[Array]], Array]]] = {
    "task_arithmetic": ({"lambda": 1.0, "normalize": True}, task_arithmetic),
    "ties": ({"lambda": 0.1, "density": 0.1, "normalize": True}, ties),
    "model_stock": ({}, model_stock),
    "tsv_merge": ({"lambda": 1.0}, tsv_merge),
    "iso_c": ({"lambda": 1.0}, iso_c),
    "ta_subspace_boosting": ({"lambda": 1.0, "normalize": True, "beta": 0.2}, ta_subspace_boosting),
    "ties_subspace_boosting": (
        {"lambda": 0.1, "density": 0.1, "normalize": True, "beta": 0.2},
        ties_subspace_boosting,
    ),
}
