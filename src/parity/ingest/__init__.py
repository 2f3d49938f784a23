"""Ingestion: the push API (and, later, streaming workers) feeding the offline and online stores."""
