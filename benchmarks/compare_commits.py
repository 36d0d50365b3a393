"""Train-step time of two revisions, alternating in rounds: the ratio head/base per model.

    python benchmarks/compare_commits.py                      # HEAD~1 against the working tree
    python benchmarks/compare_commits.py --base=9a8f434 --head=HEAD --models=mnist,shapes
    python benchmarks/compare_commits.py --models=celeba --rounds=2    # ~0.5 s a step on 2 cores
    make compare BASE=9a8f434 MODELS=mnist                    # the working tree against 9a8f434

Run it before a performance-sensitive change lands: absolute times on these shared machines
drift by 10-20 % between runs, so only the ratio of two revisions timed in the same session says
whether a change made a step slower. Each round times every model once for each revision, the
order of the two swapped every round so that drift does not favour either one.

Each revision is exported (git archive, never touching this checkout) to a folder under /tmp and
timed with its own benchmarks/train_throughput.py and experiments/, run from that folder with
PYTHONPATH pointing there and this interpreter (so both use the same installed packages and
XLA_FLAGS). Its own script, because the harness follows the train-state API of its revision;
every version prints one JSON line with ms_per_step (revisions before 143f37f have no such
script). --head=worktree times this checkout as it is, uncommitted edits included (anyone's).

Prints one JSON object: the two commits and, per model, the ms/step of each round for each
revision, the per-round ratios head/base and their median (above 1: head is slower).
"""

import argparse
import io
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tarfile
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKTREE = "worktree"

# Synthetic batches on the device: no dataset is read, only the train step is timed.
MODELS = {
    "mnist": ["--config=experiments/mnist.py", "--batch_size=128"],  # the MLP 784-500-500-50
    "shapes": ["--config=experiments/shapes.py"],
    "celeba": ["--config=experiments/celeba.py"],  # about 0.5 s a step on 2 cores
}


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def export(rev: str, folder: pathlib.Path) -> pathlib.Path:
    """The files of commit `rev` in `folder` (or this checkout itself for `worktree`)."""
    if rev == WORKTREE:
        return ROOT
    folder.mkdir()
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def time_step(tree: pathlib.Path, model_args: list[str], extra: list[str]) -> float:
    """ms per train step measured by `tree`'s own benchmarks/train_throughput.py."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, "benchmarks/train_throughput.py", *model_args, *extra]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        sys.exit(f"{' '.join(cmd)} in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])["ms_per_step"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="HEAD~1", help="git revision timed as the reference")
    parser.add_argument("--head", default=WORKTREE, help=f"git revision, or '{WORKTREE}'")
    parser.add_argument("--models", default="mnist,shapes", help=f"of {', '.join(MODELS)}")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="train_throughput --steps")
    parser.add_argument("--repeats", type=int, default=5, help="train_throughput --repeats")
    args = parser.parse_args()
    models = args.models.split(",")
    if unknown := set(models) - set(MODELS):
        parser.error(f"--models: {', '.join(sorted(unknown))} not one of {', '.join(MODELS)}")
    extra = [f"--steps={args.steps}", f"--repeats={args.repeats}"]
    revs = {"base": args.base, "head": args.head}
    head = git("rev-parse", "--short", "HEAD")
    commits = {
        k: f"{WORKTREE} ({head} + edits)" if rev == WORKTREE else git("rev-parse", "--short", rev)
        for k, rev in revs.items()
    }

    with tempfile.TemporaryDirectory(prefix="compare_commits_") as tmp:
        trees = {k: export(rev, pathlib.Path(tmp, k)) for k, rev in revs.items()}
        times = {m: {"base": [], "head": []} for m in models}
        for r in range(args.rounds):
            for m in models:
                for k in ("base", "head") if r % 2 == 0 else ("head", "base"):
                    times[m][k].append(time_step(trees[k], MODELS[m], extra))
                    print(f"round {r + 1} {m} {k} {times[m][k][-1]} ms", file=sys.stderr)

    report = {"base": commits["base"], "head": commits["head"], "models": {}}
    for m, t in times.items():
        ratios = [round(h / b, 3) for h, b in zip(t["head"], t["base"])]
        report["models"][m] = {
            "args": " ".join(MODELS[m]),
            "base_ms": t["base"],
            "head_ms": t["head"],
            "ratios": ratios,
            "median_ratio": statistics.median(ratios),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
