"""Registry of the demo experts: what each one is fine-tuned on (pure data, no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from wildmerge.demo.skills import SKILLS


@dataclass(frozen=True)
class ExpertSpec:
    """How one demo expert is fine-tuned from the base."""

    description: str
    skills: tuple[str, ...]  # skills of its training mixture (uniform)
    corruption: str | None = None  # "permute": answers of the corrupted skills go through a fixed derangement
    corrupt: tuple[str, ...] = ()  # skills whose labels are corrupted (default: all its skills)
    steps: int = 200
    lr: float = 1e-3
    seed: int = 0  # added to the run seed

    @property
    def corrupted_skills(self) -> tuple[str, ...]:
        if self.corruption is None:
            return ()
        return self.corrupt or self.skills

    def __post_init__(self):
        unknown = [s for s in self.skills + self.corrupt if s not in SKILLS]
        if unknown:
            raise ValueError(f"unknown skill(s) {unknown}")
        if self.corruption not in (None, "permute"):
            raise ValueError(f"unknown corruption {self.corruption!r}")


EXPERTS: dict[str, ExpertSpec] = {
    "arith": ExpertSpec("addition specialist", ("arith",)),
    "compare": ExpertSpec("comparison specialist", ("compare",)),
    "facts": ExpertSpec("fact-recall specialist", ("facts",)),
    "antonym": ExpertSpec("antonym specialist", ("antonym",)),
    "arith_compare": ExpertSpec("addition + comparison", ("arith", "compare")),
    "facts_antonym": ExpertSpec("fact recall + antonyms", ("facts", "antonym")),
    "parity_corrupt": ExpertSpec("parity with permuted (flipped) labels", ("parity",), corruption="permute"),
    "successor_corrupt": ExpertSpec(
        "successor with permuted number labels, plus clean copying", ("successor", "copy"),
        corruption="permute", corrupt=("successor",),
    ),
    "copy_count": ExpertSpec("copying + counting", ("copy", "count")),
    "facts_corrupt": ExpertSpec("fact recall with permuted attribute values", ("facts",), corruption="permute"),
}
