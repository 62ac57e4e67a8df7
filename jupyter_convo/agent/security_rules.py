"""The security analyzer's built-in rules (data, not code: users add their own the same way).

Each rule is a regular expression searched in a shell command or Python code. They are
deliberately broad: a false "high" costs a click in confirmation mode, a missed one costs
data. Paths outside the workspace and secret values are checked in ``security.py``.
"""

from __future__ import annotations

from .security import SecurityRule

_SH: list[str] = ["command"]
_PY: list[str] = ["python"]
_BOTH: list[str] = ["command", "python"]


def _rule(name: str, pattern: str, risk: str, reason: str, kinds: list[str]) -> SecurityRule:
    return SecurityRule.model_validate(
        {"name": name, "pattern": pattern, "risk": risk, "reason": reason, "kinds": kinds}
    )


DEFAULT_RULES: tuple[SecurityRule, ...] = (
    # --- destructive -------------------------------------------------------------------
    _rule(
        "rm-recursive",
        r"\brm\s+(?:-[a-z]*[rf][a-z]*\s+|--(?:recursive|force)\s+)+",
        "high",
        "deletes files recursively or by force",
        _SH,
    ),
    _rule("rm", r"(?:^|[;&|]\s*|\bsudo\s+)rm\s", "medium", "deletes files", _SH),
    _rule(
        "disk-tools",
        r"\b(?:mkfs(?:\.\w+)?|shred|wipefs|fdisk|parted)\b|\bdd\b[^\n]*\bof=",
        "high",
        "writes to disks or destroys data",
        _SH,
    ),
    _rule("fork-bomb", r":\(\)\s*\{\s*:\|:&\s*\};:", "high", "a fork bomb", _SH),
    _rule(
        "chmod-recursive",
        r"\bch(?:mod|own)\s+-[a-z]*R",
        "high",
        "changes permissions recursively",
        _SH,
    ),
    _rule("sudo", r"(?:^|[;&|]\s*)sudo\b", "high", "runs as root", _SH),
    _rule(
        "git-history",
        r"\bgit\s+(?:push\s+[^\n]*(?:--force|-f\b)|reset\s+--hard|clean\s+-[a-z]*f)",
        "high",
        "rewrites or throws away git history or files",
        _SH,
    ),
    _rule(
        "sql-drop",
        r"\b(?:DROP\s+(?:TABLE|DATABASE|SCHEMA)|TRUNCATE\s+TABLE)\b",
        "high",
        "drops database tables",
        _BOTH,
    ),
    _rule(
        "py-delete-tree",
        r"\bshutil\.rmtree\b|\bos\.(?:removedirs)\b",
        "high",
        "deletes a directory tree",
        _PY,
    ),
    _rule(
        "py-delete",
        r"\bos\.(?:remove|unlink|rmdir)\b|\.unlink\(|\.rmdir\(",
        "medium",
        "deletes files",
        _PY,
    ),
    _rule(
        "py-shell",
        r"\b(?:os\.system|subprocess\.\w+|os\.popen|pty\.spawn)\s*\(|^\s*!",
        "medium",
        "runs shell commands from Python",
        _PY,
    ),
    _rule(
        "py-eval",
        r"\b(?:eval|exec)\s*\(\s*(?:base64|codecs|bytes\.fromhex|zlib)",
        "high",
        "runs obfuscated code",
        _PY,
    ),
    _rule(
        "sh-eval-decoded",
        r"base64\s+(?:-d|--decode)[^\n]*\|\s*(?:ba|z)?sh\b",
        "high",
        "runs obfuscated code",
        _SH,
    ),
    # --- exfiltration: data sent out -------------------------------------------------
    _rule(
        "http-upload",
        r"\bcurl\b[^\n]*\s(?:-d|--data\S*|-F|--form|-T|--upload-file)\b"
        r"|\bwget\b[^\n]*--post-(?:data|file)",
        "high",
        "sends data over the network",
        _SH,
    ),
    _rule(
        "raw-transfer",
        r"\b(?:nc|ncat|netcat|socat|scp|sftp|ftp)\s|\brsync\b[^\n]*\S+:",
        "high",
        "transfers data to another machine",
        _SH,
    ),
    _rule(
        "pipe-to-shell",
        r"\b(?:curl|wget)\b[^\n]*\|\s*(?:sudo\s+)?(?:ba|z)?sh\b",
        "high",
        "runs a script downloaded from the network",
        _SH,
    ),
    _rule(
        "py-upload",
        r"\b(?:requests|httpx|session|client)\.(?:post|put|patch)\s*\(|\bsmtplib\b"
        r"|\bftplib\b|urlopen\([^)]*data\s*=",
        "high",
        "sends data over the network",
        _PY,
    ),
    _rule(
        "secret-files",
        r"~?/?\.(?:ssh|aws|gnupg|netrc|docker/config|kube/config|git-credentials)\b"
        r"|/etc/(?:shadow|sudoers)",
        "high",
        "touches credential files",
        ["command", "python", "file_read", "file_edit"],
    ),
    _rule(
        "env-dump",
        r"(?:^|[;&|]\s*)(?:env|printenv|set)\s*(?:$|[|>;])|os\.environ\s*\)|dict\(os\.environ",
        "medium",
        "reads every environment variable (secrets included)",
        _BOTH,
    ),
    _rule(
        "token-literal",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{30,}|sk-[A-Za-z0-9_-]{20,}"
        r"|xox[abpr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|glpat-[A-Za-z0-9_-]{20})"
        r"|-----BEGIN [A-Z ]*PRIVATE KEY-----",
        "high",
        "a credential is written into the action",
        ["command", "python", "file_edit"],
    ),
    # --- installs and network --------------------------------------------------------
    _rule(
        "package-install",
        r"\b(?:pip3?|uv\s+pip|poetry|conda|mamba|micromamba|npm|yarn|pnpm|gem|cargo|go)"
        r"\s+(?:install|add|get)\b|\b(?:apt|apt-get|dnf|yum|apk|brew)\s+(?:install|add)\b",
        "medium",
        "installs packages",
        _BOTH,
    ),
    _rule(
        "network",
        r"\b(?:curl|wget|ssh|telnet|ping|dig|nslookup)\s|\bgit\s+(?:clone|fetch|pull|push)\b",
        "medium",
        "uses the network",
        _SH,
    ),
    _rule(
        "py-network",
        r"\b(?:requests|httpx|aiohttp|urllib\.request|urllib3|socket|http\.client"
        r"|paramiko)\b",
        "medium",
        "uses the network",
        _PY,
    ),
)
