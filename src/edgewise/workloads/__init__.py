"""Workloads: model zoo, inference and training runners, datasets with drift, traces.

Submodules are imported lazily by their users (``edgewise.workloads.zoo`` pulls in
torch and transformers); this package re-exports nothing heavy on import:

- :mod:`edgewise.workloads.zoo`: ``MODEL_NAMES``, ``build_model``, ``ZooModel``
- :mod:`edgewise.workloads.runner`: ``set_threads``, ``InferenceRunner``, ``train_steps``
- :mod:`edgewise.workloads.datasets`: ``digits_images``, ``lfw_images``, ``make_drift_splits``
- :mod:`edgewise.workloads.traces`: ``load_trace``, ``resample``, ``scale_to_peak``,
  ``compress_time``, ``poisson_arrivals``
"""
