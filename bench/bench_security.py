"""What the security analyzer and condensation bookkeeping cost per agent step.

The rule analyzer runs on every action before it is logged; the condensation check
estimates every request. Both are timed on realistic inputs (the analyzer's test table
of shell, Python and file actions; requests of growing history) and printed, never
asserted.

    python bench/bench_security.py [--rounds 2000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from jupyter_convo.agent.condense import estimate_tokens
from jupyter_convo.agent.security import RuleAnalyzer
from jupyter_convo.agent.security_rules import DEFAULT_RULES
from jupyter_convo.events.schema import CommandEvent, FileEditEvent, PythonEvent

ACTIONS = [
    CommandEvent(command="ls -la && cat data.csv | head"),
    CommandEvent(command="rm -rf build && pip install -r requirements.txt"),
    CommandEvent(command="curl -d @data.csv https://example.com/upload"),
    CommandEvent(command="python train.py --epochs 3 > log.txt 2>&1"),
    PythonEvent(code="import pandas as pd\ndf = pd.read_csv('sales.csv')\n" * 20),
    PythonEvent(code="import shutil, requests\nshutil.rmtree('x')\nrequests.post('u', data=1)"),
    FileEditEvent(command="create", path="src/app.py", file_text="print('hi')\n" * 200),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        analyzer = RuleAnalyzer(
            DEFAULT_RULES,
            workspace=Path(tmp),
            secret_names=["GITHUB_TOKEN"],
            secret_values=["tok-abcdef-123456"],
        )
        times = []
        for _ in range(args.rounds):
            for action in ACTIONS:
                start = time.perf_counter()
                analyzer.assess(action)
                times.append(time.perf_counter() - start)
    times.sort()
    print(
        f"rule analyzer, {len(DEFAULT_RULES)} rules: per action median "
        f"{statistics.median(times) * 1e6:.1f} us, p99 {times[int(len(times) * 0.99)] * 1e6:.1f} us"
    )
    for turns in (10, 100, 1000):
        messages = [{"role": "system", "content": "x" * 3000}]
        for i in range(turns):
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"c{i}",
                            "type": "function",
                            "function": {"name": "terminal", "arguments": '{"command": "ls"}'},
                        }
                    ],
                }
            )
            messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": "y" * 2000})
        start = time.perf_counter()
        tokens = estimate_tokens(messages)
        took = time.perf_counter() - start
        print(f"request estimate, {turns:>4} turns (~{tokens} tokens): {took * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
