"""ACP (Agent Client Protocol) agent backends: external coding agents run in the sandbox."""

from .backend import AcpAgent, Launch

__all__ = ["AcpAgent", "Launch"]
