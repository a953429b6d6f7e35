"""The explorers: the pure data functions, the static HTML, the interactive view reacting, what a
cell shows before it runs, and Refresh following the lab."""
from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from k8slab.widgets import WIDGET_MIME, PathExplorer, ServiceExplorer, service_rules  # noqa: E402

from course_samples import SVC, ingress_path, port_forward_path, ruleset  # noqa: E402


def test_service_rules_are_the_services_own_rules():
    df = service_rules(ruleset(), SVC)
    chains = set(df["chain"])
    assert "KUBE-SVC-UUUUUUUUUUUUUUUU" in chains and "KUBE-SERVICES" in chains
    assert {c for c in chains if c.startswith("KUBE-SEP-")} == {
        "KUBE-SEP-AAAAAAAAAAAAAAAA", "KUBE-SEP-BBBBBBBBBBBBBBBB", "KUBE-SEP-CCCCCCCCCCCCCCCC"}
    assert "KUBE-SVC-DNSDNSDNSDNSDNSD" not in chains               # kube-dns is another service
    assert not df["rule"].str.contains("kube-dns").any()
    dnat = df[df["target"] == "DNAT"].sort_values("chain")
    assert list(dnat["to"]) == ["10.244.0.4:8080", "10.244.0.5:8080", "10.244.0.6:8080"]
    probs = df[(df["chain"] == "KUBE-SVC-UUUUUUUUUUUUUUUU") & df["target"].str.startswith("KUBE-SEP-")]["probability"]
    assert probs.iloc[0] == pytest.approx(1 / 3, abs=1e-6) and probs.iloc[1] == pytest.approx(0.5)
    assert set(df["owner"]) == {"kube-proxy"}


def test_service_rules_come_in_the_order_a_packet_meets_them():
    df = service_rules(ruleset(), SVC)
    # KUBE-SERVICES, then the service's chain, then each endpoint in the order KUBE-SVC picks it
    chains = list(dict.fromkeys(df["chain"]))
    assert chains == ["KUBE-SERVICES", "KUBE-SVC-UUUUUUUUUUUUUUUU", "KUBE-SEP-AAAAAAAAAAAAAAAA",
                      "KUBE-SEP-BBBBBBBBBBBBBBBB", "KUBE-SEP-CCCCCCCCCCCCCCCC"]
    for chain, group in df.groupby("chain"):
        assert list(group["position"]) == sorted(group["position"]), chain


def test_service_rules_for_an_unknown_service_is_empty():
    assert service_rules(ruleset(), "default/nothing").empty


def _cells(html: str, klass: str) -> list[str]:
    return [re.sub("<[^>]+>", "", m) for m in re.findall(rf'<td class="{klass}"[^>]*>(.*?)</td>', html)]


def test_static_table_reads_in_jupyterlab():
    """Left-aligned, normal line height, an automatic layout (JupyterLab fixes and right-aligns its
    tables; a widget's HTML box has a 28 px line height), no mostly empty column, and the whole rule
    in one wrapping column: nothing cut."""
    ex = ServiceExplorer(ruleset(), [SVC])
    html = ex.html()
    assert "table-layout:auto" in html and "var(" not in html       # what the sanitizer keeps
    for td in re.findall(r"<td[^>]*>", html):
        assert "text-align:left" in td and "line-height:1.35" in td, td
    headers = re.findall(r"<th[^>]*>(.*?)</th>", html)
    assert headers == ["chain", "#", "owner", "target", "rule-specification"]   # no "to", "probability"
    rules = _cells(html, "k8slab-rule")
    df = ex.frame()
    assert len(rules) == len(df)
    for text, line, chain in zip(rules, df["rule"], df["chain"]):
        assert line == f"-A {chain} " + text.replace("&quot;", '"').replace("&gt;", ">")   # whole rule
    assert any("--to-destination 10.244.0.6:8080" in r for r in rules)
    assert not any(r.endswith("...") or r.endswith("…") for r in rules)


def test_service_explorer_static_html_and_widget_follow_the_selection():
    ex = ServiceExplorer(ruleset(), [SVC, "kube-system/kube-dns"])
    html = ex._repr_html_()
    assert "<table" in html and "KUBE-SVC-UUUUUUUUUUUUUUUU" in html and "kube-dns" not in html
    assert "&quot;" in html or "default/url-shortener:http" in html   # text is escaped, not raw HTML
    w = ex.widget
    dropdown, bar, out = w.children
    assert bar.children == ()                         # built from a Ruleset: nothing to refresh
    dropdown.value = "kube-system/kube-dns"
    assert ex.selected == "kube-system/kube-dns"
    assert "KUBE-SVC-DNSDNSDNSDNSDNSD" in out.value and "KUBE-SVC-UUUUUUUUUUUUUUUU" not in out.value
    assert "kube-dns" in repr(ex)
    with pytest.raises(ValueError):
        ex.refresh()


def test_service_explorer_says_when_a_service_has_no_rules():
    ex = ServiceExplorer(ruleset(), ["default/lonely"])
    assert "no iptables rule names this Service" in ex.html()
    with pytest.raises(ValueError):
        ServiceExplorer(ruleset(), [])


def _shown(monkeypatch, explorer) -> list:
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **kw: shown.append((a, kw)))
    explorer.show()
    return shown


def test_show_puts_the_static_view_beside_the_widget(monkeypatch):
    """One output, three mime types: the live widget for JupyterLab, the sentence and the static
    table for everything else (and for the saved notebook, which keeps no widget view)."""
    for ex in (ServiceExplorer(ruleset(), [SVC]), PathExplorer({"ingress": ingress_path()})):
        ex.widget                                   # (the PathExplorer draws its figure in it first)
        (args, kwargs), = _shown(monkeypatch, ex)
        bundle = args[0]
        assert kwargs == {"raw": True}
        assert set(bundle) == {WIDGET_MIME, "text/html", "text/plain"}
        assert bundle[WIDGET_MIME]["model_id"] == ex.widget.model_id
        assert re.search(r"Run this cell", bundle["text/html"]) and "<table" in bundle["text/html"]
        assert bundle["text/html"].endswith(ex.html())
        assert "VBox" not in bundle["text/plain"]


def test_path_explorer_static_and_interactive():
    paths = {"port-forward": port_forward_path(), "ingress": ingress_path()}
    ex = PathExplorer(paths, selected="port-forward")
    html = ex._repr_html_()
    assert "API server" in html and "prediction" in html          # sample port-forward path is predicted
    assert html.count("<tr") == 1 + len(paths["port-forward"].hops)
    w = ex.widget
    buttons, bar, table, figure = w.children
    assert bar.children == ()
    buttons.value = "ingress"
    assert ex.selected == "ingress"
    assert "CNI portmap" in table.value and "API server" not in table.value
    assert "ingress" in repr(ex)


def test_explorers_from_a_lab_are_snapshots_that_refresh():
    """Built when the cell ran (2 pods); after scaling to 3, Refresh shows the third endpoint and
    keeps the learner's selection."""
    from conftest import course_lab
    lab = course_lab()
    ex = ServiceExplorer.from_lab(lab)
    assert ex.snapshot
    dropdown, bar, out = ex.widget.children
    button, note = bar.children
    assert button.description == "Refresh" and "snapshot" in note.value
    before = set(re.findall(r"--to-destination (\S+?)<", out.value))
    assert len(before) == 2
    lab.scale("url-shortener", 3)
    lab.wait_ready()
    assert set(re.findall(r"--to-destination (\S+?)<", out.value)) == before      # still the snapshot
    button.click()
    after = set(re.findall(r"--to-destination (\S+?)<", out.value))
    assert len(after) == 3 and before < after
    assert dropdown.value == ex.selected == SVC

    paths = PathExplorer.from_lab(lab, selected="clusterip")
    buttons, bar, table, figure = paths.widget.children
    assert [b.description for b in bar.children[:1]] == ["Refresh"]
    lab.scale("url-shortener", 1)
    lab.wait_ready()
    bar.children[0].click()
    assert paths.selected == "clusterip" and paths.paths["clusterip"].destination in table.value


def test_nodeport_to_the_ingress_controller_is_not_labelled_app():
    """Without the app's NodePort Service, the nodeport way goes to the ingress controller's own
    NodePort: its last hop is the controller, and the explorer says which Service it used."""
    from k8slab import Lab
    lab = Lab(backend="sim", quiet=True)
    lab.up()
    lab.deploy_app(replicas=2)
    lab.install_ingress_controller()
    path = lab.path("nodeport")
    last = path.hops[-1]
    assert "ingress-nginx-controller" in last.place
    assert last.component.value == "ingress controller"
    html = PathExplorer({"nodeport": path}).html()
    assert "ingress-nginx/ingress-nginx-controller" in html          # the note naming the Service


def test_dataframes_show_text_left_aligned_and_uncut():
    """The course's DataFrames (readable_tables in each set-up cell): text cells left-aligned at a
    normal line height, numbers right-aligned, an automatic layout, and the whole value."""
    import pandas as pd
    from IPython.core.interactiveshell import InteractiveShell
    from k8slab.widgets import frame_html, readable_tables
    line = "[0:0] -A CNI-DN-fcbb -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.0.7:80"
    df = pd.DataFrame({"chain": ["CNI-DN-fcbb"], "position": [3], "line": [line]})
    with pd.option_context("display.max_colwidth", None):
        html = frame_html(df)
    tds = re.findall(r"<td([^>]*)>(.*?)</td>", html)
    assert [text for _a, text in tds] == ["CNI-DN-fcbb", "3", line]
    assert "text-align:left" in tds[0][0] and "text-align:right" in tds[1][0] and "text-align:left" in tds[2][0]
    assert all("line-height:1.35" in a for a, _t in tds) and "table-layout:auto" in html
    assert "text-align: right" not in html.split("<tbody>")[0].split("</style>")[-1]   # headers too
    shell = InteractiveShell.instance()
    try:
        formatter = readable_tables(shell)
        assert formatter(df) == frame_html(df)
    finally:
        formatter.pop(pd.DataFrame, None)
        InteractiveShell.clear_instance()
