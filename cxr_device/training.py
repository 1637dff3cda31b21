"""Train the device's classifier on a cohort: ``RUN/model/`` holds everything it produced.

* AdamW (or SGD), cosine schedule per epoch, BCE on one logit; class imbalance by weighted
  loss or a balanced sampler; early stopping on validation AUROC (validation loss when the
  validation split has one class) with patience; ``best.pt`` and ``last.pt`` checkpoints.
* CUDA: bf16 autocast where supported, channels_last; peak memory and images/s logged.
* CPU: with ``cpu_bf16``, bf16 autocast and channels_last in the training steps (about twice as
  fast where the CPU has AVX512-BF16 or AMX; docs/benchmarks.md); scores stay 32-bit.
* Reproducible: every epoch reseeds torch, the sampler and the loader workers from
  ``seed * 1000 + epoch``, so a resumed run repeats the uninterrupted one exactly.
* Multi-GPU: under ``torchrun --nproc_per_node N`` the same command trains with
  DistributedDataParallel and a DistributedSampler; rank 0 alone validates and writes files.
* Divergence: the first step whose loss is NaN or infinite stops the run with
  :class:`TrainingDiverged` (epoch, step, learning rate); that epoch is never saved.

Outputs (``RUN/model/``): ``history.csv`` (epoch, train_loss, val_loss, val_auroc, val_ap, lr,
seconds, images_per_s, peak_memory_gb), ``training_curves.png`` (and ``.svg``), ``config.yaml`` (resolved),
``layers.json`` (frozen / fine-tuned / added), ``train_summary.json``, ``best.pt``, ``last.pt``.
An image that cannot be decoded is left out of training and listed in ``train_summary.json``
(``left_out``: train and val; ``cache.unreadable``: every split) with its split and reason.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import yaml
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset
from tqdm import tqdm

from .cache import LEFT_OUT_COLUMNS, open_cache
from .cohort import read_cohort
from .data import CachedImages, balanced_sampler, positive_weight
from .errors import CxrDeviceError
from .figure_style import FULL_WIDTH, PALETTE, new_figure, save, styled
from .findings import TARGET
from .hashing import sha256_file
from .models import DeviceModel, build_model
from .provenance import producer
from .recipe import (
    BCELoss,
    WeightAverage,
    make_scheduler,
    per_step_schedule,
    steps_per_epoch,
)
from .run_layout import (
    BEST,
    COHORT_CSV,
    LAST,
    TRAINING_CURVES,
    RunLayout,
    default_cache_root,
)
from .runtime.calibration import sigmoid
from .splits import SPLITS
from .train_config import TrainConfig, load_config

#: On a GPU the loss is checked for NaN or infinity every this many steps (a check synchronises).
DIVERGENCE_CHECK_STEPS = 20
#: The splits training reads; an image of these that cannot be decoded is left out of training.
TRAINING_SPLITS = ("train", "val")
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_auroc", "val_ap", "lr", "seconds", "images_per_s",
                   "peak_memory_gb"]


class TrainingDiverged(CxrDeviceError):
    """The loss became NaN or infinite: the run stops at once, saying where and at which learning rate."""


@dataclass
class TrainResult:
    """Where the run is and how it ended."""

    model_dir: Path
    history: pd.DataFrame
    best_epoch: int
    stopped_early: bool
    unreadable: pd.DataFrame  # images of any split that could not be decoded: image_id, split, reason

    @property
    def n_unreadable(self) -> int:
        """Images of any split that could not be decoded."""
        return len(self.unreadable)

    @property
    def left_out(self) -> pd.DataFrame:
        """The unreadable images of the train and val splits: left out of training."""
        return self.unreadable[self.unreadable["split"].isin(TRAINING_SPLITS)]


# --- set-up --------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise CxrDeviceError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    return torch.device("cuda", local_rank)


def mixed_precision(device: torch.device, config: TrainConfig) -> str:
    """The arithmetic of the training steps: ``bf16`` or ``fp16`` (a GPU without bf16) autocast on
    CUDA with ``amp``; ``bf16`` on the CPU with ``cpu_bf16``; else ``off`` (32-bit)."""
    if device.type == "cuda":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if config.amp else "off"
    return "bf16" if config.cpu_bf16 else "off"


def _channels_last(device: torch.device, config: TrainConfig) -> bool:
    """Channels-last memory for the training steps: always on CUDA; on the CPU with ``cpu_bf16``
    (where oneDNN's fast kernels are)."""
    return device.type == "cuda" or config.cpu_bf16


def _autocast(device: torch.device, config: TrainConfig, training: bool = False):
    """Autocast for a training step (``training``) or a prediction. On the CPU only training
    steps are in bf16: every score, the validation's too, is 32-bit as the locked device computes it."""
    precision = mixed_precision(device, config)
    if precision == "off" or (device.type == "cpu" and not training):
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


# --- the loop ------------------------------------------------------------------------------
def train(cohort_dir: str | Path, run_dir: str | Path, config: TrainConfig, resume: bool = False,
          progress: bool = True) -> TrainResult:
    """Train on ``cohort_dir``'s train split, validate on its val split, write ``run_dir/model``."""
    config.validate()
    rank, world, local_rank = _distributed()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() and config.device != "cpu" else "gloo")
    if world > 1 and config.imbalance == "balanced_sampler":
        raise CxrDeviceError("imbalance balanced_sampler is not available with several processes; use weighted_loss")
    device = resolve_device(config.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    main = rank == 0
    layout = RunLayout(run_dir)
    model_dir, last_path = layout.model, layout.checkpoint(LAST)
    if main:
        model_dir.mkdir(parents=True, exist_ok=True)
        if last_path.exists() and not resume:
            raise CxrDeviceError(f"{model_dir} already holds a training run; use --resume to continue it "
                                 "or choose another --out")

    frame, _ = read_cohort(cohort_dir)
    pre = config.preprocessing
    cache_root = Path(config.cache_dir) if config.cache_dir else default_cache_root(cohort_dir)
    if not main:
        dist.barrier()  # rank 0 builds the cache first
    cache = open_cache(frame, pre, cache_root, config.workers, progress and main)  # test too, for evaluate
    if main and world > 1:
        dist.barrier()
    unreadable = cache.left_out(frame, SPLITS)  # test too: listed here, left out by evaluate
    splits = {s: frame[(frame["split"] == s) & ~frame["image_id"].isin(unreadable["image_id"])]
              for s in TRAINING_SPLITS}
    for name, part in splits.items():
        if part.empty:
            raise CxrDeviceError(f"the cohort's {name} split has no readable images")
    train_labels = splits["train"][TARGET].to_numpy()
    train_set = CachedImages(cache.pixels, cache.rows(splits["train"]["image_id"]), train_labels, pre,
                             config.augmentation)
    val_set = CachedImages(cache.pixels, cache.rows(splits["val"]["image_id"]), splits["val"][TARGET].to_numpy(), pre)

    seed_everything(config.seed)
    model = build_model(config.model).to(device)
    if _channels_last(device, config):
        model = model.to(memory_format=torch.channels_last)
    net: nn.Module = nn.parallel.DistributedDataParallel(
        model, device_ids=[local_rank] if device.type == "cuda" else None) if world > 1 else model
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise CxrDeviceError("every layer is frozen: nothing to train (choose a smaller --freeze)")
    optimizer = (torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
                 if config.optimizer == "adamw" else
                 torch.optim.SGD(params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay))
    scheduler = make_scheduler(optimizer, config, steps_per_epoch(len(train_set), config, world))
    per_step = per_step_schedule(config)
    pos_weight = torch.tensor(positive_weight(train_labels) if config.imbalance == "weighted_loss" else 1.0,
                              device=device)
    loss_fn = BCELoss(pos_weight, config.label_smoothing)
    average = WeightAverage(model, config.ema_decay) if config.ema_decay else None
    scored = average.module if average else model  # the weights validated and saved as best.pt

    def after_step() -> None:
        if per_step:
            scheduler.step()
        if average:
            average.update(model)

    history: list[dict] = []
    start_epoch, best_score, best_epoch, bad_epochs = 0, -math.inf, 0, 0
    if resume and last_path.exists():
        state = read_checkpoint(last_path, device, RESUME_KEYS)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if average:
                average.load_state_dict(state["ema"])
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            raise CxrDeviceError(f"{last_path}: does not fit this run's model and settings ({_load_problem(err)}); "
                                 "resume with the settings it was trained with, or train afresh") from None
        history, start_epoch = state["history"], state["epoch"] + 1
        best_score, best_epoch, bad_epochs = state["best_score"], state["best_epoch"], state["bad_epochs"]

    stopped = False
    for epoch in range(start_epoch, config.epochs):
        if bad_epochs >= config.patience:
            stopped = True
            break
        epoch_seed = config.seed * 1000 + epoch
        seed_everything(epoch_seed)
        loader = _train_loader(train_set, train_labels, config, epoch_seed, epoch, world, rank)
        started = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        train_loss, seen = _train_epoch(net, loader, optimizer, loss_fn, device, config, progress and main, epoch,
                                        after_step)
        seconds = time.perf_counter() - started
        if world > 1:
            totals = torch.tensor([train_loss * seen, seen], dtype=torch.float64, device=device)
            dist.all_reduce(totals)
            train_loss, seen = (totals[0] / totals[1]).item(), int(totals[1].item())
        lr = optimizer.param_groups[0]["lr"]
        if not per_step:
            scheduler.step()
        stop = torch.zeros(1, device=device)
        if main:
            val = evaluate_split(scored, val_set, loss_fn, device, config)
            score = val["auroc"] if not math.isnan(val["auroc"]) else -val["loss"]
            improved = score > best_score
            if improved:
                best_score, best_epoch, bad_epochs = score, epoch, 0
            else:
                bad_epochs += 1
            history.append({
                "epoch": epoch, "train_loss": train_loss, "val_loss": val["loss"], "val_auroc": val["auroc"],
                "val_ap": val["ap"], "lr": lr, "seconds": round(seconds, 3),
                "images_per_s": round(seen / seconds, 1) if seconds else None,
                "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
                if device.type == "cuda" else None,
            })
            checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history,
                          "best_score": best_score, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                          "config": config.as_dict(), **({"ema": average.state_dict()} if average else {})}
            torch.save(checkpoint, last_path)
            if improved:
                torch.save({"model": scored.state_dict(), "epoch": epoch, "config": config.as_dict()},
                           layout.checkpoint(BEST))
            _write_outputs(layout, model, config, history, cache, unreadable, device, world, best_epoch, cohort_dir)
            stop[0] = float(bad_epochs >= config.patience)
        if world > 1:
            dist.broadcast(stop, src=0)
        if stop.item() and epoch + 1 < config.epochs:
            stopped = True
            break
    if world > 1:
        dist.barrier()
    frame_history = pd.DataFrame(history, columns=HISTORY_COLUMNS)
    return TrainResult(model_dir, frame_history, best_epoch, stopped, unreadable)


def _train_loader(dataset, labels, config: TrainConfig, epoch_seed: int, epoch: int, world: int, rank: int):
    generator = torch.Generator().manual_seed(epoch_seed)
    if world > 1:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
        sampler.set_epoch(epoch)
    elif config.imbalance == "balanced_sampler":
        sampler = balanced_sampler(labels, epoch_seed)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    if config.max_steps_per_epoch:
        indices = list(sampler)[: config.max_steps_per_epoch * config.batch_size]
        dataset, sampler = Subset(dataset, indices), None
    return DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, shuffle=False,
                      num_workers=config.workers, worker_init_fn=_worker_init, generator=generator,
                      pin_memory=torch.cuda.is_available(), drop_last=False,
                      persistent_workers=False)


def _train_epoch(net, loader, optimizer, loss_fn, device, config: TrainConfig, progress: bool, epoch: int,
                 after_step=lambda: None):
    """One pass over ``loader``; returns (mean loss, images seen). ``after_step`` runs after every
    optimizer step (a per-step schedule, the weight average). The loss stays on the device
    between progress updates, so a GPU is not synchronised at every step; the first step whose
    loss is not finite is recorded there too, and :func:`_stop_if_diverged` stops the training
    at the next check (every step on the CPU, every 20 on a GPU, and at the end of the epoch)."""
    net.train()
    fp16 = mixed_precision(device, config) == "fp16"
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)  # bf16 needs no loss scaling; fp16 does
    total = torch.zeros((), dtype=torch.float64, device=device)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)  # the first step with a non-finite loss
    check_every = 1 if device.type == "cpu" else DIVERGENCE_CHECK_STEPS
    seen = 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress, leave=False)
    started = time.perf_counter()
    for step, (images, labels) in enumerate(bar):
        images = images.to(device, non_blocking=True)
        if _channels_last(device, config):
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        with _autocast(device, config, training=True):
            logits = net(images)
        loss = loss_fn(logits.float(), labels)
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), step, first_bad)
        if step % check_every == 0:
            _stop_if_diverged(first_bad, epoch, optimizer)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        after_step()
        total += loss.detach() * len(labels)
        seen += len(labels)
        if progress and step % 20 == 0:
            bar.set_postfix(loss=f"{total.item() / seen:.4f}", img_s=f"{seen / (time.perf_counter() - started):.0f}")
    _stop_if_diverged(first_bad, epoch, optimizer)
    return total.item() / max(seen, 1), seen


def _stop_if_diverged(first_bad: torch.Tensor, epoch: int, optimizer: torch.optim.Optimizer) -> None:
    """Raise :class:`TrainingDiverged` when a step of this epoch had a non-finite loss."""
    step = int(first_bad.item())
    if step >= 0:
        lr = optimizer.param_groups[0]["lr"]
        raise TrainingDiverged(
            f"training diverged: the loss was not finite (NaN or infinite) at epoch {epoch + 1}, step {step + 1} "
            f"(learning rate {lr:.4g}); nothing of this epoch was saved. Lower train.lr (--lr), add a warm-up "
            "(schedule warmup_cosine), or check the initial weights, then train again")


def predict(model: DeviceModel, dataset, device: torch.device, config: TrainConfig) -> np.ndarray:
    """Uncalibrated probabilities (sigmoid of the logit) for every item of ``dataset``, in order."""
    return sigmoid(predict_logits(model, dataset, device, config))


@torch.no_grad()
def predict_logits(model: DeviceModel | list[DeviceModel], dataset, device: torch.device,
                   config: TrainConfig) -> np.ndarray:
    """The logits (float64 from float32) for every item of ``dataset``, in order. With several
    models (an ensemble) or a dataset of test-time views (items (V, 1, S, S)), the mean over models
    and views - what the locked device computes (:class:`cxr_device.runtime.inference.Predictor`)."""
    models = model if isinstance(model, list) else [model]
    for m in models:
        m.eval()
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False, num_workers=config.workers)
    out = []
    for images, _ in loader:
        views = images if images.dim() == 5 else images.unsqueeze(1)  # (N, V, 1, S, S)
        flat = views.reshape(-1, *views.shape[-3:]).to(device)
        if device.type == "cuda":
            flat = flat.contiguous(memory_format=torch.channels_last)
        with _autocast(device, config):
            total = sum(m(flat).float().reshape(views.shape[0], views.shape[1]).mean(dim=1) for m in models)
        out.append((total / len(models)).cpu())
    return torch.cat(out).numpy().astype(np.float64)


def evaluate_split(model: DeviceModel, dataset, loss_fn, device, config: TrainConfig) -> dict:
    """Loss, AUROC and average precision on a split (NaN where a class is absent)."""
    logits = predict_logits(model, dataset, device, config)
    if not np.isfinite(logits).all():
        raise TrainingDiverged(f"training diverged: the model gives {int((~np.isfinite(logits)).sum())} non-finite "
                               "output(s) on the validation split; lower train.lr (--lr) and train again")
    probs, labels = sigmoid(logits), dataset.labels
    loss = loss_fn(torch.as_tensor(logits, dtype=torch.float32, device=device),
                   torch.as_tensor(labels, device=device)).item()
    both = 0 < labels.sum() < len(labels)
    return {"loss": loss, "auroc": roc_auc_score(labels, probs) if both else float("nan"),
            "ap": average_precision_score(labels, probs) if both else float("nan")}


# --- outputs -------------------------------------------------------------------------------
def _write_outputs(layout: RunLayout, model: DeviceModel, config: TrainConfig, history: list[dict], cache,
                   unreadable: pd.DataFrame, device: torch.device, world: int, best_epoch: int,
                   cohort_dir: str | Path) -> None:
    pd.DataFrame(history, columns=HISTORY_COLUMNS).to_csv(layout.history, index=False, lineterminator="\n")
    layout.train_config.write_text(yaml.safe_dump(config.as_dict(), sort_keys=False))
    layout.layers.write_text(json.dumps(model.layer_report(), indent=2) + "\n")
    summary = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "processes": world,
        "torch": torch.__version__,
        "amp": mixed_precision(device, config),
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "cohort": {"dir": str(Path(cohort_dir).resolve()), "sha256": sha256_file(Path(cohort_dir) / COHORT_CSV)},
        "cache": {"folder": str(cache.folder), "status": cache.status, "n_unreadable": int(len(unreadable)),
                  "unreadable": unreadable.to_dict("records")},
        "left_out": left_out_record(unreadable, TRAINING_SPLITS),
        "produced_by": producer("train"),
    }
    layout.train_summary.write_text(json.dumps(summary, indent=2) + "\n")
    weighted = config.imbalance == "weighted_loss"
    plot_history(pd.DataFrame(history, columns=HISTORY_COLUMNS), layout.model / TRAINING_CURVES, best_epoch,
                 "BCE loss (class-weighted)" if weighted else "BCE loss")


@styled
def plot_history(history: pd.DataFrame, path: Path, best_epoch: int | None = None,
                 loss_label: str = "BCE loss") -> None:
    """Loss (train, validation) and validation AUROC/AP against epoch; the best epoch marked.
    Drawn at the text width, legends under each panel; PNG and the SVG beside it."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(FULL_WIDTH, 3.3)
    left, right = fig.subplots(1, 2)
    epochs = history["epoch"] + 1
    left.plot(epochs, history["train_loss"], "o-", color=PALETTE[0], label="train loss")
    left.plot(epochs, history["val_loss"], "s--", color=PALETTE[3], label="validation loss")
    left.set_ylabel(loss_label)
    left.set_title("Loss")
    right.plot(epochs, history["val_auroc"], "o-", color=PALETTE[1], label="validation AUROC")
    right.plot(epochs, history["val_ap"], "s--", color=PALETTE[0], label="validation average precision")
    scores = pd.concat([history["val_auroc"], history["val_ap"]]).dropna()
    right.set_ylim(max(0.0, float(scores.min()) - 0.05) if len(scores) else 0.0, 1.0)
    right.set_title("Validation discrimination")
    for ax in (left, right):
        if best_epoch is not None:
            ax.axvline(best_epoch + 1, color="grey", linestyle=":", linewidth=1, label=f"best epoch ({best_epoch + 1})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=1)  # under its own panel, off the data
    save(fig, path)


#: What a checkpoint written by :func:`train` holds (``best.pt``: the first two are enough).
RESUME_KEYS = ("model", "epoch", "optimizer", "scheduler", "history", "best_score", "best_epoch", "bad_epochs")


def read_checkpoint(path: Path, map_location, needed: tuple[str, ...] = ("model", "epoch")) -> dict:
    """A checkpoint written by :func:`train`, read with ``weights_only=True``: a pickle that would
    run code is refused by torch, never run. Anything else - unsafe, damaged, empty, or not ours -
    is a :class:`CxrDeviceError` naming the file."""
    import warnings  # local: this helper is the only user

    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of files it then refuses
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # UnpicklingError (code or garbage), RuntimeError (bad zip), EOFError (empty)
        raise CxrDeviceError(f"{path}: not a checkpoint written by cxr-device train, or unsafe: "
                             f"{_load_problem(err)}") from None
    missing = [key for key in needed if not isinstance(state, dict) or key not in state]
    if missing:
        raise CxrDeviceError(f"{path}: not a checkpoint written by cxr-device train (no {', '.join(missing)})")
    return state


def _load_problem(err: Exception) -> str:
    """The line of a load error that says what is wrong - never torch's advice to load unsafely."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    specific = [line for line in lines if line.startswith(("Trying to load", "Unsupported"))]
    if specific:
        return specific[0]
    if lines and not lines[0].startswith("Weights only load failed"):
        return f"{type(err).__name__}: {lines[0][:200]}"
    return type(err).__name__


def load_trained(run_dir: str | Path, checkpoint: str = BEST) -> tuple[DeviceModel, TrainConfig, dict]:
    """The model of a finished run (on the CPU), its config and the checkpoint's metadata."""
    layout = RunLayout(run_dir)
    path = layout.checkpoint(checkpoint)
    if not path.is_file():
        raise CxrDeviceError(f"{path}: not found; train first with `cxr-device train --out {run_dir}`")
    config = load_config(layout.train_config)
    state = read_checkpoint(path, "cpu")
    model = build_model(replace(config.model, weights="none"))
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise CxrDeviceError(f"{path}: does not fit the run's model ({_load_problem(err)})") from None
    summary = json.loads(layout.train_summary.read_text()) if layout.train_summary.is_file() else {}
    return model.eval(), config, {"checkpoint": checkpoint, "epoch": int(state["epoch"]), **summary}


@dataclass
class SplitData:
    """One split of a cohort, ready to score: the dataset, its rows (in dataset order), and the
    images left out because they could not be decoded (``image_id, split, reason``)."""

    dataset: CachedImages
    rows: pd.DataFrame
    left_out: pd.DataFrame


def split_datasets(cohort_dir: str | Path, config: TrainConfig, splits: tuple[str, ...],
                   views: tuple[str, ...] | None = None) -> dict[str, SplitData]:
    """Splits of the cohort as evaluation datasets (cache and preprocessing as in training; the
    cache is opened once for all of them). Images that failed to decode are not in the dataset;
    each split lists them in ``left_out`` for the caller to count and report."""
    frame, _ = read_cohort(cohort_dir)
    cache_root = Path(config.cache_dir) if config.cache_dir else default_cache_root(cohort_dir)
    cache = open_cache(frame, config.preprocessing, cache_root, config.workers)
    out = {}
    for split in splits:
        left_out = cache.left_out(frame, (split,))
        part = frame[(frame["split"] == split) & ~frame["image_id"].isin(left_out["image_id"])].reset_index(drop=True)
        out[split] = SplitData(CachedImages(cache.pixels, cache.rows(part["image_id"]), part[TARGET].to_numpy(),
                                            config.preprocessing, views=views), part, left_out)
    return out


def left_out_record(left_out: pd.DataFrame, splits: tuple[str, ...]) -> dict:
    """How ``train_summary.json`` and ``metrics.json`` report the images a step left out because
    they could not be decoded: the number, the number per split (every split of ``splits``,
    zeros included) and each image with its split and the decoder's reason."""
    left_out = left_out[left_out["split"].isin(splits)]
    return {"n": int(len(left_out)),
            "by_split": {s: int((left_out["split"] == s).sum()) for s in splits},
            "images": left_out[LEFT_OUT_COLUMNS].to_dict("records")}


def score_checkpoint(cohort_dir: str | Path, run_dir: str | Path, split: str = "test",
                     checkpoint: str = BEST) -> dict:
    """AUROC, AP and counts of a saved model on one split of its cohort. The full assessment
    with thresholds and confidence intervals is ``cxr-device evaluate``."""
    model, config, meta = load_trained(run_dir, checkpoint)
    data = split_datasets(cohort_dir, config, (split,))[split]
    device = resolve_device(config.device)
    result = evaluate_split(model.to(device), data.dataset, nn.BCEWithLogitsLoss(), device, config)
    return {"split": split, "checkpoint": checkpoint, "epoch": meta["epoch"], "n_images": len(data.rows),
            "n_positive": int(data.rows[TARGET].sum()), "left_out": left_out_record(data.left_out, (split,)),
            **result}
