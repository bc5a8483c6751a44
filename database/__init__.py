"""Schema and numbered migrations of each database dialect (``sqlite/``, ``postgresql/``).

Installed inside the ``mt_core`` package as ``mt_core.database`` (see ``pyproject.toml``), so
that an installed wheel and an editable install both find the SQL with :mod:`importlib.resources`.
"""
