"""ACP (Agent Client Protocol) agent backends: external coding agents run in the sandbox."""

from .backend import AcpAgent, Launch, LLMAccess

__all__ = ["AcpAgent", "LLMAccess", "Launch"]
