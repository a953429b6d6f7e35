"""The course as a learner meets it: JupyterLab in a real (headless) Chromium.

For a few notebooks (the two with widgets, and ones with chain graphs and wide tables) this opens the
notebook the way a learner does and checks, in the page:

- it opens unmodified (no "dirty" dot: the committed form is the form JupyterLab saves);
- before anything runs, each widget cell shows a sentence and a static table, not ``VBox(...)``;
- Run All (the menu) runs every cell without an error output;
- each widget reacts: the ServiceExplorer's dropdown and Refresh button, the PathExplorer's buttons;
- every image is displayed at >= 90 % of its natural width (JupyterLab shrinks wider ones);
- no table value is cut with "..." (pandas' max_colwidth);
- the browser console shows no error.

It runs Debian's ``chromium`` (``.ci/run`` installs it) through the ``playwright`` wheel with
``executable_path``: no browser is ever downloaded. JupyterLab listens on 127.0.0.1 with a random
token, serves a temporary copy of the notebooks (so nothing here can save into the repository), and is
stopped by its PID. Screenshots go to ``build/browser/``. Without chromium or playwright the tests skip
and say why.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "build" / "browser"
# The notebooks to open: the committed ones, or (to look at a run before committing it) a folder of
# executed notebooks such as build/course.
NOTEBOOKS = Path(os.environ.get("K8SLAB_BROWSER_NOTEBOOKS") or ROOT / "notebooks")
CHROMIUM = os.environ.get("K8SLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium as root needs --no-sandbox; the rest keep it from dialling out (this network is closed,
# and background requests that are refused end up as console noise or slow starts).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1000}
MIN_DISPLAYED = 0.90          # an image must be shown at >= 90 % of its natural width

if not CHROMIUM:
    pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does): the browser test "
                "needs a real browser and never downloads one", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the playwright wheel is not installed: pip install -e '.[test]'")


# --------------------------------------------------------------------------------------------
# JupyterLab, on 127.0.0.1, over a temporary copy of the notebooks

class Server:
    def __init__(self, proc: subprocess.Popen, port: int, token: str, folder: Path):
        self.proc, self.port, self.token, self.folder = proc, port, token, folder

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}{path}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(self.url(path), method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        return json.loads(body) if body else None


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    base = tmp_path_factory.mktemp("jupyterlab")
    folder = base / "notebooks"
    folder.mkdir()
    for nb in sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")):
        shutil.copy2(nb, folder / nb.name)
    settings = base / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No news fetch and no update check: this machine has no internet, and a learner's lab would ask.
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    runtime = base / "runtime"
    env = dict(os.environ, K8SLAB_BACKEND="sim", PYTHONHASHSEED="0", JUPYTER_RUNTIME_DIR=str(runtime),
               JUPYTER_CONFIG_DIR=str(base / "config"), JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"), IPYTHONDIR=str(base / "ipython"),
               MPLCONFIGDIR=str(base / "mpl"))
    token = secrets.token_hex(24)
    argv = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly", "--LabApp.expose_app_in_browser=True"]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    log = open(base / "server.log", "wb")
    proc = subprocess.Popen(argv, env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        info = None
        deadline = time.monotonic() + 90
        while info is None and time.monotonic() < deadline and proc.poll() is None:
            for f in runtime.glob("jpserver-*.json"):
                data = json.loads(f.read_text() or "{}")
                if data.get("pid") == proc.pid and data.get("port"):
                    info = data
            time.sleep(0.3)
        if info is None:
            raise RuntimeError("JupyterLab did not start:\n" + (base / "server.log").read_text()[-3000:])
        assert info["hostname"] in ("127.0.0.1", "localhost") or "127.0.0.1" in info["url"], info
        yield Server(proc, int(info["port"]), token, folder)
    finally:
        if proc.poll() is None:
            try:     # shut the kernels down through the API, then the server by its PID
                for k in Server(proc, int(info["port"]), token, folder).api("/api/kernels") if info else []:
                    Server(proc, int(info["port"]), token, folder).api(f"/api/kernels/{k['id']}", "DELETE")
            except Exception:
                pass
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")     # a fresh --user-data-dir
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, viewport=VIEWPORT)
        try:
            yield context
        finally:
            context.close()


# --------------------------------------------------------------------------------------------
# reading JupyterLab's page

PANEL = "window.__k8slabPanel"        # the notebook's panel, found by its path once it is open
FIND_PANEL = """name => {
  if (!window.jupyterapp) return false;
  const w = Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.context && w.context.path === name);
  if (w) window.__k8slabPanel = w;
  return !!w;
}"""
KERNEL_IDLE = f"""() => {{
  const w = {PANEL};
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!(k && k.status === 'idle' && w.context.isReady);
}}"""
WATCH_RUN = f"""() => {{
  window.__k8slabRan = new Set();
  {PANEL}.content.widgets.forEach((c, i) => {{
    if (c.model.type === 'code') c.model.stateChanged.connect((m, a) => {{
      if (a.name === 'executionCount' && a.newValue !== null) window.__k8slabRan.add(i); }});
  }});
}}"""
RUN_DONE = f"""() => {{
  const w = {PANEL};
  const k = w.sessionContext.session.kernel;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  const running = cells.some(c => c.model.executionState === 'running'
                                   || (c.promptNode && c.promptNode.textContent.includes('*')));
  const failed = cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'));
  const done = window.__k8slabRan.size === cells.length;   // every code cell got a new count
  return k.status === 'idle' && !running && (done || failed);
}}"""
CELLS = f"""() => {PANEL}.content.widgets.map((c, i) => ({{
  index: i, type: c.model.type, tags: c.model.getMetadata('tags') || [],
  source: c.model.sharedModel.getSource(),
  outputs: c.model.type === 'code' ? c.model.outputs.toJSON() : []}}))"""
IMAGES = f"""() => Array.from({PANEL}.content.node.querySelectorAll('.jp-OutputArea-output img')).map((img, k) => {{
  const cell = img.closest('.jp-Cell');
  const cells = Array.from({PANEL}.content.node.querySelectorAll('.jp-Notebook-cell'));
  return {{k, cell: cells.indexOf(cell), complete: img.complete, natural: img.naturalWidth,
           shown: img.getBoundingClientRect().width, naturalHeight: img.naturalHeight,
           shownHeight: img.getBoundingClientRect().height}};
}})"""
CUT_VALUES = f"""() => Array.from({PANEL}.content.node.querySelectorAll('.jp-OutputArea-output td'))
  .map(td => td.textContent.trim()).filter(t => t.length > 3 && t.endsWith('...'))"""


class Notebook:
    """One notebook open in a browser tab, with what the console said."""

    def __init__(self, page, name: str):
        self.page, self.name = page, name
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    @property
    def stem(self) -> str:
        return self.name[:2]

    def shot(self, what: str, element=None) -> Path:
        """A screenshot of the window, as the learner sees it (with ``element`` scrolled to the top)."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{self.stem}-{what}.png"
        if element is not None:       # twice: cells far away are laid out only once near the view
            for _ in range(2):
                element.evaluate("e => e.scrollIntoView({block: 'start'})")
                self.page.wait_for_timeout(300)
        self.page.screenshot(path=str(path))
        return path

    def cells(self) -> list[dict]:
        return self.page.evaluate(CELLS)

    def cell_node(self, index: int):
        return self.page.evaluate_handle(f"() => {PANEL}.content.widgets[{index}].node").as_element()

    def output_node(self, index: int):
        return self.page.evaluate_handle(
            f"() => {PANEL}.content.widgets[{index}].node.querySelector('.jp-Cell-outputArea')").as_element()

    def widget_cells(self) -> list[dict]:
        return [c for c in self.cells() if "widget" in c["tags"]]

    def dirty(self) -> bool:
        return self.page.evaluate(f"() => {PANEL}.context.model.dirty") or \
            self.page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty").count() > 0

    def run_all(self, timeout: float = 120) -> float:
        """Run > Run All Cells, from the menu bar as a learner does; seconds until every cell ran."""
        self.page.evaluate(WATCH_RUN)
        start = time.monotonic()
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        self.page.wait_for_function(RUN_DONE, timeout=timeout * 1000, polling=100)
        return time.monotonic() - start

    def overflowing_tables(self) -> list[dict]:
        """Output tables wider than their output area (what sticks out is out of sight: JupyterLab
        scrolls it sideways). Each is scrolled into view first, so it has been laid out."""
        sel = f"{PANEL}.content.node.querySelectorAll('.jp-OutputArea-output table')"
        found = []
        for k in range(self.page.evaluate(f"() => {sel}.length")):
            info = self.page.evaluate(f"""() => {{
              const t = {sel}[{k}];
              t.scrollIntoView({{block: 'center'}});
              const area = t.closest('.jp-OutputArea-output');
              const cells = Array.from({PANEL}.content.node.querySelectorAll('.jp-Notebook-cell'));
              return {{cell: cells.indexOf(t.closest('.jp-Notebook-cell')), width: t.getBoundingClientRect().width,
                       area: area.clientWidth, text: t.innerText.slice(0, 80)}};
            }}""")
            if info["width"] > info["area"] + 1:
                found.append(info)
        return found

    def close(self) -> None:
        """Shut the notebook's kernel down (as the Kernel menu does) and close the tab."""
        try:
            self.page.evaluate(f"() => {PANEL}.sessionContext.shutdown()")
        finally:
            self.page.close()

    def images(self) -> list[dict]:
        """Every image in an output, each scrolled into view first (JupyterLab lays out only what is near)."""
        count = self.page.evaluate(f"() => {PANEL}.content.node.querySelectorAll('.jp-OutputArea-output img').length")
        for k in range(count):
            self.page.evaluate(f"() => {PANEL}.content.node.querySelectorAll('.jp-OutputArea-output img')[{k}]"
                               ".scrollIntoView({block: 'center'})")
            self.page.wait_for_function(f"() => {PANEL}.content.node.querySelectorAll("
                                        f"'.jp-OutputArea-output img')[{k}].complete")
        return self.page.evaluate(IMAGES)


def open_notebook(browser, jupyterlab, name: str) -> Notebook:
    page = browser.new_page()
    nb = Notebook(page, name)
    # ?reset: a fresh workspace, so the page opens this notebook alone (not the last test's too)
    page.goto(jupyterlab.url(f"/lab/tree/{name}?reset"), wait_until="domcontentloaded")
    page.wait_for_function(FIND_PANEL, arg=name, timeout=120_000, polling=250)
    page.wait_for_function(KERNEL_IDLE, timeout=120_000, polling=250)
    page.wait_for_timeout(1500)      # let the kernel's info reach the model (that is what dirtied it)
    return nb


def _text(el) -> str:
    return " ".join((el.inner_text() or "").split())


def _caption(out) -> str:
    cap = out.query_selector("caption")
    return _text(cap) if cap else ""


def _shown_destinations(out) -> set[str]:
    return set(re.findall(r"--to-destination (\S+)", out.inner_text()))


# --------------------------------------------------------------------------------------------
# what every tested notebook must do

def check_common(nb: Notebook, problems: list[str]) -> dict:
    """Opens unmodified; Run All; images at >= 90 %; no cut table value; returns measurements."""
    if nb.dirty():
        problems.append("opens as modified (JupyterLab changed the notebook on load)")
    seconds = nb.run_all()
    nb.shot("after-run-all")
    errors = [(c["index"], o.get("ename"), o.get("evalue")) for c in nb.cells() for o in c["outputs"]
              if o.get("output_type") == "error"]
    if errors:
        problems.append(f"error outputs after Run All: {errors}")
    images = nb.images()
    if not images:
        problems.append("no image in the outputs")
    shot_cells = set()
    for img in images:
        ratio = img["shown"] / img["natural"] if img["natural"] else 0.0
        img["ratio"] = ratio
        if img["cell"] >= 0 and img["cell"] not in shot_cells:
            shot_cells.add(img["cell"])
            nb.shot(f"figure-cell{img['cell']}", nb.output_node(img["cell"]))
        if not img["complete"] or ratio < MIN_DISPLAYED:
            problems.append(f"cell {img['cell']}: image {img['natural']} px wide shown at {img['shown']:.0f} px "
                            f"({ratio:.0%}, needs >= {MIN_DISPLAYED:.0%})")
    for table in nb.overflowing_tables():
        problems.append(f"cell {table['cell']}: a table {table['width']:.0f} px wide in a {table['area']} px "
                        f"output (its right part is out of sight): {table['text']!r}")
    cut = nb.page.evaluate(CUT_VALUES)
    if cut:
        problems.append(f"table values cut with '...': {cut[:5]}")
    # the cells whose tables show a DNAT's --to-destination (the value exercise 05.hostport asks for)
    for index in nb.page.evaluate(f"""() => {PANEL}.content.widgets.map((c, i) => [c, i]).filter(([c, i]) =>
          Array.from(c.node.querySelectorAll('.jp-OutputArea-output td')).some(td =>
            td.textContent.includes('--to-destination'))).map(([c, i]) => i)""")[:2]:
        nb.shot(f"table-cell{index}", nb.output_node(index))
    return {"run_all_s": seconds, "images": images}


def finish(nb: Notebook, problems: list[str], measured: dict) -> None:
    if nb.console:
        problems.append("console errors: " + " | ".join(nb.console[:5]))
    widths = ", ".join(f"{i['natural']}->{i['shown']:.0f}px ({i['ratio']:.0%})" for i in measured.get("images", []))
    print(f"{nb.name}: Run All {measured.get('run_all_s', 0):.1f} s; images {widths}")
    nb.close()
    assert not problems, f"{nb.name}:\n- " + "\n- ".join(problems)


def check_before_run(nb: Notebook, problems: list[str]) -> None:
    """Each widget cell, before it runs: a sentence and the static table, never a widget's repr."""
    cells = nb.widget_cells()
    if not cells:
        problems.append("no cell tagged 'widget'")
    for cell in cells:
        out = nb.output_node(cell["index"])
        out.scroll_into_view_if_needed()
        nb.shot(f"widget{cell['index']}-before-run", nb.cell_node(cell["index"]))
        text = _text(out)
        if "VBox(" in text or "children=" in text or "Error displaying widget" in text:
            problems.append(f"cell {cell['index']} shows a widget's repr before it runs: {text[:100]!r}")
        if not re.search(r"run (this|the) cell", text, re.I):
            problems.append(f"cell {cell['index']}: no sentence telling the learner to run it: {text[:100]!r}")
        if out.query_selector("table") is None:
            problems.append(f"cell {cell['index']}: no static table before it runs")


def check_rule_table(nb: Notebook, out, problems: list[str], what: str) -> None:
    """Rule text left-aligned, normal line height, rows not wrapped into a narrow column."""
    info = out.evaluate("""o => {
      const tds = Array.from(o.querySelectorAll('td.k8slab-rule'));
      return tds.map(td => { const s = getComputedStyle(td);
        return {align: s.textAlign, lh: s.lineHeight, fs: parseFloat(s.fontSize),
                h: td.getBoundingClientRect().height, w: td.getBoundingClientRect().width}; });
    }""")
    if not info:
        problems.append(f"{what}: no rule cell (td.k8slab-rule) in the table")
        return
    for td in info:
        lh = td["fs"] * 1.2 if td["lh"] == "normal" else float(td["lh"].rstrip("px"))
        if td["align"] not in ("left", "start"):
            problems.append(f"{what}: rule text aligned {td['align']}")
            break
        if lh > 1.5 * td["fs"]:
            problems.append(f"{what}: rule line height {lh:.0f}px for {td['fs']:.0f}px text")
            break
        if td["h"] > 4 * lh + 8:
            problems.append(f"{what}: a rule wraps into {td['h'] / lh:.0f} lines in a {td['w']:.0f}px column")
            break


# --------------------------------------------------------------------------------------------
# the tests

def test_03_service_explorer(browser, jupyterlab):
    nb = open_notebook(browser, jupyterlab, "03-service-is-rules.ipynb")
    problems: list[str] = []
    nb.shot("open")
    check_before_run(nb, problems)
    measured = check_common(nb, problems)
    (cell,) = nb.widget_cells() or [None]
    if cell is not None:
        out = nb.output_node(cell["index"])
        out.scroll_into_view_if_needed()
        select = out.query_selector(".widget-dropdown select")
        if select is None:
            problems.append("after Run All the explorer cell has no dropdown: " + _text(out)[:200])
        else:
            nb.shot("explorer-after-run", nb.cell_node(cell["index"]))
            check_rule_table(nb, out, problems, "url-shortener")
            before = _caption(out)
            select.select_option(label="kube-system/kube-dns")
            try:
                nb.page.wait_for_function("([o, b]) => { const c = o.querySelector('caption'); "
                                          "return c && c.textContent !== b; }", arg=[out, before], timeout=10_000)
            except sync_api.TimeoutError:
                pass
            after = _caption(out)
            nb.shot("explorer-kube-dns", nb.cell_node(cell["index"]))
            if after == before or "kube-dns" not in after:
                problems.append(f"the dropdown moved but the table did not follow: {before!r} -> {after!r}")
            check_rule_table(nb, out, problems, "kube-dns")
            height = out.evaluate("o => o.getBoundingClientRect().height")
            measured["kube_dns_height"] = height
            print(f"kube-dns table: {height:.0f} px tall")
            # The notebook scaled url-shortener to 3 pods after this cell ran: Refresh must show it.
            select.select_option(label="default/url-shortener")
            nb.page.wait_for_function("o => o.querySelector('caption').textContent.includes('url-shortener')",
                                      arg=out, timeout=10_000)
            stale = _shown_destinations(out)
            button = out.query_selector("button:has-text('Refresh')")
            if button is None:
                problems.append("no Refresh button: the explorer stays a snapshot of when its cell ran")
            else:
                button.click()
                try:
                    nb.page.wait_for_function(
                        "([o, n]) => (o.innerText.match(/--to-destination \\S+/g) || []).length > n",
                        arg=[out, len(stale)], timeout=10_000)
                except sync_api.TimeoutError:
                    pass
                fresh = _shown_destinations(out)
                nb.shot("explorer-refreshed", nb.cell_node(cell["index"]))
                if not (len(stale) == 2 and len(fresh) == 3):
                    problems.append(f"Refresh after scaling to 3: endpoints {sorted(stale)} -> {sorted(fresh)}")
    finish(nb, problems, measured)


def test_06_path_explorer(browser, jupyterlab):
    nb = open_notebook(browser, jupyterlab, "06-ingress-is-a-rule.ipynb")
    problems: list[str] = []
    nb.shot("open")
    check_before_run(nb, problems)
    measured = check_common(nb, problems)
    (cell,) = nb.widget_cells() or [None]
    if cell is not None:
        out = nb.output_node(cell["index"])
        out.scroll_into_view_if_needed()
        buttons = out.query_selector_all(".widget-toggle-button")
        if not buttons:
            problems.append("after Run All the path explorer has no buttons: " + _text(out)[:200])
        else:
            nb.shot("paths-after-run", nb.cell_node(cell["index"]))
            before = _caption(out)
            img = out.query_selector("img")
            before_src = img.get_attribute("src") if img else ""
            target = next((b for b in buttons if "nodeport" in _text(b)), buttons[0])
            target.click()
            try:
                nb.page.wait_for_function("([o, b]) => o.querySelector('caption').textContent !== b",
                                          arg=[out, before], timeout=10_000)
                nb.page.wait_for_function("([o, s]) => { const i = o.querySelector('img'); "
                                          "return i && i.complete && i.getAttribute('src') !== s; }",
                                          arg=[out, before_src], timeout=10_000)
            except sync_api.TimeoutError:
                pass
            after = _caption(out)
            img = out.query_selector("img")
            nb.shot("paths-nodeport", nb.cell_node(cell["index"]))
            if after == before or "nodeport" not in after:
                problems.append(f"the buttons moved but the table did not follow: {before!r} -> {after!r}")
            if img is None or img.get_attribute("src") == before_src:
                problems.append("the path figure did not follow the buttons")
            # every hop that happens in the ingress controller's pod is labelled as the controller
            rows = out.evaluate("""o => Array.from(o.querySelectorAll('tr')).map(tr =>
                Array.from(tr.querySelectorAll('td')).map(td => td.textContent.trim()))""")
            for row in rows:
                if any("ingress-nginx-controller" in v for v in row) and "app" in row:
                    problems.append(f"a hop in the controller's pod is labelled 'app': {row}")
            if img is not None:
                size = img.evaluate("i => ({natural: i.naturalWidth, shown: i.getBoundingClientRect().width})")
                size["ratio"] = size["shown"] / size["natural"] if size["natural"] else 0.0
                measured["images"].append(size)
                if size["ratio"] < MIN_DISPLAYED:
                    problems.append(f"the explorer's nodeport figure ({size['natural']} px) is shown at "
                                    f"{size['ratio']:.0%}")
    finish(nb, problems, measured)


def test_every_notebook_opens_unmodified(browser, jupyterlab):
    """Opening a committed notebook (kernel started, outputs rendered) must not modify it."""
    names = sorted(p.name for p in jupyterlab.folder.glob("[0-9][0-9]-*.ipynb"))
    assert len(names) == 10, names
    dirty = []
    for name in names:
        nb = open_notebook(browser, jupyterlab, name)
        if nb.dirty():
            dirty.append(name)
            nb.shot("opens-modified")
        if nb.console:
            dirty.append(f"{name}: console errors {nb.console[:3]}")
        nb.close()
    assert not dirty, f"open as modified in JupyterLab: {dirty}"


@pytest.mark.parametrize("name", ["01-cluster.ipynb", "04-nodeport.ipynb", "05-ingress-controller.ipynb"])
def test_figures_and_tables(browser, jupyterlab, name):
    nb = open_notebook(browser, jupyterlab, name)
    problems: list[str] = []
    nb.shot("open")
    measured = check_common(nb, problems)
    finish(nb, problems, measured)
