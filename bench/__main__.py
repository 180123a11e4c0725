"""`python -m bench list` · `python -m bench run <scenario>|--all`.

Each run prints a table and, as its last line, one JSON object; results go to
bench/results/<scenario>.json. Exit status 1 when any scenario has `correct: false`. `--all`
leaves out the scenarios that run only when named (`ON_REQUEST`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

# A developer's .env must not steer a benchmark (a Sentry DSN, a Prefect server). The settings
# module reads the file's name once, when first imported: so this comes before the scenarios.
os.environ.setdefault("SYNCFLOWS_ENV_FILE", os.devnull)

from bench.harness import peak_rss_mb, report, save
from bench.scenarios import ON_REQUEST, SCENARIOS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the scenarios")
    run = commands.add_parser("run", help="run one scenario, or all with --all")
    run.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS | ON_REQUEST))
    run.add_argument("--all", action="store_true", help="run every scenario but on-request ones")
    args = parser.parse_args(argv)

    if args.command == "list":
        for scenario in SCENARIOS.values():
            print(f"{scenario.name:28} {scenario.description}")  # noqa: T201
        for scenario in ON_REQUEST.values():
            print(f"{scenario.name:28} {scenario.description} [on request]")  # noqa: T201
        return 0
    if not args.all and not args.scenario:
        parser.error("name a scenario or pass --all")
    if args.all:
        # One process per scenario, so each peak RSS is that scenario's alone.
        codes = [
            subprocess.run([sys.executable, "-m", "bench", "run", name], check=False).returncode
            for name in sorted(SCENARIOS)
        ]
        return max(codes, default=0)
    result = (SCENARIOS | ON_REQUEST)[args.scenario].run()
    if not result.peak_rss_mb:  # a scenario may measure it earlier, before its own checks
        result.peak_rss_mb = peak_rss_mb()
    save(result)
    print(f"== {args.scenario}\n{report(result)}", flush=True)  # noqa: T201
    return 0 if result.correct else 1


if __name__ == "__main__":
    sys.exit(main())
