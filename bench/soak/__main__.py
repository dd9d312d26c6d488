"""``python -m bench.soak --updates 20000``: see ``bench.soak``."""

from bench.soak.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
