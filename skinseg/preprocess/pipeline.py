"""The preprocessing pipeline as one serialisable object (stored in model checkpoints)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._checks import check_rgb_image, did_you_mean
from .._types import RGBImage
from ..errors import ArgumentTypeError, ConfigError, UnknownNameError
from . import color as _color
from . import denoise as _denoise
from . import hair as _hair

__all__ = ["PreprocessConfig", "Preprocess"]

_FIELDS = ("hair_removal", "hair_params", "denoise", "denoise_params", "color_norm", "color_params")


def _method_name(value: object, name: str, valid: tuple[str, ...], what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value.lower() in valid:
        return value.lower()
    extra = did_you_mean(str(value).lower(), valid)
    raise UnknownNameError(
        f"Unknown {what} {value!r} for `{name}`. Available: {', '.join(valid)}, or None to skip.{extra}"
    )


def _params_dict(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"`{name}` must be a dict with str keys; got {value!r}.")
    return dict(value)


def _unknown_keys(keys: list[str], valid: tuple[str, ...], name: str) -> ConfigError:
    extra = did_you_mean(keys[0], valid)
    return ConfigError(
        f"`{name}` must only have the keys {', '.join(valid)}; "
        f"got unknown {', '.join(map(repr, keys))}.{extra}"
    )


def _checked_step(method: object, params: object, names: tuple[str, str, str], valid: tuple[str, ...], what: str,
                  validate: Any) -> tuple[str | None, dict[str, Any]]:
    """One step's checked ``(method, params)``; ``names``: (method field, params field, an example method)."""
    field, params_field, example = names
    method = _method_name(method, field, valid, what)
    params = _params_dict(params, params_field)
    if method is not None:
        return method, validate(method, params)
    if any(v is not None for v in params.values()):
        raise ConfigError(
            f"`{params_field}` must be empty when `{field}` is None; got {params!r}. "
            f"Set {field}={example!r} or drop the parameters."
        )
    return None, {}


@dataclass(frozen=True)
class PreprocessConfig:
    """Which preprocessing steps run, with which parameters (JSON-serialisable).

    Parameters
    ----------
    hair_removal : {"dullrazor", "blackhat"} or None
        Method of :func:`skinseg.preprocess.remove_hair`; None skips hair removal.
    hair_params : dict
        Keyword arguments of :func:`~skinseg.preprocess.remove_hair` for that method
        (``hair_color``, ``kernel_size``, ``threshold``, ...); None values are dropped
        (library default, i.e. the scale rule). Must be empty when ``hair_removal`` is None.
    denoise : {"median", "wiener"} or None
        :func:`~skinseg.preprocess.denoise_median` or
        :func:`~skinseg.preprocess.denoise_wiener`; None skips denoising.
    denoise_params : dict
        Keyword arguments of that function (``kernel_size``; ``window``, ``noise``).
    color_norm : {"shades_of_gray"} or None
        Method of :func:`skinseg.preprocess.normalize_color` (colour constancy), run
        first; None skips it.
    color_params : dict
        Keyword arguments of :func:`~skinseg.preprocess.normalize_color` (``p``).

    Raises
    ------
    UnknownNameError
        For an unknown method name (the message lists the valid ones).
    ConfigError
        For an invalid or inapplicable parameter.

    Notes
    -----
    Method names are stored in lower case and the parameter dicts are validated copies,
    so a config compares equal to ``PreprocessConfig.from_dict(config.to_dict())``.
    :meth:`to_dict` writes the ``color_*`` keys only when ``color_norm`` is set, so the
    dicts stored by earlier versions (and by models without colour normalisation) stay
    byte-identical.
    """

    hair_removal: str | None = None
    hair_params: dict[str, Any] = field(default_factory=dict)
    denoise: str | None = None
    denoise_params: dict[str, Any] = field(default_factory=dict)
    color_norm: str | None = None
    color_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        hair, hair_params = _checked_step(
            self.hair_removal, self.hair_params, ("hair_removal", "hair_params", "dullrazor"), _hair.HAIR_METHODS,
            "hair-removal method", lambda m, p: _hair._validate_params(m, p, removing=True)[1])
        den, den_params = _checked_step(
            self.denoise, self.denoise_params, ("denoise", "denoise_params", "median"), _denoise.DENOISE_METHODS,
            "denoising method", _denoise._validate_params)
        color, color_params = _checked_step(
            self.color_norm, self.color_params, ("color_norm", "color_params", "shades_of_gray"),
            _color.COLOR_METHODS, "colour normalisation", _color._validate_params)
        object.__setattr__(self, "color_norm", color)
        object.__setattr__(self, "color_params", color_params)
        object.__setattr__(self, "hair_removal", hair)
        object.__setattr__(self, "hair_params", hair_params)
        object.__setattr__(self, "denoise", den)
        object.__setattr__(self, "denoise_params", den_params)

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (new copies of the parameter dicts).

        The ``color_norm`` / ``color_params`` keys appear only when ``color_norm`` is set.
        """
        out: dict[str, Any] = {
            "hair_removal": self.hair_removal,
            "hair_params": dict(self.hair_params),
            "denoise": self.denoise,
            "denoise_params": dict(self.denoise_params),
        }
        if self.color_norm is not None:
            out["color_norm"] = self.color_norm
            out["color_params"] = dict(self.color_params)
        return out

    def replace_steps(self, **steps: str | None) -> PreprocessConfig:
        """A copy with some steps replaced (``hair_removal=``, ``denoise=``; None switches a step off).

        A step whose method changes starts from its default parameters (the stored ones
        belonged to the replaced method); a step given with its current method keeps them.
        """
        unknown = sorted(k for k in steps if k not in ("hair_removal", "denoise"))
        if unknown:
            raise _unknown_keys(unknown, ("hair_removal", "denoise"), "steps")
        fields = self.to_dict()
        for name, value in steps.items():
            new = _method_name(value, name, _hair.HAIR_METHODS if name == "hair_removal" else _denoise.DENOISE_METHODS,
                               "hair-removal method" if name == "hair_removal" else "denoising method")
            if new != fields[name]:
                fields[name] = new
                fields["hair_params" if name == "hair_removal" else "denoise_params"] = {}
        return PreprocessConfig.from_dict(fields)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessConfig:
        """Build a config from :meth:`to_dict` output; missing keys take their defaults.

        Raises
        ------
        ConfigError
            If ``data`` is not a mapping or has unknown keys.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"`data` must be a dict as written by to_dict(); got {type(data).__name__}.")
        unknown = sorted(str(k) for k in data if k not in _FIELDS)
        if unknown:
            raise _unknown_keys(unknown, _FIELDS, "data")
        return cls(**dict(data))


class Preprocess:
    """Callable preprocessing pipeline: colour normalisation, hair removal, then denoising.

    The order is fixed. Colour normalisation (a per-image gain per channel that undoes
    the light source's cast) runs first, so the later steps and the model see
    illuminant-neutral colours. Hair is removed before denoising, because denoising would blur the thin
    hairs (lowering their contrast for detection and smearing them into the skin) and a
    median filter of a hairy image partly keeps the hair. The object is rebuilt from
    :meth:`to_dict` output, so training, inference and the CLI run the same steps.

    Parameters
    ----------
    config : PreprocessConfig or None
        The steps; None: the default config (identity).
    **overrides
        Fields of :class:`PreprocessConfig` replacing those of ``config``.

    Raises
    ------
    ConfigError, UnknownNameError
        For an invalid configuration or an unknown override name.

    Examples
    --------
    >>> from skinseg.testing import synthetic_lesion
    >>> image, _ = synthetic_lesion(rng=0)
    >>> pre = Preprocess(hair_removal="dullrazor", denoise="median", denoise_params={"kernel_size": 3})
    >>> pre(image).shape
    (256, 256, 3)
    >>> Preprocess.from_dict(pre.to_dict()) == pre
    True
    """

    def __init__(self, config: PreprocessConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = PreprocessConfig()
        elif not isinstance(config, PreprocessConfig):
            raise ArgumentTypeError(
                f"`config` must be a PreprocessConfig or None; got {type(config).__name__}. "
                "Use Preprocess.from_dict() for a dict."
            )
        unknown = sorted(k for k in overrides if k not in _FIELDS)
        if unknown:
            raise _unknown_keys(unknown, _FIELDS, "overrides")
        self._config = dataclasses.replace(config, **overrides) if overrides else config

    @property
    def config(self) -> PreprocessConfig:
        """The (frozen) configuration."""
        return self._config

    def __call__(self, image: RGBImage) -> RGBImage:
        """Apply the steps to an (H, W, 3) uint8 RGB image; return a new image."""
        check_rgb_image(image)
        cfg = self._config
        out = image
        if cfg.color_norm is not None:
            out = _color.normalize_color(out, method=cfg.color_norm, **cfg.color_params)
        if cfg.hair_removal is not None:
            out = _hair.remove_hair(out, method=cfg.hair_removal, **cfg.hair_params)  # type: ignore[arg-type]
        if cfg.denoise == "median":
            out = _denoise.denoise_median(out, **cfg.denoise_params)
        elif cfg.denoise == "wiener":
            out = _denoise.denoise_wiener(out, **cfg.denoise_params)
        return out.copy() if out is image else out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (:meth:`PreprocessConfig.to_dict`)."""
        return self._config.to_dict()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocess:
        """Rebuild from :meth:`to_dict` output."""
        return cls(PreprocessConfig.from_dict(data))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Preprocess):
            return NotImplemented
        return self._config == other._config

    def __hash__(self) -> int:
        return hash(self._config)

    def __repr__(self) -> str:
        c = self._config
        color = f", color_norm={c.color_norm!r}, color_params={c.color_params!r}" if c.color_norm else ""
        return (
            f"Preprocess(hair_removal={c.hair_removal!r}, hair_params={c.hair_params!r}, "
            f"denoise={c.denoise!r}, denoise_params={c.denoise_params!r}{color})"
        )
