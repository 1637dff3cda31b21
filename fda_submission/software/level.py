"""The documentation level (Basic or Enhanced) and its rationale, from the profile and the risk file.

FDA's guidance asks for Enhanced documentation when a failure or flaw of the software could
present a hazardous situation with a probability of death or serious injury *before* risk
controls. The risk file rates each hazard's severity before its controls on a 1-5 scale; the
profile says which severity means death or serious injury (``software.serious_injury_severity``,
default 5). The level is the profile's ``software.documentation_level``, or, left null, Basic for
a CADt device (every study is still read: the device reorders a worklist) and Enhanced otherwise.
:func:`documentation_level` gives the level, where it comes from, the hazards behind the
rationale, and a problem when Basic is chosen although a hazard reaches the serious severity.
"""
from __future__ import annotations

from ..claims import claims
from ..completeness import todo

BASIC, ENHANCED = "basic", "enhanced"


def documentation_level(profile: dict, hazards: list[dict]) -> dict:
    """``{"level", "source", "recommended", "highest", "serious", "reaching", "rationale",
    "problems", "confirmation"}`` (plain data for the templates and the consistency check)."""
    software = profile["software"]
    claim = profile["claim"]["type"]
    declared = software["documentation_level"]
    level = declared or (BASIC if claim == "cadt" else ENHANCED)
    source = "profile: software.documentation_level" if declared else f"derived from the claim ({claims()[claim]['short']})"
    serious = software["serious_injury_severity"]
    highest = max((h["severity"] for h in hazards), default=0)
    reaching = [{"id": h["id"], "hazard": h["hazard"], "severity": h["severity"], "harm": h["harm"]}
                for h in hazards if h["severity"] >= serious]
    top = [{"id": h["id"], "hazard": h["hazard"], "harm": h["harm"]} for h in hazards if h["severity"] == highest]
    recommended = ENHANCED if reaching else BASIC
    if reaching:
        rationale = (f"{len(reaching)} hazard(s) of the risk file reach severity {serious} or more before their "
                     f"controls (death or serious injury on the file's scale): "
                     + "; ".join(f"{r['id']} {r['hazard']} (severity {r['severity']})" for r in reaching)
                     + ". The guidance then calls for the Enhanced level.")
    else:
        rationale = (f"No hazard of the risk file reaches severity {serious} (death or serious injury on the file's "
                     f"scale) before its controls; the highest is {highest}, "
                     f"for {', '.join(t['id'] + ' ' + t['hazard'] for t in top)}. The device is "
                     f"{claims()[claim]['name']}: its notification changes the order in which studies are read, and "
                     f"every study is still read by {profile['readers']}, so a failure delays a read rather than "
                     "acting on the patient. On the risk file's scale no failure before risk controls presents a probability of "
                     "death or serious injury, the condition under which the guidance asks for the Enhanced level; "
                     "the owner confirms this reading of the risk file (below).")
    problems = []
    if level == BASIC and reaching:
        problems.append(f"the documentation level is basic ({source}) but {len(reaching)} hazard(s) reach the serious "
                        f"severity {serious}: " + ", ".join(r["id"] for r in reaching))
    return {"level": level, "source": source, "recommended": recommended, "highest": highest, "serious": serious,
            "reaching": reaching, "rationale": rationale, "problems": problems,
            "confirmation": "confirmed by the owner"
            if software["documentation_level_confirmed"] else
            todo("software.documentation_level_confirmed", "the owner confirms the documentation level")}
