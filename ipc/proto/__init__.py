"""Typed service protocols (the seeds' ron-proto): attrs request/reply classes per service, the
codec that puts them in OAP/1 frames, and the project's strict structuring rules (convert)."""
