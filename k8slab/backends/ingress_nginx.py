"""The ingress controller the kind backend installs, pinned, cached and checked.

**ingress-nginx is retired.** SIG Network and the Security Response Committee announced its retirement
on 2025-11-11; best-effort maintenance ended in March 2026 (the last releases, v1.15.1, v1.14.5 and
v1.13.9, came out on 2026-03-19) and its repositories are read-only. Its released artifacts keep
working, which is all this course needs: it shows how a controller turns Ingress objects into a proxy
configuration and how traffic reaches it through a hostPort. For anything you run for real, use
Gateway API or another Ingress controller. The controller is a setting of the kind backend
(``KindBackend(controller="ingress-nginx")``): add another :class:`IngressController` to
:data:`CONTROLLERS` to drop one in.

Where the manifest comes from, in order:

1. the user cache (``~/.cache/k8slab/ingress-nginx/<version>/deploy.yaml``), when its sha256 matches;
2. a download (once) of ``deploy/static/provider/kind/deploy.yaml`` at the pinned tag from
   raw.githubusercontent.com, checked against :data:`SHA256`;
3. offline (or the download failed): the repository's own ``kind/manifests/ingress-nginx.yaml``, and the
   result says so. That copy holds the same objects as upstream's file at :data:`VERSION` (namespace,
   RBAC, config, services, the controller, the admission Jobs, the IngressClass, the webhook, in
   upstream's order; ``tests/test_kind_ingress.py`` compares them), so a controller installed offline
   is the complete one: without its RBAC it could not read its own pod and would crash-loop.

:data:`SHA256` is the sha256 of that file as the URL serves it (the blob at the tag; recorded with
the byte-for-byte copy in the project's shared fixtures, ``fixtures/upstream/README.md``, and checked
against it by ``tests/test_kind_ingress.py``). A download with any other checksum is refused.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import BackendUnavailable, K8sLabError

VERSION = "controller-v1.15.1"
URL = ("https://raw.githubusercontent.com/kubernetes/ingress-nginx/"
       f"{VERSION}/deploy/static/provider/kind/deploy.yaml")
#: sha256 of the file at :data:`URL` (see the module docstring for where it was verified).
SHA256: str | None = "2a3ae008c8786431115502644e77ab398fdebfb721a5d1195ed3089cde3299df"
REPO_COPY = Path("kind/manifests/ingress-nginx.yaml")


class ChecksumMismatch(K8sLabError):
    """A downloaded or cached manifest whose sha256 is not the pinned one: it is never used."""


@dataclass(frozen=True)
class ManifestSource:
    """The controller's manifest text and where it came from."""
    text: str
    origin: str          # "cache" | "download" | "repo"
    path: Path | None    # the file read or written
    sha256: str
    verified: bool       # True: matched the pinned SHA256 (or the checksum recorded on first use)
    note: str = ""       # what the learner should know (a warning, an offline fallback)


def cache_root() -> Path:
    """Where k8slab keeps per-user files: ``$K8SLAB_CACHE``, else ``$XDG_CACHE_HOME/k8slab``, else
    ``~/.cache/k8slab``."""
    if os.environ.get("K8SLAB_CACHE"):
        return Path(os.environ["K8SLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "k8slab"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _download(url: str, timeout: float) -> str:
    # No proxies from the environment are dropped here: a learner behind a proxy needs them.
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (pinned https URL)
        return resp.read().decode("utf-8")


def manifest(root: Path, *, cache: Path | None = None, offline: bool | None = None,
             pinned: object = ..., fetch: Callable[[str, float], str] = _download,
             timeout: float = 30.0) -> ManifestSource:
    """The controller manifest for :data:`VERSION`: cached, downloaded once, or the repo's copy.

    ``offline`` defaults to ``$K8SLAB_OFFLINE`` being set. ``pinned`` overrides :data:`SHA256`
    (tests). A download whose checksum differs from the pinned one raises :class:`ChecksumMismatch`.
    """
    pin = SHA256 if pinned is ... else pinned    # ``...``: use the module's constant
    if offline is None:
        offline = bool(os.environ.get("K8SLAB_OFFLINE"))
    folder = (cache or cache_root()) / "ingress-nginx" / VERSION
    path = folder / "deploy.yaml"
    recorded_file = folder / "deploy.yaml.sha256"

    # 1. The cached copy, if it still is what was checked when it was stored.
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        digest = sha256_text(text)
        expected = pin or (recorded_file.read_text().split()[0] if recorded_file.is_file() else None)
        if expected and digest == expected:
            return ManifestSource(text, "cache", path, digest, True,
                                  "" if pin else "checksum recorded on first download (not pinned)")
        path.unlink()   # changed or unverifiable: fetch again

    # 2. Download once.
    failure = "offline (K8SLAB_OFFLINE is set)" if offline else ""
    if not offline:
        try:
            text = fetch(URL, timeout)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            failure = f"download failed: {getattr(exc, 'reason', exc)}"
        else:
            digest = sha256_text(text)
            if pin and digest != pin:
                raise ChecksumMismatch(
                    f"{URL} has sha256 {digest}, not the pinned {pin}. The file changed or was "
                    "tampered with: it was not used. Check the tag, or update "
                    "k8slab.backends.ingress_nginx.SHA256 only after verifying the new file.")
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            note = ""
            if not pin:
                recorded_file.write_text(f"{digest}  deploy.yaml\n")
                note = (f"WARNING: no pinned checksum; trusted this first download (sha256 {digest}) "
                        "and recorded it. Pin it in k8slab/backends/ingress_nginx.py SHA256 once verified.")
            return ManifestSource(text, "download", path, digest, bool(pin), note)

    # 3. The repository's copy.
    repo_copy = Path(root) / REPO_COPY
    if repo_copy.is_file():
        text = repo_copy.read_text(encoding="utf-8")
        return ManifestSource(
            text, "repo", repo_copy, sha256_text(text), False,
            f"{failure}: using the repository's copy {REPO_COPY} instead of {VERSION} from upstream")
    raise BackendUnavailable(
        f"cannot get the ingress-nginx manifest ({failure}) and {repo_copy} does not exist. "
        f"Download it on a connected machine: curl -fsSLo {path} {URL}")


@dataclass(frozen=True)
class IngressController:
    """What the kind backend needs to know to install one ingress controller and wait for it."""
    name: str
    namespace: str
    controller_selector: str      # label selector of the controller pod(s)
    service: str                  # the controller's Service (LoadBalancer in kind's deploy.yaml)
    admission_service: str | None  # the validating webhook's Service, waited for before Ingresses
    deployment: str
    config_path: str              # the live proxy config inside the controller pod
    manifest: Callable[..., ManifestSource]
    admission_secret: str | None = None     # the webhook's certificate, written by admission_jobs
    admission_jobs: tuple[str, ...] = ()     # Jobs that delete themselves when done (ttlSecondsAfterFinished: 0)


INGRESS_NGINX = IngressController(
    name="ingress-nginx",
    namespace="ingress-nginx",
    controller_selector="app.kubernetes.io/component=controller",
    service="ingress-nginx-controller",
    admission_service="ingress-nginx-controller-admission",
    deployment="ingress-nginx-controller",
    config_path="/etc/nginx/nginx.conf",
    manifest=manifest,
    admission_secret="ingress-nginx-admission",
    admission_jobs=("ingress-nginx-admission-create", "ingress-nginx-admission-patch"),
)

CONTROLLERS: dict[str, IngressController] = {"ingress-nginx": INGRESS_NGINX}
