from __future__ import annotations

import subprocess
import sys

import parity


def test_all_is_sorted_and_every_name_exists() -> None:
    assert list(parity.__all__) == sorted(parity.__all__)
    missing = [name for name in parity.__all__ if not hasattr(parity, name)]
    assert missing == []


def test_import_parity_loads_no_heavy_backend() -> None:
    code = (
        "import sys, parity; "
        "print(','.join(m for m in ('duckdb', 'pyspark', 'redis', 'sklearn', 'sqlalchemy', "
        "'pyarrow', 'pandas') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_every_error_has_a_distinct_stable_code() -> None:
    import parity.errors as errors

    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.ParityError)
    ]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
