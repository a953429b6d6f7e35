"""Reading manifests: a path, YAML text (one or many documents), a dict or a list of those."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml

from ..errors import ManifestError
from .objects import parse_object

Source = Any   # str | Path | dict | Iterable of those


def _docs_from_text(text: str, where: str) -> list[dict]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{where}: not valid YAML ({exc}). Fix the indentation or quoting there.") from None
    out: list[dict] = []
    for d in docs:
        if isinstance(d, dict) and d.get("kind") == "List" and isinstance(d.get("items"), list):
            out.extend(d["items"])
        elif isinstance(d, dict):
            out.append(d)
        else:
            raise ManifestError(f"{where}: a document is a {type(d).__name__}, expected a mapping with kind")
    return out


def load_manifests(source: Source) -> list[dict]:
    """Every object in ``source`` as an API-shaped dict, in document order.

    ``source``: a file or directory path (``*.yaml``/``*.yml`` sorted by name), YAML text (anything
    with a newline or a ``kind:``), a dict, or a list/tuple of any of these.
    """
    if isinstance(source, dict):
        return [source]
    if isinstance(source, Path):
        return _load_path(source)
    if isinstance(source, str):
        if "\n" in source or "kind:" in source:
            return _docs_from_text(source, "<manifest text>")
        return _load_path(Path(source))
    if isinstance(source, Iterable):
        out: list[dict] = []
        for item in source:
            if hasattr(item, "raw") and isinstance(getattr(item, "raw"), dict) and item.raw:
                out.append(item.raw)
            else:
                out.extend(load_manifests(item))
        return out
    raise ManifestError(f"cannot read manifests from a {type(source).__name__}: "
                        "pass a path, YAML text, a dict or a list of dicts")


def _load_path(path: Path) -> list[dict]:
    if path.is_dir():
        out: list[dict] = []
        for f in sorted(list(path.glob("*.yaml")) + list(path.glob("*.yml"))):
            out.extend(_load_path(f))
        return out
    if not path.exists():
        raise ManifestError(f"{path}: no such file. Give a manifest path (e.g. kind/manifests/app.yaml) "
                            "or the YAML text itself")
    return _docs_from_text(path.read_text(), str(path))


def load_objects(source: Source) -> list[Any]:
    """Like :func:`load_manifests`, parsed into the model's dataclasses (unknown kinds stay dicts).

    Already-parsed objects pass through unchanged."""
    if isinstance(source, (list, tuple)) and all(hasattr(o, "kind") and not isinstance(o, dict) for o in source):
        return list(source)
    return [parse_object(d) for d in load_manifests(source)]
