"""Every exercise's solution passes `check` on a sim lab, a wrong answer gets hints, and an empty
answer is not a failure. The solutions live once, in k8slab.exercises.BANK."""
from __future__ import annotations

import nbformat
import pytest

from k8slab import exercises
from k8slab.exercises import BANK, check, evaluate_solution, fill_solutions, prepare

NOTEBOOKS = sorted({e.notebook for e in BANK.values()})


@pytest.fixture(scope="module")
def labs():
    """One sim lab per notebook, brought to that notebook's state (made on first use)."""
    from k8slab.lab import Lab
    made: dict[str, object] = {}

    def get(nb: str):
        if nb not in made:
            lab = Lab(backend="sim", quiet=True)
            prepare(lab, nb)
            made[nb] = lab
        return made[nb]
    yield get
    for lab in made.values():
        lab.down()


def test_every_notebook_has_two_or_three_exercises():
    for nb in [f"{i:02d}" for i in range(9)]:
        assert 2 <= len(exercises.exercises_for(nb)) <= 3, nb


@pytest.mark.parametrize("ex_id", sorted(BANK))
def test_solution_passes_check_on_sim(ex_id, labs):
    lab = labs(BANK[ex_id].notebook)
    answer = evaluate_solution(ex_id, lab)
    result = check(ex_id, answer, lab)
    assert result.ok is True, result.text()
    assert result.predicted is True        # sim: the check says its side is a prediction
    assert "correct" in repr(result)


@pytest.mark.parametrize("ex_id", sorted(BANK))
def test_wrong_answer_gets_a_hint(ex_id, labs):
    lab = labs(BANK[ex_id].notebook)
    wrong = eval(BANK[ex_id].wrong)  # noqa: S307 (our own bank)
    result = check(ex_id, wrong, lab)
    assert result.ok is False, result.text()
    assert result.hints, f"{ex_id}: a wrong answer must get at least one hint"
    assert "hint:" in result.text()


EQUIVALENTS = [(e.id, x) for e in BANK.values() for x in e.equivalents]
WRONGS = [(e.id, x) for e in BANK.values() for x in e.wrongs]


def test_every_exercise_has_a_table_of_answers():
    for e in BANK.values():
        assert e.equivalents or e.id in ("00.live", "06.kube_svc"), f"{e.id}: no equivalent answers listed"
        assert e.wrongs or e.id == "00.live", f"{e.id}: no wrong answers listed"


@pytest.mark.parametrize("ex_id,expression", EQUIVALENTS)
def test_an_equivalent_right_answer_is_accepted(ex_id, expression, labs):
    lab = labs(BANK[ex_id].notebook)
    result = check(ex_id, exercises.evaluate(expression, lab), lab)
    assert result.ok is True, f"{expression!r}: " + result.text()


@pytest.mark.parametrize("ex_id,expression", WRONGS)
def test_a_listed_wrong_answer_is_refused_with_a_hint(ex_id, expression, labs):
    lab = labs(BANK[ex_id].notebook)
    result = check(ex_id, exercises.evaluate(expression, lab), lab)
    assert result.ok is False and result.hints, f"{expression!r}: " + result.text()


def test_the_issue_examples():
    """The answers a learner gave that were marked wrong (issue 13), on a lab in notebook 05's state."""
    from k8slab.lab import Lab
    lab = Lab(backend="sim", quiet=True)
    prepare(lab, "05")
    dest = exercises._hostport_destination(lab)
    assert ":" in dest
    assert check("05.hostport", dest, lab).ok                       # "10.244.0.7:80"
    assert check("05.owners", {"CNI-HOSTPORT-DNAT": "portmap", "KUBE-NODEPORTS": "kube-proxy"}, lab).ok
    lab2 = Lab(backend="sim", quiet=True)
    prepare(lab2, "02")
    assert check("02.components", ["client", "kubectl", "API server", "kubelet", "container runtime", "app"], lab2).ok


def test_the_probability_hint_follows_the_replica_count():
    from k8slab.lab import Lab
    lab = Lab(backend="sim", quiet=True)
    prepare(lab, "03")
    lab.scale("url-shortener", 4)
    result = check("03.probabilities", [1 / 3, 1 / 2, 1], lab)
    assert result.ok is False
    text = result.text()
    assert "4 endpoints" in text and "1/4, 1/3, 1/2, then 1" in text and "1/3 each" not in text
    assert "statistic column" not in text and "probability` column" in text
    assert check("03.probabilities", [1 / 4, 1 / 3, 1 / 2, 1], lab).ok


def test_the_nodeport_client_hint_explains_masquerade(labs):
    result = check("04.client_ip", "host", labs("04"))
    assert not result.ok and "interface the packet leaves by" in result.text()


def test_no_prediction_yet_is_not_a_failure(labs):
    result = check("03.probabilities", ..., labs("03"))
    assert result.ok is None and "no prediction yet" in result.text()
    assert "solution('03.probabilities')" in result.text()


def test_unknown_exercise_is_an_error(labs):
    with pytest.raises(KeyError):
        check("99.nothing", 1, labs("00"))


def test_checks_follow_the_lab_not_a_stored_answer(labs):
    """Scale to 2: the 3-replica solution of 03.probabilities must now fail, with a hint."""
    from k8slab.lab import Lab
    lab = Lab(backend="sim", quiet=True)
    prepare(lab, "02")          # 2 replicas
    try:
        assert check("03.probabilities", [1 / 3, 1 / 2, 1], lab).ok is False
        assert check("03.probabilities", [1 / 2, 1], lab).ok is True
    finally:
        lab.down()


def test_address_answers_may_name_the_role(labs):
    lab = labs("02")
    assert check("02.client_ip", "127.0.0.1", lab).ok
    assert check("02.client_ip", "loopback", lab).ok
    assert not check("02.client_ip", "pod", lab).ok


def test_fill_solutions_writes_the_bank_into_exercise_cells():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('answer = ...   # your prediction\ncheck("03.listeners", answer, lab)',
                                  metadata={"tags": ["exercise"]}),
        nbformat.v4.new_code_cell('answer = ...\ncheck("03.listeners", answer, lab)'),   # not tagged: untouched
    ])
    assert fill_solutions(nb) == 1
    assert nb.cells[0].source.startswith(f"answer = {BANK['03.listeners'].solution}\n")
    assert nb.cells[1].source.startswith("answer = ...")


def test_every_notebook_exercise_cell_is_in_the_bank():
    """Each exercise cell of the committed notebooks names a bank entry, and each entry is used once."""
    from k8slab.course import find_notebooks
    import re
    used = []
    for path in find_notebooks():
        for cell in nbformat.read(path, as_version=4).cells:
            if "exercise" in cell.get("metadata", {}).get("tags", []):
                m = re.search(r'check\("([^"]+)"', cell.source)
                assert m and m.group(1) in BANK, (path.name, cell.source)
                assert m.group(1).split(".")[0] == path.name[:2]
                assert "answer = ..." in cell.source
                used.append(m.group(1))
    assert sorted(used) == sorted(BANK)


# --- hints that fit the answer given, computed from the lab (issue 13, learner review items 4-11) ---

def test_a_pod_connection_never_passes_kube_mark_masq(labs):
    """The truth of 03.chains is traced from a pod (the client pod's address), and KUBE-SVC's jump to
    KUBE-MARK-MASQ carries `! -s <cluster CIDR>`: an answer naming it is wrong, and the hint quotes the
    lab's own rule. From outside the pod network the same trace does pass it."""
    lab = labs("03")
    truth = BANK["03.chains"].expected(lab)
    assert "KUBE-MARK-MASQ" not in truth and "KUBE-SVC" in truth
    cluster_ip = exercises._service(lab, "url-shortener")["cluster_ip"]
    assert "KUBE-MARK-MASQ" in exercises._trace_chains(lab, cluster_ip, 80, src="172.18.0.1")
    result = check("03.chains", ["KUBE-SERVICES", "KUBE-SVC", "KUBE-MARK-MASQ", "KUBE-SEP"], lab)
    assert result.ok is False
    assert "only jumped to for sources outside the pod network" in result.text()
    assert f"! -s 10.244.0.0/16 -d {cluster_ip}/32" in result.text()
    assert "picks one endpoint chain" not in result.text()     # the rest of the answer was right


def test_a_chain_path_written_as_a_string_is_split_on_arrows(labs):
    result = check("03.chains", "PREROUTING > KUBE-SERVICES > KUBE-SEP", labs("03"))
    assert result.ok is False
    assert "you predicted ['PREROUTING', 'KUBE-SERVICES', 'KUBE-SEP']" in result.text()
    assert "picks one endpoint chain" in result.text()


def test_an_unreadable_probability_answer_gets_the_labs_hint(labs):
    """Before: hints([], []) spoke of "0 endpoint(s)" while the lab had 3."""
    result = check("03.probabilities", ["a third", "half", "rest"], labs("03"))
    assert result.ok is False
    assert "with 3 endpoints the rules read 1/3, 1/2, then 1" in result.text()
    assert "0 endpoint" not in result.text()


def test_the_mark_hint_follows_the_answer(labs):
    lab = labs("04")
    hex_hint = check("04.mark", "4000", lab).text()
    assert "marks are hex: 0x4000" in hex_hint and "portmap" not in hex_hint
    assert "CNI portmap plugin's mark" in check("04.mark", "0x2000", lab).text()
    other = check("04.mark", "0x400", lab).text()
    assert "portmap" not in other and "KUBE-MARK-MASQ" in other


def test_the_replacement_hint_follows_the_answer(labs):
    text = check("08.replacement", "HTTPRoute", labs("08")).text()
    assert "HTTPRoute is one object of that API" in text and "ways in" not in text
    assert "NodePort and LoadBalancer are ways in" in check("08.replacement", "NodePort", labs("08")).text()


def test_kubectl_is_not_a_way_in(labs):
    result = check("07.api_server", {"port-forward", "kubectl"}, labs("07"))
    assert result.ok is False
    assert "kubectl is the client that asks for a port-forward, not a way in" in result.text()
    assert "ingress controller" not in result.text()
    assert "ingress controller *watches*" in check("07.api_server", {"port-forward", "ingress"}, labs("07")).text()


@pytest.mark.parametrize("ex_id,answer,meant", [("00.live", "False", "False"), ("00.live", "no", "False"),
                                                ("06.kube_svc", "False", "False"), ("06.kube_svc", "yes", "True")])
def test_a_boolean_written_as_a_string_says_how_to_write_it(ex_id, answer, meant, labs):
    result = check(ex_id, answer, labs(ex_id[:2]))
    assert result.ok is False
    assert f"write the Python value {meant}" in result.text()


def test_new_pods_names_the_keys_it_reads(labs):
    lab = labs("06")
    assert check("06.new_pods", {"pods": 0, "sockets": 0}, lab).ok
    unknown = check("06.new_pods", {"a": 0, "b": 0}, lab)
    assert unknown.ok is False and "use the keys new_pods and new_sockets" in unknown.text()
    assert "no pod starts" not in unknown.text()


def test_an_upstream_address_is_judged_against_the_endpoints(labs):
    lab = labs("06")
    ep = exercises._app_endpoints(lab)[0]
    ip, port = ep.split(":")
    assert check("06.upstream", ep, lab).ok and check("06.upstream", ip, lab).ok
    wrong_port = check("06.upstream", f"{ip}:80", lab)
    assert wrong_port.ok is False and f"the pod's own port ({port})" in wrong_port.text()
