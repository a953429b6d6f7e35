"""Run the course's notebooks headless, in order, and write each as an executed notebook and HTML.

``run_course()`` is what ``k8slab course`` and ``benchmarks/course.py`` call. Each notebook runs in
a fresh ``python3`` kernel with the notebooks folder as working directory and ``K8SLAB_BACKEND``
set, so every notebook proves it can start on its own.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .errors import K8sLabError, NotFound

NOTEBOOK_NAME = re.compile(r"^(\d{2})-[\w.-]+\.ipynb$")


@dataclass
class NotebookRun:
    """How one notebook went."""
    name: str
    ok: bool
    seconds: float
    cells: int
    error: str = ""
    executed: Path | None = None
    html: Path | None = None

    def line(self) -> str:
        status = "ok" if self.ok else "FAILED"
        tail = f"  {self.error}" if self.error else ""
        return f"{self.name:<40} {status:<6} {self.seconds:6.1f} s  {self.cells} cells{tail}"


def project_root() -> Path:
    from .lab import find_root
    return find_root()


def find_notebooks(directory: Path | None = None, only: Iterable[str] | None = None) -> list[Path]:
    """The course notebooks (``NN-*.ipynb``) in order; ``only``: numbers like ``"03"`` or ``"3"``."""
    directory = Path(directory) if directory else project_root() / "notebooks"
    found = sorted(p for p in directory.glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))
    if only:
        wanted = {f"{int(x):02d}" for x in only}
        found = [p for p in found if NOTEBOOK_NAME.match(p.name).group(1) in wanted]
    if not found:
        raise NotFound(f"no course notebooks (NN-*.ipynb) in {directory}" + (f" matching {list(only)}" if only else "")
                       + "; run from the project checkout")
    return found


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    # nbclient's CellExecutionError carries the whole traceback; keep the exception's last line.
    lines = [l for l in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines() if l.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Unavailable|NotFound|Timeout)\b", line.strip()):
            return line.strip()[:300]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def execute_notebook(path: Path, *, backend: str = "sim", timeout: int = 600, kernel: str = "python3",
                     solutions: bool = False, env: dict | None = None):
    """Execute one notebook (a fresh kernel, cwd = its folder); return ``(nb, error or "")``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    if solutions:
        from .exercises import fill_solutions
        fill_solutions(nb)
    run_env = dict(os.environ)
    run_env.update(env or {})
    if backend:
        run_env["K8SLAB_BACKEND"] = backend
    run_env.setdefault("PYTHONHASHSEED", "0")
    # record_timing=False: no per-cell timestamps, so re-running the course in place changes only
    # what the cells really printed.
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel, record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        # The kernel's own stderr (transport warnings) would interleave with the one-line report;
        # errors in cells still arrive as cell outputs.
        client.execute(env=run_env, cwd=str(path.parent), stderr=subprocess.DEVNULL)
    except CellExecutionError as exc:
        return nb, _error_text(exc)
    except Exception as exc:  # a dead kernel or a timeout: report it as this notebook's failure
        return nb, f"{type(exc).__name__}: {_error_text(exc)}"
    return nb, ""


WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def kernel_display_name(kernel: str = "python3") -> str | None:
    """The display name JupyterLab writes for ``kernel`` (its kernel spec's, e.g. "Python 3 (ipykernel)")."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager
        return KernelSpecManager().get_kernel_spec(kernel).display_name
    except Exception:     # no such kernel spec: leave the notebook's own
        return None


def saved_form(nb, kernel: str = "python3"):
    """``nb`` as JupyterLab saves it, so a committed notebook does not open as modified, and with no
    dead widget in it. In place; returns ``nb``.

    - ``metadata.kernelspec`` is the kernel spec's (JupyterLab renames "Python 3" to the spec's
      display name as soon as the kernel starts, and the notebook is then modified);
    - consecutive stream outputs of one stream are one output (JupyterLab's output area merges them);
    - no widget view and no saved widget state: a widget's view refers to a model that lives only in
      the kernel that made it, so a saved one is either an error or a dead copy. The static HTML the
      course's explorers put beside their widget (``k8slab.widgets``) is what the learner sees until
      the cell runs again.
    """
    name = kernel_display_name(kernel)
    spec = nb.metadata.get("kernelspec") or {}
    if name:
        nb.metadata["kernelspec"] = {"display_name": name, "language": spec.get("language", "python"),
                                     "name": spec.get("name", kernel)}
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        merged = []
        for out in cell.get("outputs", []):
            if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                    and merged[-1].get("name") == out.get("name")):
                merged[-1]["text"] = merged[-1]["text"] + out["text"]
                continue
            data = out.get("data")
            if data and WIDGET_MIME in data:
                del data[WIDGET_MIME]
                if not data:
                    continue
            merged.append(out)
        cell["outputs"] = merged
    return nb


def to_html(nb) -> str:
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter().from_notebook_node(nb)
    return body


def run_course(*, backend: str = "sim", out: Path | None = None, only: Iterable[str] | None = None,
               notebooks_dir: Path | None = None, solutions: bool = False, in_place: bool = False,
               html: bool = True, timeout: int = 600,
               report: Callable[[NotebookRun], None] | None = None) -> list[NotebookRun]:
    """Execute the course in order. Writes ``out/NN-*.ipynb`` and ``out/NN-*.html`` (and, with
    ``in_place``, stores the outputs back into the notebooks themselves), each notebook in the form
    JupyterLab saves (:func:`saved_form`). Never raises for a failing notebook: each result says ok
    or not, and what failed."""
    import nbformat
    paths = find_notebooks(notebooks_dir, only)
    out = Path(out) if out else paths[0].parent.parent / "build" / "course"
    out.mkdir(parents=True, exist_ok=True)
    runs: list[NotebookRun] = []
    for path in paths:
        start = time.monotonic()
        nb, error = execute_notebook(path, backend=backend, timeout=timeout, solutions=solutions)
        run = NotebookRun(path.name, not error, time.monotonic() - start,
                          sum(1 for c in nb.cells if c.cell_type == "code"), error)
        run.executed = out / path.name
        saved_form(nb)
        nbformat.write(nb, run.executed)
        if html:
            run.html = out / (path.stem + ".html")
            run.html.write_text(to_html(nb), encoding="utf-8")
        if in_place and not error and not solutions:
            nbformat.write(nb, path)
        runs.append(run)
        if report:
            report(run)
    if html:
        _write_index(out, runs)
    return runs


def _write_index(out: Path, runs: list[NotebookRun]) -> Path:
    import html as h
    items = "".join(
        f'<li><a href="{h.escape(r.html.name)}">{h.escape(r.name)}</a> - {"ok" if r.ok else "failed: " + h.escape(r.error)}</li>'
        for r in runs if r.html)
    index = out / "index.html"
    index.write_text(f"<!doctype html><title>k8slab course</title><h1>k8slab: from port-forward to Ingress</h1>"
                     f"<ol>{items}</ol>", encoding="utf-8")
    return index


class CourseFailed(K8sLabError):
    """At least one notebook failed; the message names them."""


__all__ = ["NotebookRun", "find_notebooks", "execute_notebook", "run_course", "saved_form", "to_html",
           "CourseFailed"]
