"""Predict, then check against the cluster.

A notebook's exercise cell (tagged ``exercise``) looks like this::

    answer = ...            # your prediction
    check("03.probabilities", answer, lab)

:func:`check` works out the right answer from the lab *now* (a measurement or a value read off
the rules, never a stored constant where the lab can tell), compares it with the prediction and
answers with hints that point at the evidence, not a bare pass/fail.

Each exercise's solution lives once, in :data:`BANK` (as the Python text a learner would write).
``solution("03.probabilities")`` prints it; :func:`fill_solutions` writes the solutions into a
notebook's exercise cells (``k8slab course --solutions``); the tests run every solution through
:func:`check` on a sim lab.

The package: :mod:`.checks` (Exercise, CheckResult, the comparators), :mod:`.readers` (reading the
lab: each exercise's truth), :mod:`.bank` (BANK, SETUP, prepare); this module holds the verbs
(:func:`check`, :func:`solution`, :func:`evaluate`, :func:`fill_solutions`) and re-exports every
name the single ``exercises.py`` had, so the bank's answer expressions see the same names.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

from .bank import (BANK, BANK_09, _cascade_hints, COMPONENT_SYNONYMS, _EXERCISES, _EXERCISES_09,
                   expose_nodeport, _MAP_KEY_WORDS, OWNER_KEYWORDS, OWNER_SYNONYMS, prepare, SETUP, WAY_SYNONYMS,
                   WAYS)
from .checks import (_by_keyword, CheckResult, _chain_names, _compare_chains, _compare_counts, _compare_upstream,
                     Exercise, _h, _IP_PORT, _norm, ROLE_KEYWORDS, ROLE_WORDS, same_address, same_bool, same_hex,
                     same_ip, same_mapping, same_number, same_sequence, same_set, same_text, _split_address,
                     _split_text)
from .readers import (address_roles, APP, _app_endpoints, app_pods, _app_ruleset_probabilities, client_pod,
                      control_plane, _mark_masq_rule,
                      controller_pod, COURSE_INGRESS, COURSE_NODEPORT, _first_port, _hostport_destination,
                      INGRESS_NS, _ingress_request, _kube_svc_moved_by_ingress, _listeners_on_cluster_ip,
                      _mark_of, _nat_rules_moved_by_port_forward, _nft_trace, _nft_view, _node_port,
                      _nodeport_chain, _nodeport_client, NODEPORT_SERVICE, _numgen_probabilities, _owner_map,
                      _probe_ingress, _proxy_mode, _service, _service_map_key, _services_rules_passed,
                      _trace_chains, _upstream_kind, _ways_surviving_api_down, _ways_using_api_server,
                      _whoami_via_port_forward)


# ---------------------------------------------------------------------------------------------
# The verbs

def check(exercise: str, answer, lab) -> CheckResult:
    """Compare a prediction with what the lab shows now; hints say where to look when it differs."""
    ex = BANK.get(exercise)
    if ex is None:
        raise KeyError(f"no exercise {exercise!r}; known: {', '.join(BANK)}")
    predicted = not getattr(lab, "live", True)
    if answer is Ellipsis or answer is None:
        return CheckResult(exercise, None, answer, None,
                           f"write your prediction in `answer` first ({ex.question})",
                           ["solution(%r) shows one answer, if you are stuck" % exercise], predicted)
    truth = ex.expected(lab)
    ok, message, hints = ex.compare(answer, truth, lab)
    if ok and ex.explain:
        hints = [ex.explain]
    return CheckResult(exercise, bool(ok), answer, truth, message, list(hints), predicted)


def solution(exercise: str) -> str:
    """The solution's source text (also printed, for a notebook cell)."""
    ex = BANK[exercise]
    return ex.solution


def evaluate_solution(exercise: str, lab, namespace: dict | None = None):
    """The solution's value, evaluated with ``lab`` (and ``yaml``) in scope."""
    return evaluate((BANK[exercise]).solution, lab, namespace)


def evaluate(expression: str, lab, namespace: dict | None = None):
    """One of the bank's answer expressions (a solution, an equivalent, a wrong one), with ``lab``,
    ``yaml``, ``Fraction`` and this module's readers in scope."""
    import yaml
    scope = dict(globals())
    scope.update({"lab": lab, "yaml": yaml})
    scope.update(namespace or {})
    return eval(expression, scope)  # noqa: S307  (our own bank, not user input)


def exercises_for(notebook: str) -> list[Exercise]:
    return [e for e in BANK.values() if e.notebook == notebook]


_ANSWER_LINE = re.compile(r"^answer\s*=\s*\.\.\.(.*)$", re.M)
_CHECK_CALL = re.compile(r"check\(\s*[\"']([0-9]{2}\.[a-z_0-9]+)[\"']")


def fill_solutions(nb) -> int:
    """Write each exercise cell's solution into its ``answer = ...`` line (in place); return how many."""
    n = 0
    for cell in nb.cells:
        if cell.cell_type != "code" or "exercise" not in cell.get("metadata", {}).get("tags", []):
            continue
        m = _CHECK_CALL.search(cell.source)
        if not m or m.group(1) not in BANK:
            continue
        sol = BANK[m.group(1)].solution
        cell.source, k = _ANSWER_LINE.subn(lambda mm: f"answer = {sol}", cell.source, count=1)
        n += k
    return n


__all__ = ["check", "solution", "evaluate_solution", "CheckResult", "Exercise", "BANK", "SETUP", "prepare",
           "expose_nodeport", "exercises_for", "fill_solutions", "address_roles"]
