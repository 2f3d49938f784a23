"""The one SparkSession of a process for the Spark offline engine: defaults, user conf, and the
errors when PySpark or Java is missing. Imports pyspark only inside `spark_session`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from parity.errors import BackendNotInstalled, ConfigError, SparkUnavailable
from parity.repo.config import OfflineConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

INSTALL = "pip install 'parity[spark]'"
JAVA = "Java 17 (a JDK or JRE on PATH, or JAVA_HOME pointing at it)"
_REBASE_MODES = (
    "datetimeRebaseModeInRead",
    "datetimeRebaseModeInWrite",
    "int96RebaseModeInRead",
    "int96RebaseModeInWrite",
)
_lock = threading.Lock()
_session: SparkSession | None = None


def default_conf(master: str) -> dict[str, str]:
    """Settings Parity gives every session unless `offline.conf` overrides them (docs/scale.md)."""
    conf = {
        # Parity compares instants in UTC; Spark would otherwise render and parse in local time.
        "spark.sql.session.timeZone": "UTC",
        # Arrow moves entity frames in and results out without per-row Python objects.
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Parquet written by to_parquet gets int64 microsecond timestamps, not legacy INT96.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # The web UI binds a port per session; off unless asked for.
        "spark.ui.enabled": "false",
        # The console progress bar writes over the CLI's own output and logs.
        "spark.ui.showConsoleProgress": "false",
        # Spark 3.5 has no nanosecond time type and refuses TIMESTAMP(NANOS) Parquet (pandas'
        # default); read as longs, the engine floors them to µs (spark_frames.read_parquet).
        "spark.sql.legacy.parquet.nanosAsLong": "true",
        # pyarrow, pandas, DuckDB and Spark 3 write proleptic Gregorian times; Spark 3.5 would
        # refuse times before 1900 (READ_ANCIENT_DATETIME) in case a file came from Spark 2.x or
        # Hive's hybrid calendar. CORRECTED reads and writes the values as they are.
        **{f"spark.sql.parquet.{mode}": "CORRECTED" for mode in _REBASE_MODES},
    }
    logging = _log_config()
    if logging is not None:
        # Spark's console log (a banner, WARNs, a Java stack trace per failed task) would print
        # before Parity's one-line error; parity's log4j2 file sends it nowhere. Your own
        # $SPARK_CONF_DIR/log4j2.properties, or this setting in offline.conf, takes precedence.
        conf["spark.driver.extraJavaOptions"] = f'-Dlog4j2.configurationFile="{logging}"'
    if master.startswith("local"):
        # Spark's default of 200 shuffle partitions suits a cluster; on one machine each join
        # or sort would run 200 mostly empty tasks. Twice the local cores keeps both busy.
        conf["spark.sql.shuffle.partitions"] = str(2 * _local_cores(master))
        # A laptop's hostname may not resolve; local sessions only talk to themselves.
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    return conf


def _log_config() -> str | None:
    """Parity's log4j2 file for the driver JVM, or None when the user has one of their own in
    $SPARK_CONF_DIR (or $SPARK_HOME/conf), which Spark then reads."""
    for folder in (os.environ.get("SPARK_CONF_DIR"), _spark_home_conf()):
        if folder and (Path(folder) / "log4j2.properties").is_file():
            return None
    return str(Path(__file__).with_name("spark_log4j2.properties"))


def _spark_home_conf() -> str | None:
    home = os.environ.get("SPARK_HOME")
    return str(Path(home) / "conf") if home else None


def _local_cores(master: str) -> int:
    """The N of local[N] (local[*] and local: the machine's cores; local is one)."""
    inside = master.partition("[")[2].partition("]")[0].partition(",")[0].strip()
    if master.strip() == "local":
        return 1
    if inside in ("", "*"):
        return os.cpu_count() or 2
    return int(inside) if inside.isdigit() else 2


def require_pyspark() -> None:
    """BackendNotInstalled, naming the extra and Java, when PySpark cannot be imported."""
    try:
        import pyspark.sql  # noqa: F401
    except ImportError:
        raise BackendNotInstalled(
            f"offline.type 'spark' needs PySpark and {JAVA}: run {INSTALL}"
        ) from None


def spark_session(config: OfflineConfig) -> SparkSession:
    """The process's SparkSession, started on first use with `config`'s master and conf (a
    session already running is reused as it is: Spark allows one per process)."""
    require_pyspark()
    from pyspark.sql import SparkSession

    global _session
    with _lock:
        if _session is not None and _session.sparkContext._jsc is not None:  # not stopped
            return _session
        active = SparkSession.getActiveSession()
        if active is not None:
            _session = active
            return active
        _check_java()
        # Python workers must run this interpreter (the one with Parity and pyarrow installed).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.master(config.master).appName("parity")
        for key, value in {**default_conf(config.master), **config.conf}.items():
            builder = builder.config(key, value)
        try:
            session = builder.getOrCreate()
        except Exception as error:  # the JVM gateway failed to start: Java is the usual cause
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise SparkUnavailable(
                f"Spark could not start ({first}); it needs {JAVA} and {INSTALL}"
            ) from None
        _check_settings(session, config)
        _session = session
        return session


def _check_settings(session: SparkSession, config: OfflineConfig) -> None:
    """Spark checks SQL settings only when a session first uses them (later, as an error
    about whatever ran first): use them now, and refuse one Spark refuses as a ConfigError
    naming it. The broken session is stopped, so a corrected config can start another."""
    try:
        session.conf.get("spark.sql.session.timeZone")
    except Exception as error:
        text = str(error)
        session.stop()
        named = [key for key in config.conf if key in text]
        cause = next(
            (line.split(":", 1)[1].strip() for line in text.splitlines() if "Caused by:" in line),
            (text.strip().splitlines() or [type(error).__name__])[0],
        )
        which = ", ".join(f"offline.conf '{k}'" for k in named) or "a setting in offline.conf"
        raise ConfigError(
            f"Spark refuses {which}: {cause.split(': ', 1)[-1]}; fix it in parity.yaml"
        ) from None


def java_executable() -> str | None:
    """The java that PySpark will run: $JAVA_HOME/bin/java if JAVA_HOME is set, else PATH's."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return str(candidate) if candidate.is_file() else None
    return shutil.which("java")


def _check_java() -> None:
    java = java_executable()
    where = f"JAVA_HOME={os.environ['JAVA_HOME']}" if os.environ.get("JAVA_HOME") else "PATH"
    if java is None:
        raise SparkUnavailable(
            f"offline.type 'spark' needs {JAVA}; no java found via {where}. Install Java 17 "
            f"and {INSTALL}"
        )
    try:
        subprocess.run([java, "-version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        raise SparkUnavailable(
            f"offline.type 'spark' needs {JAVA}; {java} (via {where}) does not run "
            f"({type(error).__name__}). Install Java 17 and {INSTALL}"
        ) from None
