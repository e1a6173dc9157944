"""Tone patterns and rhyme, tracked together per candidate pattern; also the layout itself (CJK ideographs only).

Every row (poem or beam) carries its own state. Tone and rhyme are tracked per *candidate pattern*: a row keeps
the set of patterns still consistent with the characters chosen so far (``alive``); the allowed set at a step is
the union over those patterns, and each choice prunes the patterns it violates. A fixed pattern is one
candidate, no tone constraint is one pseudo-pattern whose tones are all ``*``. This one mechanism gives
``tone="auto"``, pattern-dependent rhyme lines (首句入韵) and a guaranteed-satisfiable end state, which is why
tone and rhyme are one processor (:class:`Prosody`) rather than two.

Rhyme is kept satisfiable by counting: each row/pattern keeps the rhyme classes still ``active`` (those holding
every rhyme character chosen so far) and a character is allowed only if afterwards some active class still has
enough unused members for the rhyme positions left (under ``no_repeat``, unused in the poem). Prompt characters
(:mod:`.prompts`) prune the candidate patterns before decoding starts; :func:`build_plan` raises
:class:`PromptError` one-liners when none is left.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from poetry_vae.data.vocab import Vocabulary
from poetry_vae.errors import PromptError
from poetry_vae.generation.processors.base import Mask, MasksCache, Processor, Setup, where
from poetry_vae.generation.request import DecodeRequest
from poetry_vae.layout import is_format_valid, render
from poetry_vae.model.stepper import padded_size
from poetry_vae.prosody import (
    LINE_LENGTHS,
    build_masks,
    check_line_length,
    check_pattern,
    fits_pattern,
    is_free,
    rhyme_lines,
    rhymes,
)
from poetry_vae.prosody import patterns as patterns_for
from poetry_vae.prosody.masks import ProsodyMasks, writable
from poetry_vae.prosody.tables import RHYME_SYSTEMS, pingshui_table

ANY = "*"  # pseudo-pattern: no tone constraint
# The first rhyme character must leave its class this many spare members beyond the rhyme positions still to
# come, so the later rhyming lines get a choice rather than a single forced character.
ANCHOR_MARGIN = 1

# Vocabulary -> {(system, device): masks}. Weak keys: a dropped vocabulary frees its masks, and id() reuse
# cannot hand a new vocabulary stale masks.
_MASKS: weakref.WeakKeyDictionary[Vocabulary, dict] = weakref.WeakKeyDictionary()
_HANZI: weakref.WeakKeyDictionary[Vocabulary, dict] = weakref.WeakKeyDictionary()


def get_masks(vocab: Vocabulary, system: str, device: torch.device, cache: MasksCache | None = None) -> ProsodyMasks:
    """Prosody masks of ``vocab`` under ``system`` on ``device``, built once (a few seconds) and cached."""
    cache = _MASKS.setdefault(vocab, {}) if cache is None else cache
    key = (system, str(device))
    if key not in cache:
        cpu_key = (system, "cpu")
        if cpu_key not in cache:
            cache[cpu_key] = build_masks(vocab.tokens, system)
        cache[key] = cache[cpu_key].to(device)
    return cache[key]


def get_hanzi(vocab: Vocabulary, device: torch.device) -> Tensor:
    """``[V]`` bool: token is one CJK ideograph that decoding may write (not a variant whose standard form the
    vocabulary has too). Cheap, so plain decoding never builds the prosody tables."""
    cache = _HANZI.setdefault(vocab, {})
    key = str(device)
    if key not in cache:
        cache[key] = torch.tensor(writable(vocab.tokens), dtype=torch.bool, device=device)
    return cache[key]


@dataclass
class Plan:
    """A validated request: what is forced, which patterns are candidates, which tokens may rhyme."""

    length: int
    line_length: int
    patterns: list[str]  # candidate pattern names; [ANY] when no tone constraint
    base: Tensor  # (P, T, W) bool: hanzi admitting the pattern's tone at each step (W: V padded, see stepper)
    forced: dict[int, int] = field(default_factory=dict)  # step -> token id
    system: str | None = None  # rhyme system, None = no rhyme constraint
    rhyme_lines: list[tuple[int, ...]] = field(default_factory=list)  # per pattern
    members: Tensor | None = None  # (C, W) bool: tokens that may end a rhyming line, by class
    counts: Tensor | None = None  # (C,) members per class
    no_repeat: bool = False
    tone_system: str = "pingshui"


def _tone_base(masks: ProsodyMasks | None, hanzi: Tensor, pattern: str, request: DecodeRequest) -> Tensor:
    n, m = request.num_lines, request.line_length
    if pattern == ANY or masks is None:
        return hanzi.expand(n * m, -1).clone()
    rows = [
        hanzi if is_free(pos, request.strict_tone, m) else hanzi & masks.tone_mask(tone)
        for template in check_pattern(pattern, m)
        for pos, tone in enumerate(template)
    ]
    return torch.stack(rows)


def _tone_name(tone: str) -> str:
    return {"P": "平", "Z": "仄"}.get(tone, tone)


def check_request(request: DecodeRequest) -> None:
    """The tone and rhyme settings that need no vocabulary; :class:`PromptError` if they cannot hold."""
    n, m = request.num_lines, request.line_length
    if request.rhyme is not None and request.rhyme not in RHYME_SYSTEMS:
        raise PromptError(f"unknown rhyme system {request.rhyme!r}; choose one of {', '.join(RHYME_SYSTEMS)}")
    if request.tone is not None:
        if n != 4:
            raise PromptError(f"tone patterns are defined for 4 lines, not {n}")
        check_line_length(m)
        if request.tone != "auto":
            check_pattern(request.tone, m)
    if request.rhyme_first_line and request.rhyme is None:
        raise PromptError("rhyme_first_line needs a rhyme system: set rhyme to 'pingshui' or 'xinyun'")


def build_plan(
    vocab: Vocabulary,
    request: DecodeRequest,
    device: torch.device,
    cache: MasksCache | None = None,
    forced: dict[int, int] | None = None,
) -> Plan:
    """Precompute the masks of ``request`` for ``vocab``, the candidate patterns left by the ``forced`` prompt
    characters (step -> token id); :class:`PromptError` if impossible."""
    check_request(request)
    n, m = request.num_lines, request.line_length
    forced = {} if forced is None else forced
    hanzi = get_hanzi(vocab, device)
    tone_system = request.rhyme or "pingshui"  # 平水韵 by default: it knows the 入声
    masks = get_masks(vocab, tone_system, device, cache) if (request.tone or request.rhyme) else None

    if request.tone is None:
        patterns = [ANY]
    elif request.tone == "auto":
        patterns = [p for p in patterns_for(m) if not request.rhyme_first_line or 0 in rhyme_lines(p, m)]
    else:
        patterns = [request.tone]
        if request.rhyme_first_line and 0 not in rhyme_lines(request.tone, m):
            raise PromptError(
                f"pattern {request.tone} does not rhyme its first line (its line 1 ends in 仄): "
                "drop rhyme_first_line or pick a 首句入韵 pattern"
            )

    plan = Plan(
        length=n * m,
        line_length=m,
        patterns=patterns,
        base=torch.empty(0),
        forced=forced,
        no_repeat=request.no_repeat,
        tone_system=tone_system,
    )
    if request.rhyme is not None:
        assert masks is not None
        plan.system = request.rhyme
        members = masks.rhyme & hanzi
        if request.tone is not None:
            # every rhyming line ends in 平 in the patterns; under 平水韵 the shared class must be a 平 class too
            members = members & masks.ping
            if request.rhyme == "pingshui":
                ping_class = torch.tensor([tone == "P" for _, tone in pingshui_table()[0]], device=device)
                members = members & ping_class.unsqueeze(1)
        plan.members = members
        plan.counts = members.sum(dim=1)

    # Drop candidate patterns that a forced character rules out; explain if none is left.
    reasons: list[str] = []
    kept: list[str] = []
    bases: list[Tensor] = []
    for pattern in patterns:
        base = _tone_base(masks, hanzi, pattern, request)
        lines = _rhyme_lines_of(pattern, request)
        reason = _forced_conflict(vocab, plan, base, pattern, lines)
        if reason is None:
            kept.append(pattern)
            bases.append(base)
        else:
            reasons.append(reason)
    if not kept:
        if len(reasons) == 1:
            raise PromptError(reasons[0])
        raise PromptError("no tone pattern fits the given characters: " + "; ".join(reasons))
    plan.patterns = kept
    width = padded_size(len(vocab.tokens))  # the decoder's logits are padded to whole sampling blocks
    plan.base = _pad_columns(torch.stack(bases), width)
    if plan.members is not None:
        plan.members = _pad_columns(plan.members, width)
    plan.rhyme_lines = [_rhyme_lines_of(p, request) for p in kept]
    if plan.members is not None:
        need = min(len(lines) for lines in plan.rhyme_lines) + ANCHOR_MARGIN
        if not bool((plan.counts >= need).any()):
            raise PromptError(
                f"no {plan.system} rhyme class has {need} characters in this vocabulary that fit "
                "the request: drop the rhyme constraint or use a larger vocabulary"
            )
    return plan


def _pad_columns(mask: Tensor, width: int) -> Tensor:
    """``mask`` (..., V) bool -> (..., width) with False in the padding columns (never allowed)."""
    out = mask.new_zeros(*mask.shape[:-1], width)
    out[..., : mask.shape[-1]] = mask
    return out


def _rhyme_lines_of(pattern: str, request: DecodeRequest) -> tuple[int, ...]:
    if request.rhyme is None:
        return ()
    if pattern != ANY:
        return rhyme_lines(pattern, request.line_length)  # 首句入韵 patterns rhyme line 1 as well
    odd = tuple(range(1, request.num_lines, 2))
    return ((0,) if request.rhyme_first_line else ()) + odd


def _forced_conflict(vocab: Vocabulary, plan: Plan, base: Tensor, pattern: str, lines: tuple[int, ...]) -> str | None:
    """Why the forced characters make ``pattern`` impossible, or None."""
    m = plan.line_length
    for t, token in sorted(plan.forced.items()):
        char = vocab.tokens[token]
        if not base[t, token]:
            need = _tone_name(check_pattern(pattern, m)[t // m][t % m])
            return (
                f"{char!r} at {where(t, m)} cannot be {need}, which pattern {pattern} requires there: "
                "change that character or the tone pattern"
            )
        if plan.members is not None and lines and t == lines[0] * m + m - 1:
            viable = plan.members[:, token] & (plan.counts >= len(lines) + ANCHOR_MARGIN)
            if not bool(viable.any()):
                return (
                    f"{char!r} at {where(t, m)} must rhyme (pattern {pattern}), but no {plan.system} rhyme "
                    f"class holding it has {len(lines) + ANCHOR_MARGIN} usable characters in the vocabulary: "
                    "change it"
                )
    return None


def _group_rows(rows: Tensor) -> tuple[Tensor, Tensor]:
    """(R, K) bool -> (U,) index of one row per distinct row, (R,) each row's group: equal rows share one.

    Bit-packed rows compared as bytes by numpy (``torch.unique(dim=0)`` compares rows one by one, ~10 ms).
    """
    packed = np.packbits(rows.cpu().numpy(), axis=1)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    device = rows.device
    return torch.from_numpy(first).to(device), torch.from_numpy(inverse.reshape(-1)).to(device)


class PatternTracker:
    """Tone and rhyme state of ``rows`` decoding rows; ``keep`` before each step, ``update`` after it."""

    def __init__(self, plan: Plan, rows: int, device: torch.device) -> None:
        self.plan = plan
        self.device = device
        n_patterns = len(plan.patterns)
        self.alive = torch.ones(rows, n_patterns, dtype=torch.bool, device=device)
        self.tokens = torch.zeros(rows, plan.length, dtype=torch.long, device=device)
        self.no_repeat = plan.no_repeat  # rhyme classes then count only the members still unused in the poem
        if plan.members is not None:
            n_classes = plan.members.shape[0]
            self.active = torch.ones(rows, n_patterns, n_classes, dtype=torch.bool, device=device)
            self.used_members = torch.zeros(rows, n_classes, dtype=torch.long, device=device)
            self.members_f = plan.members.to(torch.float32)
        # Masks as 0/1 floats (multiplied into sampling weights) and 0/-inf biases (added to logits), built once
        # per request; a step then indexes or multiplies them instead of rebuilding (R, V) bool masks.
        self.base_f = plan.base.to(torch.float32)
        self._bias: dict[int, Tensor] = {}
        # union of the base masks for each subset of alive patterns (bit p = pattern p), per step, on demand
        self._unions: dict[int, Tensor] = {}
        self._bits = 2 ** torch.arange(n_patterns, device=device)
        # rhyme role of each step per pattern: (index among the pattern's rhyme positions, count) or None
        m = plan.line_length
        self.roles: list[list[tuple[int, int] | None]] = []
        for t in range(plan.length):
            row = []
            for lines in plan.rhyme_lines:
                line = t // m
                is_end = t % m == m - 1
                row.append((lines.index(line), len(lines)) if is_end and line in lines else None)
            self.roles.append(row)

    # ---- state helpers -------------------------------------------------------------------------------------

    def _free(self, t: int, p: int) -> Tensor:
        """(R, C) unused members per class (for pattern ``p`` before step ``t``)."""
        counts = self.plan.counts.unsqueeze(0)
        if self.no_repeat:
            return counts - self.used_members
        done = sum(1 for s in range(t) if self.roles[s][p] is not None)
        return counts.expand(self.alive.shape[0], -1) - done

    def _needed_after(self, t: int, p: int) -> int:
        return sum(1 for s in range(t + 1, self.plan.length) if self.roles[s][p] is not None)

    def _started(self, t: int, p: int) -> bool:
        """True once the pattern's first rhyme position is behind step ``t``."""
        return any(self.roles[s][p] is not None for s in range(t))

    def _prev_rhyme_tokens(self, t: int, p: int) -> list[int]:
        return [s for s in range(t) if self.roles[s][p] is not None]

    def _rhyme_rows(self, t: int, p: int) -> tuple[Tensor | None, Tensor | None]:
        """(slack, tight) class masks (R, C) for pattern ``p`` at step ``t``, or (None, None) if unconstrained.

        slack: active classes that keep enough members even if this step uses one of theirs; tight: active
        classes with exactly enough (usable only if this step's character is not one of their members).
        """
        if self.plan.members is None:
            return None, None
        role = self.roles[t][p]
        need = self._needed_after(t, p)
        if role is not None and role[0] == 0:
            need += ANCHOR_MARGIN
        if role is None and (not self.no_repeat or need == 0 or not self._started(t, p)):
            return None, None
        free = self._free(t, p)
        active = self.active[:, p]
        slack = active & (free - 1 >= need)
        tight = active & (free == need) if role is None else None
        return slack, tight

    # ---- per-step API --------------------------------------------------------------------------------------

    def keep(self, t: int) -> tuple[Tensor, Tensor | None]:
        """The tokens that keep tone and rhyme satisfiable at step ``t`` as a 0/1 float mask (R or 1, W), and as
        an additive 0/-inf bias when that comes free (a request-wide mask shared by every row), else None."""
        plan = self.plan
        simple = plan.members is None or all(self._rhyme_rows(t, p)[0] is None for p in range(len(plan.patterns)))
        bias = None
        if simple:
            keep, bias = self._union_of_alive(t)
        elif not self.no_repeat:
            keep = self._rhyme_keep(t)
        else:
            keep = torch.zeros(self.alive.shape[0], plan.base.shape[-1], device=self.device)
            for p in range(len(plan.patterns)):
                torch.maximum(keep, self._pattern_keep(t, p), out=keep)
        return keep, bias

    def _union_of_alive(self, t: int) -> tuple[Tensor, Tensor | None]:
        """Base masks united over each row's alive patterns: one shared row while every row has the same
        alive set (then with its cached bias), else a gather from a per-step table of unions."""
        codes = (self.alive.long() * self._bits).sum(dim=1)
        first = codes[:1]
        if bool((codes == first).all()):
            code = int(first)
            return self._union(t)[code : code + 1], self._union_bias(t, code)
        return self._union(t).index_select(0, codes), None

    def _union(self, t: int) -> Tensor:
        """(2^P, W) 0/1: union of step ``t``'s base masks for every subset of patterns."""
        if t not in self._unions:
            n = len(self.plan.patterns)
            subsets = ((torch.arange(2**n, device=self.device).unsqueeze(1) & self._bits) > 0).float()
            self._unions[t] = (subsets @ self.base_f[:, t]).clamp_(max=1.0)
        return self._unions[t]

    def _union_bias(self, t: int, code: int) -> Tensor:
        key = t * 2 ** len(self.plan.patterns) + code
        if key not in self._bias:
            row = self._union(t)[code : code + 1]
            self._bias[key] = torch.zeros_like(row).masked_fill_(row <= 0, float("-inf"))
        return self._bias[key]

    def _rhyme_keep(self, t: int) -> Tensor:
        """(R, W) 0/1 allowed tokens at a step that is a rhyme position for some pattern (without no_repeat).

        Rows are grouped by (alive patterns, each rhyming pattern's class set); each group's union over the
        patterns is built once (a few hundred rows at most) and gathered to the rows in one pass. Then the one
        per-row rule: a character already used at an earlier rhyme position of a pattern may not rhyme again
        under that pattern, so it stays allowed only if some other alive pattern allows it.
        """
        n_patterns = len(self.plan.patterns)
        slack = [self._rhyme_rows(t, p)[0] for p in range(n_patterns)]
        first, group = _group_rows(torch.cat([self.alive, *(c for c in slack if c is not None)], dim=1))
        tables = []
        for p, classes in enumerate(slack):
            table = self.base_f[p, t].unsqueeze(0) * self.alive[first, p : p + 1]
            if classes is not None:
                table = table * (classes[first].to(torch.float32) @ self.members_f).clamp_(max=1.0)
            tables.append(table)
        keep = torch.stack(tables).amax(dim=0).index_select(0, group)
        earlier = [self._prev_rhyme_tokens(t, p) if classes is not None else [] for p, classes in enumerate(slack)]
        rows = torch.arange(keep.shape[0], device=self.device)
        for s in sorted({s for steps in earlier for s in steps}):
            token = self.tokens[:, s]
            allowed = torch.zeros_like(token, dtype=torch.bool)
            for p, table in enumerate(tables):
                ok = table[group, token] > 0
                for e in earlier[p]:
                    ok &= self.tokens[:, e] != token
                allowed |= ok
            keep[rows, token] = allowed.to(keep.dtype)
        return keep

    def _class_union(self, classes: Tensor, alive: Tensor, base: Tensor) -> Tensor:
        """(R, C) bool class sets, (R, 1) bool alive -> (R, W) 0/1: union of the classes' members within
        ``base``, zero for dead rows; computed once per distinct (classes, alive) and gathered to the rows."""
        key = torch.cat([classes, alive], dim=1)
        first, inverse = _group_rows(key)
        distinct = key[first].to(torch.float32)
        table = (distinct[:, :-1] @ self.members_f).clamp_(max=1.0).mul_(base).mul_(distinct[:, -1:])
        return table.index_select(0, inverse)

    def _pattern_keep(self, t: int, p: int) -> Tensor:
        """(R, W) 0/1 allowed tokens for rows following pattern ``p``, zero for rows where ``p`` is dead."""
        base = self.base_f[p, t].unsqueeze(0)
        alive = self.alive[:, p : p + 1]
        slack, tight = self._rhyme_rows(t, p)
        if slack is None:
            return base * alive
        if self.roles[t][p] is not None:  # a rhyme position: a member of a class with slack left
            ok = self._class_union(slack, alive, base)
            if not self.no_repeat:  # rhyme characters differ from the earlier ones
                for s in self._prev_rhyme_tokens(t, p):
                    ok.scatter_(1, self.tokens[:, s : s + 1], 0.0)
            return ok
        # no_repeat, between rhyme positions: keep the last free member of a tight class for the rhyme
        ok = slack.any(dim=1, keepdim=True).float().expand(-1, base.shape[-1]).clone()
        rows = (ok[:, 0] <= 0).nonzero().squeeze(1)
        if rows.numel():
            t_rows = tight[rows]
            # allowed unless the token is a member of every tight class of the row
            ok[rows] = (t_rows.sum(dim=1, keepdim=True) - t_rows.float() @ self.members_f > 0).float()
        return ok.mul_(base).mul_(alive)

    def update(self, t: int, chosen: Tensor) -> None:
        """Record the (R,) tokens chosen at step ``t`` and prune the patterns they violate."""
        plan = self.plan
        self.tokens[:, t] = chosen
        hit = plan.members[:, chosen].T if plan.members is not None else None  # (R, C): a member of the class
        for p in range(len(plan.patterns)):
            ok = plan.base[p, t, chosen]
            slack, tight = self._rhyme_rows(t, p)
            if slack is not None:
                if self.roles[t][p] is not None:
                    keep = slack & hit
                    ok = ok & keep.any(dim=1)
                    self.active[:, p] = keep
                else:
                    ok = ok & ((slack | (tight & ~hit)).any(dim=1))
            self.alive[:, p] &= ok
        if self.no_repeat and plan.members is not None:
            self.used_members += plan.members[:, chosen].T.long()

    def reorder(self, index: Tensor) -> None:
        """Beam search: row ``i`` continues row ``index[i]``."""
        self.alive = self.alive.index_select(0, index)
        self.tokens = self.tokens.index_select(0, index)
        if self.plan.members is not None:
            self.active = self.active.index_select(0, index)
            self.used_members = self.used_members.index_select(0, index)

    def patterns(self) -> list[str | None]:
        """Per row: the first pattern (in ``PATTERNS`` order) its poem fits, or None without tone."""
        if self.plan.patterns == [ANY]:
            return [None] * self.alive.shape[0]
        first = self.alive.to(torch.int8).argmax(dim=1).tolist()
        return [self.plan.patterns[i] for i in first]


class Prosody(Processor):
    """The layout (CJK ideographs only, always on), the tone pattern (``tone``, ``strict_tone``) and the rhyme
    (``rhyme``, ``rhyme_first_line``), as one :class:`PatternTracker`."""

    order = 10

    def __init__(self, request: DecodeRequest, setup: Setup) -> None:
        self.request = request
        self.setup = setup
        self.tracker: PatternTracker | None = None

    @classmethod
    def from_request(cls, request: DecodeRequest, setup: Setup) -> Prosody:
        check_request(request)
        return cls(request, setup)

    def start(self, rows: int) -> None:
        # built here, once every prompt processor has written its characters into setup.forced
        s = self.setup
        plan = build_plan(s.vocab, self.request, s.device, s.masks_cache, s.forced)
        self.tracker = PatternTracker(plan, rows, s.device)

    def mask(self, t: int, tokens: Tensor, keep: Tensor | None, bias: Tensor | None) -> Mask:
        assert self.tracker is not None and keep is None, "Prosody runs first"
        return self.tracker.keep(t)

    def update(self, t: int, chosen: Tensor) -> None:
        assert self.tracker is not None
        self.tracker.update(t, chosen)

    def reorder(self, index: Tensor) -> None:
        assert self.tracker is not None
        self.tracker.reorder(index)

    def patterns(self) -> list[str | None] | None:
        return None if self.tracker is None else self.tracker.patterns()

    @classmethod
    def check(cls, lines: list[str], request: DecodeRequest, pattern: str | None) -> dict[str, bool]:
        result: dict[str, bool] = {}
        laid_out = is_format_valid(render(lines), request.line_length, request.num_lines)
        quatrain = laid_out and request.num_lines == 4 and request.line_length in LINE_LENGTHS
        system = request.rhyme or "pingshui"
        if request.tone is not None:
            names = list(patterns_for(request.line_length)) if request.tone == "auto" else [request.tone]
            if pattern in names:  # check the decoder's claim first, then any other candidate
                names.remove(pattern)
                names.insert(0, pattern)
            result["tone"] = quatrain and any(
                fits_pattern(lines, p, request.strict_tone, system, request.line_length) for p in names
            )
        if request.rhyme is not None:
            must = set(range(1, request.num_lines, 2))
            if request.rhyme_first_line:
                must.add(0)
            if pattern is not None and quatrain:
                must.update(rhyme_lines(pattern, request.line_length))
            ends = [lines[i][-1] for i in sorted(must) if i < len(lines) and lines[i]]
            result["rhyme"] = (
                laid_out and len(ends) == len(must) and all(rhymes(ends[0], end, request.rhyme) for end in ends[1:])
            )
        return result
