"""Shared test helpers: where ../shared is, and skips with reasons for root-only and live tests."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"


@pytest.fixture
def shared_fixtures() -> Path:
    """``../shared/fixtures``, or a skip that says why (a clone on a user's machine has no ../shared)."""
    if not FIXTURES.is_dir():
        pytest.skip(f"{FIXTURES} is absent: the shared fixtures exist only beside the project's CI checkout")
    return FIXTURES


def shared_files(pattern: str) -> list[Path]:
    """Fixture files for parametrize; empty where ../shared is absent (tests then skip)."""
    return sorted(FIXTURES.glob(pattern)) if FIXTURES.is_dir() else []


def skip_unless_root(*tools: str) -> None:
    """Skip (with the reason) unless running as root on Linux with every tool on PATH."""
    if os.name != "posix" or not Path("/proc/self/ns/net").exists():
        pytest.skip("needs Linux network namespaces")
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, iptables); run the tests as root to include these")
    missing = [t for t in tools if shutil.which(t) is None and not Path(t).exists()]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: apt-get install -y iptables conntrack nginx-light "
                    "containernetworking-plugins iproute2")


def course_lab(seed: int = 0, config: str | None = None, replicas: int = 2, **kw):
    """The course's cluster on the sim backend: app, ingress controller, the Ingress and the NodePort
    Service, as the notebooks build it."""
    from k8slab import Lab
    lab = Lab(backend="sim", quiet=True, seed=seed, **kw)
    lab.up(config)
    lab.deploy_app(replicas=replicas)
    lab.install_ingress_controller()
    lab.apply("kind/manifests/ingress.yaml")
    lab.apply("kind/manifests/app-nodeport.yaml")
    return lab
