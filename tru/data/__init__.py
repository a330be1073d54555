"""Data: fetch, featurize, MMRec-format folders, splits, synthetic generator."""
