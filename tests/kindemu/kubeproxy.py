"""kube-proxy's DaemonSet in the kind emulator: ``kubectl patch ds kube-proxy`` (a strategic-merge
patch of the pod template's nodeSelector), its pods going and coming back, ``kubectl get ds`` and
``kubectl rollout status ds/kube-proxy``.

What a real cluster does, and the texts kubectl prints (kubernetes/kubectl):

* kubeadm's kube-proxy DaemonSet (cmd/kubeadm/app/phases/addons/proxy/manifests.go): pods labelled
  ``k8s-app=kube-proxy``, ``nodeSelector: {kubernetes.io/os: linux}``, RollingUpdate.
* ``kubectl patch`` prints ``<resource>.<group>/<name> patched`` or ``... patched (no change)``
  (pkg/cmd/patch/patch.go ``patchOperation``); a ``null`` value deletes the key (strategic merge).
* The DaemonSet controller deletes the pod of a node that no longer matches the selector and
  creates one where it matches again; ``rollout status`` prints DaemonSetStatusViewer.Status's texts
  (pkg/polymorphichelpers/rollout_status.go).

The netns backend under the emulator plays kube-proxy (its rule resync): no matching node -> its
``stop_kube_proxy()`` (rules left alone), matching again -> ``start_kube_proxy()`` (rules re-synced).
Installed into EmuCluster by :func:`install` (called at the end of cluster.py).
"""
from __future__ import annotations

import copy
import json
import time

from k8slab.backends.kubeproxy import NAMESPACE, POD_PREFIX, without_kube_proxy_pods

NAME = "kube-proxy"
DEFAULT_SELECTOR = {"kubernetes.io/os": "linux"}
IMAGE = "registry.k8s.io/kube-proxy:v1.35.0"


def _state(cl) -> dict:
    st = getattr(cl, "_kube_proxy_ds", None)
    if st is None:
        st = cl._kube_proxy_ds = {"generation": 1, "nodeSelector": dict(DEFAULT_SELECTOR)}
    return st


def _matching_nodes(cl, selector: dict) -> int:
    nodes = cl.backend.model().to_dicts("Node")
    return sum(1 for n in nodes
               if all((n["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items()))


def daemonset(cl) -> dict:
    """The API's kube-system/kube-proxy DaemonSet as the emulator's state has it."""
    st = _state(cl)
    want = _matching_nodes(cl, st["nodeSelector"])
    labels = {"k8s-app": NAME}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels, "generation": st["generation"]},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"nodeSelector": dict(st["nodeSelector"]), "hostNetwork": True,
                                           "priorityClassName": "system-node-critical",
                                           "serviceAccountName": NAME,
                                           "containers": [{"name": NAME, "image": IMAGE,
                                                           "command": ["/usr/local/bin/kube-proxy",
                                                                       "--config=/var/lib/kube-proxy/config.conf",
                                                                       "--hostname-override=$(NODE_NAME)"]}]}},
                     "updateStrategy": {"type": "RollingUpdate",
                                        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}},
            "status": {"currentNumberScheduled": want, "desiredNumberScheduled": want, "numberAvailable": want,
                       "numberMisscheduled": 0, "numberReady": want, "observedGeneration": st["generation"],
                       "updatedNumberScheduled": want}}


def _merge(target: dict, patch: dict) -> bool:
    """Strategic merge of maps (what a nodeSelector patch needs): null deletes. True if it changed."""
    changed = False
    for k, v in patch.items():
        if v is None:
            changed |= target.pop(k, None) is not None
        elif target.get(k) != v:
            target[k] = v
            changed = True
    return changed


def k_patch(self, rest, ns, all_ns, stdin, cwd, env, o) -> int:
    from .cluster import not_found, resolve_kind
    from .common import take
    body = take(rest, "-p", "--patch")
    ptype = take(rest, "--type") or "strategic"
    pos = [a for a in rest if not a.startswith("-")]
    if "/" in (pos[0] if pos else ""):
        kind_word, _, name = pos[0].partition("/")
    else:
        kind_word, name = (pos + ["", ""])[:2]
    info = resolve_kind(kind_word) if kind_word else None
    if info is None:
        o.err(f'error: the server doesn\'t have a resource type "{kind_word}"\n')
        return 1
    if body is None:
        o.err("error: must specify --patch or --patch-file containing the contents of the patch\n")
        return 1
    if info[0] != "DaemonSet" or name != NAME or (ns or "default") != NAMESPACE:
        o.err(not_found(info[0], name))
        return 1
    try:
        patch = json.loads(body)
    except ValueError as exc:
        o.err(f"error: unable to parse \"{body}\": {exc}\n")
        return 1
    if ptype not in ("strategic", "merge"):
        o.err(f"error: the emulator patches kube-proxy's DaemonSet with strategic or merge patches, not {ptype}\n")
        return 1
    with self.lock:
        st = _state(self)
        selector_patch = (((patch.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeSelector")
        changed = _merge(st["nodeSelector"], selector_patch) if isinstance(selector_patch, dict) else False
        if changed:
            st["generation"] += 1
            b = self.backend
            running = b.kube_proxy_state() == "running"
            wanted = _matching_nodes(self, st["nodeSelector"]) > 0
            if running and not wanted:
                b.stop_kube_proxy()
            elif wanted and not running:
                b.start_kube_proxy()
    o.out(f"daemonset.apps/{NAME} {'patched' if changed else 'patched (no change)'}\n")
    return 0


def _objects(orig):
    def objects(self, kind: str) -> list[dict]:
        items = orig(self, kind)
        if kind == "Pod" and self.backend.kube_proxy_state() != "running":
            items = without_kube_proxy_pods(items)
        elif kind == "DaemonSet" and not any(i["metadata"]["name"] == NAME and
                                             i["metadata"].get("namespace") == NAMESPACE for i in items):
            items = [*items, daemonset(self)]
        return items
    return objects


def _rollout(orig):
    def k_rollout(self, rest, ns, all_ns, stdin, cwd, env, o) -> int:
        from .cluster import resolve_kind
        from . import common as c
        pos = [a for a in rest[1:] if not a.startswith("-")] if rest and rest[0] == "status" else []
        target = pos[0] if pos else ""
        kind_word, _, name = target.partition("/") if "/" in target else (target, "", (pos + ["", ""])[1])
        info = resolve_kind(kind_word) if kind_word else None
        if info is None or info[0] != "DaemonSet":
            return orig(self, rest, ns, all_ns, stdin, cwd, env, o)
        args = list(rest[1:])
        timeout = c.parse_duration(c.take(args, "--timeout"), 0.0)
        deadline = time.monotonic() + timeout if timeout else None
        if name != NAME or (ns or "default") != NAMESPACE:
            from .cluster import not_found
            o.err(not_found("DaemonSet", name))
            return 1
        last = None
        while True:
            with self.lock:
                st = copy.deepcopy(daemonset(self)["status"])
            want = st["desiredNumberScheduled"]
            if st["updatedNumberScheduled"] < want:
                line = (f'Waiting for daemon set "{name}" rollout to finish: {st["updatedNumberScheduled"]} out of '
                        f'{want} new pods have been updated...\n')
            elif st["numberAvailable"] < want:
                line = (f'Waiting for daemon set "{name}" rollout to finish: {st["numberAvailable"]} of {want} '
                        "updated pods are available...\n")
            else:
                o.out(f'daemon set "{name}" successfully rolled out\n')
                return 0
            if line != last:
                o.out(line)
                last = line
            if deadline is not None and time.monotonic() >= deadline:
                o.err("error: timed out waiting for the condition\n")
                return 1
            time.sleep(0.05)
    return k_rollout


def install(cls) -> None:
    """Give EmuCluster ``kubectl patch``, kube-proxy's DaemonSet and its pods' coming and going."""
    if getattr(cls, "_kube_proxy_installed", False):
        return
    cls.k_patch = k_patch
    cls.objects = _objects(cls.objects)
    cls.k_rollout = _rollout(cls.k_rollout)
    cls._kube_proxy_installed = True


__all__ = ["install", "daemonset", "POD_PREFIX"]
