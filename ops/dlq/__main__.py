"""``python -m ops.dlq inspect|replay``: see ``ops.dlq.cli``."""

import sys

from ops.dlq.cli import main

sys.exit(main())
