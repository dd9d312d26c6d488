"""Operator tools for a deployed stack: ``python -m ops.<tool>``, from any working directory.

They are not part of what ships (the Lambda package is ``src/`` only), but they read what the function
writes, so they import its definitions (for example the dead-letter schema) from ``thread_updater``.
``make venv`` installs the project into ``.venv`` (editable; pyproject.toml), which makes both
``thread_updater`` (from ``src/``) and ``ops`` importable without ``PYTHONPATH`` or ``sys.path`` edits.
"""
