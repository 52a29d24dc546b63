"""Argument checks: each names the argument, its value and the rule."""

import numpy as np
import pytest
import torch

from dufm.structures import dnc_logits, factorize, pair_logits
from dufm.validation import (
    check_activation,
    check_bool,
    check_device,
    check_dtype,
    check_int,
    check_int_list,
    check_nonnegative,
    check_number_list,
    check_positive,
    check_sizes,
)


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


def test_numpy_and_0d_tensor_numbers_are_accepted_as_plain_numbers():
    for value in (np.int64(4), np.int32(4), np.uint8(4), torch.tensor(4)):
        assert check_int("K", value, 2) == 4 and type(check_int("K", value, 2)) is int
    for value in (np.float32(0.5), np.float64(0.5), torch.tensor(0.5)):
        assert check_positive("lam", value) == 0.5 and type(check_positive("lam", value)) is float
    assert check_nonnegative("scale", np.int64(0)) == 0.0
    check_sizes(K=np.int64(4), n=np.int64(2), d=np.int64(5), L=np.int64(1))
    assert check_int_list("seeds", np.arange(3), 0) == [0, 1, 2]


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (lambda v: check_int("K", v, 2), np.bool_(True), r"K=.*True.* integer"),
        (lambda v: check_int("K", v, 2), np.float32(4.0), r"K=.*4.* integer"),
        (lambda v: check_positive("lam", v), np.float32("nan"), r"lam=.*nan.* finite number > 0"),
        (lambda v: check_int_list("Ks", v, 3), 4, r"Ks=4 is not allowed: must be a list"),
        (lambda v: check_int_list("Ks", v, 3), "46", r"Ks='46' is not allowed: must be a list"),
        (lambda v: check_int_list("Ks", v, 3), [], r"Ks=\[\] is not allowed: must list at least"),
        (lambda v: check_int_list("Ks", v, 3), [4, 2], r"Ks\[1\]=2 is not allowed: .*>= 3"),
        (lambda v: check_number_list("rtols", v, positive=True), [1e-3, 0], r"rtols\[1\]=0"),
        (lambda v: check_bool("tied", v), 1, r"tied=1 is not allowed: must be True or False"),
    ],
)
def test_list_bool_and_numpy_checks_name_the_value(check, value, message):
    with pytest.raises(ValueError, match=message):
        check(value)


def test_an_unavailable_accelerator_is_a_value_error():
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="device='mps' is not allowed: MPS is not available"):
            check_device("mps")
    with pytest.raises(ValueError, match="device='cuda:7'"):
        check_device("cuda:7")


def test_check_each_names_the_parameter_by_its_keyword():
    from dufm.validation import check_each, check_real

    check_each(check_int, 1, steps=3, snapshots=np.int64(2))
    with pytest.raises(ValueError, match=r"search_steps=100.0 is not allowed: must be an integer"):
        check_each(check_int, 1, search_starts=4, search_steps=100.0)
    with pytest.raises(ValueError, match=r"lam_ii_power=nan is not allowed: must be a finite"):
        check_each(check_real, lam_ii_power=float("nan"))


def test_finite_entries_whose_sum_overflows_pass_the_finiteness_check():
    from dufm.validation import check_finite

    huge = torch.full((4, 4), 1e308, dtype=torch.float64)  # the sum is inf, every entry finite
    assert check_finite("T", huge) is huge
    huge[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"T is not allowed: 1 of its 16 entries are NaN"):
        check_finite("T", huge)
