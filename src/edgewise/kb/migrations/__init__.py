"""Alembic environment of the knowledge base (run by :mod:`edgewise.kb.migrate`).

``env.py`` is executed by Alembic, with the open connection handed over in
``config.attributes["connection"]``; ``versions/`` holds one file per revision. Users
never need an ``alembic.ini``: :meth:`edgewise.kb.KnowledgeBase.open` upgrades a
database on open.
"""
