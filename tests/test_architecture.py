"""Imports follow the data: no module imports one of a later stage (docs/architecture.md).

Every import of a cvlabel module is checked, including the ones inside functions (the lazy
imports that keep torch out of the parent of parallel inference).
"""

import ast
from pathlib import Path

import pytest

import cvlabel

PACKAGE = Path(cvlabel.__file__).parent

# Earlier layers first. A module may import modules of earlier layers only.
LAYERS = [
    ["errors", "version"],
    ["files", "mpg123", "bandmp3", "progress"],
    ["config", "summaries"],
    ["labels"],
    ["corpus", "audio"],
    ["splits", "speech"],
    ["artifacts", "cache", "encoder", "features", "model", "metrics", "certify", "plots", "synthesis"],
    ["augment", "checkpoint", "runners", "pooling"],
    ["scoring", "html_report", "labelling"],
    ["training", "inference", "democorpus", "release_labels"],
    ["evaluate", "export_layouts", "predict", "testing"],
    ["export"],
    ["report"],
    ["cli_options"],
    ["cli_export", "cli_infer"],
    ["cli"],
    ["__main__", "__init__"],
]
# Compiled extensions (their C sources in a folder of the same name): they import nothing of the
# package, so any module may import them.
COMPILED = ["_bandmp3"]
LAYER = {module: depth for depth, modules in enumerate(LAYERS) for module in modules} | dict.fromkeys(COMPILED, -1)


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:  # from .x import y
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import x
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("cvlabel."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("cvlabel."))
    return found


def test_every_module_has_a_layer():
    modules = {path.stem for path in PACKAGE.glob("*.py")} | {path.parent.name for path in PACKAGE.glob("_*/*.c")}
    assert modules == set(LAYER), "add new modules to LAYERS or COMPILED (and to docs/architecture.md)"


def test_a_compiled_module_is_imported_by_its_wrapper_only():
    """cvlabel._bandmp3 is optional; cvlabel.bandmp3 knows whether it was built."""
    importers = {path.stem for path in PACKAGE.glob("*.py") if "_bandmp3" in imported_modules(path)}
    assert importers == {"bandmp3"}


@pytest.mark.parametrize("module", sorted(set(LAYER) - set(COMPILED)))
def test_no_module_imports_a_later_stage(module):
    later = {name for name in imported_modules(PACKAGE / f"{module}.py") if LAYER[name] >= LAYER[module]}
    assert not later, f"{module} (layer {LAYER[module]}) imports {sorted(later)} of the same or a later layer"


def test_the_parent_of_parallel_inference_needs_no_torch(trained_run):
    """Importing the parent's modules and reading a checkpoint's config (the run's split settings)
    load no torch: the parent of parallel inference stays small."""
    import subprocess
    import sys

    code = (
        "import sys; import cvlabel.inference, cvlabel.export, cvlabel.artifacts; "
        f"from cvlabel.checkpoint import run_config; run_config({str(trained_run)!r}).splits; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_cvlabel_loads_no_numpy_pandas_or_torch():
    """`import cvlabel` is quick (a notebook's first cell, scripts that only read a config): the heavy
    libraries load with the first function that needs them."""
    import subprocess
    import sys

    code = "import sys, cvlabel; print(sorted(m for m in ('numpy', 'pandas', 'torch', 'scipy') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
