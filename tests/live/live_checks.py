"""Why the live tests cannot run here (they skip with that reason), and where the project is."""
from __future__ import annotations

from pathlib import Path

from k8slab import runner
from k8slab.errors import CommandError

ROOT = Path(__file__).resolve().parents[2]


def live_skip_reason() -> str | None:
    """Why the live tests cannot run here, or None when `docker info` and `kind version` both work."""
    try:
        res = runner.run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=20, check=False)
        if not res.ok or not res.stdout.strip():
            why = (res.stderr.strip().splitlines() or ["no server version"])[-1]
            return f"live tests need a running Docker engine: `docker info` failed: {why}"
    except CommandError as exc:
        return f"live tests need Docker: {exc}"
    try:
        res = runner.run(["kind", "version"], timeout=20, check=False)
        if not res.ok:
            return f"live tests need kind: `kind version` failed: {res.stderr.strip()}"
    except CommandError:
        return "live tests need kind: `kind version` failed: kind is not on PATH (see docs/learner-path.md)"
    if not (ROOT / "kind" / "cluster.yaml").is_file():
        return f"live tests need {ROOT / 'kind' / 'cluster.yaml'}"
    return None
