"""PreprocessConfig / Preprocess: validation, serialisation, order of the steps."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from skinseg.errors import ConfigError, UnknownNameError
from skinseg.preprocess import Preprocess, PreprocessConfig, denoise_median, denoise_wiener, remove_hair
from skinseg.testing import add_synthetic_hair, synthetic_lesion


@pytest.fixture(scope="module")
def hairy():
    image, _ = synthetic_lesion((96, 128), rng=0)
    return add_synthetic_hair(image, n_hairs=6, rng=1)[0]


FULL = dict(
    hair_removal="dullrazor",
    hair_params={"threshold": 20, "hair_color": "both"},
    denoise="wiener",
    denoise_params={"window": 3, "noise": 50.0},
)


def test_identity_returns_an_equal_copy(hairy):
    pre = Preprocess()
    out = pre(hairy)
    assert out is not hairy
    np.testing.assert_array_equal(out, hairy)
    assert pre.to_dict() == {"hair_removal": None, "hair_params": {}, "denoise": None, "denoise_params": {}}


@pytest.mark.parametrize("denoise", ["median", "wiener"])
def test_hair_removal_runs_before_denoising(hairy, denoise):
    pre = Preprocess(hair_removal="blackhat", denoise=denoise)
    step = denoise_median if denoise == "median" else denoise_wiener
    np.testing.assert_array_equal(pre(hairy), step(remove_hair(hairy, method="blackhat")))


def test_input_unmodified(hairy):
    before = hairy.copy()
    Preprocess(**FULL)(hairy)
    np.testing.assert_array_equal(hairy, before)


def test_json_round_trip_gives_identical_outputs(hairy):
    pre = Preprocess(PreprocessConfig(**FULL))
    text = json.dumps(pre.to_dict())
    again = Preprocess.from_dict(json.loads(text))
    assert again == pre and again.config == pre.config and hash(again) == hash(pre)
    np.testing.assert_array_equal(again(hairy), pre(hairy))
    assert PreprocessConfig.from_dict(pre.config.to_dict()) == pre.config


def test_pickle_round_trip(hairy):  # DataLoader workers under "spawn" pickle the dataset
    pre = Preprocess(**FULL)
    again = pickle.loads(pickle.dumps(pre))
    assert again == pre
    np.testing.assert_array_equal(again(hairy), pre(hairy))


def test_names_are_normalised_and_params_copied():
    params = {"threshold": 20}
    cfg = PreprocessConfig(hair_removal="DullRazor", hair_params=params, denoise="Median")
    params["threshold"] = 99
    assert cfg.hair_removal == "dullrazor" and cfg.denoise == "median"
    assert cfg.hair_params == {"threshold": 20.0}
    cfg.to_dict()["hair_params"]["threshold"] = 1
    assert cfg.hair_params == {"threshold": 20.0}


def test_none_values_are_dropped():
    cfg = PreprocessConfig(hair_removal="dullrazor", hair_params={"threshold": None}, denoise="wiener",
                           denoise_params={"window": None, "noise": None})
    assert cfg.hair_params == {} and cfg.denoise_params == {"noise": None}


def test_config_is_frozen():
    cfg = PreprocessConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.denoise = "median"  # type: ignore[misc]


def test_overrides_replace_config_fields(hairy):
    base = PreprocessConfig(hair_removal="dullrazor")
    pre = Preprocess(base, denoise="median", denoise_params={"kernel_size": 3})
    assert pre.config == PreprocessConfig(hair_removal="dullrazor", denoise="median",
                                          denoise_params={"kernel_size": 3})
    assert base.denoise is None


def test_repr_shows_the_configuration():
    text = repr(Preprocess(hair_removal="dullrazor", denoise="median"))
    assert text == ("Preprocess(hair_removal='dullrazor', hair_params={}, denoise='median', "
                    "denoise_params={})")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(hair_removal="dulrazor"), UnknownNameError,
         r"Unknown hair-removal method 'dulrazor'.*Available: blackhat, dullrazor.*Did you mean 'dullrazor'"),
        (dict(denoise="gaussian"), UnknownNameError, r"Available: median, wiener"),
        (dict(denoise="wiener", denoise_params={"kernel_size": 5}), ConfigError,
         r"`kernel_size` is not a parameter of denoise_wiener; valid: window, noise"),
        (dict(denoise="median", denoise_params={"kernel_size": 4}), ConfigError,
         r"`kernel_size` must be an odd"),
        (dict(hair_removal="dullrazor", hair_params={"treshold": 5}), ConfigError,
         r"Did you mean 'threshold'"),
        (dict(hair_removal="dullrazor", hair_params={"inpaint_radius": 5}), ConfigError,
         r"`inpaint_radius` applies only to method='blackhat'"),
        (dict(hair_removal="blackhat", hair_params={"threshold": -1}), ConfigError, r"`threshold` must be"),
        (dict(hair_params={"threshold": 5}), ConfigError,
         r"`hair_params` must be empty when `hair_removal` is None"),
        (dict(denoise_params={"kernel_size": 5}), ConfigError, r"`denoise_params` must be empty"),
        (dict(hair_removal="dullrazor", hair_params=[("threshold", 5)]), ConfigError,
         r"`hair_params` must be a dict"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_invalid_configs_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        PreprocessConfig(**kwargs)
    with pytest.raises(error, match=match):
        Preprocess(**kwargs)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match=r"unknown 'hair_remove'.*Did you mean 'hair_removal'"):
        PreprocessConfig.from_dict({"hair_remove": "dullrazor"})
    with pytest.raises(ConfigError, match="must be a dict"):
        Preprocess.from_dict("dullrazor")  # type: ignore[arg-type]


def test_unknown_override_and_wrong_config_type():
    with pytest.raises(ConfigError, match=r"unknown 'denoising'.*Did you mean 'denoise'"):
        Preprocess(denoising="median")
    with pytest.raises(TypeError, match="Preprocess.from_dict"):
        Preprocess({"denoise": "median"})  # type: ignore[arg-type]


def test_preprocess_does_not_import_torch():
    code = "import sys, skinseg.preprocess, skinseg.testing; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
