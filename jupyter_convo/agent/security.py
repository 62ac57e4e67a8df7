"""The security analyzer: an independent judgement of every action's risk.

The LLM rates its own actions (``security_risk`` in the tool arguments). That is a claim,
not a check, so every action also goes through a ``SecurityAnalyzer`` before it is logged;
the event keeps the higher of the two risks (``security_risk``), what the LLM said
(``llm_risk``) and the analyzer's reason (``risk_reason``), and confirmation mode decides
from that. The default ``RuleAnalyzer`` matches rules (``SecurityRule``: a regular
expression over the action's text, a risk and a reason; see ``security_rules.py`` for the
built-in ones) and adds two checks a pattern cannot make: paths that leave the workspace,
and the user's secret values in the arguments. ``LLMAnalyzer`` also asks a model.

Risks rank ``low < medium < unknown < high``: an action the LLM left unrated keeps waiting
for the user in confirmation mode unless the analyzer finds it high.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..events.schema import (
    ActionBase,
    CommandEvent,
    FileEditEvent,
    FileReadEvent,
    FinishEvent,
    PythonEvent,
    SecurityRisk,
    ThinkEvent,
)
from .llm import LLMClient, LLMError
from .settings import ActionKind, AgentSettings, SecurityRule

logger = logging.getLogger(__name__)

RANK: dict[str, int] = {"low": 0, "medium": 1, "unknown": 2, "high": 3}
MAX_REASON_CHARS = 400
# Longer action texts are not searched (the rules' cost grows with the text): high risk.
MAX_ANALYZED_CHARS = 200_000


@dataclass(frozen=True)
class Assessment:
    """An analyzer's verdict on one action."""

    risk: SecurityRisk
    reason: str = ""


LOW = Assessment("low")


def higher(a: Assessment, b: Assessment) -> Assessment:
    """The riskier of two verdicts; equal risks join their reasons."""
    if RANK[a.risk] != RANK[b.risk]:
        return a if RANK[a.risk] > RANK[b.risk] else b
    reasons = [r for r in (a.reason, b.reason) if r]
    return Assessment(a.risk, "; ".join(dict.fromkeys(reasons)))


def combine(action: ActionBase, verdict: Assessment) -> ActionBase:
    """``action`` with the higher of the LLM's and the analyzer's risk, and the reason."""
    claimed = action.security_risk
    risk = verdict.risk if RANK[verdict.risk] > RANK[claimed] else claimed
    reason = verdict.reason if verdict.risk == risk else ""
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 3] + "..."
    return action.model_copy(
        update={"security_risk": risk, "llm_risk": claimed, "risk_reason": reason}
    )


def action_text(action: ActionBase) -> tuple[ActionKind | None, str]:
    """The kind the rules know an action by, and the text they search."""
    if isinstance(action, CommandEvent):
        return "command", action.command
    if isinstance(action, PythonEvent):
        return "python", action.code
    if isinstance(action, FileEditEvent):
        parts = [action.path, action.file_text or "", action.new_str or ""]
        return "file_edit", "\n".join(parts)
    if isinstance(action, FileReadEvent):
        return "file_read", action.path
    return None, ""


RISKY = frozenset({"high", "unknown"})


def needs_confirmation(policy: str, action: ActionBase) -> bool:
    """Must ``action`` (already assessed) wait for the user under ``policy``?"""
    if policy == "always":
        return not isinstance(action, (ThinkEvent, FinishEvent))
    return policy == "risky" and action.security_risk in RISKY


class SecurityAnalyzer(ABC):
    """Scores an action on its own, whatever the LLM claimed. Never raises for an action:
    a failure to judge is an ``unknown`` verdict that says why."""

    @abstractmethod
    async def analyze(self, action: ActionBase) -> Assessment: ...

    async def close(self) -> None:
        """Release what the analyzer holds (an LLM client)."""
        return None


# Where a shell command or Python code writes: redirections, tee, cp/mv targets, open(..., "w").
_SHELL_WRITE = re.compile(r"(?:^|[^<>&0-9])>{1,2}\s*([^\s;&|<>]+)|\btee\s+(?:-a\s+)?([^\s;&|]+)")
_PY_WRITE = re.compile(
    r"""open\(\s*(?:rf?|fr?)?['"]([^'"]+)['"]\s*,\s*(?:mode\s*=\s*)?['"][^'"]*[wax+]"""
    r"""|Path\(\s*(?:rf?)?['"]([^'"]+)['"]\s*\)\s*\.\s*(?:write_text|write_bytes|unlink|rmdir)"""
)
_HARMLESS_TARGETS = ("/dev/null", "/dev/stdout", "/dev/stderr", "/tmp/", "/var/tmp/")


class RuleAnalyzer(SecurityAnalyzer):
    """Rules over the action's text, paths against the workspace, and the user's secrets."""

    def __init__(
        self,
        rules: Sequence[SecurityRule],
        *,
        workspace: Path,
        secret_names: Iterable[str] = (),
        secret_values: Iterable[str] = (),
    ) -> None:
        self.rules = list(rules)
        self.workspace = workspace.resolve()
        self._secret_names = sorted({n for n in secret_names if n})
        self._secret_values = [v for v in secret_values if len(v) >= 6]

    async def analyze(self, action: ActionBase) -> Assessment:
        return self.assess(action)

    def assess(self, action: ActionBase) -> Assessment:
        """The verdict, synchronously (rules need no I/O)."""
        if isinstance(action, (ThinkEvent, FinishEvent)):
            return LOW
        kind, text = action_text(action)
        if kind is None:
            return Assessment("unknown", f"no rules know {action.kind} actions")
        if len(text) > MAX_ANALYZED_CHARS:
            return Assessment("high", f"too long for the analyzer to check ({len(text)} chars)")
        verdict = LOW
        for rule in self.rules:
            if kind in rule.kinds and rule.regex.search(text):
                verdict = higher(verdict, Assessment(rule.risk, rule.reason))
        verdict = higher(verdict, self._paths(action, kind, text))
        return higher(verdict, self._secrets(text))

    def _paths(self, action: ActionBase, kind: ActionKind, text: str) -> Assessment:
        if isinstance(action, FileEditEvent):
            if self._outside(action.path):
                return Assessment("high", f"writes outside the workspace ({action.path})")
            return LOW
        if isinstance(action, FileReadEvent):
            if self._outside(action.path):
                return Assessment("medium", f"reads outside the workspace ({action.path})")
            return LOW
        pattern = _SHELL_WRITE if kind == "command" else _PY_WRITE
        for match in pattern.finditer(text):
            target = next((g for g in match.groups() if g), "")
            if target and self._outside(target, shell=kind == "command"):
                return Assessment("high", f"writes outside the workspace ({target})")
        return LOW

    def _outside(self, raw: str, *, shell: bool = False) -> bool:
        """Does ``raw`` name a place outside the workspace (scratch places aside)?"""
        if shell:
            with contextlib.suppress(ValueError):  # unbalanced quotes: judge it as written
                raw = (shlex.split(raw) or [raw])[0]
            if raw.startswith("$") or raw.startswith("&"):
                return False  # a variable or a descriptor: nothing to judge
        if raw.startswith(_HARMLESS_TARGETS) or raw in _HARMLESS_TARGETS:
            return False
        path = Path(os.path.expanduser(raw))
        if not path.is_absolute():
            path = self.workspace / path
        resolved = Path(os.path.normpath(path))
        return resolved != self.workspace and self.workspace not in resolved.parents

    def _secrets(self, text: str) -> Assessment:
        for value in self._secret_values:
            if value in text:
                return Assessment("high", "a secret value is written into the action")
        used = [n for n in self._secret_names if re.search(rf"\b{re.escape(n)}\b", text)]
        if used:
            return Assessment("medium", f"uses the secret {', '.join(used)}")
        return LOW


ANALYZER_PROMPT = """You review one action an AI agent is about to run in a user's workspace
({workspace}). Rate its risk: low (reads or inspects, or changes scratch files in the
workspace), medium (changes the user's files, installs packages, uses the network),
high (deletes or overwrites data, touches anything outside the workspace, sends data
out, uses credentials, cannot be undone). Answer with one JSON object and nothing else:
{{"risk": "low|medium|high", "reason": "<one short sentence>"}}"""


class LLMAnalyzer(SecurityAnalyzer):
    """Asks a model to rate the action, and keeps the higher of its and the rules' verdict.

    The model's answer is a judgement like the agent's own, so the rules still apply under
    it: the LLM analyzer can only raise a risk. A failed or unreadable answer is
    ``unknown`` (confirmation mode then asks the user)."""

    def __init__(self, llm: LLMClient, rules: RuleAnalyzer) -> None:
        self.llm = llm
        self.rules = rules

    async def analyze(self, action: ActionBase) -> Assessment:
        verdict = self.rules.assess(action)
        if isinstance(action, (ThinkEvent, FinishEvent)):
            return verdict
        payload = action.model_dump(
            mode="json",
            include={"kind", "command", "code", "path", "file_text", "old_str", "new_str"},
        )
        messages = [
            {"role": "system", "content": ANALYZER_PROMPT.format(workspace=self.rules.workspace)},
            {"role": "user", "content": json.dumps(payload, ensure_ascii=False)},
        ]
        try:
            response = await self.llm.complete(messages, [])
        except LLMError as exc:
            logger.warning("The LLM security analyzer failed: %s", exc.message)
            return higher(verdict, Assessment("unknown", "the LLM analyzer failed"))
        return higher(verdict, parse_llm_verdict(response.content or ""))

    async def close(self) -> None:
        await self.llm.close()


def parse_llm_verdict(text: str) -> Assessment:
    """The ``{"risk", "reason"}`` object in a model's answer, or ``unknown``."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    try:
        data = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or data.get("risk") not in ("low", "medium", "high"):
        return Assessment("unknown", "the LLM analyzer gave no usable rating")
    reason = str(data.get("reason") or "").strip()
    return Assessment(data["risk"], f"LLM analyzer: {reason}" if reason else "")


def build_analyzer(settings: AgentSettings, workspace: Path) -> SecurityAnalyzer | None:
    """The analyzer ``settings.security`` asks for (None: keep the LLM's own risk)."""
    from .security_rules import DEFAULT_RULES

    config = settings.security
    if config.analyzer == "none":
        return None
    rules = [*(DEFAULT_RULES if config.default_rules else ()), *config.rules]
    secret_values = [s.get_secret_value() for s in settings.secrets.values()]
    if settings.llm.api_key is not None:
        secret_values.append(settings.llm.api_key.get_secret_value())
    analyzer = RuleAnalyzer(
        rules, workspace=workspace, secret_names=settings.secrets, secret_values=secret_values
    )
    if config.analyzer == "llm":
        llm = settings.llm.model_copy(update={"model": config.llm_model or settings.llm.model})
        return LLMAnalyzer(LLMClient(llm), analyzer)
    return analyzer
