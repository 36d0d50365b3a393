"""Entry point: parse flags, load the experiment config, run the requested mode.

python launch.py                                          # experiments/shapes.py into runs/shapes
python launch.py --config=experiments/celeba.py --workdir=runs/celeba
python launch.py --config=experiments/shapes.py --config.model.latent_dim=4
"""

from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from vae_jax import train

config_flags.DEFINE_config_file("config", "experiments/shapes.py", "Experiment config file.")
flags.DEFINE_string("workdir", None, "Run directory; default runs/<config file stem>.")
flags.DEFINE_enum("mode", "train", ["train"], "What to do with the config and workdir.")
FLAGS = flags.FLAGS


def default_workdir() -> Path:
    """runs/<stem of the --config file>, e.g. runs/celeba for experiments/celeba.py:tiny."""
    config_path = config_flags.get_config_filename(FLAGS["config"])
    return Path("runs") / Path(config_path).stem


def quiet_orbax_info(record) -> bool:
    """absl-handler filter: orbax logs each checkpoint write in ~20 INFO lines; keep warnings."""
    return record.levelno >= logging.WARNING or "/orbax/" not in record.pathname


def main(argv):
    del argv
    logging.get_absl_handler().addFilter(quiet_orbax_info)
    workdir = Path(FLAGS.workdir) if FLAGS.workdir else default_workdir()
    if FLAGS.mode == "train":
        train.train_and_evaluate(FLAGS.config, workdir)
        logging.info(
            "Done. Checkpoints: %s | metrics: %s and TensorBoard events (tensorboard --logdir %s)"
            " | figures: %s",
            workdir / "checkpoints",
            workdir / "metrics.jsonl",
            workdir,
            workdir / "figures",
        )


if __name__ == "__main__":
    app.run(main)
