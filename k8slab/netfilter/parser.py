"""Moved to :mod:`k8slab.netfilter.iptables.parser` (the iptables reader sits beside :mod:`k8slab.netfilter.nft`).

This name stays importable and *is* that module (same object, so patching either patches both)."""
import sys

from .iptables import parser as _module

sys.modules[__name__] = _module
