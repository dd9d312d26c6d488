"""Local development stack: stand-ins for external services used by tests and local runs.

Standard library only; nothing here imports from ``src/``.
"""
