"""kube-proxy out of the data path on a real kind cluster: the kubectl and ``docker exec`` commands.

The shared logic and its sources are in :mod:`k8slab.backends.kubeproxy`; here is the order of the
commands and what kubectl prints (texts from kubernetes/kubectl):

stop   ``kubectl -n kube-system patch ds kube-proxy -p '{"spec":{"template":{"spec":{"nodeSelector":
       {"k8slab.io/no-kube-proxy":"true"}}}}}'`` -> ``daemonset.apps/kube-proxy patched``
       (pkg/cmd/patch/patch.go patchOperation: ``patched`` / ``patched (no change)``), then
       ``kubectl -n kube-system wait --for=delete pod -l k8s-app=kube-proxy --timeout=Ns`` ->
       ``pod/kube-proxy-xxxxx condition met`` per pod; no pod left is success with no output
       (pkg/cmd/wait/wait.go: ``visitCount == 0 && !isForDelete`` is the only no-match error).
flush  per node, in the iptables flavour holding kube-proxy's chains (legacy or nft, as
       ``iptables_save`` detects): ``iptables -w -t T -D CHAIN <jump>`` for each jump present, then
       ``iptables-restore -w 5 --noflush`` of the chains to flush and delete (CleanupLeftovers); in
       nftables mode ``nft delete table ip kube-proxy``.
start  the patch with ``null`` (deletes the key), ``kubectl -n kube-system rollout status
       ds/kube-proxy --timeout=Ns`` -> ``daemon set "kube-proxy" successfully rolled out``
       (pkg/polymorphichelpers/rollout_status.go DaemonSetStatusViewer.Status), then every node's
       rules are read until nat KUBE-SERVICES holds the app's Service again.
"""
from __future__ import annotations

import time

from ...errors import K8sLabError
from .. import kubeproxy as kp

APP_SERVICE = "default/url-shortener"


def _ns(*args: str) -> tuple[str, ...]:
    return ("-n", kp.NAMESPACE, *args)


def state(backend) -> str:
    """running / stopped / flushed, read from the DaemonSet and the control-plane's rules."""
    ds = backend._kubectl_json(*_ns("get", "ds", kp.DAEMONSET))
    selector = (((ds.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    if kp.OFF_LABEL not in selector:
        return "running"
    if _nft_mode(backend, backend.control_plane):          # nftables mode: its table is still there
        return "stopped"
    return "stopped" if kp.rule_counts(backend.iptables_save(None))["KUBE-SERVICES"] else "flushed"


def stop(backend, timeout: float = 120.0) -> None:
    backend.progress.step(f"kube-proxy: its DaemonSet now selects nodes labelled {kp.OFF_LABEL}=true "
                          "(none is): its pods go, its rules stay")
    backend._kubectl(*_ns("patch", "ds", kp.DAEMONSET, "-p", kp.STOP_PATCH),
                     hint="kube-proxy's DaemonSet is kube-system/kube-proxy on kind")
    res = backend._kubectl(*_ns("wait", "--for=delete", "pod", "-l", kp.SELECTOR,
                                f"--timeout={int(max(1, timeout))}s"), timeout=timeout + 15, check=False)
    if not res.ok:
        raise K8sLabError(f"kube-proxy's pods did not go within {timeout:g} s ({res.stderr.strip()}); look: "
                          f"`{backend.kubectl_hint} -n kube-system get pods -l {kp.SELECTOR}`")


def _nft_mode(backend, node: str) -> bool:
    res = backend._exec(node, "nft", "list", "table", "ip", "kube-proxy", check=False)
    return res.ok


def flush(backend) -> None:
    for node in backend.node_names():
        if _nft_mode(backend, node):
            backend._exec(node, *kp.NFT_CLEANUP)
            backend.progress.step(f"{node}: nft table ip kube-proxy deleted (kube-proxy --cleanup, nftables mode)")
            continue
        plan = kp.cleanup_plan(backend.iptables_save(node))
        binary = {"legacy": "iptables-legacy", "nft": "iptables-nft"}.get(backend.iptables_mode, "iptables")
        for argv in plan.delete_argvs():
            backend._exec(node, binary, *argv[1:])
        for table in ("nat", "filter"):
            if plan.restore.get(table):
                backend._docker("exec", "-i", node, f"{binary}-restore", "-w", "5", "--noflush",
                                input=plan.restore[table])
        backend.progress.step(f"{node}: kube-proxy's rules removed ({len(plan.deletes)} jumps) as "
                              "kube-proxy --cleanup does")


def start(backend, timeout: float = 180.0) -> None:
    backend._kubectl(*_ns("patch", "ds", kp.DAEMONSET, "-p", kp.START_PATCH))
    res = backend._kubectl(*_ns("rollout", "status", f"ds/{kp.DAEMONSET}", f"--timeout={int(max(1, timeout))}s"),
                           timeout=timeout + 15, check=False)
    if not res.ok:
        raise K8sLabError(f"kube-proxy did not come back within {timeout:g} s "
                          f"({(res.stderr or res.stdout).strip()}); look: "
                          f"`{backend.kubectl_hint} -n kube-system get pods -l {kp.SELECTOR}`")
    deadline = time.monotonic() + timeout
    for node in backend.node_names():
        while not kp.service_programmed(backend.iptables_save(node), APP_SERVICE):
            if time.monotonic() > deadline:
                raise K8sLabError(f"kube-proxy runs again but {node}'s rules hold no {APP_SERVICE} after "
                                  f"{timeout:g} s: `docker exec {node} iptables-save -t nat | grep KUBE-SERVICES`")
            time.sleep(1.0)
    backend.progress.step("kube-proxy running again on every node; its rules re-synced")
