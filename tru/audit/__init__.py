"""Audits of an erasure (DESIGN.md section 6): membership inference, the backdoor canary,
target-item exposure, parameter shift, and the gate that decides whether the unlearned
model is promoted."""
