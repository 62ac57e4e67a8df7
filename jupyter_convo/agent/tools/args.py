"""Reading the LLM's tool arguments, and the JSON-schema pieces the tools share.

LLMs send JSON that is almost right: numbers as strings, nulls for absent values. The
readers accept those where the meaning is plain and otherwise raise ``ToolArgumentError``
with a message the LLM can act on.
"""

from __future__ import annotations

import math
from typing import Any, cast

from ...events.schema import SecurityRisk
from .base import ToolArgumentError

RISK_LEVELS = ("low", "medium", "high")

SECURITY_RISK_PROPERTY: dict[str, Any] = {
    "type": "string",
    "enum": list(RISK_LEVELS),
    "description": (
        "Your own judgement of this action's risk. low: reads or inspects, or changes only "
        "scratch files in the workspace. medium: changes the user's files, installs "
        "packages, or runs code with side effects that can be undone. high: deletes or "
        "overwrites data, touches anything outside the workspace, sends data over the "
        "network, or cannot be undone. When the user asked to confirm risky actions, "
        "high ones (and any you leave unrated) wait for their approval."
    ),
}


def function_spec(
    name: str, description: str, properties: dict[str, Any], required: list[str]
) -> dict[str, Any]:
    """A Chat Completions function tool definition."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


def timeout_property(default: float, what: str) -> dict[str, Any]:
    return {
        "type": "number",
        "exclusiveMinimum": 0,
        "description": (
            f"Seconds before the {what} is interrupted (default {default:g}). Raise it for "
            "work you know is slow, such as installs, downloads or model training."
        ),
    }


def security_risk(arguments: dict[str, Any]) -> SecurityRisk:
    """The declared risk; ``unknown`` when the LLM gave none."""
    value = arguments.get("security_risk")
    if value is None or value == "":
        return "unknown"
    if not isinstance(value, str) or value.strip().lower() not in RISK_LEVELS:
        raise ToolArgumentError(
            f"security_risk must be one of {', '.join(RISK_LEVELS)}; got {value!r}"
        )
    return cast(SecurityRisk, value.strip().lower())


def required_str(arguments: dict[str, Any], name: str, *, allow_empty: bool = False) -> str:
    value = arguments.get(name)
    if value is None:
        raise ToolArgumentError(f"missing required argument {name!r}")
    if not isinstance(value, str):
        raise ToolArgumentError(f"{name} must be a string; got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ToolArgumentError(f"{name} must not be empty")
    return value


def optional_str(arguments: dict[str, Any], name: str) -> str | None:
    value = arguments.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ToolArgumentError(f"{name} must be a string; got {type(value).__name__}")
    return value


def optional_int(arguments: dict[str, Any], name: str) -> int | None:
    """An integer, also when sent as a string of digits; ``None`` when absent."""
    value = arguments.get(name)
    if value is None or value == "":
        return None
    return as_int(value, name)


def as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ToolArgumentError(f"{name} must be an integer; got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ToolArgumentError(f"{name} must be an integer; got {value!r}")


def optional_timeout(arguments: dict[str, Any]) -> float | None:
    """A positive, finite number of seconds; ``None`` when absent (use the default)."""
    value = arguments.get("timeout")
    if value is None or value == "":
        return None
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or number <= 0:
        raise ToolArgumentError(f"timeout must be a positive number of seconds; got {value!r}")
    return number
