"""``python -m thread_updater``: operator commands for a deployed stack.

``dlq inspect`` summarises the dead-letter queue without deleting anything; ``dlq replay`` sends
selected dead letters back to the source queue or event bus (see ``--help`` of each).
Runs from ``src/`` on ``sys.path``: ``PYTHONPATH=src python -m thread_updater dlq inspect``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from thread_updater import dlq


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m thread_updater",
        description="Operator commands for a deployed portkey-thread-updater stack.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dlq.add_parser(commands)
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
