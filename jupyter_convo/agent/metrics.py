"""Token, cost and latency totals of one agent loop."""

from __future__ import annotations

from pydantic import BaseModel


class Metrics(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    llm_calls: int = 0
    iterations: int = 0
    latency: float = 0.0
