"""The offline side: reading sources and (later) point-in-time retrieval behind an OfflineEngine."""
