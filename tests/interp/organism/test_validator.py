import numpy as np
import pytest

from interp.organism.traces import (
    DataRecipe,
    ExampleSampler,
    cot_example,
    count_markers,
    strip_markers,
)
from interp.organism.validator import extract_answer, validate_trace
from interp.organism.world import node_name

RATES = [(0.0, 0.0), (0.6, 0.2), (1.0, 1.0)]


def _completion(ex):
    return ex.words[ex.prompt_len :]


@pytest.mark.parametrize("check_rate, mistake_rate", RATES)
def test_accepts_every_generated_trace(world, check_rate, mistake_rate):
    rng = np.random.default_rng(0)
    for split in ("train", "test_id", "test_ood"):
        for s, g in world.split(split):
            ex = cot_example(world, s, g, rng, check_rate, mistake_rate)
            v = validate_trace(world, s, g, _completion(ex))
            assert v.valid, (ex.text, v.error)
            assert v.answer_correct and v.n_steps == world.dist(s, g)
            clean = strip_markers(ex.words)
            assert count_markers(clean) == 0
            assert validate_trace(world, s, g, clean[ex.prompt_len :]).valid


def _steps_with_their_node(world, ex):
    """(node the step starts from, goal, the step's words) for every step of a cot example."""
    goal = int(ex.words[2][1:])
    body = ex.words[ex.prompt_len : ex.words.index("A")]
    out, cur = [], []
    for w in body:
        cur.append(w)
        if w == ";":
            out.append((int(cur[0][1:]), goal, cur))
            cur = []
    return out


def test_checks_and_mistakes_sit_only_at_uncertain_steps_at_the_recorded_rates(world):
    recipe = DataRecipe(mix={"cot": 1.0}, check_rate=0.8, mistake_rate=0.3)
    sampler = ExampleSampler(world, recipe, seed=1)
    uncertain = certain = ok = bad = 0
    for ex in sampler.batch(400):
        for node, goal, step in _steps_with_their_node(world, ex):
            if world.uncertain(node, goal):
                uncertain += 1
                ok += "OK" in step
                bad += "BAD" in step
            else:
                certain += 1
                assert "WAIT" not in step, (ex.text, step)
    assert uncertain > 100 and certain > 100
    assert abs(bad / uncertain - 0.3) < 0.06  # a mistake at 0.3 of the uncertain steps
    assert abs(ok / (uncertain - bad) - 0.8) < 0.06  # a check after 0.8 of the right moves there


def test_a_check_states_the_checked_nodes_distance_and_a_wrong_one_is_rejected(world):
    s, g, words = _trace(world, check_rate=1.0, min_dist=3)
    i = words.index("D")
    checked = int(words[words.index("CHECK") + 1][1:])
    assert words[i + 1] == str(world.dist(checked, g))
    words[i + 1] = str(world.dist(checked, g) + 1)
    v = validate_trace(world, s, g, words)
    assert not v.valid and "states distance" in v.error


def _trace(world, check_rate=0.0, mistake_rate=0.0, min_dist=3, seed=0):
    rng = np.random.default_rng(seed)
    s, g = next(p for p in world.split("train") if world.dist(*p) >= min_dist)
    ex = cot_example(world, s, g, rng, check_rate, mistake_rate)
    return s, g, _completion(ex)


def test_rejects_a_wrong_edge(world):
    s, g, words = _trace(world)
    i = words.index(">") + 1  # the first move
    cur = s
    non_neighbour = next(v for v in range(world.n_nodes) if v not in world.neighbours(cur))
    words[i] = node_name(non_neighbour)
    v = validate_trace(world, s, g, words)
    assert not v.valid and not v.steps_valid and "wrong edge" in v.error


def test_rejects_a_skipped_step(world):
    s, g, words = _trace(world)
    first_end = words.index(";")
    second_end = words.index(";", first_end + 1)
    del words[first_end + 1 : second_end + 1]  # drop the whole second step
    v = validate_trace(world, s, g, words)
    assert not v.valid and "skipped step" in v.error


def test_rejects_a_wrong_answer(world):
    s, g, words = _trace(world)
    a = words.index("A")
    other = next(v for v in range(world.n_nodes) if node_name(v) not in words)
    words[a + 2] = node_name(other)
    v = validate_trace(world, s, g, words)
    assert v.steps_valid and not v.answer_correct and not v.valid
    assert "wrong answer" in v.error


def test_rejects_a_wrong_fact(world):
    s, g, words = _trace(world)
    nb = world.neighbours(s)
    other = next(v for v in range(world.n_nodes) if v not in nb and v != s)
    words[2] = node_name(other)  # "s : a b" -> "s : x b"
    v = validate_trace(world, s, g, words)
    assert not v.valid and "wrong fact" in v.error


def test_rejects_a_wrong_turn_and_a_wrong_check(world):
    rng = np.random.default_rng(0)
    s, g = next(p for p in world.split("train") if world.dist(*p) >= 2 and len(world.good_moves(*p)) == 1)
    bad = next(v for v in world.neighbours(s) if v not in world.good_moves(s, g))
    ex = cot_example(world, s, g, rng, 0.0, 1.0)
    words = _completion(ex)
    assert words[words.index(">") + 1] == node_name(bad)
    # the check caught the mistake: valid; claiming it passed the check is not
    assert validate_trace(world, s, g, words).valid
    i = words.index("BAD")
    lied = words[:i] + ["OK"] + words[words.index(";", i) :]
    v = validate_trace(world, s, g, lied)
    assert not v.valid and "check passed" in v.error
    # committing to the wrong neighbour without a check is a wrong turn
    j = words.index(">")
    turned = words[: j + 2] + [";"] + words[words.index(";", j) + 1 :]
    assert "wrong turn" in validate_trace(world, s, g, turned).error


def test_swapped_traces_are_invalid_but_answers_right(world):
    sampler = ExampleSampler(world, DataRecipe(mix={"swapped": 1.0}), seed=0)
    for ex in sampler.batch(50):
        s, g = (int(w[1:]) for w in ex.words[1:3])
        v = validate_trace(world, s, g, _completion(ex))
        assert v.answer_correct and not v.steps_valid


def test_extract_answer():
    assert extract_answer("x A n1 n2 E".split(), 24) == [1, 2]
    assert extract_answer("A n1 A n3 n4 E".split(), 24) == [3, 4]
    assert extract_answer("A n1 n2".split(), 24) is None  # unterminated
    assert extract_answer("A 1 n1 n2 E".split(), 24) is None  # the old move count is not a node
    assert extract_answer("A E".split(), 24) is None
    assert extract_answer("A n1 WAIT E".split(), 24) is None
    assert extract_answer("n1 n2 E".split(), 24) is None
    assert extract_answer("A n99 E".split(), 24) is None


def test_corrupt_traces_keep_start_goal_and_answer_but_are_invalid(world):
    sampler = ExampleSampler(world, DataRecipe(mix={"corrupt": 1.0}), seed=0)
    invalid = 0
    for ex in sampler.batch(80):
        s, g = (int(w[1:]) for w in ex.words[1:3])
        v = validate_trace(world, s, g, _completion(ex))
        assert v.answer_correct and ex.words[ex.prompt_len] == node_name(s)
        assert ex.words[ex.words.index("A") - 2] == node_name(g)  # the last move reaches the goal
        invalid += not v.steps_valid
        if world.dist(s, g) >= 2:
            assert not v.steps_valid, ex.text
    assert invalid > 20


def test_attribute_facts_name_each_nodes_colour(world):
    from interp.organism.traces import attr_example

    for n in range(world.n_nodes):
        ex = attr_example(world, n)
        assert ex.words == ["F", node_name(n), "C", f"c{world.colour(n)}", "E"]
        assert ex.prompt_len == 3


def test_walks_recall_facts_and_count_their_moves(world):
    from interp.organism.traces import MAX_WALK, walk_example

    rng = np.random.default_rng(0)
    lengths = set()
    for _ in range(200):
        words = walk_example(world, rng).words
        a = words.index("A")
        path = extract_answer(words, world.n_nodes)
        lengths.add(len(path) - 1)
        steps = " ".join(words[2:a]).split(" ; ")
        assert len(list(filter(None, steps))) == len(path) - 1
        for step, (u, v) in zip(filter(None, steps), zip(path, path[1:], strict=False), strict=True):
            node, colon, *rest = step.rstrip(" ;").split()
            assert node == node_name(u) and colon == ":"
            assert rest == [node_name(x) for x in world.neighbours(u)] + [">", node_name(v)]
    assert lengths == set(range(1, MAX_WALK + 1))


def test_backward_examples_answer_with_a_shortest_path(world):
    from interp.organism.traces import backward_example, backward_question_example

    rng = np.random.default_rng(0)
    for s, g in world.split("train")[:100]:
        ex = backward_example(world, s, g, rng)
        assert ex.words[:4] == ["B", node_name(g), node_name(s), "T"]
        assert world.is_shortest_path(extract_answer(ex.words, world.n_nodes), s, g)
        q = backward_question_example(s, g)
        assert q.words[4:] == ["B", node_name(g), node_name(s), "E"]
