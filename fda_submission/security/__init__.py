"""Cybersecurity documentation generated from data kept in the repository and from the installed
runtime (FDA, "Cybersecurity in Medical Devices: Quality System Considerations and Content of
Premarket Submissions", section 524B of the FD&C Act).

:mod:`.cvss` (CVSS v3.1 base scores), :mod:`.threat_model` (threats, controls, their requirements
and tests; ``threats.yaml``), :mod:`.views` (security architecture views; ``views.yaml``),
:mod:`.sbom` (the CycloneDX SBOM of what ``predict``, ``assess`` and ``serve`` load, measured by
importing them; ``support.yaml``), :mod:`.vulnerabilities` (known vulnerabilities from pip-audit),
:mod:`.testing` (security tests from the JUnit report), :mod:`.labeling` (security labeling from
the command line and the node's settings).
"""
