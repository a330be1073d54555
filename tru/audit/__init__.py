"""Audits of an erasure (docs: Audits and evidence): membership inference, the backdoor canary,
target-item exposure, parameter shift, and the gate that decides whether the unlearned
model is promoted."""
