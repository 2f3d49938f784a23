"""The online side: the OnlineStore protocol, key/value encoding, SQLite and Redis stores."""
