"""Results from the Spark JVM to this process over PySpark's local socket protocol: all Arrow
batches at once, or rows partition by partition. PySpark's own helpers leave their sockets to the
garbage collector (a ResourceWarning each); these close them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyspark import java_gateway, serializers
from pyspark.sql import DataFrame
from pyspark.sql.pandas import serializers as arrow_serializers

# PySpark's socket helpers carry no type hints.
_gateway: Any = java_gateway
_serializers: Any = serializers
_arrow: Any = arrow_serializers


def collect_arrow(frame: DataFrame) -> list[pa.RecordBatch]:
    """Every batch of `frame`'s result, in order (DataFrame._collect_as_arrow, closing)."""
    jframe: Any = frame._jdf
    port, secret, server = jframe.collectAsArrowToPython()
    sockfile, sock = _gateway.local_connect_and_auth(port, secret)
    try:
        sock.settimeout(None)  # a job takes as long as it takes
        results = list(_arrow.ArrowCollectSerializer().load_stream(sockfile))
    finally:
        sockfile.close()
        sock.close()
    server.getResult()  # raises the job's error, if it failed
    batches, order = results[:-1], results[-1]
    return [batches[i] for i in order]


def local_rows(frame: DataFrame) -> Iterator[Any]:
    """`frame`'s rows, one partition fetched at a time (DataFrame.toLocalIterator, closing);
    stopping early tells the JVM to stop."""
    jframe: Any = frame._jdf
    port, secret, server = jframe.toPythonIterator(False)
    sockfile, sock = _gateway.local_connect_and_auth(port, secret)
    serializer = _serializers.BatchedSerializer(_serializers.CPickleSerializer())
    status = 1
    items: Iterator[Any] = iter(())
    try:
        sock.settimeout(None)
        while status == 1:
            _serializers.write_int(1, sockfile)  # ask for the next partition
            sockfile.flush()
            status = _serializers.read_int(sockfile)  # 1: a partition follows, 0: done, -1: failed
            if status == 1:
                items = serializer.load_stream(sockfile)
                yield from items
            elif status == -1:
                server.getResult()
    finally:
        if status == 1:  # stopped early: finish the partition, then say stop
            try:
                for _ in items:
                    pass
                _serializers.write_int(0, sockfile)
                sockfile.flush()
            except OSError:
                pass
        sockfile.close()
        sock.close()


def collect_rows(frame: DataFrame) -> list[Any]:
    """Every Row of `frame`'s result (DataFrame.collect, closing its socket)."""
    jframe: Any = frame._jdf
    port, secret, server = jframe.collectToPython()
    sockfile, sock = _gateway.local_connect_and_auth(port, secret)
    try:
        sock.settimeout(None)
        serializer = _serializers.BatchedSerializer(_serializers.CPickleSerializer())
        rows = list(serializer.load_stream(sockfile))
    finally:
        sockfile.close()
        sock.close()
    server.getResult()
    return rows
