"""Subcommands of ``cxr-device`` that live in ``cxr_device``: synth, cohort, eda, cache, train.

Each ``*_command`` adds its subparser and a handler; handlers turn arguments into settings,
call the library, and print a short report. No pipeline logic lives here.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .cli import EXIT_BAD_INPUT, EXIT_OK
from .cohort import CohortSettings, build_cohort, write_cohort
from .console import check_output_dir
from .eda import EDA_JSON, run_eda
from .filters import Filters
from .run_layout import EXCLUSIONS_CSV, ORPHANS_TXT, TRAIN_SUMMARY, default_cache_root
from .safe_text import terminal
from .synth import SynthSettings, generate

if TYPE_CHECKING:
    import pandas as pd

_FORMATTER = argparse.RawDescriptionHelpFormatter


def _csv_list(value: str) -> tuple[str, ...]:
    items = tuple(v.strip().upper() for v in value.split(",") if v.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list such as PA,AP")
    return items


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def _bad_input(command: str, headline: str, messages, listed_in: Path) -> int:
    """Print the first problems to stderr, say where all of them are, and return exit code 1."""
    print(f"cxr-device {command}: {headline}; first ones:", file=sys.stderr)
    for message in list(messages)[:5]:  # file names and CSV cells: no control characters reach the terminal
        print(f"  {terminal(message)}", file=sys.stderr)
    print(f"  all of them: {listed_in}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


# --- synth ---------------------------------------------------------------------------------
def synth_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth", formatter_class=_FORMATTER, help="write a synthetic NIH-format dataset (phantoms, not patients)",
        description="Write a synthetic dataset in the NIH ChestX-ray14 layout: Data_Entry_SYNTHETIC.csv\n"
        "(exact NIH columns), images_NNN/images/*.png chest phantoms (positives carry a faint\n"
        "regional opacity) and synthetic.json, the marker every later step records.\n"
        "Deterministic: the same settings give byte-identical files.",
    )
    p.add_argument("--out", required=True, type=Path, help="folder to write into")
    p.add_argument("--n-patients", type=int, default=100, help="number of patients (default 100; ~2.9 images each)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--image-size", type=int, default=256, help="phantom width and height in pixels (default 256)")
    p.add_argument("--prevalence", type=float, default=0.2, help="approximate share of pneumonia images (default 0.2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_synth)


def _synth(args: argparse.Namespace) -> int:
    settings = SynthSettings(n_patients=args.n_patients, seed=args.seed, image_size=args.image_size,
                             prevalence=args.prevalence)
    csv_path = generate(args.out, settings, progress=_progress(args))
    print(f"synthetic dataset (not patient data): {csv_path}  images under {args.out}/images_*/images/")
    return EXIT_OK


# --- cohort --------------------------------------------------------------------------------
COHORT_EPILOG = """\
examples:
  # NIH metadata with the images you have (NIH download layout or flat folders)
  cxr-device cohort --metadata Data_Entry_2017_v2020.csv.gz --images nih/images --out runs/nih/cohort
  # planning on metadata alone: all 112,120 rows, PA+AP adults
  cxr-device cohort --metadata Data_Entry_2017_v2020.csv.gz --metadata-only --min-age 18 --views PA,AP --out c
  # NIH official lists (test_list.txt is the test split; train_val is split by patient)
  cxr-device cohort --metadata ... --images ... --split official --train-val-list train_val_list.txt \\
      --test-list test_list.txt --out c
  # pediatric class folders, re-split by patient 70/15/15, 1,000 images per class
  cxr-device cohort --folders chest_xray/train --class-cap 1000 --out runs/peds/cohort

outputs: OUT/cohort.csv, OUT/summary.json, OUT/exclusions.csv (every excluded row and why)
exit code: 0 ok; 1 cohort written but some rows were invalid (see exclusions.csv); 2 unusable input
"""


def cohort_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cohort", formatter_class=_FORMATTER, epilog=COHORT_EPILOG,
        help="validate metadata, filter, and split by patient into cohort.csv + summary.json",
        description="Build a cohort: read NIH metadata (2020, 2017 and sample layouts) or class folders,\n"
        "validate every row, find the image files, filter by age/sex/view, and split by patient\n"
        "(no patient in two splits - proven in summary.json).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--metadata", metavar="CSV", help="NIH metadata CSV (.csv or .csv.gz)")
    src.add_argument("--folders", metavar="ROOT", help="class-folder dataset: ROOT/{NORMAL,PNEUMONIA} or ROOT/{train,val,test}/...")
    p.add_argument("--images", metavar="DIR", nargs="+", action="extend", default=[],
                   help="image root(s), searched recursively (NIH images_001/images/ layout or flat)")
    p.add_argument("--metadata-only", action="store_true", help="do not look for image files (EDA and planning)")
    g = p.add_argument_group("filters (inclusive)")
    g.add_argument("--min-age", type=float, metavar="A", help="minimum age in years")
    g.add_argument("--max-age", type=float, metavar="B", help="maximum age in years")
    g.add_argument("--sex", type=_csv_list, metavar="M,F", help="sexes to keep")
    g.add_argument("--views", type=_csv_list, metavar="PA,AP", help="view positions to keep")
    s = p.add_argument_group("split")
    s.add_argument("--split", choices=("patient", "official"), default="patient",
                   help="patient: seeded, stratified by patient (default); official: NIH lists or the dataset's own folders")
    s.add_argument("--val-fraction", type=float, default=0.15, metavar="F",
                   help="share of images for validation (with --split official: share of train_val) (default 0.15)")
    s.add_argument("--test-fraction", type=float, default=0.15, metavar="F", help="share of images for test (default 0.15)")
    s.add_argument("--train-val-list", metavar="F", help="NIH train_val_list.txt (with --split official)")
    s.add_argument("--test-list", metavar="F", help="NIH test_list.txt (with --split official)")
    s.add_argument("--class-cap", type=int, metavar="N", help="keep at most N images per class (seeded)")
    s.add_argument("--balance-train", type=float, metavar="R", help="undersample training negatives to R per positive")
    s.add_argument("--val-prevalence", type=float, metavar="P", help="subsample validation negatives to prevalence P")
    s.add_argument("--seed", type=int, default=0, help="seed for every random choice (default 0)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(handler=_cohort)


def _cohort(args: argparse.Namespace) -> int:
    check_output_dir(args.out)  # a bad --out is refused before the work, not after
    settings = CohortSettings(
        metadata=args.metadata, folders=args.folders, images=tuple(args.images), metadata_only=args.metadata_only,
        filters=Filters(min_age=args.min_age, max_age=args.max_age, sexes=args.sex, views=args.views),
        split=args.split,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, train_val_list=args.train_val_list,
        test_list=args.test_list, class_cap=args.class_cap, balance_train=args.balance_train,
        val_prevalence=args.val_prevalence, seed=args.seed,
    )
    cohort = build_cohort(settings)
    out = write_cohort(cohort, args.out)
    s = cohort.summary
    tag = " [SYNTHETIC]" if s["synthetic"] else ""
    print(f"cohort{tag}: {s['n_images']:,} images, {s['n_patients']:,} patients, "
          f"{s['n_positive']:,} pneumonia ({_pct(s['prevalence'])})")
    for name, split in s["splits"].items():
        print(f"  {name:<5} {split['n_images']:>7,} images {split['n_patients']:>6,} patients "
              f"{split['n_positive']:>5,} positive ({_pct(split['prevalence'])})")
    print(f"  patients shared between splits: none (proof in {out / 'summary.json'})")
    if s["exclusions"]:
        print(f"  excluded {s['n_excluded']:,} rows: " + ", ".join(f"{k} {v:,}" for k, v in s["exclusions"].items()))
    if s["images"].get("n_images_without_row"):
        print(f"  {s['images']['n_images_without_row']:,} image files have no metadata row "
              f"(listed in {out / ORPHANS_TXT})")
    print(f"wrote {out / 'cohort.csv'}")
    if cohort.n_invalid:
        details = cohort.exclusions.frame(invalid_only=True)["detail"]
        return _bad_input("cohort", f"{cohort.n_invalid:,} invalid row(s) excluded", details, out / EXCLUSIONS_CSV)
    return EXIT_OK


# --- eda -----------------------------------------------------------------------------------
def eda_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eda", formatter_class=_FORMATTER, help="exploratory analysis of a cohort: eda.json + figures",
        description="Describe a cohort: prevalence by split, age/sex/view by class, findings that co-occur\n"
        "with pneumonia, findings per image, images per patient, and pixel-intensity histograms of\n"
        "a seeded sample of images. Figure names are stable; the submission documents use them.",
    )
    p.add_argument("--cohort", required=True, type=Path, help="folder written by `cxr-device cohort`")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--pixel-sample", type=int, default=100, metavar="N",
                   help="images per class decoded for intensity histograms (default 100; 0 = skip)")
    p.add_argument("--seed", type=int, default=0, help="seed for the pixel sample (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_eda)


def _eda(args: argparse.Namespace) -> int:
    report = run_eda(args.cohort, args.out, args.pixel_sample, args.seed, progress=_progress(args))
    print(f"eda{' [SYNTHETIC]' if report['synthetic'] else ''}: {report['n_images']:,} images -> {args.out / EDA_JSON}")
    for key, name in report["figures"].items():
        print(f"  figure {key:<20} {args.out / name}")
    for key, why in report["skipped"].items():
        print(f"  skipped {key:<19} {why}")
    if report["n_unreadable"]:
        return _bad_input("eda", f"{report['n_unreadable']} sampled image(s) could not be read",
                          report["pixel_intensity"]["unreadable"], args.out / EDA_JSON)
    return EXIT_OK


# --- cache ---------------------------------------------------------------------------------
def cache_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache", formatter_class=_FORMATTER, help="decode and resize every cohort image once into a memory-mapped cache",
        description="Build (or check) the decoded-pixel cache of a cohort: every image decoded once, resized to the\n"
        "training size plus a crop margin, stored as uint8 in a memory-mapped array. `train` does this\n"
        "automatically on first use; run it ahead to pay the decoding cost on many cores. A cache is keyed\n"
        "on the preprocessing and the image paths, and rebuilt when any file's size or time changes.",
    )
    p.add_argument("--cohort", required=True, type=Path, help="folder written by `cxr-device cohort`")
    p.add_argument("--image-size", type=int, default=224, help="training input size (default 224)")
    p.add_argument("--cache-dir", type=Path, help="cache root (default: <cohort>/../cache)")
    p.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cache)


def _cache(args: argparse.Namespace) -> int:
    # torch-dependent modules are imported here, not at the top, so that commands that do not
    # need torch (cohort, eda, check-dicom) do not pay its import time
    from .cache import INDEX, open_cache
    from .cohort import read_cohort
    from .preprocessing import Preprocessing
    from .splits import SPLITS

    frame, _ = read_cohort(args.cohort)
    root = args.cache_dir or default_cache_root(args.cohort)
    cache = open_cache(frame, Preprocessing(image_size=args.image_size), root, args.workers, _progress(args))
    print(f"cache {cache.status}: {len(cache.index):,} images at {cache.pixels.shape[1]} px in {cache.folder}")
    if len(cache.failed):
        return _bad_input("cache", f"{len(cache.failed)} image(s) could not be decoded; training and evaluation "
                          "will leave them out", _left_out_lines(cache.left_out(frame, SPLITS)), cache.folder / INDEX)
    return EXIT_OK


# --- train ---------------------------------------------------------------------------------
TRAIN_EPILOG = """\
examples:
  cxr-device train --cohort runs/peds/cohort --out runs/peds --arch densenet121 --weights imagenet
  cxr-device train --cohort runs/nih/cohort --out runs/nih --config configs/train.yaml --epochs 20
  torchrun --nproc_per_node 4 -m cxr_device train --cohort ... --out ...      (multi-GPU, DDP)
  cxr-device train --cohort ... --out runs/peds --resume                     (continue from last.pt)

weights: none (random init, seeded) | imagenet (from torchvision's cache only; nothing is downloaded:
if the file is missing the command says which file to place where) | PATH (.safetensors/.pt/.pth)
outputs: RUN/model/ history.csv, training_curves.png, config.yaml, layers.json, train_summary.json,
         best.pt, last.pt
"""


def train_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", formatter_class=_FORMATTER, epilog=TRAIN_EPILOG,
        help="train the pneumonia-vs-rest classifier on a cohort (GPU when available)",
        description="Train on the cohort's train split, validate on its val split, early-stop on validation AUROC.\n"
        "Settings come from --config YAML (keys as in model/config.yaml of any run); flags override it.",
    )
    p.add_argument("--cohort", required=True, type=Path, help="folder written by `cxr-device cohort`")
    p.add_argument("--out", required=True, type=Path, help="run folder; the model goes to OUT/model")
    p.add_argument("--config", type=Path, help="training YAML (defaults below otherwise)")
    g = p.add_argument_group("model")
    g.add_argument("--arch", dest="model.arch",
                   help="densenet121 (default) | vgg16 | resnet18 | resnet50 | efficientnet_lite0 | efficientnet_lite1 | "
                        "efficientnet_lite2 | small_cnn")
    g.add_argument("--weights", dest="model.weights",
                   help="none (default) | imagenet (torchvision's cache; efficientnet_lite0-2: the [pretrained] extra) | PATH")
    g.add_argument("--freeze", dest="model.freeze", help="none (default) | backbone | name of the last block to freeze")
    g.add_argument("--head-hidden", dest="model.head_hidden", type=int, help="hidden units of an added dense layer (0)")
    g.add_argument("--dropout", dest="model.dropout", type=float, help="dropout in the added head (0)")
    t = p.add_argument_group("training")
    t.add_argument("--image-size", dest="image_size", type=int, help="input size in pixels (224)")
    t.add_argument("--epochs", type=int, help="maximum epochs (10)")
    t.add_argument("--batch-size", dest="batch_size", type=int, help="batch size per process (32)")
    t.add_argument("--lr", type=float, help="learning rate (1e-4)")
    t.add_argument("--optimizer", choices=("adamw", "sgd"), help="adamw (default) | sgd")
    t.add_argument("--weight-decay", dest="weight_decay", type=float, help="decoupled weight decay (1e-4)")
    t.add_argument("--schedule", choices=("cosine", "warmup_cosine", "none"),
                   help="cosine per epoch (default) | warmup_cosine per step | none")
    t.add_argument("--warmup-epochs", dest="warmup_epochs", type=float, help="linear warm-up of warmup_cosine (0)")
    t.add_argument("--label-smoothing", dest="label_smoothing", type=float,
                   help="targets y(1-e)+e/2 (0): keeps the logits of a nearly separable set finite")
    t.add_argument("--ema-decay", dest="ema_decay", type=float,
                   help="validate and save an exponential moving average of the weights (0 = off; e.g. 0.998)")
    t.add_argument("--patience", type=int, help="epochs without validation-AUROC gain before stopping (3)")
    t.add_argument("--imbalance", choices=("none", "weighted_loss", "balanced_sampler"),
                   help="class-imbalance handling (weighted_loss)")
    t.add_argument("--device", choices=("auto", "cuda", "cpu"), help="auto (default): CUDA when available")
    t.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 mixed precision on CUDA (default on)")
    t.add_argument("--cpu-bf16", dest="cpu_bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast and channels-last in the CPU's training steps: about 2x faster where the "
                        "CPU has AVX512-BF16 or AMX; changes the trained weights (default off; scores stay 32-bit)")
    t.add_argument("--workers", type=int, help="data-loader and cache processes (2)")
    t.add_argument("--seed", type=int, help="seed (0)")
    t.add_argument("--cache-dir", dest="cache_dir", help="decoded-pixel cache root (<cohort>/../cache)")
    t.add_argument("--max-steps-per-epoch", dest="max_steps_per_epoch", type=int,
                   help="cap the steps of each epoch (smoke tests)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/model/last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from .train_config import (
        load_config,  # torch-dependent: imported on use (see _cache)
    )
    from .training import train

    keys = ["model.arch", "model.weights", "model.freeze", "model.head_hidden", "model.dropout", "image_size",
            "epochs", "batch_size", "lr", "optimizer", "weight_decay", "schedule", "warmup_epochs", "label_smoothing",
            "ema_decay", "patience", "imbalance", "device", "amp", "cpu_bf16", "workers", "seed", "cache_dir",
            "max_steps_per_epoch"]
    config = load_config(args.config).with_overrides(**{k: getattr(args, k) for k in keys})
    result = train(args.cohort, args.out, config, resume=args.resume, progress=_progress(args))
    if int(os.environ.get("RANK", 0)) != 0:  # under torchrun only rank 0 reports
        return EXIT_OK
    h = result.history
    best = h[h["epoch"] == result.best_epoch].iloc[0]
    print(f"trained {config.model.arch} at {config.image_size} px for {len(h)} epoch(s)"
          f"{' (stopped early)' if result.stopped_early else ''}: best epoch {result.best_epoch + 1}, "
          f"validation AUROC {best['val_auroc']:.4f}, AP {best['val_ap']:.4f}; "
          f"{h['images_per_s'].median():.0f} images/s")
    print(f"  model    {result.model_dir}  (history.csv, training_curves.png, best.pt, last.pt)")
    if result.n_unreadable:
        counts = result.unreadable["split"].value_counts()
        where = ", ".join(f"{split} {int(counts.get(split, 0))}" for split in ("train", "val", "test"))
        return _bad_input("train", f"{result.n_unreadable} image(s) could not be decoded ({where}); those of train "
                          "and val were left out of training, those of test will be left out by evaluate",
                          _left_out_lines(result.unreadable), result.model_dir / TRAIN_SUMMARY)
    return EXIT_OK


def _left_out_lines(left_out: pd.DataFrame) -> list[str]:
    """One line per image left out: ``image_id (split): reason``."""
    return [f"{r.image_id} ({r.split}): {r.reason}" for r in left_out.itertuples(index=False)]
