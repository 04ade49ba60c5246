"""Surrogate interference models (scikit-learn estimator contract).

Each surrogate maps a feature matrix (achieved resource vector plus the target's solo
footprint) to a positive latency in ms, modelled in log space. All share the contract:
``__init__`` stores parameters only, ``fit(X, y) -> self``, learned state ends in ``_``,
``predict`` refuses an unfitted model, and in addition

* ``predict_log_std(X)`` — predictive spread in log space (for active sampling);
* ``predict_interval(X, level=0.9)`` — split-conformal intervals calibrated on K-fold
  cross-validation residuals (normalised by the model's own spread where it has one).

:func:`select_surrogate` picks the model with the lowest cross-validated median
absolute percentage error. A fitted surrogate becomes data with ``to_state()`` /
:func:`surrogate_from_state`; the interference model (per-percentile surrogates) is
stored in the knowledge base through the codec registered at the end of this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.exceptions import NotFittedError
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_array, check_X_y

from edgewise.kb.codecs import Codec, Encoded, register


def _conformal_quantile(scores: np.ndarray, level: float) -> float:
    """Finite-sample split-conformal quantile of non-negative scores."""
    s = np.sort(np.asarray(scores, dtype=float))
    n = s.size
    if n == 0:
        return float("inf")
    k = int(np.ceil((n + 1) * level))
    return float(s[min(k, n) - 1])


class _LogSurrogate(RegressorMixin, BaseEstimator):
    """Shared plumbing: log targets, scaling, CV conformity scores."""

    cv: int
    random_state: int

    # subclasses implement these three on scaled X and log y
    def _fit_core(self, X: np.ndarray, z: np.ndarray) -> Any:
        raise NotImplementedError

    def _predict_core(self, core: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean log latency and spread (log-space std or half-width proxy)."""
        raise NotImplementedError

    def _fit_core_cv(self, X: np.ndarray, z: np.ndarray) -> Any:
        """The fit used inside cross-validation folds (cheaper where it matters)."""
        return self._fit_core(X, z)

    def fit(self, X: Any, y: Any) -> _LogSurrogate:
        X, y = check_X_y(X, y, dtype=float, y_numeric=True)
        if np.any(y <= 0):
            raise ValueError("latencies must be positive")
        self.n_features_in_ = X.shape[1]
        # constant columns (e.g. a single workload's solo footprint) carry no signal
        # and only slow the kernel optimiser down: drop them
        keep = X.std(axis=0) > 1e-12
        self.keep_ = keep if keep.any() else np.ones_like(keep)
        X = X[:, self.keep_]
        self.scaler_ = StandardScaler().fit(X)
        z = np.log(y)
        self.core_ = self._fit_core(self.scaler_.transform(X), z)
        self.scores_ = self._cv_scores(X, z)
        return self

    def _cv_scores(self, X: np.ndarray, z: np.ndarray) -> np.ndarray:
        n = X.shape[0]
        k = min(self.cv, n)
        if k < 2:
            return np.array([])
        scores: list[float] = []
        for tr, te in KFold(k, shuffle=True, random_state=self.random_state).split(X):
            sc = StandardScaler().fit(X[tr])
            core = self._fit_core_cv(sc.transform(X[tr]), z[tr])
            mu, spread = self._predict_core(core, sc.transform(X[te]))
            scores += list(np.abs(z[te] - mu) / np.maximum(spread, 1e-6))
        return np.asarray(scores)

    def _check(self, X: Any) -> np.ndarray:
        if not hasattr(self, "core_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit first")
        Xa = check_array(X, dtype=float)
        if Xa.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {Xa.shape[1]} features, expected {self.n_features_in_}")
        return self.scaler_.transform(Xa[:, self.keep_])

    def to_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The fitted surrogate as data: JSON state and its fitted scikit-learn parts.

        The parts (the feature scaler and the core estimator) are stored with skops by
        the knowledge base; :func:`surrogate_from_state` is the inverse.

        Raises
        ------
        NotFittedError
            If the surrogate is not fitted.
        """
        if not hasattr(self, "core_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit first")
        name = next(n for n, make in SURROGATES.items() if make is type(self))
        state = {
            "surrogate": name,
            "params": self.get_params(),
            "n_features_in": int(self.n_features_in_),
            "keep": [bool(k) for k in self.keep_],
            "scores": [float(v) for v in self.scores_],
        }
        return state, {"scaler": self.scaler_, "core": self.core_}

    def predict(self, X: Any) -> np.ndarray:
        Xs = self._check(X)
        mu, _ = self._predict_core(self.core_, Xs)
        return np.exp(mu)

    def predict_log_std(self, X: Any) -> np.ndarray:
        Xs = self._check(X)
        _, spread = self._predict_core(self.core_, Xs)
        return spread

    def predict_interval(self, X: Any, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        Xs = self._check(X)
        mu, spread = self._predict_core(self.core_, Xs)
        q = _conformal_quantile(self.scores_, level)
        if not np.isfinite(q):
            q = 1.645 if level <= 0.9 else 2.576
        return np.exp(mu - q * spread), np.exp(mu + q * spread)


class GPSurrogate(_LogSurrogate):
    """Gaussian process: constant × Matern (ARD) + white noise, normalised log targets."""

    def __init__(
        self, nu: float = 2.5, n_restarts: int = 1, cv: int = 5, random_state: int = 0
    ) -> None:
        self.nu = nu
        self.n_restarts = n_restarts
        self.cv = cv
        self.random_state = random_state

    def _fit_core_cv(self, X: np.ndarray, z: np.ndarray) -> Any:
        return self._fit_core(X, z, restarts=0)

    def _fit_core(self, X: np.ndarray, z: np.ndarray, restarts: int | None = None) -> Any:
        d = X.shape[1]
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
            length_scale=np.ones(d), length_scale_bounds=(1e-2, 1e3), nu=self.nu
        ) + WhiteKernel(1e-2, (1e-6, 1.0))
        gp = GaussianProcessRegressor(
            kernel=kernel,
            normalize_y=True,
            n_restarts_optimizer=self.n_restarts if restarts is None else restarts,
            random_state=self.random_state,
        )
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gp.fit(X, z)

    def _predict_core(self, core: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu, sd = core.predict(X, return_std=True)
        return np.asarray(mu), np.maximum(np.asarray(sd), 1e-6)

    def variance_reduction(self, X: Any) -> np.ndarray:
        """For each row x of ``X``: how much one more run at x would lower the predictive
        variance summed over all rows (Cohn's active-learning criterion).

        Picking the maximum spreads runs where held-out points are expected to fall, not
        only at the corners where the variance alone peaks. Log space, scaled features.
        """
        Xs = self._check(X)
        _, cov = self.core_.predict(Xs, return_cov=True)
        noise = float(self.core_.kernel_.k2.noise_level)  # the WhiteKernel term
        noise *= float(np.ravel(getattr(self.core_, "_y_train_std", 1.0))[0]) ** 2
        latent = cov - noise * np.eye(len(cov))
        return np.asarray((latent**2).sum(axis=0) / np.maximum(np.diag(cov), 1e-12))


class QuantileGBSurrogate(_LogSurrogate):
    """Gradient boosting with quantile loss: median model plus lower/upper quantiles.

    The spread is half the 5–95% quantile width; intervals are conformalised.
    """

    def __init__(
        self,
        n_estimators: int = 150,
        max_depth: int = 2,
        learning_rate: float = 0.05,
        cv: int = 5,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.cv = cv
        self.random_state = random_state

    def _fit_core(self, X: np.ndarray, z: np.ndarray) -> Any:
        def gb(alpha: float) -> GradientBoostingRegressor:
            return GradientBoostingRegressor(
                loss="quantile",
                alpha=alpha,
                n_estimators=self.n_estimators,
                max_depth=self.max_depth,
                learning_rate=self.learning_rate,
                min_samples_leaf=2,
                random_state=self.random_state,
            ).fit(X, z)

        return (gb(0.5), gb(0.05), gb(0.95))

    def _predict_core(self, core: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mid, lo, hi = (m.predict(X) for m in core)
        spread = np.maximum((hi - lo) / 2.0, 1e-3)
        return np.asarray(mid), spread


class LinearSurrogate(_LogSurrogate):
    """Ridge regression on log latency: the baseline; constant spread."""

    def __init__(self, alpha: float = 1.0, cv: int = 5, random_state: int = 0) -> None:
        self.alpha = alpha
        self.cv = cv
        self.random_state = random_state

    def _fit_core(self, X: np.ndarray, z: np.ndarray) -> Any:
        return Ridge(alpha=self.alpha).fit(X, z)

    def _predict_core(self, core: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu = core.predict(X)
        return np.asarray(mu), np.ones_like(mu)


SURROGATES: dict[str, Callable[[], _LogSurrogate]] = {
    "gp": GPSurrogate,
    "gbq": QuantileGBSurrogate,
    "linear": LinearSurrogate,
}


def surrogate_from_state(state: Mapping[str, Any], parts: Mapping[str, Any]) -> _LogSurrogate:
    """The fitted surrogate that :meth:`_LogSurrogate.to_state` described.

    Parameters
    ----------
    state
        The JSON state (surrogate name, parameters, kept columns, conformity scores).
    parts
        The fitted scikit-learn parts, ``scaler`` and ``core``.
    """
    model = SURROGATES[str(state["surrogate"])]().set_params(**dict(state["params"]))
    model.n_features_in_ = int(state["n_features_in"])
    model.keep_ = np.asarray(state["keep"], dtype=bool)
    model.scaler_ = parts["scaler"]
    core = parts["core"]
    model.core_ = tuple(core) if isinstance(core, list) else core
    model.scores_ = np.asarray(state["scores"], dtype=float)
    return model


def ape(y_true: Any, y_pred: Any) -> np.ndarray:
    """Absolute percentage errors (%)."""
    t = np.asarray(y_true, dtype=float)
    return 100.0 * np.abs(np.asarray(y_pred, dtype=float) - t) / t


def cv_median_ape(
    est: _LogSurrogate,
    X: np.ndarray,
    y: np.ndarray,
    cv: int = 5,
    seed: int = 0,
    extra_X: np.ndarray | None = None,
    extra_y: np.ndarray | None = None,
) -> float:
    """Median APE (%) of K-fold cross-validated predictions.

    ``extra_X``/``extra_y`` (pooled data from other workloads) join every training
    fold but are never scored.
    """
    n = len(y)
    k = min(cv, n)
    if k < 2:
        return float("inf")
    has_extra = extra_X is not None and extra_y is not None and len(extra_y) > 0
    errs: list[float] = []
    for tr, te in KFold(k, shuffle=True, random_state=seed).split(X):
        m = clone(est).set_params(cv=1)
        if "n_restarts" in m.get_params():
            m.set_params(n_restarts=0)  # folds only rank models: skip optimiser restarts
        if has_extra:
            assert extra_X is not None and extra_y is not None
            m.fit(np.vstack([extra_X, X[tr]]), np.concatenate([extra_y, y[tr]]))
        else:
            m.fit(X[tr], y[tr])
        errs += list(ape(y[te], m.predict(X[te])))
    return float(np.median(errs))


def select_surrogate(
    X: Any,
    y: Any,
    names: Sequence[str] = ("gp", "gbq", "linear"),
    cv: int = 5,
    seed: int = 0,
    extra_X: Any = None,
    extra_y: Any = None,
) -> tuple[str, _LogSurrogate, dict[str, float]]:
    """Fit the surrogate with the lowest CV median APE; returns (name, fitted, scores).

    With one candidate the cross-validation is skipped (its score is reported as NaN).
    ``extra_X``/``extra_y`` are pooled rows used for training, never for scoring.
    """
    Xa = np.asarray(X, dtype=float)
    ya = np.asarray(y, dtype=float)
    ex = None if extra_X is None else np.asarray(extra_X, dtype=float)
    ey = None if extra_y is None else np.asarray(extra_y, dtype=float)
    if len(names) == 1:
        scores = {names[0]: float("nan")}
    else:
        scores = {
            n: cv_median_ape(
                SURROGATES[n]().set_params(random_state=seed), Xa, ya, cv, seed, ex, ey
            )
            for n in names
        }
    best = min(scores, key=lambda n: scores[n]) if len(names) > 1 else names[0]
    if ex is not None and ey is not None and len(ey) > 0:
        Xa, ya = np.vstack([ex, Xa]), np.concatenate([ey, ya])
    model = SURROGATES[best]().set_params(random_state=seed, cv=cv).fit(Xa, ya)
    return best, model, scores


# ------------------------------------------------------------ stored as data

#: Format name of a stored interference model (per-percentile surrogates and what they
#: were trained on); see :mod:`edgewise.kb.codecs`.
INTERFERENCE_MODEL_FORMAT = "edgewise.interference-model"
INTERFERENCE_MODEL_VERSION = 1


def _interference_model_type() -> type:
    # campaign imports this module, so the class is only looked up when a codec runs.
    from edgewise.interference.campaign import InterferenceModel

    return InterferenceModel


def encode_interference_model(model: Any) -> Encoded:
    """An ``InterferenceModel`` as JSON state plus its surrogates' fitted parts."""
    states: dict[str, Any] = {}
    parts: dict[str, Any] = {}
    for percentile, surrogate in model.models.items():
        state, fitted = surrogate.to_state()
        states[percentile] = state
        parts.update({f"{percentile}/{key}": value for key, value in fitted.items()})
    state = {
        "workload": model.workload,
        "features": list(model.features),
        "solo": {k: float(v) for k, v in model.solo.items()},
        "models": states,
        "chosen": dict(model.chosen),
        "cv_scores": {p: {k: float(v) for k, v in sc.items()} for p, sc in model.cv_scores.items()},
        "normalised": bool(model.normalised),
        "pooled_from": list(model.pooled_from),
    }
    return Encoded(state=state, estimators=parts)


def decode_interference_model(state: Any, parts: Mapping[str, Any], version: int) -> Any:
    """The ``InterferenceModel`` of :func:`encode_interference_model` (format version 1)."""
    models = {
        percentile: surrogate_from_state(
            sub,
            {
                key.split("/", 1)[1]: v
                for key, v in parts.items()
                if key.startswith(f"{percentile}/")
            },
        )
        for percentile, sub in state["models"].items()
    }
    return _interference_model_type()(
        workload=str(state["workload"]),
        features=tuple(state["features"]),
        solo={k: float(v) for k, v in state["solo"].items()},
        models=models,
        chosen=dict(state["chosen"]),
        cv_scores={p: dict(sc) for p, sc in state["cv_scores"].items()},
        normalised=bool(state["normalised"]),
        pooled_from=tuple(state["pooled_from"]),
    )


register(
    Codec(
        format=INTERFERENCE_MODEL_FORMAT,
        version=INTERFERENCE_MODEL_VERSION,
        type_of=_interference_model_type,
        encode=encode_interference_model,
        decode=decode_interference_model,
    )
)
