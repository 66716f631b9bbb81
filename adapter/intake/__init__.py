"""Intake: where procedures come from (offline replay now; webhook and polling later), each
normalised into patient-days for ``adapter.pipeline``."""
