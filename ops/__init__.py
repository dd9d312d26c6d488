"""Operator tools for a deployed stack, run from the repository root: ``python -m ops.<tool>``.

They are not part of what ships (the Lambda package is ``src/`` only), but they read what the function
writes, so they import its definitions (for example the dead-letter schema) from ``thread_updater``.
That package is not installed anywhere: ``src/`` is what Lambda's ``/var/task`` holds. Putting
``src/`` on ``sys.path`` here, once, lets every tool under ``ops`` import it without anyone setting
``PYTHONPATH`` by hand.
"""

import sys
from pathlib import Path

_SRC = str(Path(__file__).resolve().parent.parent / "src")
if _SRC not in sys.path:
    sys.path.append(_SRC)
