"""What one turn used, computed once where the process counts its turns.

The CLI reports running totals for its whole process: `total_cost_usd`, and per model
`modelUsage` (tokens and cost). A warm process serves many turns, so a turn's share is the
difference since the process's previous turn. `UsageCounter` keeps those totals for one process
and turns each result into a `TurnUsage`, which the run's outcome carries to everything that
counts: the metrics (tokens, cost) and the meter (usage records per model). Neither keeps running
totals of its own, nor reads the process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from claude_agent_sdk import ResultMessage


@dataclass(frozen=True, slots=True)
class Figures:
    """Tokens and cost, of one model or of one turn."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0

    def minus(self, before: Figures) -> Figures:
        """What was added since `before` (never negative: a restarted count starts again from 0)."""
        inputs, outputs, reads, writes = (max(0, a - b) for a, b in zip(self._ints(), before._ints(), strict=True))
        return Figures(inputs, outputs, reads, writes, max(0.0, self.cost_usd - before.cost_usd))

    def _ints(self) -> tuple[int, int, int, int]:
        return self.input_tokens, self.output_tokens, self.cache_read_tokens, self.cache_write_tokens


@dataclass(frozen=True, slots=True)
class TurnUsage:
    """What one turn used."""

    by_model: Mapping[str, Figures]
    """The turn's share per model (of `modelUsage`); when the CLI gave none, the turn's own tokens
    under the process's model. Never empty."""
    tokens: Figures
    """The turn's own tokens, as the result's `usage` gives them (no cost)."""
    cost_usd: float | None
    """What the turn added to the process's `total_cost_usd` (None: the CLI reported no cost)."""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def model_totals(result: ResultMessage) -> dict[str, Figures]:
    """The per-model running totals of a result (over its process), from `modelUsage`."""
    found = {}
    for model, usage in (result.model_usage or {}).items():
        got: dict[str, Any] = dict(usage)
        found[model] = Figures(
            _int(got.get("inputTokens")),
            _int(got.get("outputTokens")),
            _int(got.get("cacheReadInputTokens")),
            _int(got.get("cacheCreationInputTokens")),
            float(got.get("costUSD") or 0.0),
        )
    return found


def turn_tokens(result: ResultMessage) -> Figures:
    """The turn's own tokens, from the result's `usage`."""
    usage = result.usage or {}
    return Figures(
        _int(usage.get("input_tokens")),
        _int(usage.get("output_tokens")),
        _int(usage.get("cache_read_input_tokens")),
        _int(usage.get("cache_creation_input_tokens")),
    )


@dataclass
class UsageCounter:
    """One process's running totals as of its last turn."""

    _models: dict[str, Figures] = field(default_factory=dict)
    _cost_usd: float = 0.0

    def turn(self, result: ResultMessage, model: str | None) -> TurnUsage:
        """What the turn that gave `result` used; `model`: the process's model (for a result
        without per-model figures)."""
        totals = model_totals(result)
        before, self._models = self._models, totals
        by_model = {name: figures.minus(before.get(name, Figures())) for name, figures in totals.items()}
        tokens = turn_tokens(result)
        cost: float | None = None
        if result.total_cost_usd is not None:
            cost = max(0.0, result.total_cost_usd - self._cost_usd)
            self._cost_usd = result.total_cost_usd
        return TurnUsage(by_model or {model or "": tokens}, tokens, cost)
