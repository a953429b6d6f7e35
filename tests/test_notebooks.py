"""The committed notebooks carry the outputs of a sim run; re-running them on sim must reproduce
those outputs (nbval, with tests/nbval_sanitize.cfg for what legitimately varies)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))

pytestmark = pytest.mark.notebooks


def test_there_is_a_course():
    names = [p.name[:2] for p in NOTEBOOKS]
    assert names == [f"{i:02d}" for i in range(10)], names


def test_committed_notebooks_carry_sim_outputs():
    import nbformat
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.get("execution_count") for c in code), f"{path.name} has unexecuted cells"
        text = "".join(o.get("text", "") for c in code for o in c.outputs)
        assert "Traceback" not in text, path.name
        first = code[0]
        assert "setup" in first.metadata.get("tags", []), f"{path.name}: the first code cell sets the lab up"
        assert "backend: sim" in "".join(o.get("text", "") for o in first.outputs), path.name


def test_committed_notebooks_are_in_the_form_jupyterlab_saves():
    """Opened in JupyterLab, a committed notebook is not modified (tests/test_browser.py checks it
    in a browser): the kernel spec's display name, one output per stream run, and no widget view or
    widget state (a saved widget is dead until its cell runs again: the static view stands in)."""
    import nbformat
    from k8slab.course import WIDGET_MIME, kernel_display_name
    display_name = kernel_display_name("python3")
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        if display_name:
            assert nb.metadata["kernelspec"]["display_name"] == display_name, path.name
        assert "widgets" not in nb.metadata, path.name
        for cell in nb.cells:
            outs = cell.get("outputs", [])
            assert not any(WIDGET_MIME in o.get("data", {}) for o in outs), path.name
            for a, b in zip(outs, outs[1:]):
                assert not (a.output_type == b.output_type == "stream" and a.name == b.name), \
                    (path.name, cell.source[:60])


def test_widget_cells_show_a_sentence_and_the_static_view_before_they_run():
    import nbformat
    found = 0
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if "widget" not in cell.get("metadata", {}).get("tags", []):
                continue
            found += 1
            html = "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs)
            assert "Run this cell" in html and "<table" in html, (path.name, cell.source[:60])
    assert found >= 2


def test_widget_cells_are_ignored_by_nbval():
    import nbformat
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if "widget" in cell.get("metadata", {}).get("tags", []):
                assert cell.source.startswith("# NBVAL_IGNORE_OUTPUT"), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_nbval_on_sim(path):
    env = dict(os.environ, K8SLAB_BACKEND="sim", PYTHONHASHSEED="0")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env", "--nbval-cell-timeout", "120",
         "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), str(path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_the_course_with_solutions_filled_in_passes_every_check(tmp_path):
    """One source for exercise and solution: `k8slab course --solutions` writes each solution into its
    exercise cell and runs the notebooks; every check must then say the prediction is right."""
    import nbformat
    from k8slab.course import run_course
    runs = run_course(backend="sim", out=tmp_path, solutions=True, html=False, timeout=120)
    assert [r.ok for r in runs] == [True] * len(NOTEBOOKS), [(r.name, r.error) for r in runs if not r.ok]
    checked = 0
    for run in runs:
        nb = nbformat.read(run.executed, as_version=4)
        for cell in nb.cells:
            if "exercise" not in cell.get("metadata", {}).get("tags", []):
                continue
            text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                           for o in cell.get("outputs", []))
            assert "✔ correct" in text and "answer = ..." not in cell.source, (run.name, cell.source, text)
            checked += 1
    assert checked >= 2 * len(NOTEBOOKS)
