"""Per-file constant columns (a Delta table's partition values) on a Spark frame read from files.

The Spark side of offline/sources.py `source_layout`; imports pyspark, so load it only when used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from parity.offline.delta import FileConstant

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def with_constants(frame: DataFrame, constants: Sequence[FileConstant], order: str) -> DataFrame:
    """`frame` plus one column per constant: the value of the row's file, cast from its text.
    The file is found from column `order`, DuckDB's __ord: (1-based file position) << 40 + row
    index when there are several files, the row index alone when there is one."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_type

    from parity.offline.spark_frames import ORDER_SHIFT

    # element_at counts from 1, as the file positions do; one file's rows have position 0.
    position = F.greatest(F.shiftright(F.col(order), ORDER_SHIFT), F.lit(1)).cast("int")
    for constant in constants:
        values = F.array(*(F.lit(v).cast("string") for v in constant.values))
        value = F.element_at(values, position).cast(from_arrow_type(constant.type))
        frame = frame.withColumn(constant.name, value)
    return frame
