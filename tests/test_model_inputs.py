"""What a real model sees: the system prompt presets, and each PRM protocol's exact input for a two-step solution.

Tokenizers are built here with the ``tokenizers`` library (offline): byte-level, one token per byte, and
the protocol's special tokens as single tokens, with the chat template of the model family (Llama 3.1
for RLHFlow, Qwen2.5's ChatML for Qwen2.5-Math-PRM, Mistral's ``<s>`` for Math-Shepherd). A token
sequence is pinned as its pieces: each special token, and each run of byte tokens as its text.

Each protocol's input is the one its model card (or the model's own evaluation code) builds, not the one
huggingface/search-and-learn's ``src/sal/models/reward_models.py`` builds (see docs/differences.md,
"PRM inputs"):

- Math-Shepherd (``peiyi9979/math-shepherd-mistral-7b-prm`` card): ``f"{question} {output}"`` where
  each step ends with ``" ки"`` and steps are joined by ``"\\n"``; sal puts its system prompt and a line
  break before the question and keeps ``"\\n\\n"`` between steps.
- RLHFlow (``RLHFlow/Llama3.1-8B-PRM-Deepseek-Data``; RLHFlow-Reward-Modeling ``math-rm/prm_evaluate.py``):
  a chat, one user turn per stripped step (the first prefixed by the question and a space), each
  answered by an assistant ``"+"``; sal splits on ``"\\n\\n"`` without dropping the empty piece after a
  trailing delimiter, so an unfinished beam gets one more, empty, turn.
- Qwen2.5-Math-PRM (``Qwen/Qwen2.5-Math-PRM-7B`` card): system prompt, question, and the steps joined
  and ended by ``<extra_0>`` as the assistant turn; sal replaces ``"\\n\\n"`` by ``<extra_0>`` and adds
  one more, so an unfinished beam gets an empty step too.
"""

from __future__ import annotations

from typing import Any

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from tokenizers.pre_tokenizers import ByteLevel
from transformers import PreTrainedTokenizerFast

from langchain_ttc.core.prompts import (
    SEARCH_AND_LEARN_SYSTEM_PROMPT,
    SYSTEM_PROMPTS,
    resolve_system_prompt,
)
from langchain_ttc.core.search import split_steps
from langchain_ttc.core.types import GenerationRequest
from langchain_ttc.engines.chat_template import render_prompt
from langchain_ttc.engines.prm_formats import MathShepherdFormat, QwenMathFormat, RLHFlowFormat

PROBLEM = "What is 2+3*4?"
STEPS = ["3*4=12.", "2+12=14. The answer is: 14"]

LLAMA31_TEMPLATE = (  # Llama 3.1 Instruct's template without tools: every message trimmed, a fixed date
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}{{- 'Today Date: 26 Jul 2024\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
QWEN25_TEMPLATE = (  # Qwen2.5's ChatML template when the conversation has a system message (no tools)
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def byte_tokenizer(
    special: list[str], *, added: tuple[str, ...] = (), bos: str | None = None, template: str | None = None, **kw: Any
) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (no merges) with these special and added tokens, BOS added on encode if given."""
    alphabet = sorted(ByteLevel.alphabet(), key=ord)
    backend = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(special)
    backend.add_tokens(list(added))
    if bos is not None:
        bos_id = backend.token_to_id(bos)
        backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, bos_id)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, **kw)
    tokenizer.chat_template = template
    return tokenizer


def pieces(tokenizer: PreTrainedTokenizerFast, ids: list[int]) -> list[str]:
    """The ids as their pieces: each added or special token alone, each run of byte tokens as its text."""
    whole = set(tokenizer.get_added_vocab().values())
    out: list[str] = []
    run: list[int] = []
    for token in ids:
        if token in whole:
            if run:
                out.append(tokenizer.decode(run))
                run = []
            out.append(tokenizer.convert_ids_to_tokens(token))
        else:
            run.append(token)
    if run:
        out.append(tokenizer.decode(run))
    return out


# ---- system prompt presets ----


def test_the_search_and_learn_preset_is_the_reference_prompt() -> None:
    text = resolve_system_prompt("preset:search-and-learn")
    assert text is SEARCH_AND_LEARN_SYSTEM_PROMPT is SYSTEM_PROMPTS["search-and-learn"]
    assert text.startswith("Solve the following math problem efficiently and clearly:\n\n- For simple problems")
    assert "Therefore, the final answer is: $\\boxed{answer}$. I hope it is correct.\n\n" in text
    assert text.endswith("Where [answer] is just the final number or expression that solves the problem.")
    assert len(text) == 577
    assert all(p == p.strip() for p in SYSTEM_PROMPTS.values())  # a template that trims the system message keeps it


@pytest.mark.parametrize(
    "value", [None, "You are terse.", "search-and-learn", "preset: be brief", "preset:search-and-learn\n", ""]
)
def test_anything_but_a_preset_name_passes_through(value: str | None) -> None:
    assert resolve_system_prompt(value) == value


def test_an_unknown_preset_names_the_parameter_and_the_presets() -> None:
    with pytest.raises(ValueError, match=r"^system_prompt='preset:nope' names no known preset; pass one of "
                       r"'preset:qwen-math', 'preset:search-and-learn', or the prompt's own text\.$"):  # fmt: skip
        resolve_system_prompt("preset:nope")
    with pytest.raises(ValueError, match=r"^prompt='preset:x' "):
        resolve_system_prompt("preset:x", parameter="prompt")


def test_a_llama_template_sends_the_preset_and_keeps_the_partial_delimiter() -> None:
    tokenizer = byte_tokenizer(
        ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        bos="<|begin_of_text|>", template=LLAMA31_TEMPLATE,
    )  # fmt: skip
    request = GenerationRequest(
        messages=[
            {"role": "system", "content": resolve_system_prompt("preset:search-and-learn") or ""},
            {"role": "user", "content": PROBLEM},
        ],
        partial="## Step 1: Multiply\n3*4=12.\n\n",
    )
    text = render_prompt(tokenizer, request)
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        f"Today Date: 26 Jul 2024\n\n{SEARCH_AND_LEARN_SYSTEM_PROMPT}<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{PROBLEM}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n## Step 1: Multiply\n3*4=12.\n\n"
    )  # the template trimmed the partial's "\n\n"; render_prompt put it back, as sal's untrimmed template keeps it


# ---- PRM inputs, one protocol at a time ----


def test_math_shepherd_input_is_the_cards() -> None:
    tokenizer = byte_tokenizer(["<s>", "</s>"], added=("ки",), bos="<s>", eos_token="</s>")
    ids, positions = MathShepherdFormat().encode(tokenizer, PROBLEM, STEPS)
    assert pieces(tokenizer, ids) == [
        "<s>", "What is 2+3*4? 3*4=12. ", "ки", "\n2+12=14. The answer is: 14 ", "ки", "+",
    ]  # fmt: skip
    # each score is read from the distribution after a step tag; a slot token is added after the last tag
    tags = [i for i, token in enumerate(ids) if token == tokenizer.convert_tokens_to_ids("ки")]
    assert positions == [tag + 1 for tag in tags] and positions[-1] == len(ids) - 1


def test_the_protocol_tokens_are_looked_up_once_per_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A search encodes every candidate at every iteration: the tag and label ids are not re-tokenized each time."""
    tokenizer = byte_tokenizer(["<s>", "</s>"], added=("ки",), bos="<s>", eos_token="</s>")
    first = MathShepherdFormat().encode(tokenizer, PROBLEM, STEPS)
    encoded: list[str] = []
    original = type(tokenizer).encode
    monkeypatch.setattr(
        type(tokenizer), "encode", lambda self, text, **kw: encoded.append(text) or original(self, text, **kw)
    )
    assert [MathShepherdFormat().encode(tokenizer, PROBLEM, STEPS) for _ in range(3)] == [first] * 3
    assert len(encoded) == 3 and "ки" not in encoded and "+" not in encoded  # one encode per solution, no lookups
    other = byte_tokenizer(["<s>", "</s>"], added=("<tag>", "ки"), bos="<s>", eos_token="</s>")  # its own ids
    ids, positions = MathShepherdFormat().encode(other, PROBLEM, STEPS)
    tag = other.convert_tokens_to_ids("ки")
    assert tag != tokenizer.convert_tokens_to_ids("ки") and len(positions) == 2
    assert all(ids[p - 1] == tag for p in positions)


def test_rlhflow_input_is_the_models_own() -> None:
    tokenizer = byte_tokenizer(
        ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        bos="<|begin_of_text|>", eos_token="<|eot_id|>", template=LLAMA31_TEMPLATE,
    )  # fmt: skip
    ids, positions = RLHFlowFormat().encode(tokenizer, PROBLEM, STEPS)
    header = ["<|start_header_id|>", "system", "<|end_header_id|>"]
    turn = ["<|eot_id|>", "<|start_header_id|>"]
    assert pieces(tokenizer, ids) == [
        "<|begin_of_text|>", *header, "\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n",
        *turn, "user", "<|end_header_id|>", "\n\nWhat is 2+3*4? 3*4=12.",
        *turn, "assistant", "<|end_header_id|>", "\n\n+",
        *turn, "user", "<|end_header_id|>", "\n\n2+12=14. The answer is: 14",
        *turn, "assistant", "<|end_header_id|>", "\n\n+",
        "<|eot_id|>",
    ]  # fmt: skip
    assert [tokenizer.decode([ids[p]]) for p in positions] == ["+", "+"]  # each step read at its "+"
    assert positions[-1] == len(ids) - 2  # the model's own code reads logits[:, -3], the prediction of that "+"


def test_qwen_math_prm_input_is_the_cards() -> None:
    tokenizer = byte_tokenizer(
        ["<|im_start|>", "<|im_end|>", "<extra_0>"], eos_token="<|im_end|>", template=QWEN25_TEMPLATE
    )
    ids, positions = QwenMathFormat().encode(tokenizer, PROBLEM, STEPS)
    assert pieces(tokenizer, ids) == [
        "<|im_start|>", "system\nPlease reason step by step, and put your final answer within \\boxed{}.",
        "<|im_end|>", "\n", "<|im_start|>", f"user\n{PROBLEM}", "<|im_end|>", "\n",
        "<|im_start|>", "assistant\n3*4=12.", "<extra_0>", "2+12=14. The answer is: 14", "<extra_0>",
        "<|im_end|>", "\n",
    ]  # fmt: skip
    assert [tokenizer.convert_ids_to_tokens(ids[p]) for p in positions] == ["<extra_0>", "<extra_0>"]


def test_an_unfinished_solution_is_scored_on_its_steps_only() -> None:
    """An active beam ends with the delimiter: its PRM input is that of its steps, no empty last step."""
    unfinished, finished = "3*4=12.\n\n2+12=14. The answer is: 14\n\n", "3*4=12.\n\n2+12=14. The answer is: 14"
    assert split_steps(unfinished, "\n\n") == split_steps(finished, "\n\n") == STEPS
    assert unfinished.split("\n\n") == [*STEPS, ""]  # what sal's RLHFlow scorer splits into (one empty turn more)
    assert len(split_steps("  \n\n3*4=12.\n\n \n\n", "\n\n")) == 1  # whitespace-only pieces are no steps


def test_the_preset_reaches_the_policy_from_every_surface(capsys: pytest.CaptureFixture[str]) -> None:
    """preset:search-and-learn names the study's prompt in a factory, the registry, a Studio context and the CLI."""
    from langchain_ttc import create_majority_vote_graph, create_strategy_graph
    from langchain_ttc.cli.main import build_parser
    from langchain_ttc.core.prompts import SYSTEM_PROMPTS
    from tests.fakes import ScriptedPolicy

    study = SYSTEM_PROMPTS["search-and-learn"]
    for build in (
        lambda p: create_majority_vote_graph(p, n=1, system_prompt="preset:search-and-learn"),
        lambda p: create_strategy_graph("majority_vote", p, n=1, system_prompt="preset:search-and-learn"),
    ):
        policy = ScriptedPolicy(["\\boxed{1}"])
        build(policy).invoke({"problem": "p"})
        assert policy.calls[0][0].messages[0] == {"role": "system", "content": study}
    policy = ScriptedPolicy(["\\boxed{1}"])
    create_majority_vote_graph(policy, n=1).invoke(
        {"problem": "p"}, context={"system_prompt": "preset:search-and-learn"}
    )
    assert policy.calls[0][0].messages[0]["content"] == study
    with pytest.raises(ValueError, match=r"system_prompt='preset:nope' names no known preset"):
        create_majority_vote_graph(policy, n=1, system_prompt="preset:nope")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["solve", "--help"])
    assert "preset:search-and-learn" in " ".join(capsys.readouterr().out.split())  # the flag's help names them
