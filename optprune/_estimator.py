"""The estimator contract once: parameters in, validated at ``fit``, results in ``_`` attributes (scikit-learn style).

A subclass's constructor only stores its keyword arguments, each as the
attribute of the same name; :class:`BaseEstimator` derives the parameter list
from the constructor's signature and gives :meth:`~BaseEstimator.get_params`,
:meth:`~BaseEstimator.set_params`, ``__repr__`` and :func:`clone` from it.
The constraints are data (``_parameter_constraints``, see
:mod:`optprune._validation`) checked by :meth:`~BaseEstimator._validate_params`,
which ``fit`` (or, for a scorer, scoring) calls first; subclasses add rules
across parameters by overriding it and calling ``super()._validate_params()``.
Results live in attributes ending in ``_``; asking for them before ``fit``
raises :class:`~optprune.errors.NotFittedError` (:meth:`~BaseEstimator._check_fitted`).
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, ClassVar, TypeVar

from optprune._validation import Constraint, validate_params
from optprune.errors import InvalidParameterError, NotFittedError

__all__ = ["BaseEstimator", "clone"]

E = TypeVar("E", bound="BaseEstimator")


class BaseEstimator:
    """``get_params``/``set_params``/``__repr__``, validation at ``fit`` and the fitted check, for every estimator.

    Class attributes a subclass sets:

    ``_parameter_constraints`` : ``{name: [constraint, ...]}``
        Constraints of (some of) the constructor's parameters, checked by
        :meth:`_validate_params`; every key must be a constructor parameter.
    ``_fitted_attribute`` : str
        The attribute ``fit`` sets last (default ``"model_"``); its absence means "not fitted".
    """

    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]]] = {}
    _fitted_attribute: ClassVar[str] = "model_"

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The constructor's keyword arguments, in signature order (the estimator's parameters)."""
        init = cls.__init__
        if init is object.__init__:
            return []
        names = []
        for p in inspect.signature(init).parameters.values():
            if p.name == "self":
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(
                    f"{cls.__name__}: an estimator's constructor names every parameter (no *args or **kwargs); "
                    f"got {p}"
                )
            names.append(p.name)
        return names

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """``{parameter: value}``; with ``deep``, also ``"name__sub": value`` of parameters that are estimators."""
        out: dict[str, Any] = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            out[name] = value
            if deep and isinstance(value, BaseEstimator):
                out.update((f"{name}__{k}", v) for k, v in value.get_params(deep=True).items())
        return out

    def set_params(self: E, **params: Any) -> E:
        """Set parameters (``name__sub`` sets a parameter of an estimator-valued parameter); returns ``self``."""
        names = self._get_param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, sep, sub = key.partition("__")
            if name not in names:
                raise InvalidParameterError(
                    f"{type(self).__name__}: unknown parameter {name!r}; parameters: {sorted(names)}"
                )
            if sep:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            inner = getattr(self, name)
            if not isinstance(inner, BaseEstimator):
                raise InvalidParameterError(
                    f"{type(self).__name__}: parameter {name!r} is not an estimator, so "
                    f"{sorted(f'{name}__{k}' for k in sub_params)} cannot be set; got {inner!r}"
                )
            inner.set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({params})"

    def _validate_params(self) -> None:
        """Check the parameters against ``_parameter_constraints``: :class:`InvalidParameterError` naming the class,
        the parameter, what is allowed and the value received."""
        params = {name: getattr(self, name) for name in self._parameter_constraints}
        validate_params(type(self).__name__, params, self._parameter_constraints)

    def _check_fitted(self) -> None:
        """:class:`NotFittedError` unless ``fit`` has run (``_fitted_attribute`` is set)."""
        if not hasattr(self, self._fitted_attribute):
            fit = getattr(type(self), "fit", None)
            args = ""
            if fit is not None:
                args = ", ".join(
                    p.name for p in list(inspect.signature(fit).parameters.values())[1:]
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                )
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit({args}) first")


def clone(estimator: E) -> E:
    """A new, unfitted estimator with the same parameters (estimator-valued parameters cloned, others deep-copied)."""
    if not isinstance(estimator, BaseEstimator):
        raise InvalidParameterError(f"clone: expected an optprune estimator; got {type(estimator).__name__}")
    params = {
        name: clone(value) if isinstance(value, BaseEstimator) else copy.deepcopy(value)
        for name, value in estimator.get_params(deep=False).items()
    }
    return type(estimator)(**params)
