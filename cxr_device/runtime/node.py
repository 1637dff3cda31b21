"""The device as a DICOM node: a Storage SCP that receives images (C-STORE), gates and scores
them with the locked bundle, and answers into each image's study with a DICOM SR (and
optionally a Secondary Capture), forwarding the results to a PACS when asked.

**Stores first, then processes.** A C-STORE is acknowledged only once the dataset is on disk:
it is written to ``OUT/incoming/.tmp-*``, flushed, its header checked (a dataset that cannot be
parsed - truncated, corrupt - is answered ``0xC210`` and not kept: nothing in it says which
study to answer into), then renamed to ``OUT/incoming/<SOPInstanceUID>.dcm``. One worker thread
takes received files in batches, runs :class:`~cxr_device.runtime.pipeline.DevicePipeline`
(rules, then pixels and model), writes the results under ``OUT/results/<StudyInstanceUID>/``
(:mod:`~cxr_device.runtime.dicom_results`) and moves the source to ``OUT/done/``. A file whose
processing fails unexpectedly is moved to ``OUT/failed/`` and logged, never dropped.

**Restart and idempotence.** Whatever is in ``incoming/`` at start-up (received, acknowledged,
not yet processed when the node stopped or was killed) is processed first. Result UIDs are
derived from the source image, its study and the device's hash, and an existing result file is
never rewritten, so an image processed before a crash but not yet moved to ``done/`` is not
answered twice; a re-sent image is not answered twice either (see ``dicom_results``).

**Forwarding** (``forward``): each new result is hard-linked into ``OUT/outbox/``; a forwarder
thread sends the outbox by C-STORE to ``AE@HOST:PORT``, records each delivered result in
``OUT/forwarded/`` and removes it from the outbox. Failures are logged and retried with a
growing delay (up to 5 minutes); nothing leaves the outbox undelivered, across restarts too.

**What is accepted.** Image storage SOP classes (:data:`IMAGE_STORAGE`: CR, DX, Secondary
Capture, CT, MR, US, NM, PET, XA, RF, mammography...) in any transfer syntax: a mis-routed CT
is stored and answered with a refusal SR. Other storage classes (SR, waveforms, PDFs, ...) are
negotiated but answered ``0x0122`` (SOP class not supported). Bigger datasets than
``max_dataset_bytes`` get ``0xA700``. Callers not on ``allow_ae`` (when given) and calls to
another AE title are rejected at association. The node keeps serving after any of these.

**Logs and status.** One JSON object per line in ``OUT/node.log`` (and on ``log_stream``):
events with calling AE titles, peer addresses, result UIDs and *hashed* source UIDs
(``sha256(uid)[:16]``) - never a patient name, ID or birth date. ``OUT/status.json`` holds the
counts since start, queue and outbox lengths, uptime and the bundle hash, rewritten as it goes.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from ..dicom_pixels import DicomReadError, read_dataset
from ..errors import CxrDeviceError
from .dicom_results import DeviceIdentity, atomic_write, score_to_dicom
from .header_check import UNREADABLE
from .pipeline import ACCEPTED, REFUSED, DevicePipeline

DEFAULT_AE_TITLE, DEFAULT_PORT = "CXR_DEVICE", 11112
SUCCESS, SOP_CLASS_NOT_SUPPORTED, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0x0122, 0xA700, 0xC210
INCOMING, RESULTS, DONE, FAILED, OUTBOX, FORWARDED = "incoming", "results", "done", "failed", "outbox", "forwarded"
STATUS_JSON, NODE_LOG = "status.json", "node.log"
#: Image storage SOP classes the node stores and answers (a refusal SR when the rules refuse).
IMAGE_STORAGE = {
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.2": "Digital Mammography - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "Digital Mammography - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.3": "Digital Intra-Oral X-Ray - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.3.1": "Digital Intra-Oral X-Ray - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT",
    "1.2.840.10008.5.1.4.1.1.4": "MR",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR",
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame",
    "1.2.840.10008.5.1.4.1.1.20": "Nuclear Medicine",
    "1.2.840.10008.5.1.4.1.1.128": "PET",
    "1.2.840.10008.5.1.4.1.1.12.1": "X-Ray Angiographic",
    "1.2.840.10008.5.1.4.1.1.12.2": "X-Ray Radiofluoroscopic",
    "1.2.840.10008.5.1.4.1.1.13.1.3": "Breast Tomosynthesis",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic",
}
_AE_TITLE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # printable ASCII without backslash, 1-16 chars
_FORWARD = re.compile(r"(?P<ae>[^@]+)@(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\s]+):(?P<port>\d{1,5})")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_MAX_BACKOFF = 300.0


class NodeError(CxrDeviceError):
    """The node cannot be configured or started (a bad option, a port in use)."""


@dataclass(frozen=True)
class Forward:
    """Where results are sent: a Storage SCP (a PACS, a router)."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def check_ae_title(title: str, what: str = "--ae-title") -> str:
    """An AE title: 1 to 16 printable ASCII characters, no backslash, not only spaces."""
    if not _AE_TITLE.fullmatch(title) or not title.strip():
        raise NodeError(f"{what} {title!r}: an AE title is 1 to 16 printable ASCII characters without '\\'")
    return title.strip()


def parse_forward(text: str) -> Forward:
    """``AE@HOST:PORT`` (``PACS@10.0.0.5:104``, ``PACS@[::1]:104``) to a :class:`Forward`."""
    match = _FORWARD.fullmatch(text.strip())
    if not match:
        raise NodeError(f"--forward {text!r}: expected AE@HOST:PORT, e.g. PACS@10.0.0.5:104")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise NodeError(f"--forward {text!r}: port {port} is not between 1 and 65535")
    return Forward(check_ae_title(match["ae"], "--forward AE title"), match["host"].strip("[]"), port)


def hashed(uid: str) -> str:
    """How logs name a source UID: the first 16 hex of its sha256."""
    return hashlib.sha256(str(uid).encode()).hexdigest()[:16]


def _file_name(sop_instance_uid: str) -> str:
    uid = str(sop_instance_uid).strip()
    return f"{uid}.dcm" if len(uid) <= 64 and _UID.fullmatch(uid) else f"sop-{hashed(uid)}.dcm"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DicomNode:
    """A Storage SCP running the locked device; usable in-process (tests, benchmarks) and by
    ``cxr-device serve``: ``port = node.start()``, ``node.wait_idle(timeout)``, ``node.stop()``."""

    def __init__(self, bundle, out_dir: str | Path, ae_title: str = DEFAULT_AE_TITLE, port: int = DEFAULT_PORT,
                 host: str = "0.0.0.0", allow_ae: tuple[str, ...] | list[str] = (), forward: Forward | None = None,
                 secondary_capture: bool = False, max_associations: int = 8,
                 max_dataset_bytes: int = 512 * 2**20, batch_size: int = 8, network_timeout: float = 30.0,
                 forward_retry_seconds: float = 5.0, log_stream: IO[str] | None = None):
        self.ae_title = check_ae_title(ae_title)
        self.allow_ae = tuple(check_ae_title(a, "--allow-ae") for a in allow_ae)
        if not 0 <= port < 65536:
            raise NodeError(f"--port {port}: expected 0 to 65535")
        if max_associations < 1 or max_dataset_bytes < 1 or batch_size < 1:
            raise NodeError("max associations, max dataset size and batch size must be at least 1")
        self.host, self.port, self.forward = host, port, forward
        self.secondary_capture, self.max_associations = secondary_capture, max_associations
        self.max_dataset_bytes, self.batch_size = max_dataset_bytes, batch_size
        self.network_timeout, self.forward_retry_seconds = network_timeout, forward_retry_seconds
        self.out = Path(out_dir)
        self.pipeline = DevicePipeline(bundle)
        self.device = DeviceIdentity.from_bundle(bundle)
        self.log_stream = log_stream
        self.counts = dict.fromkeys(("received", ACCEPTED, REFUSED, UNREADABLE, "errors", "rejected", "duplicates",
                                     "recovered", "forwarded", "forward_failures"), 0)
        self.latencies: deque[float] = deque(maxlen=10_000)  # seconds, C-STORE received -> results written
        self._queue: queue.Queue[Path] = queue.Queue()
        self._received_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._stopping = threading.Event()
        self._outbox_event = threading.Event()
        self._server = None
        self._ae = None
        self._threads: list[threading.Thread] = []
        self._log_file: IO[str] | None = None
        self._folder_lock: IO[str] | None = None
        self._started = time.monotonic()
        self._state = "created"

    # --- folders ------------------------------------------------------------------------------
    def folder(self, name: str) -> Path:
        """``OUT/<name>`` (one of incoming, results, done, failed, outbox, forwarded)."""
        return self.out / name

    # --- life cycle -----------------------------------------------------------------------------
    def start(self) -> int:
        """Recover what a previous run left, start the worker (and forwarder) and listen;
        returns the bound port. Does not block."""
        import highdicom  # noqa: F401 - imported here, not inside the first image's latency
        from pynetdicom import AE, evt

        for name in (INCOMING, RESULTS, DONE, FAILED, OUTBOX, FORWARDED):
            self.folder(name).mkdir(parents=True, exist_ok=True)
        self._lock_folder()
        self._log_file = open(self.out / NODE_LOG, "a", encoding="utf-8")
        self._recover()
        ae = AE(ae_title=self.ae_title)
        for context in _supported_contexts():
            ae.add_supported_context(context.abstract_syntax, context.transfer_syntax)
        ae.require_calling_aet = list(self.allow_ae)
        ae.require_called_aet = True
        ae.maximum_associations = self.max_associations
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = self.network_timeout
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REJECTED, self._on_rejected),
                    (evt.EVT_ACCEPTED, self._on_accepted), (evt.EVT_ABORTED, self._on_aborted)]
        try:
            self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        except OSError as err:
            self._log_file.close()
            self._log_file = None
            self._unlock_folder()
            reason = "the port is in use (another node or program listens there)" \
                if err.errno in (98, 48, 10048) else (err.strerror or str(err))
            raise NodeError(f"cannot listen on {self.host}:{self.port}: {reason}; choose another --port") from None
        self._ae = ae
        self.port = int(self._server.server_address[1])
        self._stopping.clear()
        self._started = time.monotonic()
        self._state = "running"
        self._threads = [threading.Thread(target=self._work, name="cxr-node-worker", daemon=True)]
        if self.forward is not None:
            self._threads.append(threading.Thread(target=self._forward_loop, name="cxr-node-forwarder", daemon=True))
        for thread in self._threads:
            thread.start()
        self._log("started", ae_title=self.ae_title, host=self.host, port=self.port,
                  allow_ae=list(self.allow_ae), forward=str(self.forward) if self.forward else None,
                  secondary_capture=self.secondary_capture, bundle_sha256=self.device.bundle_sha256,
                  recovered=self.counts["recovered"])
        self._write_status()
        return self.port

    def stop(self, timeout: float = 30.0) -> None:
        """Stop listening, let open associations finish (up to ``timeout``), finish the batch
        being processed and the transfer being forwarded, then stop. Received files not yet
        processed stay in ``incoming/`` and are processed at the next start."""
        if self._state != "running":
            return
        deadline = time.monotonic() + timeout
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            while server.active_associations and time.monotonic() < deadline:
                time.sleep(0.02)
            for assoc in server.active_associations:
                assoc.abort()
        self._stopping.set()
        self._outbox_event.set()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._state = "stopped"
        self._log("stopped", pending=self._queue.qsize(), **{"counts": dict(self.counts)})
        self._write_status()
        with self._log_lock:  # a worker still finishing (past the timeout) may log: never into a closed file
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
        self._unlock_folder()

    def _lock_folder(self) -> None:
        """One node per folder: two would process the same incoming files."""
        self._folder_lock = open(self.out / ".node.lock", "a")
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return
        try:
            fcntl.flock(self._folder_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._folder_lock.close()
            self._folder_lock = None
            raise NodeError(f"{self.out}: another cxr-device node is using this folder; give each node its own "
                            "--out") from None

    def _unlock_folder(self) -> None:
        if self._folder_lock is not None:
            self._folder_lock.close()  # closing releases the lock
            self._folder_lock = None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once every received file is processed (and, with forwarding, every result
        delivered); False when ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0 and not (self.forward and self._outbox()):
                return True
            time.sleep(0.01)
        return False

    def serve_until_signal(self) -> bool:
        """Block until SIGINT or SIGTERM, then :meth:`stop` gracefully (main thread only). True
        for a stop on a signal; False when a worker thread died (received files stay in
        ``incoming/`` for the next start)."""
        stop = threading.Event()
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        clean = True
        try:
            while not stop.wait(0.5):
                if not all(t.is_alive() for t in self._threads):
                    self._log("worker_died", pending=self._queue.qsize())
                    clean = False
                    break
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()
        return clean

    # --- receiving ------------------------------------------------------------------------------
    def _on_store(self, event) -> int:
        received = time.monotonic()
        request = event.request
        sop_class, sop_uid = str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID)
        who = {"calling_ae": event.assoc.requestor.ae_title, "peer": event.assoc.requestor.address,
               "sop": hashed(sop_uid)}
        if sop_class not in IMAGE_STORAGE:
            return self._reject("not_an_image", SOP_CLASS_NOT_SUPPORTED, who, sop_class=sop_class)
        size = request.DataSet.getbuffer().nbytes if request.DataSet is not None else 0
        if size > self.max_dataset_bytes:
            return self._reject("too_large", OUT_OF_RESOURCES, who, bytes=size, limit=self.max_dataset_bytes)
        target = self.folder(INCOMING) / _file_name(sop_uid)
        temporary = target.with_name(f".tmp-{os.urandom(6).hex()}.dcm")
        try:
            with open(temporary, "wb") as handle:
                handle.write(event.encoded_dataset(include_meta=True))
                handle.flush()
                os.fsync(handle.fileno())
            read_dataset(temporary, header_only=True)  # parsable, not truncated: else nothing to answer into
            os.replace(temporary, target)
        except DicomReadError as err:
            temporary.unlink(missing_ok=True)
            reason = str(err).replace(str(temporary), "dataset")
            return self._reject("corrupt", CANNOT_UNDERSTAND, who, reason=reason)
        except OSError as err:  # disk full, permissions: the sender keeps the image and may retry
            temporary.unlink(missing_ok=True)
            return self._reject("store_failed", OUT_OF_RESOURCES, who, reason=err.strerror or str(err))
        except Exception as err:  # noqa: BLE001 - whatever pydicom raises: answer, never crash the association
            temporary.unlink(missing_ok=True)
            return self._reject("corrupt", CANNOT_UNDERSTAND, who, reason=f"{type(err).__name__}: {err}")
        with self._lock:
            self.counts["received"] += 1
            self._received_at[target.name] = received
        self._queue.put(target)
        self._log("received", **who, sop_class=IMAGE_STORAGE[sop_class], bytes=size)
        self._write_status()
        return SUCCESS

    def _reject(self, why: str, status: int, who: dict, **details) -> int:
        with self._lock:
            self.counts["rejected"] += 1
        self._log("store_refused", reason_code=why, status=f"0x{status:04X}", **who, **details)
        self._write_status()
        return status

    def _on_rejected(self, event) -> None:
        self._log("association_rejected", calling_ae=event.assoc.requestor.ae_title,
                  called_ae=event.assoc.acceptor.ae_title, peer=event.assoc.requestor.address)

    def _on_accepted(self, event) -> None:
        self._log("association_accepted", calling_ae=event.assoc.requestor.ae_title,
                  peer=event.assoc.requestor.address)

    def _on_aborted(self, event) -> None:
        self._log("association_aborted", calling_ae=event.assoc.requestor.ae_title,
                  peer=event.assoc.requestor.address)

    # --- processing -----------------------------------------------------------------------------
    def _recover(self) -> None:
        """Remove partial files of a previous run (never acknowledged or never renamed) and
        queue what was received but not processed, oldest first; re-queue the outbox."""
        for partial in [*self.folder(INCOMING).glob(".tmp-*"), *self.folder(RESULTS).glob("*/.tmp-*")]:
            partial.unlink(missing_ok=True)
        pending = sorted(self.folder(INCOMING).glob("*.dcm"), key=lambda p: (p.stat().st_mtime, p.name))
        for path in pending:
            self._queue.put(path)
        self.counts["recovered"] = len(pending)

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                batch = [self._queue.get(timeout=0.1)]
            except queue.Empty:
                continue
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._process(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()
                self._write_status()

    def _process(self, batch: list[Path]) -> None:
        """Score a batch and write its results; one file at a time when the batch fails."""
        paths = list(dict.fromkeys(p for p in batch if p.exists()))  # a re-sent file is queued twice
        if not paths:
            return
        try:
            self._score(paths)
        except Exception:  # noqa: BLE001 - find the file that fails, keep the others
            for path in paths:
                if not path.exists():
                    continue
                try:
                    self._score([path])
                except Exception as err:  # noqa: BLE001 - a bug or a header highdicom cannot use
                    self._fail(path, f"{type(err).__name__}: {err}")

    def _score(self, paths: list[Path]) -> None:
        predictions, written = score_to_dicom(self.pipeline, paths, self.folder(RESULTS), self.secondary_capture)
        for path, prediction, result in zip(paths, predictions, written):
            self._finish(path, prediction, result)

    def _finish(self, path: Path, prediction, result) -> None:
        """Queue the new results for forwarding, move the source to done/ (failed/ when no
        result could be written), count and log."""
        if result.skipped:
            self._fail(path, result.skipped, prediction.status)
            return
        for produced in (result.sr, result.sc):
            if produced is not None and self.forward is not None:
                self._to_outbox(produced)
        os.replace(path, self.folder(DONE) / path.name)
        with self._lock:
            self.counts[prediction.status] += 1
            self.counts["duplicates"] += int(result.existed)
            received = self._received_at.pop(path.name, None)
            latency = time.monotonic() - received if received is not None else None
            if latency is not None and not result.existed:
                self.latencies.append(latency)
        self._log("answered", sop=hashed(result.source_sop_instance_uid),
                  study=hashed(result.study_instance_uid), status=prediction.status, decision=prediction.decision,
                  probability=None if prediction.probability is None else round(prediction.probability, 4),
                  sr=result.sr.stem if result.sr else None, sc=result.sc.stem if result.sc else None,
                  already_answered=result.existed,
                  latency_ms=None if latency is None else round(latency * 1000, 1))

    def _fail(self, path: Path, reason: str, status: str = "error") -> None:
        """Keep the file in failed/ with the reason beside it (``<file>.why.txt``: it may quote
        header values, so it stays with the file, never in the log)."""
        try:
            os.replace(path, self.folder(FAILED) / path.name)
            (self.folder(FAILED) / f"{path.name}.why.txt").write_text(reason + "\n")
        except OSError:
            pass
        with self._lock:
            self.counts["errors"] += 1
            self._received_at.pop(path.name, None)
        self._log("not_answered", sop=hashed(path.stem), status=status,
                  reason=f"see {FAILED}/<file>.why.txt ({reason.split(':')[0][:80]})")

    # --- forwarding -----------------------------------------------------------------------------
    def _outbox(self) -> list[Path]:
        return sorted(p for p in self.folder(OUTBOX).glob("*.dcm"))

    def _to_outbox(self, result: Path) -> None:
        if (self.folder(FORWARDED) / result.name).exists():
            return  # delivered before a restart: never twice
        target = self.folder(OUTBOX) / result.name
        try:
            os.link(result, target)
        except FileExistsError:
            pass
        except OSError:
            atomic_write(target, result.read_bytes())
        self._outbox_event.set()

    def _forward_loop(self) -> None:
        delay = self.forward_retry_seconds
        while not self._stopping.is_set():
            pending = self._outbox()
            if not pending:
                self._outbox_event.wait(0.5)
                self._outbox_event.clear()
                continue
            if self._send(pending):
                delay = self.forward_retry_seconds
                continue
            self._stopping.wait(delay)  # wait before retrying; a stop ends the wait
            delay = min(delay * 2, _MAX_BACKOFF)

    def _send(self, pending: list[Path]) -> bool:
        """Send what is pending over one association; True when everything was delivered."""
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
        from pynetdicom import AE
        from pynetdicom.sop_class import (
            ComprehensiveSRStorage,
            SecondaryCaptureImageStorage,
        )

        ae = AE(ae_title=self.ae_title)
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = self.network_timeout
        for sop_class in (ComprehensiveSRStorage, SecondaryCaptureImageStorage):
            ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        target = self.forward
        try:
            assoc = ae.associate(target.host, target.port, ae_title=target.ae_title)
        except Exception as err:  # noqa: BLE001 - a resolver or socket error: retry later
            return self._forward_failed(len(pending), f"{type(err).__name__}: {err}")
        if not assoc.is_established:
            return self._forward_failed(len(pending), "association not established (refused, rejected or no answer)")
        delivered = 0
        try:
            for path in pending:
                if self._stopping.is_set():
                    break
                status = assoc.send_c_store(path)
                code = int(getattr(status, "Status", -1)) if status else -1
                if code == SUCCESS or 0xB000 <= code <= 0xBFFF:  # success or warning: stored
                    (self.folder(FORWARDED) / path.name).touch()
                    path.unlink(missing_ok=True)
                    delivered += 1
                    with self._lock:
                        self.counts["forwarded"] += 1
                    self._log("forwarded", result=path.stem, to=str(target), status=f"0x{max(code, 0):04X}")
                else:
                    self._forward_failed(1, f"C-STORE status 0x{code & 0xFFFF:04X}" if code >= 0 else
                                         "no C-STORE response (timeout or aborted)", result=path.stem)
        except Exception as err:  # noqa: BLE001 - a dropped connection: retry what is left
            self._forward_failed(len(pending) - delivered, f"{type(err).__name__}: {err}")
        finally:
            if assoc.is_established:
                assoc.release()
            self._write_status()
        return delivered == len(pending)

    def _forward_failed(self, n: int, reason: str, **details) -> bool:
        with self._lock:
            self.counts["forward_failures"] += n
        self._log("forward_failed", to=str(self.forward), pending=n, reason=reason, **details)
        self._write_status()
        return False

    # --- logs and status ------------------------------------------------------------------------
    def _log(self, event: str, **fields) -> None:
        line = json.dumps({"ts": _now(), "event": event, **fields}, default=str)
        with self._log_lock:
            for stream in (self._log_file, self.log_stream):
                if stream is not None and not stream.closed:
                    stream.write(line + "\n")
                    stream.flush()

    def status(self) -> dict:
        """What ``status.json`` holds: no PHI, no UIDs."""
        with self._lock:
            counts = dict(self.counts)
        return {"state": self._state, "updated": _now(), "uptime_seconds": round(time.monotonic() - self._started, 1),
                "ae_title": self.ae_title, "host": self.host, "port": self.port,
                "forward": str(self.forward) if self.forward else None, "secondary_capture": self.secondary_capture,
                "device": self.device.name, "version": self.device.version,
                "bundle_sha256": self.device.bundle_sha256, "counts": counts, "queue": self._queue.unfinished_tasks,
                "outbox": len(self._outbox()) if self.forward else 0}

    def _write_status(self) -> None:
        data = (json.dumps(self.status(), indent=2) + "\n").encode()
        with self._status_lock:
            try:
                atomic_write(self.out / STATUS_JSON, data, durable=False)
            except OSError:
                pass  # the next write may succeed; never stop serving for a status file


def quiet_library_warnings() -> None:
    """Silence Python warnings for the process (pydicom's warnings about odd header values
    quote the values, which may be patient data); the node's own log says what happened."""
    import warnings

    warnings.simplefilter("ignore")


def _supported_contexts():
    """Every storage SOP class (so that a non-image is answered 0x0122, not turned away at
    association), in every transfer syntax pynetdicom knows, and Verification (C-ECHO)."""
    from pynetdicom import (
        ALL_TRANSFER_SYNTAXES,
        AllStoragePresentationContexts,
        build_context,
    )
    from pynetdicom.sop_class import Verification

    return [build_context(Verification),
            *(build_context(c.abstract_syntax, ALL_TRANSFER_SYNTAXES) for c in AllStoragePresentationContexts)]
