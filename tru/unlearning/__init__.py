"""Unlearning: the reverse-repair loop, the TRU mechanisms and baselines, and the shared
probes (reverse loss, gradient energies) that both the component map and TRU use."""
