"""docs/openapi.yaml describes exactly the routes the extension registers, both ways.

The registered routes are read from a running server (pytest-jupyter, in process): every
rule of the web app under ``api/convo/`` and the HTTP methods its handler implements.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_serverapp and friends)
from tornado import web
from traitlets.config import Config

REPO = Path(__file__).resolve().parents[2]
DOCUMENT = REPO / "docs" / "openapi.yaml"
METHODS = ("get", "post", "put", "patch", "delete")
GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


@pytest.fixture  # type: ignore[no-redef]
def jp_server_config(tmp_path: Path) -> Config:
    return Config(
        {
            "ServerApp": {
                "jpserver_extensions": {"jupyter_convo": True, "jupyter_server_terminals": False}
            },
            "ConvoExtension": {"data_dir": str(tmp_path / "convo-data")},
        }
    )


def implemented(handler: type[web.RequestHandler]) -> set[str]:
    """The methods a handler class really answers (not tornado's 405 defaults)."""
    return {
        name
        for name in METHODS
        if getattr(handler, name, None) is not getattr(web.RequestHandler, name)
    }


def openapi_path(pattern: str, base_url: str) -> str:
    """``/api/convo/conversations/(?P<conversation_id>...)/workspace\\.zip`` ->
    ``/api/convo/conversations/{conversation_id}/workspace.zip``."""
    path = pattern.removesuffix("$")
    path = GROUP.sub(lambda match: "{" + match.group(1) + "}", path)
    path = path.replace("\\", "")
    assert path.startswith(base_url), path
    return "/" + path[len(base_url) :]


def registered_routes(serverapp: Any) -> set[tuple[str, str]]:
    base_url = serverapp.base_url
    found: set[tuple[str, str]] = set()
    for rule in serverapp.web_app.default_router.rules[0].target.rules:
        pattern = getattr(rule.matcher, "regex", None)
        if pattern is None or "api/convo/" not in pattern.pattern:
            continue
        handler = rule.target
        for method in implemented(handler):
            found.add((openapi_path(pattern.pattern, base_url), method))
    return found


def documented_routes() -> set[tuple[str, str]]:
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return {(path, method) for path, item in document["paths"].items() for method in item}


def test_the_document_lists_every_registered_route_and_no_other(jp_serverapp: Any) -> None:
    registered = registered_routes(jp_serverapp)
    documented = documented_routes()
    assert len(registered) > 20, registered
    undocumented = sorted(registered - documented)
    missing = sorted(documented - registered)
    assert not undocumented, f"registered but not in docs/openapi.yaml: {undocumented}"
    assert not missing, f"in docs/openapi.yaml but not registered: {missing}"


def test_the_document_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("openapi_gen", REPO / "scripts" / "openapi.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = generator  # dataclasses look their module up
    spec.loader.exec_module(generator)
    assert DOCUMENT.read_text(encoding="utf-8") == generator.render(), (
        "docs/openapi.yaml is out of date: run python scripts/openapi.py"
    )


def test_the_document_is_valid_openapi() -> None:
    from openapi_spec_validator import validate

    validate(yaml.safe_load(DOCUMENT.read_text(encoding="utf-8")))
