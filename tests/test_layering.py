"""The package's layering rules, read from the import statements of every module (imports inside
functions included): the maths stays independent of models, data, training and evaluation;
models know no data or training; evaluation never imports training; the library never imports
experiments/."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vae_jax"

# (modules the rule applies to, module prefixes they must not import)
RULES = [
    (
        ("vae_jax.distributions", "vae_jax.likelihoods", "vae_jax.objectives"),
        ("vae_jax.models", "vae_jax.train", "vae_jax.data", "vae_jax.evaluation"),
    ),
    (("vae_jax.models",), ("vae_jax.data", "vae_jax.train")),
    (("vae_jax.evaluation",), ("vae_jax.train",)),
    (("vae_jax",), ("experiments",)),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` in the file names; `from vae_jax import x`
    counts as vae_jax.x, since x may be a module."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


IMPORTS = {module_name(path): imported_modules(path) for path in PACKAGE.rglob("*.py")}


def test_the_import_reader_sees_known_imports():
    assert "vae_jax.models" in IMPORTS["vae_jax.train"]
    assert "vae_jax.evaluation.likelihood" in IMPORTS["vae_jax.train"]
    assert "vae_jax.distributions" in IMPORTS["vae_jax.objectives"]
    assert "sklearn.ensemble" in IMPORTS["vae_jax.evaluation.disentanglement"]  # in a function


@pytest.mark.parametrize("modules, forbidden", RULES)
def test_layering_rule(modules, forbidden):
    broken = [
        f"{module} imports {name}"
        for module, names in sorted(IMPORTS.items())
        if any(within(module, m) for m in modules)
        for name in sorted(names)
        if any(within(name, f) for f in forbidden)
    ]
    assert not broken, "; ".join(broken)
