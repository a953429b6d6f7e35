"""The explorers: the pure data functions, the static HTML, and the interactive view reacting."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from k8slab.widgets import PathExplorer, ServiceExplorer, service_rules  # noqa: E402

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


def test_service_rules_for_an_unknown_service_is_empty():
    assert service_rules(ruleset(), "default/nothing").empty


def test_service_explorer_static_html_and_widget_follow_the_selection():
    ex = ServiceExplorer(ruleset(), [SVC, "kube-system/kube-dns"])
    html = ex._repr_html_()
    assert "<table" in html and "KUBE-SVC-UUUUUUUUUUUUUUUU" in html and "kube-dns" not in html
    assert "&quot;" in html or "default/url-shortener:http" in html   # text is escaped, not raw HTML
    w = ex.widget
    dropdown, out = w.children
    dropdown.value = "kube-system/kube-dns"
    assert ex.selected == "kube-system/kube-dns"
    assert "KUBE-SVC-DNSDNSDNSDNSDNSD" in out.value and "KUBE-SVC-UUUUUUUUUUUUUUUU" not in out.value
    assert "kube-dns" in repr(ex)


def test_service_explorer_says_when_a_service_has_no_rules():
    ex = ServiceExplorer(ruleset(), ["default/lonely"])
    assert "no iptables rule names this Service" in ex.html()
    with pytest.raises(ValueError):
        ServiceExplorer(ruleset(), [])


def test_path_explorer_static_and_interactive():
    paths = {"port-forward": port_forward_path(), "ingress": ingress_path()}
    ex = PathExplorer(paths, selected="port-forward")
    html = ex._repr_html_()
    assert "API server" in html and "prediction" in html          # sample port-forward path is predicted
    assert html.count("<tr") == 1 + len(paths["port-forward"].hops)
    w = ex.widget
    buttons, table, figure = w.children
    buttons.value = "ingress"
    assert ex.selected == "ingress"
    assert "CNI portmap" in table.value and "API server" not in table.value
    assert "ingress" in repr(ex)
