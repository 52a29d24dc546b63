"""Argument checks: each names the argument, its value and the rule."""

import pytest
import torch

from dufm.structures import dnc_logits, factorize, pair_logits
from dufm.validation import check_activation, check_device, check_dtype, check_sizes


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(K=1), r"K=1 .*>= 2"),
        (dict(K=3, n=0), r"n=0 .*>= 1"),
        (dict(K=5, d=4), r"d=4 .*at least the number of classes K=5"),
        (dict(L=0), r"L=0 .*>= 1"),
        (dict(K=2.5), r"K=2.5 .*integer"),
        (dict(K=True), r"K=True .*integer"),
    ],
)
def test_size_checks_name_argument_value_and_rule(kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_sizes(**kwargs)


def test_structures_reject_negative_scale_and_bad_sizes():
    with pytest.raises(ValueError, match=r"scale=-1.0 .*>= 0"):
        dnc_logits(3, 2, -1.0)
    with pytest.raises(ValueError, match="K=1"):
        pair_logits(1, 2, 1.0)
    with pytest.raises(ValueError, match="d=2"):
        factorize(dnc_logits(3, 2, 1.0), 2, 2)
    with pytest.raises(ValueError, match="L=0"):
        factorize(dnc_logits(3, 2, 1.0), 0, 4)


def test_activation_device_and_dtype_checks():
    with pytest.raises(ValueError, match="activation='gelu'"):
        check_activation("gelu")
    with pytest.raises(ValueError, match="device='gpu0'"):
        check_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            check_device("cuda")
    with pytest.raises(ValueError, match="dtype='half'"):
        check_dtype("half")
    assert check_dtype("float32") is torch.float32
