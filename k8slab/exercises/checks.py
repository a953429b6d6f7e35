"""The checking machinery: what an exercise is, how a prediction is compared, what a check says.

Owns :class:`Exercise` (question, solution, truth function, comparator), :class:`CheckResult` (the
answer a notebook shows), the comparators (``same_number``, ``same_text``, ``same_address``,
``same_set``, ...: each returns ``(ok, message, hints)``), the hint helper ``_h`` and the two
one-exercise comparators ``_compare_chains`` and ``_compare_counts``. The verbs that run a check
(:func:`k8slab.exercises.check`, ``solution``, ``evaluate``) are in the package's ``__init__``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

from .readers import APP, address_roles


# ---------------------------------------------------------------------------------------------
# Results

@dataclass
class CheckResult:
    """What :func:`check` says. ``ok`` is None when no prediction was written yet."""
    exercise: str
    ok: bool | None
    answer: Any
    expected: Any
    message: str
    hints: list[str] = field(default_factory=list)
    predicted: bool = False   # the expected value came from a model (sim), not a live cluster

    def text(self) -> str:
        mark = {True: "✔ correct", False: "✘ not quite", None: "… no prediction yet"}[self.ok]
        lines = [f"[{self.exercise}] {mark}: {self.message}"]
        lines += [f"  hint: {h}" for h in self.hints]
        if self.predicted and self.ok is not None:
            lines.append("  (the lab's side of this check is the sim model's prediction, not a live cluster)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def __bool__(self) -> bool:
        return bool(self.ok)

    def _repr_html_(self) -> str:
        import html
        color = {True: "#2ca02c", False: "#d62728", None: "#7f7f7f"}[self.ok]
        body = html.escape(self.text()).replace("\n", "<br>")
        return (f'<div style="border-left:6px solid {color};padding:4px 8px;font-family:monospace;'
                f'font-size:12px">{body}</div>')


@dataclass(frozen=True)
class Exercise:
    """One "predict, then check" exercise.

    ``expected(lab)`` derives the truth from the lab; ``compare(answer, truth, lab)`` returns
    ``(ok, message, hints)``. ``solution`` is the Python expression a learner would write;
    ``wrong`` a plausible wrong prediction (the tests check it gets a hint). ``equivalents`` are other
    right answers a learner writes in their own words (Python expressions, ``lab`` in scope): every
    one must pass; ``wrongs`` are more answers that must not.
    """
    id: str
    question: str
    solution: str
    wrong: str
    expected: Callable[[Any], Any]
    compare: Callable[[Any, Any, Any], tuple[bool, str, list[str]]]
    explain: str = ""
    equivalents: tuple[str, ...] = ()
    wrongs: tuple[str, ...] = ()

    @property
    def notebook(self) -> str:
        return self.id.split(".", 1)[0]


def _norm(x) -> str:
    """Case, spacing, underscores, a leading "the" and a trailing period do not matter."""
    text = re.sub(r"[\s_]+", " ", str(x).strip().lower()).strip(" .")
    return re.sub(r"^the ", "", text)


_IP_PORT = re.compile(r"^(\d+\.\d+\.\d+\.\d+)(?::(\d+))?$")


def _split_address(x) -> tuple[str, str | None]:
    """("10.244.0.7", "80") for "10.244.0.7:80"; (text, None) for anything else."""
    m = _IP_PORT.match(str(x).strip())
    return (m.group(1), m.group(2)) if m else (str(x), None)


# ---------------------------------------------------------------------------------------------
# Comparators: each returns (ok, message, hints)

def same_number(what: str, hints: Callable[[Any, Any], list[str]] | None = None):
    def compare(answer, truth, lab):
        try:
            ok = float(answer) == float(truth)
        except (TypeError, ValueError):
            return False, f"expected a number for {what}, got {answer!r}", (hints(answer, truth) if hints else [])
        msg = f"{what}: you predicted {answer}, the lab shows {truth}"
        return ok, msg, [] if ok else (hints(answer, truth) if hints else [])
    return compare


def same_text(what: str, hints: Callable[[Any, Any], list[str]] | None = None, synonyms=None):
    syn = {_norm(k): _norm(v) for k, v in (synonyms or {}).items()}

    def canon(x):
        n = _norm(x)
        return syn.get(n, n)

    def compare(answer, truth, lab):
        ok = canon(answer) == canon(truth)
        msg = f"{what}: you predicted {answer!r}, the lab shows {truth!r}"
        return ok, msg, [] if ok else (hints(answer, truth) if hints else [])
    return compare


def same_bool(what: str, hints: Callable[[Any, Any], list[str]] | None = None):
    def compare(answer, truth, lab):
        if not isinstance(answer, bool):
            return False, f"answer True or False for {what}, not {answer!r}", (hints(answer, truth) if hints else [])
        ok = answer == bool(truth)
        msg = f"{what}: you predicted {answer}, the lab shows {bool(truth)}"
        return ok, msg, [] if ok else (hints(answer, truth) if hints else [])
    return compare


ROLE_WORDS = {"node's address": "node", "node address": "node", "the node's ip": "node", "node's ip": "node",
              "ingress-nginx": "controller", "ingress-nginx controller": "controller", "nginx": "controller",
              "controller pod": "controller", "ingress controller pod": "controller", "loopback address": "loopback",
              "my machine": "host", "my laptop": "host", "your machine": "host", "pod's ip": "pod ip"}


def same_address(what: str, hints: Callable[[Any, Any, set], list[str]] | None = None):
    """The answer may be the address itself, with or without the port the lab's answer carries, or a
    word for its role ("node", "pod", "controller", "127.0.0.1")."""
    def compare(answer, truth, lab):
        roles = {_norm(r) for r in address_roles(truth, lab)}
        t_ip, t_port = _split_address(truth)
        a_ip, a_port = _split_address(answer)
        if _IP_PORT.match(str(answer).strip()):
            ok = a_ip in roles and (a_port is None or a_port == t_port)
        else:
            word = _norm(answer)
            ok = ROLE_WORDS.get(word, word) in roles
        kinds = sorted(r for r in roles if not r[0].isdigit() and not r.startswith(("kind-", APP)))
        shown = f"{truth}" + (f" ({', '.join(kinds)})" if kinds else "")
        msg = f"{what}: you predicted {answer!r}; the lab shows {shown}" if not ok else \
            f"{what}: {answer!r} matches {shown}"
        return ok, msg, [] if ok else (hints(answer, truth, roles) if hints else [])
    return compare


def same_set(what: str, hints: Callable[[set, set], list[str]] | None = None, synonyms=None,
             ignore: tuple[str, ...] = ()):
    """Same members, in any order; ``ignore``: words that may be in the answer or not (say "client",
    which the path table lists but the question does not ask for)."""
    syn = {_norm(k): _norm(v) for k, v in (synonyms or {}).items()}
    skip = {_norm(w) for w in ignore}

    def canon(items):
        if isinstance(items, (str, bytes)):
            items = [items]
        out = {syn.get(_norm(getattr(i, "value", i)), _norm(getattr(i, "value", i))) for i in items}
        return out - skip

    def compare(answer, truth, lab):
        try:
            a, t = canon(answer), canon(truth)
        except TypeError:
            return False, f"expected a list or set for {what}, got {answer!r}", (hints(set(), set()) if hints else [])
        ok = a == t
        msg = f"{what}: you predicted {sorted(a)}, the lab shows {sorted(t)}"
        extra = []
        if a - t:
            extra.append(f"not in the lab's answer: {sorted(a - t)}")
        if t - a:
            extra.append(f"missing from your prediction: {sorted(t - a)}")
        return ok, msg, [] if ok else extra + (hints(a, t) if hints else [])
    return compare


def same_hex(what: str, hints: Callable[[Any, Any], list[str]] | None = None):
    """A mark as the rules print it ("0x4000", "0x4000/0x4000") or as a number (16384, 0x4000)."""
    def value(x):
        if isinstance(x, int):
            return x
        return int(str(x).strip().split("/")[0], 0)

    def compare(answer, truth, lab):
        try:
            ok = value(answer) == value(truth)
        except ValueError:
            return False, f"expected a mark like 0x4000 for {what}, got {answer!r}", (hints(answer, truth) if hints else [])
        msg = f"{what}: you predicted {answer!r}, the rules set {truth}"
        return ok, msg, [] if ok else (hints(answer, truth) if hints else [])
    return compare


def same_ip(what: str, port: str | None = None, hints: Callable[[Any, Any], list[str]] | None = None):
    """An address, with or without the port the question implies (``port``)."""
    def compare(answer, truth, lab):
        a_ip, a_port = _split_address(answer)
        ok = a_ip == str(truth) and a_port in (None, port)
        msg = f"{what}: you predicted {answer!r}, the lab shows {truth!r}" + (f" (port {port})" if port else "")
        return ok, msg, [] if ok else (hints(answer, truth) if hints else [])
    return compare


def same_sequence(what: str, hints: Callable[[list, list], list[str]] | None = None, tol: float = 1e-3):
    def compare(answer, truth, lab):
        try:
            a = [float(Fraction(x)) if isinstance(x, str) else float(x) for x in answer]
        except (TypeError, ValueError):
            return False, f"expected a list of numbers for {what}, got {answer!r}", (hints([], []) if hints else [])
        t = [float(x) for x in truth]
        ok = len(a) == len(t) and all(abs(x - y) <= tol for x, y in zip(a, t))
        msg = (f"{what}: you predicted {[round(x, 3) for x in a]}, "
               f"the rules say {[round(x, 3) for x in t]}")
        return ok, msg, [] if ok else (hints(a, t) if hints else [])
    return compare


def same_mapping(what: str, hints: Callable[[dict, dict], list[str]] | None = None, synonyms=None):
    syn = {_norm(k): _norm(v) for k, v in (synonyms or {}).items()}

    def canon(x):
        n = _norm(x)
        return syn.get(n, n)

    def compare(answer, truth, lab):
        if not isinstance(answer, dict):
            return False, f"expected a dict for {what}, got {answer!r}", (hints({}, truth) if hints else [])
        answer = {str(k).strip().upper(): v for k, v in answer.items()}
        wrong = {k: (answer.get(k), v) for k, v in truth.items() if canon(answer.get(k, "")) != canon(v)}
        ok = not wrong
        msg = f"{what}: " + ("all match the dump" if ok else
                             "; ".join(f"{k}: you said {a!r}, the dump says {t!r}" for k, (a, t) in wrong.items()))
        return ok, msg, [] if ok else (hints(answer, truth) if hints else [])
    return compare


def _h(*lines):
    return lambda *args: list(lines)


def _compare_chains(answer, truth):
    try:
        a = [re.sub(r"-[A-Z0-9]{16}$", "", str(x)).upper() for x in answer]
    except TypeError:
        return False, f"expected a list of chain names, got {answer!r}", ["lab.trace(cluster_ip, 80).frame() lists the chains"]
    t = [x for x in truth if x != "KUBE-MARK-MASQ"]
    core = [x for x in t if x not in ("PREROUTING", "OUTPUT", "POSTROUTING", "INPUT", "KUBE-POSTROUTING")]
    a_core = [x for x in a if x not in ("PREROUTING", "OUTPUT", "POSTROUTING", "INPUT", "KUBE-POSTROUTING",
                                        "KUBE-MARK-MASQ")]
    ok = a_core == core
    msg = f"chains: you predicted {a}, the tracer followed {t}"
    hints = [] if ok else ["KUBE-SERVICES matches the ClusterIP and jumps to the service's KUBE-SVC-…, which picks "
                           "one endpoint chain KUBE-SEP-…, whose rule does the DNAT",
                           "lab.trace(cluster_ip, 80).frame() lists every hop"]
    return ok, msg, hints


def _compare_counts(answer, truth):
    if not isinstance(answer, dict):
        return False, f"expected a dict like {{'new_pods': ..., 'new_sockets': ...}}, got {answer!r}", [
            "compare lab.get('pods') and lab.sockets() before and after lab.apply(...)"]
    wrong = {k: (answer.get(k), v) for k, v in truth.items() if answer.get(k) != v}
    ok = not wrong
    msg = ("an Ingress added " + ", ".join(f"{v} {k.replace('new_', '')}" for k, v in truth.items()))
    hints = [] if ok else [
        "an Ingress is an API object: it is stored in etcd and read by the controller, which changes its "
        "nginx.conf; no pod starts and no port opens",
        "compare lab.ingress_config() before and after instead"]
    return ok, msg, hints
