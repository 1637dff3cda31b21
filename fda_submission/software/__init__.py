"""Software documentation generated from the repository, the run and the profile (FDA, "Content of
Premarket Submissions for Device Software Functions", June 2023).

Each module holds one kind of record and returns plain dicts and lists for the templates:
:mod:`.import_graph` (the real import graph and the runtime boundary), :mod:`.architecture_figure`
(the diagram drawn from it), :mod:`.srs` (requirements with their interfaces and traces),
:mod:`.sds` (one section per runtime module, from its source), :mod:`.level` (the documentation
level and its rationale from the risk file), :mod:`.practices` (how this repository develops and
tests), :mod:`.history` (version history from git), :mod:`.testing_summary` (counts by test level
from a JUnit report).
"""
