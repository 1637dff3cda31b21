"""Regulatory documents rendered from a run directory (imports ``validation`` and ``cxr_device``).

Planned here (issue #6): Jinja templates for the algorithm description and the validation
plan, their renderer, the traceability matrix and the SOUP list. Nothing is implemented yet.
"""
