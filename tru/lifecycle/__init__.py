"""The data lifecycle around an erasure: where the erased subjects' data still lives
(`tru.lifecycle.scan`, `tru scan`), the suppression list that keeps them out of every new
data generation (`suppression`) and its application to the fetched source and the dataset
(`redact`)."""
