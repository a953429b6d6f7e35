"""Small explorers for the notebooks: pick a Service and see its rules, pick a way in and see its hops.

Every explorer has two faces:

- ``explorer.show()`` (or ``explorer.widget``): the interactive ipywidgets view, for JupyterLab.
  Mark the cell ``# NBVAL_IGNORE_OUTPUT``: a widget's output is a model id, not content.
- ``explorer`` as the last line of a cell (its ``_repr_html_``), or ``explorer.html()``: a static
  HTML table of the current selection, so the notebook reads the same under nbval, in the HTML
  export and on GitHub, where widgets do not run.

The data functions (:func:`service_rules`, :func:`service_summary`) are pure: they take a Ruleset
and DataFrames, not the Lab.
"""
from __future__ import annotations

import html
from typing import Callable, Mapping

from .paths import Path, Way
from .plot import component_color, owner_color

RULE_COLUMNS = ["table", "chain", "position", "owner", "target", "to", "probability", "rule"]


def _owner(table: str, chain: str) -> str:
    from .plot import _owner_of
    return _owner_of(table, chain)


def service_rules(ruleset, service: str):
    """Every rule that belongs to ``service`` ("namespace/name"), as a DataFrame.

    A rule belongs to it when its comment names the service (kube-proxy writes ``ns/name:port``
    into every rule it makes for a service port), or when it sits in a per-service chain reached
    from such a rule.
    """
    import pandas as pd
    rows = []
    own_chains: set[tuple[str, str]] = set()
    for rule in ruleset.iter_rules():
        comment = rule.comment or ""
        if comment.startswith(service + ":") or comment.startswith(service + " ") or comment == service:
            if rule.jumps_to_chain and rule.target.startswith(("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-",
                                                              "KUBE-FW-", "KUBE-SEP-")):
                own_chains.add((rule.table, rule.target))
    for rule in ruleset.iter_rules():
        comment = rule.comment or ""
        named = comment.startswith(service + ":") or comment.startswith(service + " ") or comment == service
        if not (named or (rule.table, rule.chain) in own_chains):
            continue
        to = rule.target_option("--to-destination")
        prob = rule.option("statistic", "--probability")
        body = rule.line
        if body.startswith("["):          # drop an iptables-save -c counter prefix
            body = body.split("] ", 1)[-1]
        rows.append({
            "table": rule.table, "chain": rule.chain, "position": rule.position,
            "owner": _owner(rule.table, rule.chain), "target": rule.target or "",
            "to": to.value if to is not None else "",
            "probability": float(prob.value) if prob is not None and prob.value else None,
            "rule": body,
        })
    return pd.DataFrame(rows, columns=RULE_COLUMNS)


def _table_html(df, *, caption: str = "", color_by: str | None = None, colors: Callable[[str], str] | None = None,
                max_rows: int = 60) -> str:
    """A plain HTML table (no JavaScript, no CSS classes), readable on GitHub and in nbconvert."""
    cols = list(df.columns)
    parts = ['<table style="border-collapse:collapse;font-size:12px">']
    if caption:
        parts.append(f'<caption style="text-align:left;font-weight:bold">{html.escape(caption)}</caption>')
    parts.append("<tr>" + "".join(f'<th style="text-align:left;padding:2px 6px;border-bottom:1px solid #999">'
                                  f"{html.escape(str(c))}</th>" for c in cols) + "</tr>")
    for _, row in df.head(max_rows).iterrows():
        style = ""
        if color_by and colors is not None:
            style = f' style="border-left:6px solid {colors(str(row[color_by]))}"'
        cells = []
        for c in cols:
            v = row[c]
            text = "" if v is None or (isinstance(v, float) and v != v) else str(v)
            mono = "font-family:monospace;" if c in ("rule", "evidence", "to", "src", "dst") else ""
            cells.append(f'<td style="{mono}padding:2px 6px;vertical-align:top">{html.escape(text)}</td>')
        parts.append(f"<tr{style}>" + "".join(cells) + "</tr>")
    if len(df) > max_rows:
        parts.append(f'<tr><td colspan="{len(cols)}">… {len(df) - max_rows} more rows</td></tr>')
    parts.append("</table>")
    return "".join(parts)


class ServiceExplorer:
    """Pick a Service; see the rules kube-proxy (and the CNI plugin) wrote for it.

    ``ServiceExplorer(ruleset, services)``: ``services`` is a list of "namespace/name" strings.
    ``ServiceExplorer.from_lab(lab)`` reads both from the lab.
    """

    def __init__(self, ruleset, services: list[str], selected: str | None = None):
        if not services:
            raise ValueError("ServiceExplorer needs at least one service (is the app deployed?)")
        self.ruleset = ruleset
        self.services = list(services)
        self.selected = selected if selected in self.services else self.services[0]
        self._widget = None

    @classmethod
    def from_lab(cls, lab, selected: str | None = "default/url-shortener", node: str | None = None):
        svcs = lab.get("services")
        names = [f"{ns}/{name}" for ns, name in zip(svcs["namespace"], svcs["name"])]
        return cls(lab.iptables(node), names, selected)

    def frame(self, service: str | None = None):
        return service_rules(self.ruleset, service or self.selected)

    def html(self, service: str | None = None) -> str:
        service = service or self.selected
        df = self.frame(service)
        if df.empty:
            return (f"<p><b>{html.escape(service)}</b>: no iptables rule names this Service "
                    "(it has no ClusterIP port, or kube-proxy has not synced yet).</p>")
        show = df.drop(columns=["rule"]).assign(rule=df["rule"])
        return _table_html(show, caption=f"{service}: {len(df)} rules", color_by="owner", colors=owner_color)

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return f"ServiceExplorer({self.selected!r}, {len(self.frame())} rules)"

    @property
    def widget(self):
        """The interactive view (a dropdown above an HTML table)."""
        if self._widget is None:
            import ipywidgets as w
            pick = w.Dropdown(options=self.services, value=self.selected, description="Service")
            out = w.HTML(self.html())

            def changed(change):
                self.selected = change["new"]
                out.value = self.html()
            pick.observe(changed, names="value")
            self._widget = w.VBox([pick, out])
        return self._widget

    def show(self):
        from IPython.display import display
        display(self.widget)


class PathExplorer:
    """Pick a way in (port-forward, clusterip, nodeport, hostport, ingress); see its hops and figure.

    ``PathExplorer(paths)`` with ``paths`` a mapping way -> :class:`Path`;
    ``PathExplorer.from_lab(lab)`` builds every way the lab can show.
    """

    def __init__(self, paths: Mapping[str, Path], selected: str | None = None):
        if not paths:
            raise ValueError("PathExplorer needs at least one path")
        self.paths = {getattr(k, "value", str(k)): v for k, v in paths.items()}
        self.selected = selected if selected in self.paths else next(iter(self.paths))
        self._widget = None

    @classmethod
    def from_lab(cls, lab, ways=tuple(w.value for w in Way), selected: str | None = None):
        return cls({way: lab.path(way) for way in ways}, selected)

    def frame(self, way: str | None = None):
        return self.paths[way or self.selected].frame()

    def html(self, way: str | None = None) -> str:
        way = way or self.selected
        path = self.paths[way]
        note = " (a model's prediction)" if path.predicted else ""
        caption = f"{way}: {path.client} → {path.destination or 'nothing answers'}{note}"
        return _table_html(self.frame(way), caption=caption, color_by="component", colors=component_color)

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return f"PathExplorer({self.selected!r}, {len(self.paths[self.selected].hops)} hops)"

    @property
    def widget(self):
        """Toggle buttons for the ways, the hop table and the path's figure below."""
        if self._widget is None:
            import ipywidgets as w
            from .plot import plot_path
            pick = w.ToggleButtons(options=list(self.paths), value=self.selected, description="Way in")
            table = w.HTML(self.html())
            figure = w.Output()

            def draw():
                from IPython.display import display
                figure.clear_output(wait=True)
                with figure:
                    display(plot_path(self.paths[self.selected]))

            def changed(change):
                self.selected = change["new"]
                table.value = self.html()
                draw()
            pick.observe(changed, names="value")
            draw()
            self._widget = w.VBox([pick, table, figure])
        return self._widget

    def show(self):
        from IPython.display import display
        display(self.widget)


__all__ = ["service_rules", "ServiceExplorer", "PathExplorer", "RULE_COLUMNS"]
