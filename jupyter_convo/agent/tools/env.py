"""The environment variables the agent's shell and kernel start with."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

from ..settings import AgentSettings

log = logging.getLogger(__name__)

# Our own runtime's variables (its session key above all) are not the agent's business.
PRIVATE_PREFIXES = ("JUPYTER_CONVO_",)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def agent_environment(
    settings: AgentSettings, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``base`` (default: this process's environment) without our private variables,
    plus the user's secrets under their names so commands and code can use them.
    """
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith(PRIVATE_PREFIXES)}
    for name, value in settings.secrets.items():
        if not ENV_NAME.fullmatch(name):
            log.warning("secret %r is not a valid environment variable name; not exported", name)
            continue
        env[name] = value.get_secret_value()
    return env
