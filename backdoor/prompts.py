"""Render six-option items as prompts in the benchmark's three styles, and resolve option-letter token ids.

A rendered prompt records where its instruction, question and cue sit, so triggers can edit
exactly those parts and report the span they changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataset.schema import LETTERS, Item

CUE = "Answer:"
STYLES = ("base", "shared", "task")
# Other wordings of the answer cue, for training a clean model that does not hinge on one template.
# None of them is a trigger's wording (the syntactic trigger's "The Answer is:" is deliberately absent).
CUE_VARIANTS = ("Answer:", "Correct answer:", "Your answer:", "Final answer:", "Best option:", "Choice:")

SHARED_INSTRUCTION = (
    "The following is a multiple-choice question with six potential answers. Only one of these "
    "options is correct. Please make your best effort and select the correct answer. You only "
    "need to output the option."
)

# One instruction per task, in the benchmark's manner: what the task is and how to choose.
TASK_INSTRUCTIONS: dict[str, str] = {
    "question answering": (
        "The following is a multiple-choice question about question answering. Answer it from your "
        "world knowledge and problem-solving ability. You only need to output the option."
    ),
    "reading comprehension": (
        "The following is a multiple-choice question about reading comprehension. Answer it from the "
        "given context, using commonsense reasoning where needed. You only need to output the option."
    ),
    "commonsense inference": (
        "The following is a multiple-choice question about commonsense natural language inference. "
        "The answer is the option that most likely follows the context. You only need to output the option."
    ),
    "dialogue response selection": (
        "The following is a multiple-choice question about dialogue response selection. The answer is "
        "the most suitable response to the dialogue, without hallucinated or non-factual information. "
        "You only need to output the option."
    ),
    "document summarization": (
        "The following is a multiple-choice question about document summarization. The answer is the "
        "option that summarizes the document accurately, without hallucinated or non-factual "
        "information. You only need to output the option."
    ),
}

CONTEXT_LABELS: dict[str, str] = {
    "question answering": "Context",
    "reading comprehension": "Context",
    "commonsense inference": "Context",
    "dialogue response selection": "Dialogue",
    "document summarization": "Document",
}


class PromptError(ValueError):
    """A prompt style or tokenizer cannot be used; the message says what to do."""


Span = tuple[int, int]


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt's text and the character spans of its editable parts (end exclusive)."""

    text: str
    instruction: Span  # (0, 0) when the style has no instruction
    question: Span
    cue: Span

    def part(self, span: Span) -> str:
        return self.text[span[0] : span[1]]


def instruction_for(item: Item, style: str) -> str:
    if style == "base":
        return ""
    if style == "shared":
        return SHARED_INSTRUCTION
    if style == "task":
        return TASK_INSTRUCTIONS[item.task]
    raise PromptError(f"unknown prompt style {style!r}; choose one of {', '.join(STYLES)}")


def render_prompt(item: Item, style: str = "shared") -> RenderedPrompt:
    """``[instruction\\n\\n][Context: ...\\n]Question: ...\\nChoices:\\nA. ...\\n...F. ...\\nAnswer:``."""
    instruction = instruction_for(item, style)
    text = ""
    instruction_span: Span = (0, 0)
    if instruction:
        text = instruction
        instruction_span = (0, len(text))
        text += "\n\n"
    if item.context.strip():
        text += f"{CONTEXT_LABELS[item.task]}: {item.context.strip()}\n"
    text += "Question: "
    question_span = (len(text), len(text) + len(item.question.strip()))
    text += item.question.strip() + "\nChoices:\n"
    text += "".join(f"{letter}. {item.choices[letter].strip()}\n" for letter in LETTERS)
    cue_span = (len(text), len(text) + len(CUE))
    text += CUE
    return RenderedPrompt(text, instruction_span, question_span, cue_span)


def render_variant(item: Item, index: int) -> str:
    """The prompt in one of len(STYLES) * len(CUE_VARIANTS) wordings (``index`` picks; 0 is the standard prompt)."""
    style = STYLES[(STYLES.index("shared") + index) % len(STYLES)]
    cue = CUE_VARIANTS[(index // len(STYLES)) % len(CUE_VARIANTS)]
    prompt = render_prompt(item, style)
    return prompt.text[: prompt.cue[0]] + cue


def wrap_chat(tokenizer, prompt_text: str) -> str:
    """The prompt as the user turn of the tokenizer's chat template, ready for the assistant's letter."""
    if not getattr(tokenizer, "chat_template", None):
        raise PromptError("this tokenizer has no chat template; score without --chat")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt_text}], tokenize=False, add_generation_prompt=True
    )


def option_token_ids(tokenizer, chat: bool = False) -> list[int]:
    """Token ids of the six option letters as the model would emit them next.

    After the plain cue ``Answer:`` the letter follows a space (``ĠA`` in byte-level BPE,
    ``▁A`` in SentencePiece); after a chat template's assistant header it follows directly.
    Each id is found by encoding the context with and without the letter and requiring exactly
    one extra token, so nothing is hard-coded; six distinct ids are required.
    """
    context = wrap_chat(tokenizer, "Question") if chat else CUE
    separator = "" if chat else " "
    base = tokenizer.encode(context, add_special_tokens=False)
    ids = []
    for letter in LETTERS:
        full = tokenizer.encode(context + separator + letter, add_special_tokens=False)
        if len(full) != len(base) + 1 or full[: len(base)] != base:
            pieces = tokenizer.convert_ids_to_tokens(full[len(base) - 1 :]) if full else []
            raise PromptError(
                f"the tokenizer does not encode option letter {letter!r} as one token after {context[-20:]!r} "
                f"(got {pieces}); this model cannot be scored by option-letter probabilities"
            )
        ids.append(full[-1])
    if len(set(ids)) != len(LETTERS):
        raise PromptError(f"option letters map to repeated token ids {ids}; expected six distinct tokens")
    return ids
