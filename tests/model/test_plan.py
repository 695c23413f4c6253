"""model.plan: options checked once when built, plans that render without further checks."""

from __future__ import annotations

import math

import pytest
import torch

from model.adain import StyleCode
from model.errors import InputError, OutOfRange
from model.plan import MAX_SIDE, Options, check_combination


@pytest.mark.parametrize("field, value", [
    ("alpha", 1.5), ("alpha", -0.01), ("alpha", math.nan), ("alpha", math.inf),
    ("color_match", 2.0), ("color_match", -1.0),
    ("content_size", -1), ("content_size", MAX_SIDE + 1), ("style_size", -8), ("style_size", 1.5),
])
def test_each_out_of_range_option_is_refused_naming_it(field, value):
    with pytest.raises(OutOfRange) as e:
        Options(**{field: value})
    assert e.value.field == field and str(e.value).startswith(f"{field}: ")
    assert isinstance(e.value, InputError) and isinstance(e.value, ValueError)


def test_in_range_options_are_kept():
    o = Options(weights=[1, 3], alpha=0, color_match=1, content_size=0, style_size=MAX_SIDE)
    assert o.weights == (1, 3) and o.alpha == 0 and o.style_size == MAX_SIDE
    assert hash(o) == hash(Options(weights=(1, 3), alpha=0, color_match=1, content_size=0, style_size=MAX_SIDE))


def test_combination_rules():
    code = StyleCode(torch.zeros(512), torch.ones(512))
    check_combination([code, code], Options(), masked=True)
    with pytest.raises(InputError, match="exactly 2 styles"):
        check_combination([code], Options(), masked=True)
    with pytest.raises(InputError, match="weights do not apply"):
        check_combination([code, code], Options(weights=(1, 1)), masked=True)
    with pytest.raises(InputError, match="preserve_color"):
        check_combination([code], Options(preserve_color=True), masked=False)
