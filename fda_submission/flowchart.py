"""The algorithm flowchart, drawn from the locked bundle (rules, preprocessing, model, threshold)."""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch


def draw_flowchart(device: dict, rule_ids: list[str], path: Path) -> Path:
    """DICOM -> header checks -> preprocessing -> CNN -> threshold -> decision, with the refusal branch."""
    pre, threshold = device["preprocessing"], device["threshold"]
    arch = device["architecture"]
    steps = [
        ("Input", "DICOM file (PNG/JPEG only when explicitly allowed)"),
        ("DICOM header checks", f"{len(rule_ids)} rules from input_rules.yaml, e.g.\n"
         + ", ".join(rule_ids[:4]) + (", ..." if len(rule_ids) > 4 else "")),
        ("Pixel preprocessing", "decode, modality LUT, VOI window, MONOCHROME1 inversion;\n"
         f"resize to {pre['stored_size']} px, centre crop {pre['image_size']} px, (x - {pre['mean']}) / {pre['std']}"),
        ("CNN", f"{arch['architecture']}, 1 input channel, {arch['parameters']['total']:,} parameters;\n"
         "one logit -> sigmoid probability of pneumonia"),
        ("Threshold", f"probability >= {threshold['value']:.4g} ({threshold['rule']}, chosen on validation)"),
        ("Output", "pneumonia / no pneumonia, with the probability and the threshold\n"
         "(optional Grad-CAM overlay: an aid to interpretation, not a diagnosis)"),
    ]
    fig = Figure(figsize=(10, 10))
    ax = fig.subplots()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, len(steps) * 1.5)
    ax.axis("off")
    tops = []
    for i, (title, body) in enumerate(steps):
        y = (len(steps) - 1 - i) * 1.5 + 0.2
        colour = "#fdebd0" if i == 1 else "#d6eaf8" if i < len(steps) - 1 else "#d5f5e3"
        ax.add_patch(FancyBboxPatch((0.3, y), 6.4, 1.05, boxstyle="round,pad=0.05", facecolor=colour,
                                    edgecolor="#34495e"))
        ax.text(0.5, y + 0.82, title, fontsize=13, fontweight="bold", va="center")
        ax.text(0.5, y + 0.36, body, fontsize=9.5, va="center")
        tops.append(y)
        if i:
            ax.annotate("", xy=(3.5, y + 1.1), xytext=(3.5, tops[i - 1] - 0.05),
                        arrowprops={"arrowstyle": "->", "color": "#34495e"})
    y = tops[1]
    ax.add_patch(FancyBboxPatch((7.3, y - 0.25), 2.6, 1.3, boxstyle="round,pad=0.05", facecolor="#fadbd8",
                                edgecolor="#943126"))
    ax.text(7.45, y + 0.82, "Refusal", fontsize=13, fontweight="bold", va="center")
    ax.text(7.45, y + 0.15, "each failing attribute,\nfound vs expected;\nno probability", fontsize=9, va="center")
    ax.annotate("", xy=(7.3, y + 0.82), xytext=(6.75, y + 0.82), arrowprops={"arrowstyle": "->", "color": "#943126"})
    ax.text(7.02, y + 1.25, "fails an error rule", fontsize=9, ha="center", color="#943126")
    fig.savefig(path, dpi=130, bbox_inches="tight")
    return path
