"""A small CNI conflist executor: runs the real plugins from /usr/lib/cni the way a container runtime does.

The runtime's side of the CNI protocol is small: for each plugin of a network configuration list, in
order, run the plugin binary with ``CNI_COMMAND``, ``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``
and ``CNI_PATH`` in its environment and the plugin's own configuration on stdin, with the list's
``name`` and ``cniVersion``, the ``runtimeConfig`` for the capabilities the plugin declares (here
``portMappings``), and the previous plugin's result as ``prevResult``. DEL runs the list in reverse.

``exec_in`` names the network namespace the plugin binary itself runs in (``ip netns exec NS``): for
kindnet's chain that is the *node* namespace, so the host end of the pod's veth, the route to the pod
and portmap's iptables rules land there, as they do on a kind node.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import runner
from ..errors import CommandError, K8sLabError

CNI_PATH = "/usr/lib/cni"
KINDNET_PLUGINS = ("ptp", "host-local", "portmap")


class CniError(CommandError):
    """A CNI plugin returned an error (its JSON error on stdout is in the message)."""


@dataclass(frozen=True)
class PortMapping:
    """One hostPort of a pod, as the runtime passes it in ``runtimeConfig.portMappings``."""
    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    def as_cni(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hostPort": self.host_port, "containerPort": self.container_port,
                               "protocol": self.protocol.lower()}
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out


@dataclass(frozen=True)
class Attachment:
    """Who is being attached: the runtime arguments that stay the same for ADD and DEL."""
    container_id: str
    netns: str                          # path, e.g. /run/netns/k8slab-pod-web-1
    ifname: str = "eth0"
    port_mappings: tuple[PortMapping, ...] = ()


@dataclass
class AddResult:
    """The final result of the chain, plus the pod's first IPv4 address (without prefix)."""
    result: dict[str, Any]
    ip: str
    gateway: str | None = None
    host_interface: str | None = None
    per_plugin: list[dict[str, Any]] = field(default_factory=list)


def container_id(*parts: str) -> str:
    """A deterministic 64-hex container ID (what containerd would pass; here a hash of the names)."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def kindnet_conflist(pod_cidr: str, data_dir: str | Path, mtu: int = 1500) -> dict[str, Any]:
    """kindnetd's ``10-kindnet.conflist`` for a node whose pod CIDR is ``pod_cidr``.

    Same shape as kindnetd writes it (name kindnet, cniVersion 0.3.1, ptp without ipMasq, host-local
    IPAM with one range and a default route, then portmap with the portMappings capability); only the
    IPAM dataDir differs, so that each lab keeps its own allocations.
    """
    return {
        "cniVersion": "0.3.1",
        "name": "kindnet",
        "plugins": [
            {
                "type": "ptp",
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(data_dir),
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": pod_cidr}]],
                },
                "mtu": mtu,
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def plugin_config(conflist: dict[str, Any], plugin: dict[str, Any], att: Attachment,
                  prev_result: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON one plugin reads on stdin (pure)."""
    conf = dict(plugin)
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist["cniVersion"]
    caps = plugin.get("capabilities") or {}
    runtime: dict[str, Any] = {}
    if caps.get("portMappings") and att.port_mappings:
        runtime["portMappings"] = [p.as_cni() for p in att.port_mappings]
    if runtime:
        conf["runtimeConfig"] = runtime
    if prev_result is not None:
        conf["prevResult"] = prev_result
    return conf


def plugin_env(command: str, att: Attachment, cni_path: str = CNI_PATH) -> dict[str, str]:
    return {"CNI_COMMAND": command, "CNI_CONTAINERID": att.container_id, "CNI_NETNS": att.netns,
            "CNI_IFNAME": att.ifname, "CNI_PATH": cni_path}


def _argv(plugin_type: str, exec_in: str | None, cni_path: str) -> list[str]:
    binary = f"{cni_path}/{plugin_type}"
    return ["ip", "netns", "exec", exec_in, binary] if exec_in else [binary]


def _invoke(command: str, conflist: dict, plugin: dict, att: Attachment, prev: dict | None,
            exec_in: str | None, cni_path: str, timeout: float) -> dict[str, Any]:
    conf = plugin_config(conflist, plugin, att, prev)
    res = runner.run(_argv(plugin["type"], exec_in, cni_path), input=json.dumps(conf),
                     env=plugin_env(command, att, cni_path), timeout=timeout, check=False)
    out = res.stdout.strip()
    if res.returncode != 0:
        detail = out or res.stderr.strip()
        try:
            err = json.loads(out)
            detail = f"{err.get('msg', '')} {err.get('details', '')}".strip()
        except ValueError:
            pass
        raise CniError(f"CNI {command} {plugin['type']} for {att.netns} failed: {detail}. "
                       f"Check that {cni_path}/{plugin['type']} is installed "
                       "(apt-get install -y containernetworking-plugins).",
                       list(res.argv), res.returncode, res.stderr)
    if not out:
        return prev or {}
    try:
        return json.loads(out)
    except ValueError as exc:
        raise K8sLabError(f"CNI plugin {plugin['type']} printed no JSON: {out[:200]!r}") from exc


def add(conflist: dict[str, Any], att: Attachment, *, exec_in: str | None = None,
        cni_path: str = CNI_PATH, timeout: float = 30.0) -> AddResult:
    """CNI ADD of the whole list; returns the chained result.

    If a plugin fails, the whole list is deleted (DEL, in reverse) before the error is raised, as the
    container runtime does: containerd's RunPodSandbox (pkg/cri/server/sandbox_run.go) registers a
    deferred ``teardownPodNetwork`` before ``setupPodNetwork``, so a failed ADD is followed by DEL of
    the same attachment and no veth, route, IPAM lease or portmap chain of a half-made ADD is left."""
    prev: dict[str, Any] | None = None
    per_plugin = []
    for plugin in conflist["plugins"]:
        try:
            prev = _invoke("ADD", conflist, plugin, att, prev, exec_in, cni_path, timeout)
        except BaseException as exc:
            errors = delete(conflist, att, exec_in=exec_in, cni_path=cni_path, timeout=timeout)
            if isinstance(exc, CniError):
                exc.args = (f"{exc.args[0]} The runtime's DEL of the whole list followed"
                            + (f" ({len(errors)} plugin(s) failed it: {'; '.join(errors)})" if errors
                               else " and removed what the ADD had made") + ".", *exc.args[1:])
            raise
        per_plugin.append(prev)
    result = prev or {}
    return AddResult(result=result, ip=first_ipv4(result) or "", gateway=_gateway(result),
                     host_interface=_host_interface(result), per_plugin=per_plugin)


def delete(conflist: dict[str, Any], att: Attachment, *, exec_in: str | None = None,
           prev_result: dict[str, Any] | None = None, cni_path: str = CNI_PATH,
           timeout: float = 30.0) -> list[str]:
    """CNI DEL of the whole list in reverse order. Keeps going past a failing plugin (so IPAM and
    the veth still go away) and returns the errors it met, in words."""
    errors = []
    for plugin in reversed(conflist["plugins"]):
        try:
            _invoke("DEL", conflist, plugin, att, prev_result, exec_in, cni_path, timeout)
        except CommandError as exc:
            errors.append(str(exc))
    return errors


def first_ipv4(result: dict[str, Any]) -> str | None:
    for ip in result.get("ips", []):
        addr = ip.get("address", "")
        if "." in addr:
            return addr.split("/")[0]
    return None


def _gateway(result: dict[str, Any]) -> str | None:
    for ip in result.get("ips", []):
        if ip.get("gateway"):
            return ip["gateway"]
    return None


def _host_interface(result: dict[str, Any]) -> str | None:
    # The interface without a sandbox is the host end of the veth (in the node namespace).
    for iface in result.get("interfaces", []):
        if not iface.get("sandbox"):
            return iface.get("name")
    return None
