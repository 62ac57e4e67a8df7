"""Events: the schema, the append-only log and redaction. Imports nothing else of ours."""
