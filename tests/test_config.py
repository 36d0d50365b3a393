"""Config validation: every bad value a config file or a --config.key=value override can produce
fails in validate() with a ConfigError naming the key; resuming refuses changed keys by name."""

import json
import re
import subprocess
import sys
from pathlib import Path

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from experiments import (
    base,
    celeba,
    celeba_hvae,
    cifar10,
    cifar10_hvae,
    dsprites,
    fashion_mnist,
    mnist,
    mnist_hvae,
    shapes,
    shapes3d,
)
from vae_jax.config import RESUMABLE_KEYS, ConfigError, check_resumable, validate
from vae_jax.data.shapes import IMAGE_SHAPE as SHAPES_IMAGE_SHAPE

REPO = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")


def set_key(config: ml_collections.ConfigDict, key: str, value) -> ml_collections.ConfigDict:
    """Sets a dotted key as a config file would (`config.model.latent_dim = value`)."""
    *path, name = key.split(".")
    section = config
    for part in path:
        section = section[part]
    section[name] = value
    return config


@pytest.mark.parametrize(
    "get_config, arg",
    [
        (shapes.get_config, ""),
        (shapes.get_config, "tiny"),
        (celeba.get_config, ""),
        (celeba.get_config, "tiny"),
        (cifar10.get_config, ""),
        (cifar10.get_config, "tiny"),
        (fashion_mnist.get_config, ""),
        (fashion_mnist.get_config, "tiny"),
        (mnist.get_config, ""),
        (mnist.get_config, "tiny"),
        (mnist.get_config, "conv"),
        (mnist.get_config, "conv,tiny"),
        (mnist.get_config, "ladder"),
        (mnist.get_config, "ladder,iwae,tiny"),
        (cifar10_hvae.get_config, ""),
        (cifar10_hvae.get_config, "small"),
        (cifar10_hvae.get_config, "tiny"),
        (celeba_hvae.get_config, ""),
        (celeba_hvae.get_config, "tiny"),
        (mnist_hvae.get_config, ""),
        (mnist_hvae.get_config, "tiny"),
        *((shapes.get_config, method) for method in base.METHODS),
        *((shapes.get_config, f"study,{method}") for method in base.METHODS),
        (dsprites.get_config, ""),
        (dsprites.get_config, "study,beta_tcvae,tiny"),
        (shapes3d.get_config, ""),
        (shapes3d.get_config, "factor_vae"),
    ],
)
def test_every_experiment_config_validates(get_config, arg):
    validate(get_config(arg))


@pytest.mark.parametrize(
    "name", ["shapes", "celeb_a", "mnist", "binarized_mnist", "cifar10", "cmaterdb/bangla"]
)
def test_built_in_and_tfds_dataset_names_validate(name):
    config = celeba.get_config()
    config.dataset.name = name
    validate(config)


# Each value is one a config file can assign to the locked, typed config (ml_collections takes
# True for an int, None for anything, any tuple for a tuple), or one --config.key=value parses to.
BAD_VALUES = [
    ("seed", -1),
    ("seed", True),
    ("dataset.name", "mnst"),
    ("dataset.name", "None"),  # what --config.dataset.name=None gives
    ("dataset.name", None),
    ("dataset.name", ""),
    ("dataset.name", "celeb_a!"),
    ("dataset.crop", "center64"),
    ("dataset.crop", None),
    ("dataset.image_size", 32),  # shapes images are 64x64; image_size would be ignored
    ("dataset.image_size", True),
    ("dataset.shuffle_buffer", 0),
    ("dataset.random_flip", None),
    ("dataset.dynamic_binarization", None),
    ("dataset.cache", None),
    ("dataset.channels", 2),
    ("dataset.channels", True),
    ("dataset.channels", 3),  # shapes images have one channel
    ("train.ema_decay", 1.0),
    ("train.ema_decay", -0.1),
    ("train.ema_decay", NAN),
    ("train.schedule_steps", 0),
    ("train.keep_every", 0),
    ("model.kind", "resnet"),
    ("model.posterior", "cholesky"),
    ("model.likelihood", "poisson"),
    ("model.latent_dim", 0),
    ("model.latent_dim", True),
    ("model.latent_dim", None),
    ("model.channels", ()),
    ("model.channels", (32, 0, 64, 64)),
    ("model.channels", (32, "a", 64, 64)),  # --config.model.channels="(32,'a',64,64)"
    ("model.channels", (32, 32.5, 64, 64)),
    ("model.channels", (32, True, 64, 64)),
    ("model.channels", None),
    ("model.hidden", (None,)),  # --config.model.hidden=None
    ("model.hidden", (256, -1)),
    ("model.gaussian_scale", 0.0),
    ("model.gaussian_scale", None),
    ("objective.beta", -1.0),
    ("objective.beta", NAN),  # --config.objective.beta=nan
    ("objective.beta", INF),
    ("objective.beta", None),
    ("objective.kl_warmup_steps", -1),
    ("objective.capacity", -1.0),
    ("objective.capacity", NAN),
    ("objective.capacity_steps", -1),
    ("objective.capacity_gamma", -1.0),
    ("objective.free_bits", -0.5),
    ("objective.kind", "vae"),
    ("objective.kind", "beta-vae"),
    ("objective.capacity", 25.0),  # read only by kind="annealed": refused, not ignored
    ("objective.tc_estimator", "exact"),
    ("objective.dataset_size", 3),  # below the batch
    ("objective.factor_vae_gamma", -1.0),
    ("objective.dip_lambda_od", NAN),
    ("objective.dip_lambda_d", -1.0),
    ("train.batch_size", 0),
    ("train.batch_size", True),
    ("train.num_steps", 0),
    ("train.learning_rate", 0.0),
    ("train.learning_rate", -1e-3),
    ("train.learning_rate", INF),
    ("train.learning_rate", None),
    ("train.lr_schedule", "linear"),
    ("train.warmup_steps", -1),
    ("train.grad_clip_norm", 0.0),
    ("train.skip_grad_norm", 0.0),
    ("train.skip_grad_norm", -1.0),
    ("train.skip_grad_norm", NAN),
    ("train.max_consecutive_skips", 0),
    ("train.max_consecutive_skips", None),
    ("train.compute_dtype", "float16"),
    ("train.compute_dtype", "bf16"),
    ("train.log_every", 0),
    ("train.eval_every", 0),
    ("train.checkpoint_every", 0),
    ("train.keep_checkpoints", 0),
    ("eval.batch_size", 0),
    ("eval.num_examples", 0),
    ("eval.num_examples", True),
    ("eval.analysis_examples", 0),
    ("eval.iwae_examples", 0),
    ("eval.iwae_samples", 0),
    ("eval.iwae_chunk", 0),
    ("eval.num_figures", 0),
]


@pytest.mark.parametrize("kind", ["annealed", "factor_vae", "dip_vae_i", "dip_vae_ii"])
def test_a_beta_that_the_objective_would_ignore_is_refused(kind):
    config = shapes.get_config(f"tiny,{kind}")
    validate(config)  # the method's variant leaves β at 1
    config.objective.beta = 4.0
    with pytest.raises(ConfigError, match=rf"objective.beta=4.0 .*'{kind}' does not read β"):
        validate(config)


@pytest.mark.parametrize("key, value", BAD_VALUES, ids=[f"{k}={v!r}" for k, v in BAD_VALUES])
def test_bad_value_fails_naming_the_key_and_value(key, value):
    config = set_key(shapes.get_config("tiny"), key, value)
    with pytest.raises(ConfigError) as error:
        validate(config)
    message = str(error.value)
    assert message.startswith(f"{key}="), f"{message!r} does not start with {key}="
    assert "is not valid: " in message and "\n" not in message, message


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("dataset.image_size", 60, "dataset.image_size=60 is not valid: the 4 stride-2 stages"),
        ("dataset.image_size", 0, "dataset.image_size=0 is not valid: must be an integer >= 1"),
        ("dataset.crop", "center64", "dataset.crop='center64' is not valid: must be one of"),
        ("dataset.name", "celeba", "dataset.name='celeba' is not valid: use shapes, image_folder"),
        ("model.channels", (32, 64, 0), "model.channels=(32, 64, 0) is not valid: must be a"),
    ],
)
def test_bad_celeba_values_fail_saying_what_is_allowed(key, value, message):
    config = set_key(celeba.get_config(), key, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(config)


def test_unknown_dataset_suggests_the_valid_choices():
    config = shapes.get_config()
    config.dataset.name = "mnst"
    with pytest.raises(ConfigError) as error:
        validate(config)
    for choice in ("shapes", "image_folder", "celeb_a", "mnist", "fashion_mnist", "cifar10"):
        assert choice in str(error.value), f"{choice!r} missing from: {error.value}"


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"model.channels": (8,) * 7},
            f"dataset.image_size={SHAPES_IMAGE_SHAPE[0]} is not valid: the 7 stride-2 stages",
        ),
        ({"model.posterior": "full", "objective.free_bits": 0.5}, "objective.free_bits=0.5"),
        ({"dataset.name": "image_folder"}, "dataset.path=None is not valid: dataset.name="),
        ({"eval.analysis_examples": 4}, "eval.analysis_examples=4 is not valid: must be unset"),
        ({"objective.iwae_samples": 5, "objective.beta": 4.0}, "objective.iwae_samples=5"),
        ({"objective.iwae_samples": 0}, "objective.iwae_samples=0"),
        ({"dataset.path": "/data"}, "dataset.path='/data' is not valid: dataset.name='shapes'"),
        ({"train.optimizer": "sgd"}, "train.optimizer='sgd' is not valid: must be one of adam"),
        (
            {"model.kind": "hierarchical", "model.resolutions": (32, 16)},
            "model.resolutions=(32, 16) is not valid: must start at the image size",
        ),
        (
            {"model.kind": "hierarchical", "model.resolutions": (64, 24, 8, 1)},
            "must descend, each dividing the one before",
        ),
        (
            {"model.kind": "hierarchical", "model.resolutions": (64, 32, 1), "model.blocks": (1,)},
            "model.blocks=(1,) is not valid: needs one entry per resolution",
        ),
        (
            {"model.kind": "ladder_mlp", "objective.kind": "beta_tcvae"},
            "objective.kind='beta_tcvae' is not valid: model.kind='ladder_mlp' trains with",
        ),
        ({"model.kind": "hierarchical", "model.posterior": "full"}, "model.posterior='full'"),
    ],
)
def test_values_that_conflict_with_another_key_fail_naming_one_of_them(changes, message):
    config = shapes.get_config("tiny")
    for key, value in changes.items():
        set_key(config, key, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(config)


@pytest.mark.parametrize(
    "key, value",
    [
        ("model.latent_dim", 10.0),
        ("train.batch_size", 8.0),
        ("objective.beta", "4"),
        ("model.channels", 32),
        ("dataset.cache", "yes"),
        ("train.compute_dtype", 16),
    ],
)
def test_wrong_types_fail_in_configs_built_without_type_safety(key, value):
    config = ml_collections.ConfigDict(shapes.get_config("tiny").to_dict(), type_safe=False)
    set_key(config, key, value)
    with pytest.raises(ConfigError, match=f"^{key}="):
        validate(config)


def parse_overrides(*overrides: str) -> ml_collections.ConfigDict:
    """The config launch.py would get from `--config=experiments/shapes.py:tiny *overrides`."""
    argv = ["launch.py", f"--config={REPO / 'experiments/shapes.py'}:tiny", *overrides]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=flag_values, sys_argv=argv)
    flag_values(argv)
    return flag_values.config


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # config_flags' import
@pytest.mark.parametrize(
    "override",
    [
        "--config.model.channels=(8,0,8,8)",
        "--config.model.channels=(8,'a',8,8)",
        "--config.model.hidden=None",
        "--config.objective.beta=nan",
        "--config.train.learning_rate=inf",
        "--config.train.skip_grad_norm=0",
        "--config.train.compute_dtype=float16",
        "--config.dataset.name=mnst",
        "--config.seed=-1",
    ],
)
def test_bad_command_line_overrides_fail_naming_the_key(override):
    key = override.removeprefix("--config.").split("=")[0]
    config = parse_overrides(override)
    with pytest.raises(ConfigError, match=f"^{key}="):
        validate(config)


@pytest.mark.slow
def test_validation_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from experiments import celeba\n"
        "from vae_jax.config import validate\n"
        "validate(celeba.get_config())\n"
        "assert 'tensorflow' not in sys.modules, 'validate imported TensorFlow'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


def saved_dict(config: ml_collections.ConfigDict) -> dict:
    """What config.write_config stores in config.json and read_config_dict gives back."""
    return json.loads(json.dumps(config.to_dict()))


def test_resuming_with_a_changed_key_fails_naming_each_change_and_the_override():
    saved = saved_dict(shapes.get_config("tiny"))
    config = shapes.get_config("tiny")
    config.objective.beta = 8.0
    config.model.channels = (16, 16, 16, 16)
    with pytest.raises(ConfigError) as error:
        check_resumable(saved, config)
    message = str(error.value)
    for part in (
        "model.channels: [8, 8, 8, 8] -> [16, 16, 16, 16]",
        "objective.beta: 4.0 -> 8.0",
        "--allow_config_change",
        "--workdir",
    ):
        assert part in message, f"{part!r} missing from: {message}"


def test_resuming_with_the_same_config_needs_no_rewrite():
    assert (
        check_resumable(saved_dict(shapes.get_config("tiny")), shapes.get_config("tiny")) is False
    )


@pytest.mark.parametrize(
    "key, value",
    [
        ("train.num_steps", 100),
        ("train.log_every", 2),
        ("train.eval_every", 2),
        ("train.checkpoint_every", 2),
        ("train.keep_checkpoints", 5),
        ("eval.iwae_samples", 100),
        ("eval.num_examples", None),
    ],
)
def test_resuming_may_change_resumable_keys_and_then_rewrites_config_json(key, value):
    assert key.startswith(RESUMABLE_KEYS)
    saved = saved_dict(shapes.get_config("tiny"))
    assert check_resumable(saved, set_key(shapes.get_config("tiny"), key, value)) is True


def test_keys_the_saved_config_predates_do_not_refuse_but_get_recorded():
    saved = saved_dict(shapes.get_config("tiny"))
    del saved["train"]["compute_dtype"]
    config = shapes.get_config("tiny")
    config.train.compute_dtype = "bfloat16"
    assert check_resumable(saved, config) is True  # no error; config.json is rewritten
    assert (
        check_resumable(saved_dict(shapes.get_config("tiny")), shapes.get_config("tiny")) is False
    )


def test_allow_change_resumes_with_a_warning_listing_the_changes(caplog):
    saved = saved_dict(shapes.get_config("tiny"))
    config = shapes.get_config("tiny")
    config.objective.beta = 8.0
    with caplog.at_level("WARNING"):
        assert check_resumable(saved, config, allow_change=True) is True
    assert "objective.beta: 4.0 -> 8.0" in caplog.text, caplog.text
