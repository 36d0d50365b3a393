"""Entry point: parse flags, load the experiment config, run the requested mode.

python launch.py                                          # experiments/shapes.py into runs/shapes
python launch.py --config=experiments/celeba.py --workdir=runs/celeba
python launch.py --config=experiments/shapes.py --config.model.latent_dim=4
python launch.py --config=experiments/shapes.py --sweep   # every point of get_sweep()
python launch.py --config=experiments/shapes.py --sweep --sweep_index=7   # one point
python launch.py --config=experiments/shapes.py:beta_vae --sweep --vectorize   # as one program
python launch.py --config=experiments/shapes.py --sweep_list              # points and progress
python launch.py --mode=analyze --workdir=runs/shapes                     # eval.json, figures
python launch.py --mode=summarize --workdir=runs/shapes_sweep             # results.md, plot
"""

import difflib
import functools
import importlib.util
import logging as python_logging
import os
import re
import sys
from pathlib import Path

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from vae_jax import evaluation, preemption, results, sweep, train
from vae_jax.config import CONFIG_FILE, ConfigError
from vae_jax.data import DataNotFoundError
from vae_jax.workdir_lock import WorkdirLockedError

DEFAULT_CONFIG = "experiments/shapes.py"
EXPERIMENTS = Path(__file__).resolve().parent / "experiments"

# No default here: config_flags would load it, and apply --config.* overrides, while this module
# is imported, where a mistake can only end in a traceback. parse_flags supplies it instead.
config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].")
flags.FLAGS["config"].default_as_str = repr(DEFAULT_CONFIG)  # what --help shows
flags.DEFINE_string(
    "workdir",
    None,
    "Run directory; default runs/<config file stem>[_<variants>] (+ _sweep for sweeps).",
)
flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "analyze", "summarize"],
    "train: train the config (or its sweep with --sweep). analyze: evaluate the run in --workdir "
    "(every finished point of a sweep directory) into eval.json and figures/. summarize: "
    "tabulate and plot the sweep in --workdir.",
)
flags.DEFINE_bool(
    "sweep", False, "Train every point of the config file's get_sweep() in <workdir>/<point name>."
)
flags.DEFINE_integer(
    "sweep_index",
    None,
    "With --sweep: train only this point (default: $SLURM_ARRAY_TASK_ID when set).",
)
flags.DEFINE_bool(
    "vectorize",
    False,
    "With --sweep: train the points that differ only in scalar settings (seed, learning rate, "
    "β, C, γ, λ: train.VECTORIZED_KEYS) as one vmapped program; each still writes its own "
    "workdir.",
)
flags.DEFINE_bool("sweep_list", False, "Print the sweep's points with their indices and exit.")
flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Resume the run in --workdir although its config.json differs from --config in keys other "
    "than num_steps, logging cadence and eval.* (the differences are logged).",
)
flags.DEFINE_bool(
    "distributed",
    False,
    "This is one of several processes (multi-host): call jax.distributed.initialize(), which "
    "reads the coordinator, the process count and this process's index from the cluster "
    "(SLURM, Open MPI, Kubernetes, Cloud TPU) unless the three flags below give them. The "
    "global batch is train.batch_size.",
)
flags.DEFINE_string("coordinator_address", None, "With --distributed: host:port of process 0.")
flags.DEFINE_integer("num_processes", None, "With --distributed: how many processes.")
flags.DEFINE_integer("process_id", None, "With --distributed: this process's index.")
FLAGS = flags.FLAGS


def config_argument(argv: list[str]) -> str | None:
    """The value of the last --config in argv ("path[:variant]"); None without one."""
    value, args = None, iter(argv[1:])
    for arg in args:
        if arg == "--":
            break
        if arg in ("--config", "-config"):
            value = next(args, "")
        elif arg.startswith(("--config=", "-config=")):
            value = arg.split("=", 1)[1]
    return value


def override_keys(argv: list[str]) -> list[str]:
    """The dotted keys of the --config.<key>[=value] (and --noconfig.<key>) overrides in argv."""
    keys = []
    for arg in argv[1:]:
        if arg == "--":
            break
        if match := re.match(r"--?(?:no)?config\.([^=]+)", arg):
            keys.append(match.group(1))
    return keys


def load_experiment(spec: str) -> ml_collections.ConfigDict:
    """get_config(variant) of the experiment file in `spec` ("path[:variant]"), called as
    config_flags calls it. Raises ConfigError for a missing file or an unknown variant."""
    path, colon, variant = spec.partition(":")
    if not Path(path).is_file():
        experiments = sorted(
            os.path.relpath(p)
            for p in EXPERIMENTS.glob("*.py")
            if p.stem not in ("__init__", "base")
        )
        raise ConfigError(
            f"--config={spec}: no experiment file {path}; the experiments are: "
            + ", ".join(experiments)
        )
    module_spec = importlib.util.spec_from_file_location("experiment_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    try:
        return module.get_config(*([variant] if colon else []))
    except ConfigError as error:
        raise ConfigError(f"--config={spec}: {error}") from None


def check_override_keys(config: ml_collections.ConfigDict, keys: list[str]) -> None:
    """Raises ConfigError for an override of a key `config` does not have, naming the closest
    key and the keys its section has."""
    for key in keys:
        section, path = config, []
        for part in key.split("."):
            if not isinstance(section, ml_collections.ConfigDict):
                raise ConfigError(f"--config.{key}: {'.'.join(path)} is a value, not a section")
            if part not in section:
                where = ".".join(path) or "the config"
                choices = sorted(section.keys())
                guess = difflib.get_close_matches(part, choices, n=1)
                prefix = "".join(f"{p}." for p in path)
                hint = f"did you mean --config.{prefix}{guess[0]}? " if guess else ""
                raise ConfigError(
                    f"--config.{key}: {where} has no key {part!r}; {hint}"
                    f"{where} has: {', '.join(choices)}"
                )
            section = section[part]
            path.append(part)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing (app.run's flags_parser), with the default --config made explicit and
    the mistakes config_flags reports with a traceback, or not at all, reported in one line: a
    missing config file, an unknown :variant, an override of a key the config does not have."""
    if config_argument(argv) is None:
        argv = [argv[0], f"--config={DEFAULT_CONFIG}", *argv[1:]]
    try:
        check_override_keys(load_experiment(config_argument(argv)), override_keys(argv))
    except ConfigError as error:
        sys.stderr.write(f"ConfigError: {error}\n")  # before flags: absl logging is not set up
        sys.exit(1)
    return app.parse_flags_with_usage(argv)


def config_spec() -> str:
    """The --config value, "path[:variant]"."""
    return config_flags.get_config_filename(FLAGS["config"])


def default_workdir(for_sweep: bool) -> Path:
    """runs/<stem of the --config file>[_<variants, sorted>], e.g. runs/shapes for
    experiments/shapes.py and runs/shapes_factor_vae_study for
    experiments/shapes.py:study,factor_vae, with a _sweep suffix for sweeps: runs of different
    variants never share a workdir."""
    path, _, variant = config_spec().partition(":")
    name = "_".join([Path(path).stem, *sorted(filter(None, variant.split(",")))])
    return Path("runs") / (name + ("_sweep" if for_sweep else ""))


def quiet_orbax_info(record) -> bool:
    """absl-handler filter: orbax logs each checkpoint write in ~20 INFO lines; keep warnings."""
    return record.levelno >= python_logging.WARNING or "/orbax/" not in record.pathname


def analyze(workdir: Path) -> None:
    """Evaluates one run, or every finished point of a sweep directory and then summarizes."""
    overrides = FLAGS["config"].override_values  # --config.eval.* given on the command line
    if not workdir.is_dir():
        problem = "is not a folder" if workdir.exists() else "does not exist"
        raise app.UsageError(
            f"--workdir={workdir} {problem}; --mode=analyze needs the workdir of a run "
            "(with config.json and checkpoints/) or of a sweep"
        )
    runs = [workdir] if (workdir / CONFIG_FILE).is_file() else results.finished_points(workdir)
    if not runs:
        raise app.UsageError(f"{workdir} holds neither a run (config.json) nor finished points")
    for run_dir in runs:
        evaluated = evaluation.analyze(run_dir, eval_overrides=overrides)
        print(f"\n{run_dir} (step {evaluated['step']}):")
        print(evaluation.format_table(evaluated))
    if runs != [workdir]:
        print(results.summarize(workdir).markdown_path.read_text())


COMPILATION_CACHE = Path.home() / ".cache" / "vae_jax" / "xla"


def main(argv):
    del argv
    try:
        run_mode()
    except preemption.StoppedBySignal as stop:  # preemption: the checkpoint is saved, exit 0
        logging.info("Training %s", stop)
    except (ConfigError, DataNotFoundError, WorkdirLockedError, app.UsageError) as error:
        logging.error("%s: %s", type(error).__name__, error)  # the message says what to do
        sys.exit(1)


def use_compilation_cache() -> None:
    """Keeps compiled XLA programs on disk (~/.cache/vae_jax/xla unless $JAX_COMPILATION_CACHE_DIR
    names another folder), so that a resumed run, another seed or a re-run of the same model
    starts without compiling."""
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir", str(COMPILATION_CACHE))


def run_mode() -> None:
    """Does what the flags ask: train, sweep, analyze, summarize or list."""
    logging.get_absl_handler().python_handler.addFilter(quiet_orbax_info)
    use_compilation_cache()
    if FLAGS.distributed:
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    for_sweep = FLAGS.sweep or FLAGS.sweep_list or FLAGS.mode == "summarize"
    workdir = Path(FLAGS.workdir) if FLAGS.workdir else default_workdir(for_sweep)
    if FLAGS.sweep_index is not None and not FLAGS.sweep:
        raise app.UsageError("--sweep_index needs --sweep")
    if FLAGS.vectorize and not FLAGS.sweep:
        raise app.UsageError("--vectorize needs --sweep")
    allow_change = FLAGS.allow_config_change

    if FLAGS.mode == "analyze":
        analyze(workdir)
    elif FLAGS.mode == "summarize":
        summary = results.summarize(workdir)
        print(summary.markdown_path.read_text())
        logging.info(
            "Wrote %s, %s and %s",
            summary.csv_path,
            summary.markdown_path,
            summary.plot_path or "no plot (no finished point)",
        )
    elif FLAGS.sweep_list:
        print(sweep.describe_points(FLAGS.config, sweep.load_sweep(config_spec()), workdir))
    elif FLAGS.sweep:
        points = sweep.load_sweep(config_spec())
        index = sweep.resolve_index(FLAGS.sweep_index, len(points))
        if FLAGS.vectorize and jax.default_backend() == "cpu":
            logging.warning(
                "--vectorize on CPU: XLA:CPU runs the points' convolutions as grouped "
                "convolutions, several times slower than training the points one after another "
                "(README, Vectorised sweeps); leave --vectorize out on CPU"
            )
        train_fn = functools.partial(train.train_points, allow_config_change=allow_change)
        sweep.run_sweep(FLAGS.config, points, workdir, index, train_fn, vectorize=FLAGS.vectorize)
    elif FLAGS.mode == "train":
        train.train_and_evaluate(FLAGS.config, workdir, allow_config_change=allow_change)
        logging.info(
            "Done. Checkpoints: %s | metrics: %s and TensorBoard events (tensorboard --logdir %s)"
            " | figures: %s",
            workdir / "checkpoints",
            workdir / "metrics.jsonl",
            workdir,
            workdir / "figures",
        )


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
