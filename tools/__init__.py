"""Build and check tools (``tools/package.py``, ``tools/validate_template.py``, ``tools/audit.py``).

A package, installed by ``make venv`` like ``ops``, ``devstack`` and ``bench``: ``python -m tools.package``
works from any working directory, and so does ``.venv/bin/python tools/package.py``.
"""
