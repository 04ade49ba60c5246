"""User-facing errors.

Anything a person can fix (a bad file, an unknown model, an impossible SLO) is raised
as an :class:`EdgewiseError` whose message is one line saying what and where. The CLI
prints that line and exits with code 2; library callers catch the exception.
"""

from __future__ import annotations


class EdgewiseError(Exception):
    """An error a user can act on; ``str(err)`` is one line saying what and where."""

    exit_code: int = 2


class SpecError(EdgewiseError):
    """A specification file (YAML) is malformed or violates a constraint."""


class TraceError(EdgewiseError):
    """A workload trace is malformed: gaps, duplicates, negatives, non-numeric cells."""


class UnknownNameError(EdgewiseError):
    """A model, app, workload or policy name that edgewise does not know."""


class InfeasibleError(EdgewiseError):
    """A planning problem has no solution (rate too high, SLO too tight, no device)."""


class EnvironmentProblem(EdgewiseError):
    """The host lacks something edgewise needs (stress-ng, cgroups, a reachable Ray)."""
