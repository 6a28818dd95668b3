"""FinetuneConfig: every bad value refused in one line naming it; doses; run identity."""

import logging

import pytest

from interp.errors import InterpError
from interp.finetune import FinetuneConfig, FinetuneError


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "rl"}, r"method='rl'; expected one of sft-answer, sft-verbalise, sft-solution, sft-self"),
        ({"lr": 0.0}, r"lr=0.0; expected a number > 0"),
        ({"lr": float("nan")}, r"lr=nan; expected a number > 0"),
        ({"batch_size": 0}, r"batch_size=0; expected an integer >= 1"),
        ({"steps": 2.5}, r"steps=2.5; expected an integer >= 1"),
        ({"steps": True}, r"steps=True; expected an integer >= 1"),
        ({"doses": (5, 200)}, r"doses=\(5, 200\); expected step counts between 0 and steps=100"),
        ({"doses": (-1,)}, r"doses=\(-1,\); expected step counts between 0 and steps=100"),
        ({"doses": "25"}, r"doses='25'; expected step counts"),
        ({"rehearse_facts": 1.0}, r"rehearse_facts=1.0; expected a share in \[0, 1\)"),
        ({"threads": 0}, r"threads=0; expected an integer >= 1"),
        ({"temperature": 0}, r"temperature=0; expected a number > 0"),
        ({"dtype": "float16"}, r"dtype='float16'; expected one of float32, bfloat16"),
        ({"max_len": 1}, r"max_len=1; expected an integer >= 2"),
        ({"seed": -1}, r"seed=-1; expected an integer >= 0"),
    ],
)
def test_bad_values_are_refused_naming_them(kwargs, message):
    # Under the test-time type checker a value of the wrong type (a bad Literal, a float for an
    # int) is a TypeCheckError first; the dataclass's own check is run on its own below.
    with pytest.raises((FinetuneError, TypeError), match=next(iter(kwargs))):
        FinetuneConfig(**kwargs)
    config = FinetuneConfig()
    for key, value in kwargs.items():
        object.__setattr__(config, key, value)
    with pytest.raises(FinetuneError, match=message) as info:
        FinetuneConfig.__post_init__(config)
    assert isinstance(info.value, InterpError) and "\n" not in str(info.value)
    assert info.value.field == next(iter(kwargs))


def test_the_last_step_is_always_a_dose():
    assert FinetuneConfig(steps=60, doses=[30, 15, 15]).all_doses == (15, 30, 60)
    assert FinetuneConfig(steps=60).all_doses == (60,)
    assert FinetuneConfig(steps=60, doses=(0, 60)).all_doses == (0, 60)


def test_the_run_key_leaves_out_what_does_not_change_a_checkpoint():
    a = FinetuneConfig(steps=50, doses=(25,), threads=1)
    assert a.run_key() == FinetuneConfig(steps=100, doses=(10, 30), threads=2).run_key()
    assert a.run_key() != FinetuneConfig(steps=50, doses=(25,), lr=2e-4).run_key()


def test_from_dict_round_trips_and_warns_about_unknown_keys(caplog):
    c = FinetuneConfig(method="sft-self", steps=20, doses=(5,), rehearse_facts=0.25)
    assert FinetuneConfig.from_dict(c.to_dict()) == c
    with caplog.at_level(logging.WARNING):
        assert FinetuneConfig.from_dict({**c.to_dict(), "gradient_checkpointing": True}) == c
    assert "ignoring unknown keys ['gradient_checkpointing']" in caplog.text


def test_rehearsed_facts_per_batch():
    assert FinetuneConfig(batch_size=8, rehearse_facts=0.25).rehearsed_per_batch == 2
    assert FinetuneConfig(batch_size=8).rehearsed_per_batch == 0
