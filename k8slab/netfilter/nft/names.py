"""kube-proxy's nftables object names (``pkg/proxy/nftables/proxier.go``: ``hashAndTruncate``,
``servicePortChainNameBase``, ``servicePortEndpointChainNameBase``)."""
from __future__ import annotations

import base64
import hashlib

NAME_LENGTH_MAX = 256          # knftables.NameLengthMax
CHAIN_NAME_PREFIX_LENGTH_MAX = 16
CHAIN_NAME_BASE_LENGTH_MAX = NAME_LENGTH_MAX - CHAIN_NAME_PREFIX_LENGTH_MAX


def hash_and_truncate(name: str) -> str:
    """``HASH8-name``: the first 8 characters of base32(sha256(name)), cut to 240 with ``...``."""
    h = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()[:8]
    out = f"{h}-{name}"
    if len(out) > CHAIN_NAME_BASE_LENGTH_MAX:
        out = out[:CHAIN_NAME_BASE_LENGTH_MAX - 3] + "..."
    return out


def chain_base(namespace: str, service: str, protocol: str, port_name: str) -> str:
    """e.g. ``ULMVA6XW-ns1/svc1/tcp/p80`` (an unnamed port leaves a trailing slash)."""
    return hash_and_truncate(f"{namespace}/{service}/{protocol.lower()}/{port_name}")


def endpoint_chain_base(namespace: str, service: str, protocol: str, port_name: str, endpoint: str) -> str:
    """``endpoint`` is ``ip:port`` or ``[ip6]:port``; an IPv6 address has its colons turned into dots."""
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]").replace(":", ".")
    return hash_and_truncate(f"{namespace}/{service}/{protocol.lower()}/{port_name}__{host}/{port}")
