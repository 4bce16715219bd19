"""The ALS convergence benchmark refuses bad drivers before it loads any data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def als_convergence():
    sys.path.insert(0, str(BENCH))
    try:
        import als_convergence

        yield als_convergence
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize(
    "driver, message",
    [
        ("anderson+fitalll", "unknown driver 'anderson+fitalll'"),
        ("newton", "unknown driver 'newton'"),
        ("anderson+fixed+damped", "unknown driver 'anderson+fixed+damped'"),
        ("plain+fitall", "driver 'plain+fitall': +sweep and +fitall apply to anderson only"),
        ("ncg+sweep", "driver 'ncg+sweep': +sweep and +fitall apply to anderson only"),
    ],
)
def test_bad_driver_is_named_before_any_work(als_convergence, driver, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        als_convergence.main(["--drivers", f"plain,{driver}"])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "driver", ["anderson+fixed+sweep", "anderson+sweep+fixed", "anderson+nofinish+fitall"]
)
def test_suffixes_combine_in_any_order(als_convergence, driver):
    assert als_convergence._strip(driver) == "anderson"
    assert als_convergence._acc(driver) == "anderson"
