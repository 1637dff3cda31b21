"""The algorithm flowchart, drawn from the locked bundle (rules, preprocessing, model, calibration, threshold).

Drawn in the figures' one style (:mod:`cxr_device.figure_style`) at the text width it is placed
at, so the box text prints at 8 pt and the titles at 9 pt; PNG and the SVG beside it.
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.patches import FancyBboxPatch

from cxr_device.figure_style import FULL_WIDTH, new_figure, save, styled

WIDTH, HEIGHT = FULL_WIDTH, 5.2  # inches


def flowchart_steps(device: dict, rule_ids: list[str]) -> list[tuple[str, str]]:
    """(title, text) of each box, from the bundle's device.json and rule ids."""
    pre, threshold = device["preprocessing"], device["threshold"]
    arch = device["architecture"]
    calibration = device.get("calibration") or {"method": "none"}
    scored = ("calibrated: sigmoid(slope x logit + offset), " f"{calibration['method']} slope {calibration['slope']:.3g}, "
              f"offset {calibration['offset']:.3g}") if calibration["method"] != "none" else "sigmoid of the logit"
    return [
        ("Input", "DICOM file (PNG/JPEG only when explicitly allowed)"),
        ("DICOM header checks", f"{len(rule_ids)} rules of input_rules.yaml, e.g.\n"
         + ", ".join(rule_ids[:3]) + (", ..." if len(rule_ids) > 3 else "")),
        ("Pixel preprocessing", "decode, modality LUT, VOI window, MONOCHROME1 inversion;\n"
         f"resize to {pre['stored_size']} px, centre crop {pre['image_size']} px, (x - {pre['mean']}) / {pre['std']}"),
        ("CNN", f"{arch['architecture']}, 1 input channel, {arch['parameters']['total']:,} parameters; one logit"),
        ("Probability", scored),
        ("Threshold", f"pneumonia when probability >= {threshold['value']:.4g} ({threshold['rule']}, chosen on validation)"),
        ("Output", "pneumonia / no pneumonia, with the probability and the threshold\n"
         "(optional Grad-CAM overlay: an aid to interpretation, not a diagnosis)"),
    ]


@styled
def draw_flowchart(device: dict, rule_ids: list[str], path: Path) -> Path:
    """DICOM -> header checks -> preprocessing -> CNN -> probability -> threshold -> decision,
    with the refusal branch; written to ``path`` (PNG, and the SVG beside it; deterministic)."""
    steps = flowchart_steps(device, rule_ids)
    pitch, box = 1.0, 0.78
    fig = new_figure(WIDTH, HEIGHT, layout=None)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.05, len(steps) * pitch)
    ax.axis("off")
    tops = []
    for i, (title, body) in enumerate(steps):
        y = (len(steps) - 1 - i) * pitch + 0.08
        colour = "#fdebd0" if i == 1 else "#d6eaf8" if i < len(steps) - 1 else "#d5f5e3"
        ax.add_patch(FancyBboxPatch((0.15, y), 6.9, box, boxstyle="round,pad=0.03", facecolor=colour,
                                    edgecolor="#34495e"))
        ax.text(0.3, y + box - 0.17, title, fontsize=9, fontweight="bold", va="center")
        ax.text(0.3, y + 0.27, body, fontsize=8, va="center", linespacing=1.25)
        tops.append(y)
        if i:
            ax.annotate("", xy=(3.6, y + box + 0.03), xytext=(3.6, tops[i - 1] - 0.03),
                        arrowprops={"arrowstyle": "->", "color": "#34495e"})
    y = tops[1]
    ax.add_patch(FancyBboxPatch((7.55, y - 0.35), 2.35, box + 0.35, boxstyle="round,pad=0.03", facecolor="#fadbd8",
                                edgecolor="#943126"))
    ax.text(7.68, y + box - 0.17, "Refusal", fontsize=9, fontweight="bold", va="center")
    ax.text(7.68, y + 0.05, "each failing attribute:\nfound vs expected;\nno probability", fontsize=8, va="center",
            linespacing=1.25)
    ax.annotate("", xy=(7.55, y + box - 0.17), xytext=(7.1, y + box - 0.17),
                arrowprops={"arrowstyle": "->", "color": "#943126"})
    ax.text(7.3, y + box + 0.08, "fails an error rule", fontsize=7.5, ha="center", color="#943126")
    return save(fig, path)
