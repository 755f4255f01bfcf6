"""The generated text and the needle prompts: deterministic, in the grammar, and tokenized as promised."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qwdeploy.toolkit.training import default_text, needle_prompt, qwen_encode
from qwdeploy.toolkit.training.data import (DEFAULT_TEXT_SENTENCES, NEEDLE, QUESTION, TRAIN_STREAM, haystack,
                                            sample_text, used_ids)


@pytest.fixture(scope="module")
def encode():
    return qwen_encode()


def test_default_text_is_fixed_and_not_the_training_text(encode):
    assert default_text() == default_text()
    training = sample_text(0, DEFAULT_TEXT_SENTENCES, stream=TRAIN_STREAM).text
    assert training != default_text()
    assert 2000 < len(encode(default_text())) < 5000  # a few thousand tokens


def test_every_token_of_the_distribution_is_a_used_id(encode):
    used = set(used_ids(encode))
    assert set(encode(default_text())) <= used
    assert set(encode(sample_text(7, 2000, stream=TRAIN_STREAM).text)) <= used
    prompt, answer = needle_prompt(encode, 512, 0.5, "90817")
    assert set(encode(prompt + answer)) <= used


def test_grammar_probability_is_exact_for_a_single_template_choice():
    sample = sample_text(3, 1)
    # Every sentence pays log(templates) plus log of each of its choices; 5 templates, choices 7..16 words.
    assert math.log(5) + math.log(10) <= sample.nats <= math.log(5) + 4 * math.log(16)


@pytest.mark.parametrize("context", [64, 300, 512, 2048])
@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_needle_prompt_fits_and_puts_the_needle_at_depth(encode, context, depth):
    prompt, answer = needle_prompt(encode, context, depth, "04721", seed=5)
    ids = encode(prompt)
    assert context - 24 <= len(ids) <= context  # filled to within one sentence and the first one's space
    assert prompt.endswith(QUESTION) and answer == " 04721"
    needle = NEEDLE.format(key="04721")
    assert prompt.count(needle) == 1
    before, after = prompt.split(needle)
    filler = len(before.split(". ")) - 1 + len(after.split(". ")) - 1  # sentences around the needle
    assert abs(len(before.split(". ")) - 1 - depth * filler) <= 1
    # The answer is a space then one token per digit, and tokenizes the same after the prompt.
    assert encode(answer) == encode(" ") + [encode(d)[0] for d in "04721"]
    assert encode(prompt + answer) == ids + encode(answer)


def test_needle_prompt_is_seeded(encode):
    assert needle_prompt(encode, 256, 0.3, "11111", seed=1) == needle_prompt(encode, 256, 0.3, "11111", seed=1)
    assert needle_prompt(encode, 256, 0.3, "11111", seed=1) != needle_prompt(encode, 256, 0.3, "11111", seed=2)


@pytest.mark.parametrize("key, depth", [("1234", 0.5), ("12a45", 0.5), ("12345", 1.5)])
def test_needle_prompt_refuses_bad_arguments(encode, key, depth):
    with pytest.raises(ValueError):
        needle_prompt(encode, 256, depth, key)


def test_haystack_draws_from_the_given_generator(encode):
    a = haystack(encode, 200, 0.5, "55555", np.random.default_rng(1))
    assert a == haystack(encode, 200, 0.5, "55555", np.random.default_rng(1))
