"""Chain names as kube-proxy and the CNI portmap plugin compute them (pure functions), and the jumps
kube-proxy installs into the built-in chains.

kube-proxy: prefix + first 16 chars of base32(sha256(servicePortName + lowercase protocol [+ "ip:port"])).
portmap:    "CNI-DN-" + hex(sha512(network name + container ID)), cut to 28 characters in all.
"""
from __future__ import annotations

import base64
import hashlib

SERVICE_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-")
ENDPOINT_PREFIX = "KUBE-SEP-"
MAX_CHAIN_NAME = 28


def service_port_name(namespace: str, name: str, port_name: str = "") -> str:
    """``ServicePortName.String()``: ``ns/name:port`` or ``ns/name`` for an unnamed port."""
    return f"{namespace}/{name}:{port_name}" if port_name else f"{namespace}/{name}"


def _b32_16(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def service_hash(spn: str, protocol: str) -> str:
    return _b32_16(spn + protocol.lower())


def service_chain(prefix: str, spn: str, protocol: str) -> str:
    """e.g. ``service_chain("KUBE-SVC-", "default/kubernetes:https", "TCP")`` -> KUBE-SVC-NPX46M4PTMTKRN6Y"""
    return prefix + service_hash(spn, protocol)


def endpoint_chain(spn: str, protocol: str, endpoint: str) -> str:
    """``endpoint`` is ``ip:port`` (``[ip]:port`` for IPv6)."""
    return ENDPOINT_PREFIX + _b32_16(spn + protocol.lower() + endpoint)


def portmap_chain(network: str, container_id: str) -> str:
    """The portmap plugin's per-container DNAT chain, ``CNI-DN-<sha512 hex>`` cut to 28 characters."""
    digest = hashlib.sha512((network + container_id).encode()).hexdigest()
    return ("CNI-DN-" + digest)[:MAX_CHAIN_NAME]


_NEW = ("-m", "conntrack", "--ctstate", "NEW")

#: iptablesJumpChains: (table, target chain, built-in chain, comment, extra args). kube-proxy
#: prepends each one, so in the kernel they end up in reverse order of this list
#: (notes/kube-proxy-rules.md §1.2). The renderer writes them; the tracer enters fragments through them.
JUMP_CHAINS = (
    ("filter", "KUBE-EXTERNAL-SERVICES", "INPUT", "kubernetes externally-visible service portals", _NEW),
    ("filter", "KUBE-EXTERNAL-SERVICES", "FORWARD", "kubernetes externally-visible service portals", _NEW),
    ("filter", "KUBE-NODEPORTS", "INPUT", "kubernetes health check service ports", ()),
    ("filter", "KUBE-SERVICES", "FORWARD", "kubernetes service portals", _NEW),
    ("filter", "KUBE-SERVICES", "OUTPUT", "kubernetes service portals", _NEW),
    ("filter", "KUBE-FORWARD", "FORWARD", "kubernetes forwarding rules", ()),
    ("filter", "KUBE-PROXY-FIREWALL", "INPUT", "kubernetes load balancer firewall", _NEW),
    ("filter", "KUBE-PROXY-FIREWALL", "OUTPUT", "kubernetes load balancer firewall", _NEW),
    ("filter", "KUBE-PROXY-FIREWALL", "FORWARD", "kubernetes load balancer firewall", _NEW),
    ("nat", "KUBE-SERVICES", "OUTPUT", "kubernetes service portals", ()),
    ("nat", "KUBE-SERVICES", "PREROUTING", "kubernetes service portals", ()),
    ("nat", "KUBE-POSTROUTING", "POSTROUTING", "kubernetes postrouting rules", ()),
)
#: iptablesKubeletJumpChains: kubelet's KUBE-FIREWALL jumps, which kube-proxy also ensures when it
#: writes its own copy of KUBE-FIREWALL (localhostNodePorts). No comment.
KUBELET_JUMP_CHAINS = (
    ("filter", "KUBE-FIREWALL", "INPUT", "", ()),
    ("filter", "KUBE-FIREWALL", "OUTPUT", "", ()),
)
