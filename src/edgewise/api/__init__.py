"""The use cases of edgewise as plain functions: the Python API.

This package is the only place that wires the pure cores (policies, planners,
forecasters, surrogates), the adapters (processes, cgroups, Ray, HTTP) and the
knowledge base together. The CLI, the benchmarks and the demo parse their input,
call a function here and render what it returns; none of them wires a use case
itself. Each use case is imported from its module (a use case and its module share
a name, so the package itself re-exports nothing)::

    from edgewise.api.profile import stress, profile, predict, benchmark_interference
    from edgewise.api.forecast import forecast, benchmark_forecast
    from edgewise.api.capacity import capacity
    from edgewise.api.plan import plan
    from edgewise.api.serve import serve
    from edgewise.api.replay import replay
    from edgewise.api.simulate import simulate_serving
    from edgewise.api.retrain import retrain, benchmark_retrain

Conventions every module here follows:

- A use case is a function with keyword arguments in the domain's words and a typed
  result (a frozen dataclass with an ``as_dict()`` for JSON), never a printed line.
- The knowledge base is passed in as a URL or path (``kb: str | None``; ``None`` is the
  default file under the state directory) and opened inside the call.
- Progress is reported through an optional ``progress(phase, done, total)`` callable;
  nothing here writes to the screen.
- Errors a user can act on are :class:`edgewise.errors.EdgewiseError` subclasses with a
  one-line message; the CLI turns them into exit codes.
"""
