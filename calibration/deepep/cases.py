"""The measurement cases of the DeepEP low-latency harness and their routing.

Pure Python (no torch, no GPU) so that the case list and the routing can be checked, and
regenerated, anywhere: EPSim rebuilds the same scenarios from `routing.csv`, which the
harness writes from these functions.

A case is one configuration measured over many trials: tokens per rank, a routing kind,
injected per-rank GPU spins (before dispatch and between dispatch and combine), and the
kernel mode (fused `return_recv_hook=False`, or hook mode with the receive launched after
an optional spin). Groups:

- `balanced`: equal tokens on every rank, uniform routing, no injected delay (fused and
  hook mode). `epsim calibrate --fit-on balanced` fits on these by default.
- `unequal`, `zero`, `routing`, `delay`: imbalance cases, held out from that fit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

# DeepSeek-V3 sizes (config_671B.json): hidden 7168, 256 routed experts, top-8.
HIDDEN = 7168
EXPERTS = 256
TOP_K = 8
# Receive buffers are sized for this many tokens per rank (DeepEP's
# num_max_dispatch_tokens_per_rank); DeepEP's test notes that 512 is its largest tested value.
MAX_TOKENS = 512
# The spin between a hook-mode SEND and its RECV when the receive is meant to find every
# message already there (pure copy / reduce time): far longer than any flight here.
SETTLE_US = 300.0

ROUTINGS = ("uniform", "hot-rank", "local", "hot-expert", "cross")


@dataclass(frozen=True)
class Case:
    """One measured configuration (the same on every rank; per-rank values are lists)."""

    name: str
    group: str
    tokens: Sequence[int]
    routing: str = "uniform"
    mode: str = "fused"  # fused | hook
    # Injected GPU spin before dispatch ("attention") and between dispatch and combine
    # ("expert GEMM"), per rank, microseconds.
    # (Empty: no spin on any rank.)
    pre_us: Sequence[float] = ()
    mid_us: Sequence[float] = ()
    # Hook mode: spin between each SEND and its RECV (0: the RECV follows at once).
    settle_us: float = 0.0
    seed: int = 1

    def validate(self, ranks: int) -> None:
        if len(self.tokens) != ranks or len(self.pre_us) not in (0, ranks) or len(self.mid_us) not in (0, ranks):
            raise ValueError(f"case {self.name}: per-rank lists must have {ranks} entries")
        if any(t < 0 or t > MAX_TOKENS for t in self.tokens):
            raise ValueError(f"case {self.name}: tokens must be in 0...{MAX_TOKENS}")
        if self.routing not in ROUTINGS:
            raise ValueError(f"case {self.name}: routing must be one of {ROUTINGS}")
        if self.mode not in ("fused", "hook"):
            raise ValueError(f"case {self.name}: mode must be fused or hook")
        if self.mode == "fused" and self.settle_us:
            raise ValueError(f"case {self.name}: settle_us applies to hook mode only")


def routing_for(case: Case, rank: int, ranks: int, experts: int = EXPERTS, top_k: int = TOP_K) -> List[List[int]]:
    """The experts each token of `rank` selects in `case`: `tokens[rank]` lists of `top_k` distinct experts.

    Seeded by (routing, rank, tokens, seed) through Python's string seeding, which is
    deterministic across runs and platforms. Kinds:
    - `uniform`: `top_k` distinct experts drawn uniformly (DeepEP's test: top-k of
      |randn| + 1 scores, which is uniform without replacement);
    - `hot-rank`: every selection goes to the experts of the last rank (a hot destination);
    - `local`: every selection stays on the sender's own experts (no peer traffic);
    - `hot-expert`: slot 0 is expert 0 for every token (one hot expert on rank 0), the
      other `top_k - 1` uniform among the rest;
    - `cross`: every selection goes to the experts of the next rank (`rank + 1` modulo the
      ranks): no copy to itself, every byte over the peer link.
    """
    per_rank = experts // ranks
    rng = random.Random(f"{case.routing}:{rank}:{case.tokens[rank]}:{case.seed}")
    out: List[List[int]] = []
    for _ in range(case.tokens[rank]):
        if case.routing == "uniform":
            chosen = rng.sample(range(experts), top_k)
        elif case.routing == "hot-rank":
            hot = ranks - 1
            chosen = rng.sample(range(hot * per_rank, (hot + 1) * per_rank), top_k)
        elif case.routing == "local":
            chosen = rng.sample(range(rank * per_rank, (rank + 1) * per_rank), top_k)
        elif case.routing == "cross":
            peer = (rank + 1) % ranks
            chosen = rng.sample(range(peer * per_rank, (peer + 1) * per_rank), top_k)
        else:  # hot-expert
            chosen = [0] + rng.sample(range(1, experts), top_k - 1)
        out.append(chosen)
    return out


def default_cases(ranks: int = 2) -> List[Case]:
    """The standard case list (every rank runs the same list in the same order)."""
    zero = tuple(0.0 for _ in range(ranks))

    def per_rank(first: float, rest: float) -> tuple:
        return (first,) + tuple(rest for _ in range(ranks - 1))

    def spread(a: int, b: int) -> tuple:
        # First rank a tokens, the others b.
        return (a,) + tuple(b for _ in range(ranks - 1))

    cases: List[Case] = []
    sweep = (1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512)
    for t in sweep:
        cases.append(Case(f"balanced-t{t}", "balanced", (t,) * ranks))
    for t in (1, 8, 32, 64, 128, 256, 512):
        cases.append(Case(f"balanced-hook-settled-t{t}", "balanced", (t,) * ranks, mode="hook", settle_us=SETTLE_US))
        cases.append(Case(f"balanced-hook-t{t}", "balanced", (t,) * ranks, mode="hook"))
    for a, b in ((128, 32), (32, 128), (256, 64), (512, 128), (64, 256), (16, 256), (1, 128), (384, 512)):
        cases.append(Case(f"unequal-t{a}-{b}", "unequal", spread(a, b)))
    cases.append(Case("unequal-hook-t128-32", "unequal", spread(128, 32), mode="hook"))
    for a, b in ((0, 128), (128, 0), (0, 512)):
        cases.append(Case(f"zero-t{a}-{b}", "zero", spread(a, b)))
    cases.append(Case("zero-hook-t0-128", "zero", spread(0, 128), mode="hook"))
    for routing in ("hot-rank", "local", "hot-expert"):
        for t in (128, 256):
            cases.append(Case(f"routing-{routing}-t{t}", "routing", (t,) * ranks, routing=routing))
    for d in (10.0, 30.0, 100.0, 300.0):
        cases.append(Case(f"delay-pre{d:g}-t128", "delay", (128,) * ranks, pre_us=per_rank(d, 0.0), mid_us=zero))
    for d in (10.0, 30.0, 100.0):
        cases.append(Case(f"delay-mid{d:g}-t128", "delay", (128,) * ranks, pre_us=zero, mid_us=per_rank(d, 0.0)))
    cases.append(Case("delay-both-t128", "delay", (128,) * ranks, pre_us=per_rank(50.0, 20.0), mid_us=per_rank(20.0, 60.0)))
    cases.append(Case("delay-pre50-t128-32", "delay", spread(128, 32), pre_us=per_rank(0.0, 50.0), mid_us=zero))
    cases.append(Case("delay-hook-pre50-t128", "delay", (128,) * ranks, mode="hook", pre_us=per_rank(50.0, 0.0), mid_us=zero))
    cases.append(Case("delay-hook-mid40-t256", "delay", (256,) * ranks, mode="hook", pre_us=zero, mid_us=per_rank(40.0, 0.0)))
    # Added for the second sitting: balanced load with every byte local or every byte to a
    # peer, so that a fit on balanced rows can tell a rank's copy to itself from the peer
    # link (the token counts avoid 128 and 256, which the held-out routing cases use).
    for routing in ("local", "cross"):
        for t in (1, 8, 32, 64, 96, 192, 384, 512):
            cases.append(Case(f"balanced-{routing}-t{t}", "balanced", (t,) * ranks, routing=routing))
        for t in (8, 64, 192, 512):
            cases.append(Case(f"balanced-{routing}-hook-settled-t{t}", "balanced", (t,) * ranks, routing=routing,
                              mode="hook", settle_us=SETTLE_US))
    for routing in ("hot-rank", "hot-expert"):
        cases.append(Case(f"routing-{routing}-hook-settled-t128", "routing", (128,) * ranks, routing=routing,
                          mode="hook", settle_us=SETTLE_US))
    for c in cases:
        c.validate(ranks)
    return cases


def smoke_cases(ranks: int = 2) -> List[Case]:
    """A handful of cases to check the setup before the full list."""
    return [
        Case("smoke-t16", "balanced", (16,) * ranks),
        Case("smoke-hook-t16", "balanced", (16,) * ranks, mode="hook", settle_us=SETTLE_US),
        Case("smoke-zero", "zero", (0,) + (16,) * (ranks - 1)),
    ]


def select(cases: List[Case], max_tokens: int) -> List[Case]:
    """The cases whose every rank fits a receive buffer sized for `max_tokens`."""
    return [c for c in cases if max(c.tokens) <= max_tokens]


def routing_rows(case: Case, ranks: int) -> List[List]:
    """Rows of `routing.csv`: case, rank, token, e0..e{k-1} (EPSim's trace columns after `case`)."""
    rows = []
    for r in range(ranks):
        for t, experts in enumerate(routing_for(case, r, ranks)):
            rows.append([case.name, r, t] + experts)
    return rows


def describe(cases: List[Case]) -> Dict[str, int]:
    """Cases per group (for the log)."""
    out: Dict[str, int] = {}
    for c in cases:
        out[c.group] = out.get(c.group, 0) + 1
    return out


if __name__ == "__main__":
    cs = default_cases()
    print(len(cs), describe(cs))
    print(sum(len(routing_rows(c, 2)) for c in cs), "routing rows")
