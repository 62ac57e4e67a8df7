"""Share and reproduce: export, import, replay and notebook export of conversations.

Imports stay lazy here so ``import jupyter_convo.share`` is cheap; use the submodules:
``export`` (zip a conversation), ``importer`` (validate and unpack one), ``replay``
(re-run it step by step), ``notebook`` (turn it into an ``.ipynb``) and ``normalize``
(what a replayed step is compared with).
"""

from __future__ import annotations
