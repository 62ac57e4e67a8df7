"""The widget module imports, and says it cannot show, when its front end is not built."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_convo.kernel import widgets


def test_a_missing_front_end_is_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(widgets, "STATIC", tmp_path)
    assert widgets._asset("widget.js", "fallback") == "fallback"
    assert not widgets.widgets_available()  # the magics show the static transcript
    (tmp_path / "widget.js").write_text("export default {}")
    assert widgets._asset("widget.js", "fallback") == tmp_path / "widget.js"
    assert widgets.widgets_available()
