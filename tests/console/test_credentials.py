"""console.credentials: the one Bearer-header parser."""

from __future__ import annotations

import pytest

from console.credentials import bearer_token


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        (b"", None),
        ("Basic dXNlcjpwdw==", None),
        ("Bearer vf_abc_def", "vf_abc_def"),
        ("bearer   vf_abc_def  ", "vf_abc_def"),
        (b"Bearer vfn_1_2", "vfn_1_2"),
        ("Bearer", ""),
        ("Bearer a b", "a b"),
    ],
)
def test_bearer_token(header, expected):
    assert bearer_token(header) == expected
