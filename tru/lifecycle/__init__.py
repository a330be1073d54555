"""The data lifecycle around an erasure: where the erased subjects' data still lives
(`tru.lifecycle.scan`, `tru scan`). Redacting and purging those copies build on the scan."""
