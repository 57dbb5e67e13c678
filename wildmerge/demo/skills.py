"""The synthetic world of the demo zoo: vocabulary, skills, examples, eval choices.

Everything here is pure Python and deterministic. The *world* (the lexicon of antonym
pairs, the entity -> attribute fact table, the vocabulary) is fixed by ``WORLD_SEED`` and
does not depend on any run seed, so a base trained with one seed and tasks made with
another describe the same world. Run seeds only choose which examples are drawn.

Each skill turns a random draw into an :class:`Example` (``prompt`` -> ``answer``, both
whitespace-separated words of the fixed vocabulary) and, for evaluation, into a
multiple-choice item (the answer plus distractors).

Two kinds of skills:

* *algorithmic* skills (``heldout=True``: successor, compare, copy, count)
  have large prompt spaces. A fixed, seed-independent quarter of the prompts
  (:func:`is_reserved`) is reserved for evaluation and never used for training, so the
  eval sets measure generalisation to unseen prompts.
* *knowledge* skills (``heldout=False``: arith, facts, antonym, parity) are tables of
  100 entries that must be memorised (numbers and words are atomic tokens, so an unseen
  entry cannot be inferred); they are evaluated on the trained table itself.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Callable, Sequence

WORLD_SEED = 20240607

# ----------------------------------------------------------------------- vocabulary

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
PAD, BOS, EOS, UNK = SPECIAL_TOKENS
N_NUMBERS = 100  # number tokens "0" .. "99"
NUMBERS = [str(i) for i in range(N_NUMBERS)]
SYMBOLS = list("abcdefghijkl")  # copy / count alphabet
COUNT_SYMBOLS = SYMBOLS[:6]
KEYWORDS = [":", "+", "=", "up", "down", "max", "parity", "even", "odd", "copy", "count", "in",
            "opposite", "of", "is", "color", "home"]
COLORS = ["red", "blue", "green", "gold", "gray", "pink", "teal", "plum"]
CITIES = ["rome", "oslo", "lima", "kiev", "doha", "baku", "riga", "suva"]
RELATIONS = {"color": COLORS, "home": CITIES}
N_ANTONYM_PAIRS = 50
N_ENTITIES = 50

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "ch", "sh", "tr", "bl"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
_CODAS = ["", "n", "r", "s", "k", "m"]


def _pseudowords(rng: random.Random, n: int, taken: set[str], syllables: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) + rng.choice(_CODAS)
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


def _build_world():
    rng = random.Random(WORLD_SEED)
    taken = set(SPECIAL_TOKENS + NUMBERS + SYMBOLS + KEYWORDS + COLORS + CITIES)
    words = _pseudowords(rng, 2 * N_ANTONYM_PAIRS, taken, 2)
    antonyms = [(words[2 * i], words[2 * i + 1]) for i in range(N_ANTONYM_PAIRS)]
    entities = [w.capitalize() for w in _pseudowords(rng, N_ENTITIES, taken, 3)]
    facts = {}
    for rel, values in RELATIONS.items():
        for e in entities:
            facts[(rel, e)] = rng.choice(values)
    return words, antonyms, entities, facts


LEXICON, ANTONYM_PAIRS, ENTITIES, FACTS = _build_world()
ANTONYM = {**{a: b for a, b in ANTONYM_PAIRS}, **{b: a for a, b in ANTONYM_PAIRS}}

VOCAB: list[str] = SPECIAL_TOKENS + KEYWORDS + NUMBERS + SYMBOLS + COLORS + CITIES + LEXICON + ENTITIES
assert len(set(VOCAB)) == len(VOCAB), "vocabulary has duplicates"
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}

# ----------------------------------------------------------------------- examples

RESERVED_MOD = 4  # 1 in RESERVED_MOD prompts of a held-out skill is eval-only


def is_reserved(prompt: str) -> bool:
    """Whether ``prompt`` belongs to the (seed-independent) eval-only part of its skill."""
    # a cryptographic hash: CRCs are linear over GF(2) and would correlate with labels
    # such as parity (the low bit of a digit's ASCII code)
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "little") % RESERVED_MOD == 0


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str  # one or more vocabulary words


@dataclass(frozen=True)
class Skill:
    name: str
    description: str
    heldout: bool
    sample: Callable[[random.Random], Example]  # one random example (train or eval part)
    distractors: Callable[[Example, random.Random], list[str]]  # wrong choices for eval
    answer_space: Sequence[str]  # words an answer is made of (for label corruption)
    table: Callable[[], list[Example]] | None = None  # every example, for table skills

    def train_example(self, rng: random.Random) -> Example:
        while True:
            ex = self.sample(rng)
            if not (self.heldout and is_reserved(ex.prompt)):
                return ex


def _near(value: int, lo: int, hi: int, rng: random.Random, k: int = 3, spread: int = 2) -> list[str]:
    cands = [value + d for d in range(-spread, spread + 1) if d and lo <= value + d <= hi]
    while len(cands) < k:  # near the ends of the range
        spread += 1
        cands = [value + d for d in range(-spread, spread + 1) if d and lo <= value + d <= hi]
    return [str(v) for v in rng.sample(cands, k)]


# arith: "7 + 5 =" -> 12, the single-digit addition table (memorised)
def _arith_table():
    return [Example(f"{a} + {b} =", str(a + b)) for a in range(10) for b in range(10)]


# successor: "up 4 5 6 :" -> 7 ; "down 9 8 :" -> 7
def _successor(rng):
    k = rng.randint(1, 4)
    if rng.random() < 0.5:
        start = rng.randrange(N_NUMBERS - k)
        seq = list(range(start, start + k + 1))
        word = "up"
    else:
        start = rng.randrange(k, N_NUMBERS)
        seq = list(range(start, start - k - 1, -1))
        word = "down"
    return Example(f"{word} {' '.join(map(str, seq[:-1]))} :", str(seq[-1]))


# compare: "max 12 40 7 :" -> 40
def _compare(rng):
    nums = rng.sample(range(N_NUMBERS), 3)
    return Example(f"max {' '.join(map(str, nums))} :", str(max(nums)))


# parity: "parity 37 :" -> odd (a property of each number, memorised)
def _parity_table():
    return [Example(f"parity {n} :", "odd" if n % 2 else "even") for n in range(N_NUMBERS)]


# copy: "copy c f a :" -> "c f a"
def _copy(rng):
    seq = [rng.choice(SYMBOLS) for _ in range(rng.randint(3, 5))]
    return Example(f"copy {' '.join(seq)} :", " ".join(seq))


def _copy_distractors(ex, rng):
    seq = ex.answer.split()
    out: set[str] = set()
    while len(out) < 3:
        s = list(seq)
        kind = rng.randrange(3)
        if kind == 0:  # replace one symbol
            i = rng.randrange(len(s))
            s[i] = rng.choice([c for c in SYMBOLS if c != s[i]])
        elif kind == 1:  # swap two positions
            i, j = rng.sample(range(len(s)), 2)
            s[i], s[j] = s[j], s[i]
        else:  # drop the last one, repeat the first
            s = [s[0]] + s[:-1]
        cand = " ".join(s)
        if cand != ex.answer:
            out.add(cand)
    return sorted(out)


# count: "count b in a b c b b :" -> 3
def _count(rng):
    seq = [rng.choice(COUNT_SYMBOLS) for _ in range(rng.randint(3, 7))]
    target = rng.choice(COUNT_SYMBOLS)
    return Example(f"count {target} in {' '.join(seq)} :", str(seq.count(target)))


# antonym: "opposite of zubo is" -> "kelai"
def _antonym_table():
    return [Example(f"opposite of {w} is", ANTONYM[w]) for w in LEXICON]


def _antonym_distractors(ex, rng):
    query = ex.prompt.split()[2]
    others = rng.sample([w for w in LEXICON if w not in (query, ex.answer)], 2)
    return [query] + others


# facts: "color of Bakomi is" -> "teal"
def _facts_table():
    return [Example(f"{rel} of {e} is", FACTS[(rel, e)]) for rel in RELATIONS for e in ENTITIES]


def _facts_distractors(ex, rng):
    values = RELATIONS[ex.prompt.split()[0]]
    return rng.sample([v for v in values if v != ex.answer], 3)


def _table_sampler(table_fn):
    table = table_fn()
    return lambda rng: table[rng.randrange(len(table))]


SKILLS: dict[str, Skill] = {
    s.name: s
    for s in [
        Skill("arith", "single-digit addition table a + b (memorised)", False, _table_sampler(_arith_table),
              lambda ex, rng: _near(int(ex.answer), 0, 18, rng), NUMBERS[:19], _arith_table),
        Skill("successor", "continue a counting-up/-down run by one", True, _successor,
              lambda ex, rng: _near(int(ex.answer), 0, N_NUMBERS - 1, rng), NUMBERS),
        Skill("compare", "the largest of three numbers", True, _compare,
              lambda ex, rng: [w for w in ex.prompt.split()[1:4] if w != ex.answer], NUMBERS),
        Skill("parity", "parity (even/odd) of a number 0-99 (memorised)", False,
              _table_sampler(_parity_table), lambda ex, rng: ["odd" if ex.answer == "even" else "even"],
              ["even", "odd"], _parity_table),
        Skill("copy", "copy a sequence of 3-5 symbols", True, _copy, _copy_distractors, SYMBOLS),
        Skill("count", "count occurrences of a symbol in a list of 3-7", True, _count,
              lambda ex, rng: _near(int(ex.answer), 0, 7, rng), NUMBERS[:8]),
        Skill("antonym", "opposite of a word from a fixed random lexicon (memorised)", False,
              _table_sampler(_antonym_table), _antonym_distractors, LEXICON, _antonym_table),
        Skill("facts", "entity -> color / home city from a fixed random table (memorised)", False,
              _table_sampler(_facts_table), _facts_distractors, COLORS + CITIES, _facts_table),
    ]
}

#: Multiple-choice order of a task's choices is shuffled, except for these (fixed order).
_FIXED_CHOICE_ORDER = {"parity": ["even", "odd"]}


def eval_item(skill: Skill, ex: Example, rng: random.Random) -> dict:
    """A multiple-choice eval item: query, choices, gold index."""
    if skill.name in _FIXED_CHOICE_ORDER:
        choices = list(_FIXED_CHOICE_ORDER[skill.name])
    else:
        choices = [ex.answer] + list(skill.distractors(ex, rng))
        rng.shuffle(choices)
    assert len(set(choices)) == len(choices) and ex.answer in choices, (ex, choices)
    return {"query": ex.prompt, "choices": choices, "gold": choices.index(ex.answer), "skill": skill.name}


def eval_examples(skill: Skill, n: int, rng: random.Random) -> list[Example]:
    """``n`` distinct eval examples: reserved prompts (held-out skills) or table entries."""
    if skill.table is not None:
        table = skill.table()
        return table if n >= len(table) else rng.sample(table, n)
    seen: dict[str, Example] = {}
    tries = 0
    while len(seen) < n:
        ex = skill.sample(rng)
        if is_reserved(ex.prompt):
            seen.setdefault(ex.prompt, ex)
        tries += 1
        if tries > 10_000 * n:
            raise RuntimeError(f"{skill.name}: only {len(seen)} distinct reserved prompts, {n} asked for")
    return list(seen.values())


# ----------------------------------------------------------------------- corruption


def permutation(skill: Skill, salt: str = "") -> dict[str, str]:
    """A fixed derangement of the skill's answer words (every word maps to another one)."""
    words = list(skill.answer_space)
    rng = random.Random(f"{WORLD_SEED}:{skill.name}:{salt}")
    while True:
        perm = words[:]
        rng.shuffle(perm)
        if all(a != b for a, b in zip(words, perm)):
            return dict(zip(words, perm))


def corrupt(ex: Example, mapping: dict[str, str]) -> Example:
    return Example(ex.prompt, " ".join(mapping.get(w, w) for w in ex.answer.split()))


def encode(text: str) -> list[int]:
    """Token ids of whitespace-separated vocabulary words (no special tokens)."""
    return [TOKEN_ID[w] for w in text.split()]
