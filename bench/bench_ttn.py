"""Time to notification of the real DICOM node (`cxr-device serve`), driven by DCMTK `storescu`.

What is measured: studies of 1 to 3 images (the count drawn per study, seeded) of 12-bit DX chest
radiographs with pixel sides of 2048 to 3072 (drawn per study), made from a synthetic chest phantom
(not patients), arrive at a stated rate - one study every 60 / RATE seconds, each study one
`storescu` association, as a modality or a router sends it - at a node started with
`cxr-device serve --port 0 --host 127.0.0.1` in its own process, forwarding every SR to a Storage SCP
on 127.0.0.1 that stands in for the PACS (DCMTK `storescp`). Time to notification is what
`cxr-device monitor` reports: for each study, its last image received -> the PACS's acknowledgement
of its last SR, on the node's monotonic clock, read from the node's own study.json
(:mod:`validation.ttn`).

The highest sustained rate: the stated rate, then RATE x STEP, RATE x STEP^2, ... until a rate is
not sustained or the time budget is spent. A rate is sustained when every study is answered within
the run's bound and the node's backlog does not grow: the backlog at a study's arrival is the number
of images received before it and not yet notified (from study.json times); the mean backlog over
the last third of the arrivals may exceed that of the first third by at most 3 images (one study).
The percentiles written are those of the stated rate; the stated rate must be sustained, else
nothing is written (its percentiles would only measure the length of the run).

Device: --bundle, or a DenseNet-121 at 224 px with random weights (speed does not depend on the
weights; the architecture of configs/nih_densenet121.yaml). Everything is on 127.0.0.1 and every
wait is bounded (--max-minutes for the whole benchmark).

    python bench/bench_ttn.py --out RUN [--bundle B] [--rate 4] [--studies 24] [--step 1.5] [--max-minutes 15]

writes RUN/ttn/ttn.json (cxr-device submission quotes it in the validation plan and the 510(k)
summary) and prints the percentiles; exit 1 when the stated rate is not sustained, 2 when storescu
or the node cannot be started.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

FORMAT = "cxr-device-ttn/1"
SIDES = (2048, 3072)
IMAGES = (1, 3)
MAX_BACKLOG_GROWTH = 3  # images: one study of the largest size
CALLING, CALLED, PACS = "BENCH_TTN", "CXR_DEVICE", "PACS"


# --- the machine ------------------------------------------------------------------------------------
def machine() -> str:
    """Architecture, CPU, cores, memory, virtualisation, GPU, Python and torch, as measured here."""
    import torch

    cpu, virtual = platform.processor() or "unknown CPU", False
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                   cpu)
        virtual = " hypervisor" in text
    except OSError:
        pass
    memory = ""
    try:
        kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
        memory = f", {kb / 2**20:.0f} GB"
    except (OSError, StopIteration, ValueError):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.machine()} {cpu}{' (virtual machine)' if virtual else ''}, {os.cpu_count()} cores{memory}, "
            f"{gpu}, Python {platform.python_version()}, torch {torch.__version__}")


def storescu_version(storescu: str) -> str:
    out = subprocess.run([storescu, "--version"], capture_output=True, text=True, timeout=30).stdout
    first = next((line for line in out.splitlines() if "storescu" in line), "storescu")
    return "DCMTK " + first.strip().strip("$").replace("dcmtk: ", "").strip()


# --- inputs ------------------------------------------------------------------------------------------
def make_bundle(work: Path) -> Path:
    import torch

    from cxr_device.models import ModelSpec, build_model
    from cxr_device.preprocessing import Preprocessing
    from cxr_device.runtime.bundle import write_bundle
    from cxr_device.runtime.input_rules import default_rules_path

    (work / "cohort.csv").write_text("image_id\n")
    torch.manual_seed(0)
    return write_bundle(work / "bundle", build_model(ModelSpec(arch="densenet121", weights="none")),
                        Preprocessing(image_size=224), {"value": 0.5, "rule": "max_f1"}, default_rules_path(),
                        work / "cohort.csv")


def make_studies(folder: Path, count: int, rng: np.random.Generator, tag: str) -> list[dict]:
    """``count`` studies of 1-3 DX images each (12-bit, 2048-3072 px sides), one StudyInstanceUID each."""
    from PIL import Image
    from pydicom.uid import generate_uid

    from cxr_device.synth import phantom
    from cxr_device.synth_dicom import write_synthetic_dicom

    base = Image.fromarray(phantom(1024, True, False, np.random.default_rng(0)))
    studies = []
    for k in range(count):
        n = int(rng.integers(IMAGES[0], IMAGES[1] + 1))
        rows = int(rng.integers(SIDES[0], SIDES[1] + 1))
        cols = int(rng.integers(SIDES[0], rows + 1))
        pixels = np.asarray(base.resize((cols, rows), Image.BILINEAR), dtype=np.uint16) * 16  # 12-bit
        study_uid = generate_uid(entropy_srcs=["bench_ttn", tag, str(k)])
        files = [write_synthetic_dicom(folder / f"{tag}_{k:03d}_{i}.dcm", pixels, seed=10 * k + i,
                                       bits_stored=12, StudyInstanceUID=study_uid) for i in range(n)]
        studies.append({"uid": study_uid, "files": files, "images": n, "rows": rows, "cols": cols})
    return studies


# --- the node ----------------------------------------------------------------------------------------
def stop_process(process: subprocess.Popen, log, grace: float) -> None:
    """Terminate ``process`` (killed after ``grace`` seconds) and close its log."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    log.close()


class Node:
    """`cxr-device serve` in its own process on 127.0.0.1 and a free port."""

    def __init__(self, bundle: Path, out: Path, log: Path, forward_port: int) -> None:
        self.out = out
        self.log = open(log, "w")
        command = [sys.executable, "-m", "cxr_device", "serve", "--bundle", str(bundle), "--out", str(out),
                   "--port", "0", "--host", "127.0.0.1", "--ae-title", CALLED,
                   "--forward", f"{PACS}@127.0.0.1:{forward_port}"]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        self.port = self._wait_port(180)

    def _wait_port(self, seconds: float) -> int:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the node stopped at start (exit {self.process.returncode}); see {self.log.name}")
            try:
                status = json.loads((self.out / "status.json").read_text())
                if status.get("state") == "running" and status.get("port"):
                    return int(status["port"])
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"the node did not start within {seconds:.0f} s; see {self.log.name}")

    def record(self, study_uid: str) -> dict:
        try:
            return json.loads((self.out / "results" / study_uid / "study.json").read_text())
        except (OSError, ValueError):
            return {}

    def stop(self) -> None:
        stop_process(self.process, self.log, grace=60)


def send(storescu: str, port: int, files: list[Path], results: list, index: int) -> None:
    """One association carrying one study's images; the exit code and stderr tail into ``results``."""
    command = [storescu, "-aet", CALLING, "-aec", CALLED, "-to", "60", "-ta", "60", "-td", "60", "127.0.0.1",
               str(port), *map(str, files)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        results[index] = (done.returncode, done.stderr[-300:])
    except subprocess.TimeoutExpired:
        results[index] = (-1, "storescu timed out after 300 s")


def notified_at(image: dict) -> float | None:
    """When an image's result reached the PACS (forwarding node), else when its SR was written."""
    return image.get("forwarded_monotonic") if image.get("notified_by") == "forward" else image.get(
        "answered_monotonic")


def answered(record: dict, images: int) -> bool:
    """Every image of the study notified."""
    return len([i for i in record.get("images", []) if notified_at(i) is not None]) >= images


class Pacs:
    """DCMTK ``storescp`` on 127.0.0.1 and a free port: the PACS the node forwards its SRs to."""

    def __init__(self, storescp: str, folder: Path, log: Path) -> None:
        import socket

        folder.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log = open(log, "w")
        self.process = subprocess.Popen([storescp, "-aet", PACS, "-od", str(folder), "--ignore", str(self.port)],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        time.sleep(1.0)
        if self.process.poll() is not None:
            raise SystemExit(f"storescp stopped at start (exit {self.process.returncode}); see {log}")

    def stop(self) -> None:
        stop_process(self.process, self.log, grace=30)


# --- one run at one rate ----------------------------------------------------------------------------
def run_at(rate: float, studies: list[dict], node: Node, storescu: str, deadline: float) -> dict:
    """Send ``studies`` at ``rate`` per minute (evenly spaced); wait for every answer (bounded)."""
    from validation import ttn

    interval = 60.0 / rate
    results: list = [None] * len(studies)
    threads = []
    start = time.monotonic()
    for k, study in enumerate(studies):
        pause = start + k * interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        thread = threading.Thread(target=send, args=(storescu, node.port, study["files"], results, k), daemon=True)
        thread.start()
        threads.append(thread)
    bound = min(deadline, time.monotonic() + 180 + 20 * len(studies))
    for thread in threads:
        thread.join(max(0.0, bound - time.monotonic()))
    records = {}
    while time.monotonic() < bound:
        records = {s["uid"]: node.record(s["uid"]) for s in studies}
        if all(answered(records[s["uid"]], s["images"]) for s in studies):
            break
        time.sleep(0.5)
    failed_sends = [r for r in results if r is None or r[0] != 0]
    complete = [s for s in studies if answered(records.get(s["uid"], {}), s["images"])]
    seconds = [ttn.study_ttn(records[s["uid"]])[0] for s in complete]
    seconds = [x for x in seconds if x is not None]
    backlog = backlogs(studies, records)
    third = max(1, len(backlog) // 3)
    growth = float(np.mean(backlog[-third:]) - np.mean(backlog[:third])) if backlog else None
    sustained = (not failed_sends and len(complete) == len(studies) and len(seconds) == len(studies)
                 and growth is not None and growth <= MAX_BACKLOG_GROWTH)
    return {"rate_per_min": rate, "studies": len(studies), "images": sum(s["images"] for s in studies),
            "answered_studies": len(complete), "failed_sends": len(failed_sends),
            "failed_send_example": failed_sends[0][1] if failed_sends and failed_sends[0] else None,
            "ttn": ttn.summary(seconds), "backlog_first_third": float(np.mean(backlog[:third])) if backlog else None,
            "backlog_last_third": float(np.mean(backlog[-third:])) if backlog else None,
            "backlog_growth": growth, "sustained": sustained}


def backlogs(studies: list[dict], records: dict) -> list[int]:
    """For each study in arrival order: images received before its first image and not answered then."""
    images = [i for s in studies for i in records.get(s["uid"], {}).get("images", [])
              if i.get("received_monotonic") is not None and notified_at(i) is not None]
    out = []
    for s in studies:
        own = records.get(s["uid"], {}).get("images", [])
        arrivals = [i["received_monotonic"] for i in own if i.get("received_monotonic") is not None]
        if not arrivals:
            continue
        t = min(arrivals)
        out.append(sum(1 for i in images if i["received_monotonic"] < t < notified_at(i)))
    return out


# --- main --------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="the run folder: writes OUT/ttn/ttn.json")
    parser.add_argument("--bundle", type=Path, help="a locked bundle (default: DenseNet-121 at 224 px, random weights)")
    parser.add_argument("--rate", type=float, default=4.0, help="the stated arrival rate, studies per minute (4)")
    parser.add_argument("--studies", type=int, default=24, help="studies per rate (24)")
    parser.add_argument("--step", type=float, default=1.5, help="each next rate of the ladder is this times the last")
    parser.add_argument("--max-steps", type=int, default=5, help="rates tried at most (5)")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="the whole benchmark's time bound (15)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.rate <= 0 or args.studies < 3 or args.step <= 1 or args.max_minutes <= 0:
        parser.error("--rate > 0, --studies >= 3, --step > 1 and --max-minutes > 0")
    storescu, storescp = shutil.which("storescu"), shutil.which("storescp")
    if storescu is None or storescp is None:
        print("storescu and storescp (DCMTK) not found: apt-get install dcmtk", file=sys.stderr)
        return 2
    began = time.monotonic()
    deadline = began + 60 * args.max_minutes
    work = Path(tempfile.mkdtemp(prefix="bench_ttn_"))
    rng = np.random.default_rng(args.seed)
    described = machine()
    load_start = os.getloadavg()
    print(f"machine: {described}; load average {' '.join(f'{x:.1f}' for x in load_start)} at start", flush=True)
    bundle = args.bundle or make_bundle(work)
    pacs = Pacs(storescp, work / "pacs", work / "storescp.log")
    try:
        node = Node(bundle, work / "node", work / "serve.log", pacs.port)
    except SystemExit:
        pacs.stop()
        raise
    ladder = []
    try:
        warm = make_studies(work / "in", 1, rng, "warm")
        run_at(60.0, warm, node, storescu, deadline)  # the first model call and the first SR
        rate = args.rate
        for step in range(args.max_steps):
            if time.monotonic() > deadline - 60:
                break
            studies = make_studies(work / "in", args.studies, rng, f"r{step}")
            result = run_at(rate, studies, node, storescu, deadline)
            for study in studies:
                for path in study["files"]:
                    path.unlink(missing_ok=True)
            t = result["ttn"]
            ladder.append({**result, "sides": [min(min(s["rows"], s["cols"]) for s in studies),
                                               max(max(s["rows"], s["cols"]) for s in studies)]})
            print(f"  {rate:.3g} studies/min: {result['answered_studies']}/{result['studies']} answered, ttn p50 "
                  f"{t['p50_s'] if t['p50_s'] is None else round(t['p50_s'], 2)} s p95 "
                  f"{t['p95_s'] if t['p95_s'] is None else round(t['p95_s'], 2)} s max "
                  f"{t['max_s'] if t['max_s'] is None else round(t['max_s'], 2)} s, backlog "
                  f"{result['backlog_first_third']} -> {result['backlog_last_third']}, "
                  f"{'sustained' if result['sustained'] else 'NOT sustained'}", flush=True)
            if not result["sustained"]:
                break
            rate *= args.step
    finally:
        node.stop()
        pacs.stop()
    stated = ladder[0] if ladder else None
    if stated is None or not stated["sustained"]:
        print(f"the stated rate {args.rate:g} studies/min was not sustained (or not run): nothing written; lower "
              f"--rate (serve log: {work / 'serve.log'})", file=sys.stderr)
        return 1
    sustained = [r["rate_per_min"] for r in ladder if r["sustained"]]
    images = [r["images"] / r["studies"] for r in ladder]
    document = {
        "format": FORMAT,
        "machine": described,
        "sender": f"{storescu_version(storescu)}, one association per study, from the same machine (127.0.0.1)",
        "device": "the --bundle given" if args.bundle else "DenseNet-121 at 224 px, random weights (bench default)",
        "arrival_rate_per_min": args.rate,
        "arrivals": "evenly spaced, one study every 60 / rate seconds",
        "images_per_study": f"{IMAGES[0]} to {IMAGES[1]}",
        "mean_images_per_study": round(images[0], 3),
        "pixel_side": f"{SIDES[0]} to {SIDES[1]}",
        "pixels": "12-bit DX, synthetic chest phantom (not patient data)",
        "studies": stated["studies"],
        "n": stated["ttn"]["n"],
        "p50_s": round(stated["ttn"]["p50_s"], 3),
        "p95_s": round(stated["ttn"]["p95_s"], 3),
        "max_s": round(stated["ttn"]["max_s"], 3),
        "percentiles": stated["ttn"]["percentiles"],
        "max_sustained_per_min": max(sustained),
        "sustained_rule": f"every study answered and the mean backlog of the last third of arrivals at most "
                          f"{MAX_BACKLOG_GROWTH} images above that of the first third",
        "ladder_stopped": "a rate not sustained" if not ladder[-1]["sustained"] else
        "the time budget or --max-steps (the node may sustain more)",
        "ladder": ladder,
        "notification": "the PACS's acknowledgement of the study's last SR (the node forwards every SR to DCMTK "
                        "storescp on 127.0.0.1, standing in for the PACS); last image received -> last SR "
                        "acknowledged, node monotonic clock (validation.ttn)",
        "load_average": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
        "command": "python bench/bench_ttn.py " + " ".join(sys.argv[1:]),
        "wall_s": round(time.monotonic() - began, 1),
    }
    target = args.out / "ttn"
    target.mkdir(parents=True, exist_ok=True)
    (target / "ttn.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"time to notification at {args.rate:g} studies/min ({document['n']} studies of {document['images_per_study']} "
          f"images, {document['pixel_side']} px): p50 {document['p50_s']:.2f} s, p95 {document['p95_s']:.2f} s, max "
          f"{document['max_s']:.2f} s; highest sustained rate tried {document['max_sustained_per_min']:.3g} studies/min "
          f"(ladder stopped: {document['ladder_stopped']})")
    print(f"wrote {target / 'ttn.json'}; load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
