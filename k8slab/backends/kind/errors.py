"""What goes wrong with a kind cluster, one class each, and the checks on names given by a learner
before they reach any command."""
from __future__ import annotations

import re

from ...errors import K8sLabError

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_TARGET = re.compile(r"^(svc|service|pod|po|deployment|deploy)/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$")


class KindError(K8sLabError):
    """Something went wrong with the kind cluster; the message says what to do."""


class ConfigMismatch(KindError):
    """A cluster of that name exists but was created from another config."""


class HostPortInUse(KindError):
    """A host port of ``extraPortMappings`` (or a port-forward's local port) is taken."""


class RolloutFailed(KindError):
    """Pods did not become ready in time; the message names the pods and what to look at."""


class ImagePullFailed(RolloutFailed):
    """A pod is in ErrImagePull / ImagePullBackOff."""


class ControllerPending(RolloutFailed):
    """A pod (the ingress controller's, usually) cannot be scheduled: hostPort 80/443 taken, a taint
    it does not tolerate, a node selector no node matches (``ingress-ready=true`` in manifests older
    than ingress-nginx v1.13)."""


class WebhookNotReady(KindError):
    """The ingress controller's admission webhook does not answer yet."""


class InvalidName(KindError, ValueError):
    """A user-given name that is not a DNS-1123 label; refused before it reaches any command."""


def validate_name(name: str, what: str = "name") -> str:
    """A DNS-1123 label (``a-z0-9-``, at most 63 characters), checked before it reaches a command."""
    if not isinstance(name, str) or len(name) > 63 or not _DNS1123_LABEL.match(name):
        raise InvalidName(
            f"{what} {name!r} is not valid: use lowercase letters, digits and '-', start and end "
            "with a letter or digit, at most 63 characters (a DNS-1123 label), e.g. 'k8slab'")
    return name


def validate_target(target: str) -> tuple[str, str]:
    """``svc/NAME``, ``pod/NAME`` or ``deployment/NAME`` -> (kind, name)."""
    m = _TARGET.match(target or "")
    if not m:
        raise InvalidName(f"target {target!r} is not valid: write svc/NAME, pod/NAME or deployment/NAME")
    kind = {"service": "svc", "po": "pod", "deploy": "deployment"}.get(m.group(1), m.group(1))
    return kind, m.group(2)
