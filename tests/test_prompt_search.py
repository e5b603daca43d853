"""Phase-1 prompt-driven search: prompts, and the environment on a tiny random model."""

import pytest

from model import load_model
from rftt.data import Problem
from rftt.prompt_search import PromptDrivenEnv, PromptStep, RootState, clean_content, path_steps, step_caps
from rftt.sft_prompts import (
    ASSISTANT_PREFIX, INSTRUCTIONS, format_existing_steps, step_messages, step_prompt, step_request,
    verify_prompt, verify_request,
)
from rftt.steps import ROOT, SFT_CHILDREN, Step, format_step
from search.engine import Engine
from search.mcts import TreeNode, search
from search.sampling import SamplingParams
from tests.tiny_models import write_checkpoint

QUESTION = "Ann has 3 apples and buys 2 more. How many apples does she have?"
STEPS = [Step("clarify", "Ann starts with 3 apples and buys 2."), Step("analysis", "Add the two amounts.")]


# ---- prompts ---------------------------------------------------------------------------

def test_step_request_has_question_existing_steps_and_instruction():
    text = step_request("next_step", QUESTION, STEPS)
    assert text.startswith(f"Question: {QUESTION}\n\nExisting Steps:\n")
    assert "Step 1 (clarify): Ann starts with 3 apples and buys 2.\nStep 2 (analysis): Add the two amounts." in text
    assert text.endswith(INSTRUCTIONS["next_step"])
    assert text.index("Existing Steps:") < text.index(INSTRUCTIONS["next_step"])  # instruction last


def test_no_steps_yet_and_every_function_has_a_prompt():
    assert format_existing_steps([]) == "(none yet)"
    for function in SFT_CHILDREN[ROOT]:
        text = step_request(function, QUESTION, [])
        assert "Existing Steps:\n(none yet)" in text and QUESTION in text
    with pytest.raises(ValueError, match="verify"):
        step_request("verify", QUESTION, [])


def test_answering_prompts_ask_for_boxed_not_box():
    for function in ("next_step", "direct_answer"):
        text = step_request(function, QUESTION, STEPS)
        assert "\\boxed{" in text
        assert "\\box{" not in text  # the release's bug
    assert "boxed" not in step_request("analysis", QUESTION, STEPS)
    assert "calculat" in INSTRUCTIONS["analysis"]  # guidance only, no calculation


def test_step_prompt_uses_the_chat_template_and_forced_prefix(tiny):
    _, tok = tiny
    text = step_prompt(tok, "subquestion", QUESTION, STEPS)
    expected = tok.apply_chat_template(step_messages("subquestion", QUESTION, STEPS)) + "Sub-question:"
    assert text == expected
    assert text.startswith("<|im_start|>user\nQuestion: ") and "<|im_start|>assistant\nSub-question:" in text
    assert ASSISTANT_PREFIX["clarify"] == "" and step_prompt(tok, "clarify", QUESTION, []).endswith("assistant\n")


def test_verify_prompt_shows_both_attempts_after_the_shared_steps(tiny):
    _, tok = tiny
    wrong = [Step("next_step", "3 + 2 = 6. So the answer is \\boxed{6}.")]
    correct = [Step("next_step", "3 + 2 = 5. So the answer is \\boxed{5}.")]
    text = verify_request(QUESTION, STEPS, wrong, correct)
    assert "Existing Steps:\nStep 1 (clarify)" in text
    assert "Attempt A (wrong):\nStep 3 (next_step): 3 + 2 = 6." in text  # numbering continues
    assert "Attempt B (correct):\nStep 3 (next_step): 3 + 2 = 5." in text
    assert text.index("Attempt A") < text.index("Attempt B") < text.index("where and why")
    assert verify_prompt(tok, QUESTION, STEPS, wrong, correct) == tok.apply_chat_template(
        [{"role": "user", "content": text}])


def test_step_caps_scale_with_max_step_tokens():
    assert step_caps(512) == {"clarify": 512, "analysis": 512, "subquestion": 256, "next_step": 512,
                              "direct_answer": 4096}
    caps = step_caps(64)
    assert caps["clarify"] == 64 and caps["subquestion"] == 32 and caps["direct_answer"] == 512
    assert step_caps(64, direct_answer_tokens=100)["direct_answer"] == 100


def test_clean_content_removes_anything_tag_like():
    text = clean_content("  <clarify>Ann has 3.</clarify> <b>x</b> a<b ok \n")
    assert text == "Ann has 3. x a<b ok"
    format_step("clarify", text)  # does not raise


# ---- the environment on a tiny random model ---------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    write_checkpoint(path, "qwen3", seed=3)
    return load_model(path)


PROBLEMS = [Problem("What is 2 + 3?", "5", source_id="p0"), Problem("What is 3 + 4?", "7", source_id="p1")]


def _search(tiny, seed=0, rollouts=3, max_depth=3, **kw):
    model, tok = tiny
    engine = Engine(model, num_slots=8192)
    env = PromptDrivenEnv(engine, tok, SamplingParams(temperature=0.7), max_step_tokens=4, seed=seed, **kw)
    roots = env.roots(PROBLEMS)
    search(roots, env, rollouts=rollouts, max_depth=max_depth)
    return env, roots


def _nodes(root):
    out = [root]
    for child in root.children:
        out.extend(_nodes(child))
    return out


def test_search_structure_rewards_and_pool(tiny):
    env, roots = _search(tiny)
    for i, root in enumerate(roots):
        assert isinstance(root.state, RootState) and root.state.gold == PROBLEMS[i].answer
        assert root.visits == 3 and len(root.leaves()) == 3
        for node in _nodes(root):
            if node.children:  # children straight from the table: repeats kept, in order
                assert [c.action for c in node.children] == list(SFT_CHILDREN[node.action or ROOT])
                assert len({c.prior for c in node.children}) == 1
            if node is not root and node.state is not None:
                assert isinstance(node.state, PromptStep) and node.state.step.function == node.action
                assert node.state.stop in ("eos", "length")
                format_step(node.state.step.function, node.state.step.content)  # never raises
        for leaf in root.leaves():
            assert leaf.reward in (0.0, 1.0)
            assert [s.function for s in path_steps(leaf)] == [n.action for n in leaf.path()[1:]]
            assert leaf.terminal or leaf.depth == 3
    env.engine.tree.check_invariants()
    assert env.engine.pool.num_used == 0  # every step's KV was freed
    assert env.steps_generated == sum(len(_nodes(r)) - 1 - sum(n.state is None for n in _nodes(r)) for r in roots)


def _contents(roots):
    return [[(n.action, n.state.step.content) for n in _nodes(r)[1:] if n.state is not None] for r in roots]


def test_seeded_search_is_reproducible(tiny):
    _, a = _search(tiny, seed=5, rollouts=2)
    _, b = _search(tiny, seed=5, rollouts=2)
    _, c = _search(tiny, seed=6, rollouts=2)
    assert _contents(a) == _contents(b)
    assert _contents(a) != _contents(c)


def test_direct_answer_last_is_the_papers_order(tiny):
    model, tok = tiny
    env = PromptDrivenEnv(Engine(model, num_slots=256), tok, direct_answer_last=True)
    analysis = TreeNode("analysis")
    (kids,) = env.children([analysis])
    assert [f for f, _ in kids] == ["next_step", "subquestion", "direct_answer"]
    (kids,) = PromptDrivenEnv(Engine(model, num_slots=256), tok).children([analysis])
    assert [f for f, _ in kids] == list(SFT_CHILDREN["analysis"])


def test_stubbed_generator_with_the_right_answer_gets_reward_one(tiny, monkeypatch):
    model, tok = tiny
    monkeypatch.setattr(PromptDrivenEnv, "_new_text", lambda self, branch, start: ("3 + 4 = 7. So the answer is \\boxed{7}.", "eos"))
    env = PromptDrivenEnv(Engine(model, num_slots=8192), tok, max_step_tokens=4)
    roots = env.roots(PROBLEMS)
    search(roots, env, rollouts=1, max_depth=3)
    leaves = [r.leaves()[0] for r in roots]
    assert [leaf.reward for leaf in leaves] == [0.0, 1.0]  # gold 5, then gold 7
    # table order: root -> clarify -> analysis -> direct_answer, which ends the path
    assert [n.action for n in leaves[1].path()[1:]] == ["clarify", "analysis", "direct_answer"]
    assert leaves[1].terminal and leaves[1].state.step.content == "3 + 4 = 7. So the answer is \\boxed{7}."


def test_subquestion_has_a_question_line_then_its_answer(tiny, monkeypatch):
    model, tok = tiny
    env = PromptDrivenEnv(Engine(model, num_slots=8192), tok, max_step_tokens=16, seed=2)
    (root,) = env.roots(PROBLEMS[:1])
    node = TreeNode("subquestion", root, depth=1)
    root.children = [node]
    env.generate([node])
    assert node.state.step.function == "subquestion" and "\n" not in node.state.step.content.split("\n", 1)[0]
    assert node.state.tokens <= 2 * env.caps["subquestion"] + len(tok.encode("\nAnswer:"))
    assert env.engine.pool.num_used == 0


def test_complete_and_chunking_respect_the_pool(tiny):
    model, tok = tiny
    env = PromptDrivenEnv(Engine(model, num_slots=40), tok)
    assert env._chunks([[1] * 10] * 3, [5] * 3) == [[0, 1], [2]]
    with pytest.raises(ValueError, match="num_slots"):
        env._chunks([[1] * 38], [5])
    texts = env.complete([tok.encode("Hello"), tok.encode("Hi there"), tok.encode("Yo")], 6)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    env.engine.tree.check_invariants()
    assert env.engine.pool.num_used == 0


@pytest.mark.parametrize("force", [False, True])
def test_force_answer_boxes_an_unanswered_direct_answer(tiny, monkeypatch, force):
    model, tok = tiny
    # the step itself reads "It is five."; what is decoded after the forced "\boxed{" reads "5} ..."
    monkeypatch.setattr(PromptDrivenEnv, "_new_text",
                        lambda self, branch, start: ("5} and more", "length") if start > 0 else ("It is five.", "eos"))
    env = PromptDrivenEnv(Engine(model, num_slots=8192), tok, max_step_tokens=4, force_answer=force)
    (root,) = env.roots(PROBLEMS[:1])
    node = TreeNode("direct_answer", root, depth=1)
    root.children = [node]
    env.generate([node])
    (reward,) = env.reward([node])
    if force:
        assert node.state.step.content == "It is five.\nSo the answer is \\boxed{5}." and reward == 1.0
    else:
        assert node.state.step.content == "It is five." and reward == 0.0
    assert node.terminal and env.engine.pool.num_used == 0
