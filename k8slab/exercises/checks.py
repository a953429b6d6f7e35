"""The checking machinery: what an exercise is, how a prediction is compared, what a check says.

Owns :class:`Exercise` (question, solution, truth function, comparator), :class:`CheckResult` (the
answer a notebook shows), the comparators (``same_number``, ``same_text``, ``same_address``,
``same_set``, ...: each returns ``(ok, message, hints)``), the hint helper ``_h``, the readers of
answers written in words (``_by_keyword``, ``_split_text``, ``_phrase_fits``, ``_chain_names``) and
the one-exercise comparators ``_compare_chains``, ``_compare_counts`` and ``_compare_upstream``. The verbs that run a check
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


def _by_keyword(text: str, keywords) -> str | None:
    """The one canonical word whose pattern appears in ``text`` (already normalised), else None:
    "the portmap cni plugin" and "portmap (cni)" both name "cni portmap". ``keywords``: (regex,
    canonical) pairs. Two different canonical words found means the answer is ambiguous: None."""
    found = {canon for pattern, canon in keywords or () if re.search(pattern, text)}
    return found.pop() if len(found) == 1 else None


def _split_text(x, pattern: str = r"\s*[,;]\s*") -> list[str]:
    """A list written as one string ("kubectl, API server") into its items; empty items dropped."""
    return [p for p in re.split(pattern, str(x).strip().strip("[](){}")) if p.strip(" '\"")]


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


def _word_canon(synonyms, keywords) -> Callable[[Any], str]:
    """One answer word, normalised (``_norm``), mapped through ``synonyms``, and, when it is not one of
    their canonical names, named by ``keywords`` ((regex, canonical) pairs) if a sentence holds one."""
    syn = {_norm(k): _norm(v) for k, v in (synonyms or {}).items()}

    def canon(x):
        n = _norm(x)
        n = syn.get(n, n)
        return n if n in syn.values() else (_by_keyword(n, keywords) or n)
    return canon


def same_text(what: str, hints: Callable[[Any, Any], list[str]] | None = None, synonyms=None, keywords=()):
    """Same words after ``_norm`` and ``synonyms``; ``keywords`` ((regex, canonical) pairs) then name
    an answer that is a sentence around the word ("the sim backend")."""
    canon = _word_canon(synonyms, keywords)

    def compare(answer, truth, lab):
        ok = canon(answer) == canon(truth)
        msg = f"{what}: you predicted {answer!r}, the lab shows {truth!r}"
        return ok, msg, [] if ok else (hints(answer, truth) if hints else [])
    return compare


_BOOL_WORDS = {"true": True, "yes": True, "y": True, "1": True, "false": False, "no": False, "n": False, "0": False}


def same_bool(what: str, hints: Callable[[Any, Any], list[str]] | None = None):
    """True or False (numpy's bools too: a pandas ``.any()`` gives one). A string such as "False" or
    "no" is refused with a hint that says how to write the Python value it means."""
    def compare(answer, truth, lab):
        import numpy
        if isinstance(answer, numpy.bool_):             # a DataFrame's .any() or a comparison gives one
            answer = bool(answer)
        if not isinstance(answer, bool):
            meant = _BOOL_WORDS.get(_norm(answer)) if isinstance(answer, (str, int, float)) else None
            if meant is not None:
                return False, f"answer True or False for {what}, not {answer!r}", [
                    f"write the Python value {meant}, without quotes: answer = {meant}"]
            return False, f"answer True or False for {what}, not {answer!r}", (hints(answer, truth) if hints else [])
        ok = answer == bool(truth)
        msg = f"{what}: you predicted {answer}, the lab shows {bool(truth)}"
        return ok, msg, [] if ok else (hints(answer, truth) if hints else [])
    return compare


#: Words in a longer answer that name a role ("the ingress-nginx controller pod": controller and pod).
ROLE_KEYWORDS = ((r"controller|nginx", "controller"), (r"\bpod\b", "pod"), (r"\bnode\b", "node"),
                 (r"loopback|localhost", "loopback"), (r"\bhost\b|machine|laptop", "host"),
                 (r"cluster ?ip|\bservice\b", "clusterip"))



def _phrase_fits(phrase: str, roles: set[str]) -> bool:
    """A phrase names the address when every role word in it fits ("the ingress-nginx controller pod"),
    or when its first role word fits and owns the rest ("the node's end of the pod's link")."""
    found = sorted((m.start(), m.end(), canon) for pattern, canon in ROLE_KEYWORDS
                   for m in [re.search(pattern, phrase)] if m)
    if not found:
        return False
    if {canon for _, _, canon in found} <= roles:
        return True
    _, end, first = found[0]
    return first in roles and phrase[end:end + 2] in ("'s", "s'", "’s")


ROLE_WORDS = {"node's address": "node", "node address": "node", "the node's ip": "node", "node's ip": "node",
              "ingress-nginx": "controller", "ingress-nginx controller": "controller", "nginx": "controller",
              "controller pod": "controller", "ingress controller pod": "controller", "loopback address": "loopback",
              "my machine": "host", "my laptop": "host", "your machine": "host", "pod's ip": "pod ip"}


def same_address(what: str, hints: Callable[[Any, Any, set], list[str]] | None = None):
    """The answer may be the address itself, with or without a port, or a word for its role ("node",
    "pod", "controller", "127.0.0.1"), or a phrase whose role words all fit ("the ingress-nginx
    controller pod"). A port must be the lab's when the lab's answer has one (a DNAT destination);
    when it has none (a client address: its port is the client's own, any) every port fits."""
    def compare(answer, truth, lab):
        roles = {_norm(r) for r in address_roles(truth, lab)}
        t_ip, t_port = _split_address(truth)
        a_ip, a_port = _split_address(answer)
        if _IP_PORT.match(str(answer).strip()):
            ok = a_ip in roles and (t_port is None or a_port in (None, t_port))
        else:
            word = _norm(answer)
            word = ROLE_WORDS.get(word, word)
            ok = word in roles or _phrase_fits(word, roles)
        kinds = sorted(r for r in roles if not r[0].isdigit() and not r.startswith(("kind-", APP)))
        shown = f"{truth}" + (f" ({', '.join(kinds)})" if kinds else "")
        msg = f"{what}: you predicted {answer!r}; the lab shows {shown}" if not ok else \
            f"{what}: {answer!r} matches {shown}"
        return ok, msg, [] if ok else (hints(answer, truth, roles) if hints else [])
    return compare


def same_set(what: str, hints: Callable[[set, set], list[str]] | None = None, synonyms=None,
             ignore: tuple[str, ...] = (), split: str = r"\s*[,;]\s*"):
    """Same members, in any order; ``ignore``: words that may be in the answer or not (say "client",
    which the path table lists but the question does not ask for). A string answer, and each item,
    is split on ``split`` first ("kubectl, API server"; 09's "ip daddr . meta l4proto . th dport")."""
    syn = {_norm(k): _norm(v) for k, v in (synonyms or {}).items()}
    skip = {_norm(w) for w in ignore}

    def canon(items):
        if isinstance(items, bytes):
            items = items.decode()
        if isinstance(items, str):
            items = [items]
        words = [w for i in items for w in _split_text(getattr(i, "value", i), split)]
        out = {syn.get(_norm(w), _norm(w)) for w in words}
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
        except (TypeError, ValueError):
            return False, f"expected a mark like 0x... for {what}, got {answer!r}", (hints(answer, truth) if hints else [])
        msg = f"{what}: you predicted {answer!r}, the rules set {truth}"
        if not ok and re.fullmatch(r"\d+", str(answer).strip()) and int(str(answer).strip(), 16) == value(truth):
            digits = str(answer).strip()
            return False, msg, [f"marks are hex: {truth} ({digits} without 0x is the decimal number {digits}, "
                                f"which is 0x{int(digits):x})"]
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


_NO_CONDITION = {"none", "no", "no condition", "no probability", "-", "", "always", "no --probability"}


def _probability(x, none_is_one: bool) -> float:
    """One probability as a learner writes it: 1/3, "1/3", 0.333, "33.3%", Fraction(1, 3); with
    ``none_is_one`` None or "none" (a rule without --probability always matches) is 1."""
    if x is None and none_is_one:
        return 1.0
    if isinstance(x, str):
        text = re.sub(r"\s+", "", x)
        if none_is_one and _norm(x) in _NO_CONDITION:
            return 1.0
        if text.endswith("%"):
            return float(text[:-1]) / 100
        return float(Fraction(text))
    return float(x)


def same_sequence(what: str, hints: Callable[[list, list], list[str]] | None = None, tol: float = 0.005,
                  none_is_one: bool = False):
    """The same numbers in the same order, each within ``tol`` (0.33 and 0.333 both read 1/3; 1/3 and
    1/2 stay apart). A string answer is split on commas (or spaces). Hints see the lab's truth even
    when the answer cannot be read, so they speak of the lab as it is."""
    def compare(answer, truth, lab):
        t = [float(x) for x in truth]
        if isinstance(answer, str):
            answer = _split_text(answer, r"\s*[,;]\s*" if re.search(r"[,;]", answer) else r"\s+")
        try:
            a = [_probability(x, none_is_one) for x in answer]
        except (TypeError, ValueError, ZeroDivisionError):
            return False, f"expected a list of numbers for {what}, got {answer!r}", (hints([], t) if hints else [])
        ok = len(a) == len(t) and all(abs(x - y) <= tol for x, y in zip(a, t))
        msg = (f"{what}: you predicted {[round(x, 3) for x in a]}, "
               f"the rules say {[round(x, 3) for x in t]}")
        return ok, msg, [] if ok else (hints(a, t) if hints else [])
    return compare


def same_mapping(what: str, hints: Callable[[dict, dict], list[str]] | None = None, synonyms=None, keywords=()):
    """Each key's value as the lab's, after ``synonyms`` and ``keywords`` (see :func:`same_text`)."""
    canon = _word_canon(synonyms, keywords)

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


_HASH_SUFFIX = re.compile(r"-(?:[A-Z0-9]{16}|…|\.{2,}|\*|<[^<>]*>|X{3,}|HASH)?$")
_NOT_ASKED = ("PREROUTING", "OUTPUT", "POSTROUTING", "INPUT", "KUBE-POSTROUTING")


def _chain_names(answer) -> list[str]:
    """Chain names as a learner writes them, hash dropped: "KUBE-SVC-2634EQZ5IBN7U35C", "KUBE-SVC-…",
    "KUBE-SVC-...", "KUBE-SVC-*", "KUBE-SVC-<hash>" and "KUBE-SVC" are all "KUBE-SVC"; "nat:" (as
    Trace.frame() prints chains) dropped. A string is a path: "PREROUTING > KUBE-SERVICES > ..."."""
    if isinstance(answer, bytes):
        answer = answer.decode()
    if isinstance(answer, str):
        text = re.sub(r"<[^<>]*>", "*", answer.strip().strip("[]"))   # "<hash>" before splitting on ">"
        answer = re.split(r"\s*(?:->|=>|→|>|,|;)\s*|\s+", text)
    out = []
    for x in answer:
        name = re.sub(r"^NAT:", "", str(getattr(x, "value", x)).strip().strip("'\"").upper())
        name = _HASH_SUFFIX.sub("", name)
        if re.search(r"[A-Z]", name):
            out.append(name)
    return out


def _compare_chains(answer, truth, mark_masq_rule: Callable[[], str | None] | str | None = None):
    """03.chains: the nat chains of the DNAT stage in order; the built-in chains and KUBE-POSTROUTING
    may be named or not. KUBE-MARK-MASQ counts like any chain: the tracer lists it only when the
    source is outside the pod network (``mark_masq_rule``: the lab's rule that says so, or a function
    that reads it, called only for a hint)."""
    try:
        a = _chain_names(answer)
    except TypeError:
        return False, f"expected a list of chain names, got {answer!r}", ["lab.trace(cluster_ip, 80).frame() lists the chains"]
    t = [str(x) for x in truth]
    core = [x for x in t if x not in _NOT_ASKED]
    a_core = [x for x in a if x not in _NOT_ASKED]
    ok = a_core == core
    msg = f"chains: you predicted {a}, the tracer followed {t}"
    if ok:
        return ok, msg, []
    hints = []
    if "KUBE-MARK-MASQ" in a_core and "KUBE-MARK-MASQ" not in core:
        text = mark_masq_rule() if callable(mark_masq_rule) else mark_masq_rule
        rule = f" (the rule reads `{text}`)" if text else ""
        hints.append("KUBE-MARK-MASQ is only jumped to for sources outside the pod network" + rule +
                     ": a connection from a pod never passes it")
    if [x for x in a_core if x != "KUBE-MARK-MASQ"] != [x for x in core if x != "KUBE-MARK-MASQ"]:
        hints.append("KUBE-SERVICES matches the ClusterIP and jumps to the service's KUBE-SVC-…, which picks "
                     "one endpoint chain KUBE-SEP-…, whose rule does the DNAT")
    hints.append("lab.trace(cluster_ip, 80).frame() lists every hop")
    return ok, msg, hints


_COUNT_KEYS = (("new_pods", r"pod"), ("new_sockets", r"socket|listen|port"))


def _compare_counts(answer, truth):
    """06.new_pods: {"new_pods": n, "new_sockets": m}; keys that say pod / socket count as those
    ({"pods": 0, "sockets": 0}), and a pair (pods, sockets) in the question's order too."""
    if isinstance(answer, (list, tuple)) and len(answer) == len(_COUNT_KEYS):
        answer = {key: v for (key, _), v in zip(_COUNT_KEYS, answer)}
    if not isinstance(answer, dict):
        return False, f"expected a dict like {{'new_pods': ..., 'new_sockets': ...}}, got {answer!r}", [
            "compare lab.get('pods') and lab.sockets() before and after lab.apply(...)"]
    read: dict = {}
    for k, v in answer.items():
        key = _norm(k)
        for name, pattern in _COUNT_KEYS:
            if re.search(pattern, key) and name not in read:
                read[name] = v
                break
    missing = [k for k in truth if k not in read]
    told = ", ".join(f"{v} {k.replace('new_', '')}" for k, v in truth.items())
    if missing:
        return False, f"the answer {answer!r} has no count for {', '.join(missing)}", [
            "use the keys new_pods and new_sockets: {'new_pods': ..., 'new_sockets': ...}"]

    def same(a, t):
        try:
            return float(a) == float(t)
        except (TypeError, ValueError):
            return False
    wrong = {k: (read.get(k), v) for k, v in truth.items() if not same(read.get(k), v)}
    ok = not wrong
    msg = ("an Ingress added " + told + ("" if ok else "; you predicted " +
                                         ", ".join(f"{read[k]} {k.replace('new_', '')}" for k in truth)))
    hints = [] if ok else [
        "an Ingress is an API object: it is stored in etcd and read by the controller, which changes its "
        "nginx.conf; no pod starts and no port opens",
        "compare lab.ingress_config() before and after instead"]
    return ok, msg, hints


def _compare_upstream(answer, truth, lab, by_word):
    """06.upstream: a word ("pod ip", "clusterip": ``by_word`` compares those), or a concrete address,
    right when it is one of the Service's endpoints (pod ip) or its ClusterIP (clusterip), with or
    without the port the controller dials."""
    if not _IP_PORT.match(str(answer).strip()):
        return by_word(answer, truth, lab)
    from .readers import _app_endpoints, _service
    a_ip, a_port = _split_address(answer)
    eps = [_split_address(e) for e in _app_endpoints(lab)]
    cluster_ip = str(_service(lab, APP)["cluster_ip"])
    if truth == "pod ip":
        ok = any(a_ip == ip and a_port in (None, port) for ip, port in eps)
    elif truth == "clusterip":
        ok = a_ip == cluster_ip and a_port in (None, "80")
    else:
        ok = a_ip == _split_address(truth)[0]
    shown = ", ".join(f"{ip}:{port}" for ip, port in eps)
    if ok:
        return True, f"upstream address: {answer!r} is a {truth} ({APP}'s endpoints: {shown})", []
    msg = f"upstream address: you predicted {answer!r}; the controller sends to a {truth} ({APP}'s endpoints: {shown})"
    if any(a_ip == ip for ip, _ in eps):
        hints = [f"{a_ip} is an endpoint, but the controller dials the pod's own port "
                 f"({', '.join(sorted({p for _, p in eps if p}))}), not the Service's port"]
    elif a_ip == cluster_ip:
        hints = [f"{a_ip} is {APP}'s ClusterIP: compare lab.ingress_routes()' upstreams with lab.get('endpoints')"]
    else:
        hints = [f"{a_ip} is not one of {APP}'s endpoints: compare lab.ingress_routes()' upstreams with "
                 "lab.get('endpoints')"]
    return False, msg, hints
