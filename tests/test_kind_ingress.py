"""The pinned ingress-nginx manifest: downloaded once, cached, checked; offline falls back to the repo."""
from __future__ import annotations

import urllib.error

import pytest

from k8slab.backends import ingress_nginx as ing
from k8slab.errors import BackendUnavailable

TEXT = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ingress-nginx\n"


class Fetch:
    def __init__(self, text=TEXT, fail=False):
        self.text, self.fail, self.urls = text, fail, []

    def __call__(self, url, timeout):
        self.urls.append(url)
        if self.fail:
            raise urllib.error.URLError("no route to host")
        return self.text


@pytest.fixture
def root(tmp_path):
    (tmp_path / "kind" / "manifests").mkdir(parents=True)
    (tmp_path / "kind" / "manifests" / "ingress-nginx.yaml").write_text("# repo copy\n" + TEXT)
    return tmp_path


def test_the_pin_is_the_retired_projects_last_release():
    assert ing.VERSION == "controller-v1.15.1"
    assert ing.URL == ("https://raw.githubusercontent.com/kubernetes/ingress-nginx/controller-v1.15.1/"
                       "deploy/static/provider/kind/deploy.yaml")
    assert "retired" in ing.__doc__ and "Gateway API" in ing.__doc__ and "2026-03-19" in ing.__doc__


def test_download_with_a_pinned_checksum_then_served_from_cache(root, tmp_path):
    fetch = Fetch()
    src = ing.manifest(root, cache=tmp_path / "c", offline=False, pinned=ing.sha256_text(TEXT), fetch=fetch)
    assert (src.origin, src.verified, src.text, src.note) == ("download", True, TEXT, "")
    assert fetch.urls == [ing.URL]
    again = ing.manifest(root, cache=tmp_path / "c", offline=False, pinned=ing.sha256_text(TEXT), fetch=fetch)
    assert again.origin == "cache" and again.verified and len(fetch.urls) == 1


def test_a_download_with_another_checksum_is_never_used(root, tmp_path):
    with pytest.raises(ing.ChecksumMismatch, match="was not used"):
        ing.manifest(root, cache=tmp_path / "c", offline=False, pinned="0" * 64, fetch=Fetch())
    assert not (tmp_path / "c" / "ingress-nginx" / ing.VERSION / "deploy.yaml").exists()


def test_without_a_pin_the_first_download_is_recorded_with_a_warning(root, tmp_path):
    src = ing.manifest(root, cache=tmp_path / "c", offline=False, pinned=None, fetch=Fetch())
    assert src.origin == "download" and not src.verified and "WARNING" in src.note and src.sha256 in src.note
    recorded = (tmp_path / "c" / "ingress-nginx" / ing.VERSION / "deploy.yaml.sha256").read_text()
    assert recorded.split()[0] == ing.sha256_text(TEXT)
    # A cached copy changed behind our back no longer matches what was recorded: fetched again.
    cached = tmp_path / "c" / "ingress-nginx" / ing.VERSION / "deploy.yaml"
    cached.write_text(TEXT + "# tampered\n")
    fetch = Fetch()
    again = ing.manifest(root, cache=tmp_path / "c", offline=False, pinned=None, fetch=fetch)
    assert again.text == TEXT and fetch.urls == [ing.URL]


def test_offline_or_failed_download_falls_back_to_the_repo_copy_and_says_so(root, tmp_path):
    src = ing.manifest(root, cache=tmp_path / "c", offline=True, fetch=Fetch())
    assert src.origin == "repo" and "offline" in src.note and "kind/manifests/ingress-nginx.yaml" in src.note
    src = ing.manifest(root, cache=tmp_path / "c", offline=False, fetch=Fetch(fail=True))
    assert src.origin == "repo" and "download failed: no route to host" in src.note


def test_no_download_and_no_repo_copy_says_how_to_fetch_it(tmp_path):
    with pytest.raises(BackendUnavailable, match="curl -fsSLo"):
        ing.manifest(tmp_path, cache=tmp_path / "c", offline=True)


def test_offline_defaults_to_the_environment(root, tmp_path, monkeypatch):
    monkeypatch.setenv("K8SLAB_OFFLINE", "1")
    fetch = Fetch()
    assert ing.manifest(root, cache=tmp_path / "c", fetch=fetch).origin == "repo" and fetch.urls == []
    monkeypatch.setenv("K8SLAB_CACHE", str(tmp_path / "cc"))
    assert ing.cache_root() == tmp_path / "cc"


# --- the repository's copy: the complete controller ----------------------------------------------
import hashlib  # noqa: E402

import yaml  # noqa: E402

from conftest import ROOT  # noqa: E402

REPO_COPY = ROOT / "kind" / "manifests" / "ingress-nginx.yaml"
UPSTREAM = "upstream/ingress-nginx-kind-controller-v1.15.1-deploy.yaml"
UPSTREAM_SHA256 = "2a3ae008c8786431115502644e77ab398fdebfb721a5d1195ed3089cde3299df"   # fixtures/upstream/README.md


def _docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_the_pinned_checksum_is_upstreams(shared_fixtures, tmp_path):
    """k8slab pins the sha256 of the file the URL serves: the byte-for-byte upstream copy's."""
    upstream = shared_fixtures / UPSTREAM
    assert ing.SHA256 == UPSTREAM_SHA256 == hashlib.sha256(upstream.read_bytes()).hexdigest()
    src = ing.manifest(ROOT, cache=tmp_path, offline=False,
                       fetch=lambda url, timeout: upstream.read_text(encoding="utf-8"))
    assert src.verified and src.sha256 == UPSTREAM_SHA256


def test_the_repo_copy_is_upstreams_kind_manifest_object_for_object(shared_fixtures):
    upstream = shared_fixtures / UPSTREAM
    assert hashlib.sha256(upstream.read_bytes()).hexdigest() == UPSTREAM_SHA256
    mine, theirs = _docs(REPO_COPY), _docs(upstream)
    assert [(d["kind"], d["metadata"]["name"]) for d in mine] == [(d["kind"], d["metadata"]["name"]) for d in theirs]
    for a, b in zip(mine, theirs):
        assert a == b, f"{a['kind']}/{a['metadata']['name']} differs from upstream's"


def _may(docs, sa_ns, sa, verb, resource, ns) -> bool:
    """RBAC as the API server evaluates it (core group only): a binding of the ServiceAccount to a
    Role in ``ns`` or to a ClusterRole, whose rules allow ``verb`` on ``resource``."""
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs
             if d["kind"] in ("Role", "ClusterRole")}
    for b in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        if b["kind"] == "RoleBinding" and b["metadata"].get("namespace") != ns:
            continue
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa and s.get("namespace") == sa_ns
                   for s in b.get("subjects") or []):
            continue
        ref = b["roleRef"]
        role = roles.get((ref["kind"], b["metadata"].get("namespace") if ref["kind"] == "Role" else None, ref["name"]))
        for rule in (role or {}).get("rules") or []:
            if "" in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
                return True
    return False


def test_the_repo_copy_is_the_complete_controller_in_apply_order():
    docs = _docs(REPO_COPY)
    kinds = [d["kind"] for d in docs]
    order = ["Namespace", "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ConfigMap",
             "Service", "Deployment", "Job", "IngressClass", "ValidatingWebhookConfiguration"]
    assert list(dict.fromkeys(kinds)) == order          # each kind once in a block, in upstream's order
    dep = next(d for d in docs if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    sa = pod["serviceAccountName"]
    assert any(d["kind"] == "ServiceAccount" and d["metadata"]["name"] == sa for d in docs)
    # What the controller does first (internal/k8s GetIngressPod): read its own Pod. Without it, it exits.
    assert _may(docs, "ingress-nginx", sa, "get", "pods", "ingress-nginx")
    assert _may(docs, "ingress-nginx", sa, "list", "services", "ingress-nginx")
    assert _may(docs, "ingress-nginx", "ingress-nginx-admission", "create", "secrets", "ingress-nginx")
    args = pod["containers"][0]["args"]
    assert "--validating-webhook=:8443" in args and pod["volumes"][0]["secret"]["secretName"] == "ingress-nginx-admission"
    jobs = [d for d in docs if d["kind"] == "Job"]
    assert [j["spec"]["ttlSecondsAfterFinished"] for j in jobs] == [0, 0]       # gone once complete
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}                  # no ingress-ready label
    assert not (ROOT / "kind" / "manifests" / "ingress-nginx-rbac.yaml").exists()   # one file, nothing left out
