"""The device as a DICOM node: a Storage SCP that receives images (C-STORE), gates and scores
them with the locked bundle, and answers into each image's study with a DICOM SR (and
optionally a Secondary Capture), forwarding the results to a PACS when asked.

**Stores first, then processes; "stored" only for what will be answered.** A C-STORE is
acknowledged ``0x0000`` only once the dataset is on disk and the node can answer it: it is
written to ``OUT/incoming/.tmp-*``, flushed and its header parsed, then renamed to
``OUT/incoming/<SOPInstanceUID>.dcm``. A dataset that cannot be parsed (truncated, corrupt) is
answered ``0xC210``; one whose SOP Class UID differs from its presentation context, whose SOP
Instance UID differs from the request's, or that has no usable StudyInstanceUID or
SOPInstanceUID (nothing says where its result belongs) is answered ``0xA900``. Neither is kept;
the log names the reason and the hash of the SOP Instance UID.

**The same SOP Instance UID twice.** A copy with the same dataset bytes as one received before
(pending or answered) is a ``duplicate``: acknowledged, logged, answered once. A copy with other
content is a ``conflict``: it is never mixed into the first one's result; it is kept in
``OUT/quarantine/`` (with ``<file>.why.txt``), noted in the study's ``study.json``
(``conflicts``), logged, and refused with ``0x0111`` (duplicate SOP instance), so the sender
knows it was not answered. One worker thread
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

**What is accepted.** Image storage SOP classes (:func:`image_storage`: the storage classes
pynetdicom knows whose IOD has pixel data, per highdicom's tables of the standard: CR, DX,
Secondary Capture, CT, MR, US, ...) in any transfer syntax: a mis-routed CT is stored and
answered with a refusal SR. Other storage classes (SR, waveforms, PDFs, ...) are negotiated but
answered ``0x0122`` (SOP class not supported). Bigger datasets than ``max_dataset_bytes`` get
``0xA700``. The node keeps serving after any of these.

**Associations.** A request is rejected, and logged with the calling AE, the called AE as
received, the peer address and the reason, when it calls another AE title, comes from a calling
AE not on ``allow_ae`` (when given), or would exceed ``max_associations`` *live* associations
(counted from acceptance to connection close: N senders at once all get in; the next is
rejected with the transient "local limit exceeded"). An association whose presentation contexts
were all rejected is logged with that reason. With TLS (``tls``, :mod:`dicom_tls`), only TLS 1.2
or later is spoken; a plain association on the TLS port fails.

**Logs and status.** One JSON object per line in ``OUT/node.log`` (and on ``log_stream``):
events with calling AE titles, peer addresses, result UIDs and *hashed* source UIDs
(``sha256(uid)[:16]``) - never a patient name, ID or birth date. Identity values copied into a
result although invalid for their VR are counted by keyword; library warnings are reported
once per place, their text withheld (:mod:`cxr_device.library_warnings`). ``OUT/status.json``
holds the process id, the counts since start, queue and outbox lengths, uptime and the bundle
hash, rewritten as it goes; :func:`read_status` tells a running node from one that died.
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
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import IO

from ..dicom_pixels import DicomReadError, read_dataset
from ..errors import CxrDeviceError
from . import study_record
from .atomic import atomic_write
from .dicom_results import DeviceIdentity, score_to_dicom, study_folder_name
from .dicom_tls import TlsFiles, client_context, server_context
from .header_check import UNREADABLE
from .pipeline import ACCEPTED, REFUSED, DevicePipeline
from .result_identity import uid_problem
from .study_record import CONFLICT, DUPLICATE

DEFAULT_AE_TITLE, DEFAULT_PORT = "CXR_DEVICE", 11112
SUCCESS, SOP_CLASS_NOT_SUPPORTED, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0x0122, 0xA700, 0xC210
DUPLICATE_SOP_INSTANCE, DOES_NOT_MATCH_SOP_CLASS = 0x0111, 0xA900
INCOMING, RESULTS, DONE, FAILED, OUTBOX, FORWARDED = "incoming", "results", "done", "failed", "outbox", "forwarded"
QUARANTINE = "quarantine"
FOLDERS = (INCOMING, RESULTS, DONE, FAILED, OUTBOX, FORWARDED, QUARANTINE)
STATUS_JSON, NODE_LOG, LOCK_FILE = "status.json", "node.log", ".node.lock"
#: A-ASSOCIATE-RJ (result, source, diagnostic) and how the log names each reason.
REJECT_CALLED_AE = (0x01, 0x01, 0x07)
REJECT_CALLING_AE = (0x01, 0x01, 0x03)
REJECT_LIMIT = (0x02, 0x03, 0x02)


@cache
def image_storage() -> dict[str, str]:
    """UID -> name of the storage SOP classes the node stores and answers: those pynetdicom
    knows whose IOD holds pixel data (highdicom's tables of the standard)."""
    from highdicom._standard_utils import does_iod_have_pixel_data
    from pynetdicom import AllStoragePresentationContexts

    images = {}
    for context in AllStoragePresentationContexts:
        uid = context.abstract_syntax
        try:
            if does_iod_have_pixel_data(uid):
                images[str(uid)] = uid.name
        except KeyError:  # an IOD highdicom's tables do not describe: not one the device reads
            continue
    return images


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
                 forward_retry_seconds: float = 5.0, log_stream: IO[str] | None = None,
                 tls: TlsFiles | None = None, forward_tls: TlsFiles | None = None):
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
        self.tls, self.forward_tls = tls, forward_tls
        # contexts built now: a bad certificate or key stops the node before it listens
        self._server_ssl = server_context(tls) if tls is not None else None
        self._forward_ssl = client_context(forward_tls) if forward_tls is not None else None
        self.out = Path(out_dir)
        self.pipeline = DevicePipeline(bundle)
        self.device = DeviceIdentity.from_bundle(bundle)
        self.log_stream = log_stream
        self.counts = dict.fromkeys(("received", ACCEPTED, REFUSED, UNREADABLE, "errors", "rejected", "duplicates",
                                     "conflicts", "associations_rejected", "recovered", "forwarded",
                                     "forward_failures"), 0)
        self.latencies: deque[float] = deque(maxlen=10_000)  # seconds, C-STORE received -> results written
        self._queue: queue.Queue[Path] = queue.Queue()
        #: incoming file name -> its receipt: monotonic and UTC time, dataset digest (pending files only)
        self._pending: dict[str, dict] = {}
        self._live: set[int] = set()  # ids of the associations holding a slot (accepted, not yet closed)
        self._lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._stopping = threading.Event()
        self._outbox_event = threading.Event()
        self._sending = threading.Event()  # set while a batch is being delivered and booked
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

        for name in FOLDERS:
            self.folder(name).mkdir(parents=True, exist_ok=True)
        self._lock_folder()
        self._log_file = open(self.out / NODE_LOG, "a", encoding="utf-8")
        self._recover()
        ae = AE(ae_title=self.ae_title)
        for context in _supported_contexts():
            ae.add_supported_context(context.abstract_syntax, context.transfer_syntax)
        # the AE titles and the association limit are checked by _on_requested (so that every
        # rejection is logged with its reason); pynetdicom's own limit only caps threads
        ae.require_calling_aet, ae.require_called_aet = [], False
        ae.maximum_associations = self.max_associations + 16
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = self.network_timeout
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REQUESTED, self._on_requested),
                    (evt.EVT_ACCEPTED, self._on_accepted), (evt.EVT_ABORTED, self._on_aborted),
                    (evt.EVT_CONN_CLOSE, self._on_closed)]
        try:
            self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers,
                                           ssl_context=self._server_ssl)
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
        self._log("started", ae_title=self.ae_title, host=self.host, port=self.port, pid=os.getpid(),
                  tls=self.tls.describe() if self.tls else None, max_associations=self.max_associations,
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
        self._folder_lock = open(self.out / LOCK_FILE, "a")
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
            if self._queue.unfinished_tasks == 0 and not (self.forward and (self._sending.is_set() or self._outbox())):
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

    # --- associations -------------------------------------------------------------------------
    def _on_requested(self, event) -> None:
        """Accept or reject an association request, and log why a rejected one was rejected."""
        request, assoc = event.assoc.requestor.primitive, event.assoc
        who = {"calling_ae": str(request.calling_ae_title), "called_ae": str(request.called_ae_title),
               "peer": assoc.requestor.address}
        reject, reason = None, ""
        if str(request.called_ae_title).strip() != self.ae_title:
            reject, reason = REJECT_CALLED_AE, f"wrong called AE title (this node is {self.ae_title})"
        elif self.allow_ae and str(request.calling_ae_title).strip() not in self.allow_ae:
            reject, reason = REJECT_CALLING_AE, "unknown calling AE title (not on --allow-ae)"
        else:
            with self._lock:
                if len(self._live) >= self.max_associations:
                    reject = REJECT_LIMIT
                    reason = f"association limit reached ({len(self._live)} live of --max-associations " \
                             f"{self.max_associations}); transient: the sender may retry"
                else:
                    self._live.add(id(assoc))
        if reject is None:
            return
        with self._lock:
            self.counts["associations_rejected"] += 1
        assoc.acse.send_reject(*reject)
        self._log("association_rejected", **who, reason=reason,
                  rejection=f"result {reject[0]}, source {reject[1]}, diagnostic {reject[2]}")
        self._write_status()
        assoc.kill()  # as pynetdicom does after its own rejections: the reject is delivered, then the DUL stops

    def _on_accepted(self, event) -> None:
        assoc = event.assoc
        self._log("association_accepted", calling_ae=assoc.requestor.ae_title, peer=assoc.requestor.address,
                  tls=self._server_ssl is not None)
        if not assoc.accepted_contexts:
            self._log("association_without_context", calling_ae=assoc.requestor.ae_title,
                      peer=assoc.requestor.address, reason="no acceptable presentation context: every abstract "
                      "syntax or transfer syntax proposed was rejected, so nothing can be sent on it",
                      proposed=len(assoc.rejected_contexts))

    def _on_aborted(self, event) -> None:
        self._log("association_aborted", calling_ae=event.assoc.requestor.ae_title,
                  peer=event.assoc.requestor.address)

    def _on_closed(self, event) -> None:
        with self._lock:
            self._live.discard(id(event.assoc))

    # --- receiving ------------------------------------------------------------------------------
    def _on_store(self, event) -> int:
        received = {"monotonic": study_record.monotonic_now(), "received_at": study_record.utc_now(),
                    "calling_ae": str(event.assoc.requestor.ae_title).strip(), "notified_by": self._notified_by()}
        request = event.request
        sop_class, sop_uid = str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID)
        who = {"calling_ae": event.assoc.requestor.ae_title, "peer": event.assoc.requestor.address,
               "sop": hashed(sop_uid)}
        if sop_class not in image_storage():
            return self._reject("not_an_image", SOP_CLASS_NOT_SUPPORTED, who, sop_class=sop_class)
        data = request.DataSet.getvalue() if request.DataSet is not None else b""
        if len(data) > self.max_dataset_bytes:
            return self._reject("too_large", OUT_OF_RESOURCES, who, bytes=len(data), limit=self.max_dataset_bytes)
        target = self.folder(INCOMING) / _file_name(sop_uid)
        temporary = target.with_name(f".tmp-{os.urandom(6).hex()}.dcm")
        try:
            with open(temporary, "wb") as handle:
                handle.write(event.encoded_dataset(include_meta=True))
                handle.flush()
                os.fsync(handle.fileno())
            ds = read_dataset(temporary, header_only=True)  # parsable, not truncated: else nothing to answer into
            problem = _unanswerable(ds, sop_class, sop_uid)
            if problem:
                temporary.unlink(missing_ok=True)
                return self._reject(problem[0], DOES_NOT_MATCH_SOP_CLASS, who, reason=problem[1])
            received.update(source_sha256=hashlib.sha256(data).hexdigest(),
                            study=study_folder_name(str(ds.StudyInstanceUID)))
            return self._keep(temporary, target, sop_uid, received, who)
        except DicomReadError as err:
            temporary.unlink(missing_ok=True)
            reason = str(err).replace(str(temporary), "dataset")
            return self._reject("corrupt", CANNOT_UNDERSTAND, who, reason=reason)
        except OSError as err:  # disk full, permissions: the sender keeps the image and may retry
            temporary.unlink(missing_ok=True)
            return self._reject("store_failed", OUT_OF_RESOURCES, who, reason=err.strerror or str(err))
        except Exception as err:  # noqa: BLE001 - whatever pydicom raises: answer, never crash the association
            temporary.unlink(missing_ok=True)
            return self._reject("corrupt", CANNOT_UNDERSTAND, who, reason=f"{type(err).__name__}")

    def _notified_by(self) -> str:
        """How a study's notification is made: ``forward`` (the PACS acknowledges the result) when
        the node forwards, else ``sr`` (the SR written) - recorded per image in study.json."""
        return "forward" if self.forward is not None else "sr"

    def _keep(self, temporary: Path, target: Path, sop_uid: str, received: dict, who: dict) -> int:
        """Queue a new image; acknowledge a duplicate; quarantine and refuse a conflict."""
        study_folder = self.folder(RESULTS) / received["study"]
        with self._lock:  # one decision per SOPInstanceUID at a time (receivers run in parallel)
            pending = self._pending.get(target.name)
            if pending is not None:
                state = DUPLICATE if pending["source_sha256"] == received["source_sha256"] else CONFLICT
            else:
                state = study_record.lookup(study_folder, sop_uid.strip("\0 "), received["source_sha256"]).state
            if state == study_record.NEW:
                os.replace(temporary, target)
                self._pending[target.name] = received
                self.counts["received"] += 1
            elif state == DUPLICATE:
                self.counts["duplicates"] += 1
            else:
                self.counts["conflicts"] += 1
        if state == study_record.NEW:
            self._queue.put(target)
            self._log("received", **who, study=hashed(received["study"]), bytes=temporary.stat().st_size
                      if temporary.exists() else target.stat().st_size)
            self._write_status()
            return SUCCESS
        if state == DUPLICATE:
            temporary.unlink(missing_ok=True)
            self._log("duplicate", **who, study=hashed(received["study"]),
                      reason="the same dataset was received before under this SOPInstanceUID: answered once")
            self._write_status()
            return SUCCESS
        self._quarantine(temporary, target.stem, sop_uid, received,
                         "other content under a SOPInstanceUID already received")
        self._log("conflict", **who, study=hashed(received["study"]), status=f"0x{DUPLICATE_SOP_INSTANCE:04X}",
                  reason="same SOPInstanceUID, other content: refused and quarantined; the first copy's result stands",
                  quarantined=QUARANTINE)
        self._write_status()
        return DUPLICATE_SOP_INSTANCE

    def _quarantine(self, path: Path, stem: str, sop_uid: str, received: dict, why: str) -> None:
        """Keep a conflicting copy aside (never processed) and note it in its study's record."""
        kept = self.folder(QUARANTINE) / f"{stem}-{received['source_sha256'][:12]}.dcm"
        os.replace(path, kept)
        (kept.parent / f"{kept.name}.why.txt").write_text(why + "\n")
        study_record.record_conflict(self.folder(RESULTS) / received["study"], received["study"],
                                     {"sop_instance_uid": sop_uid.strip("\0 "), "source_sha256": received["source_sha256"],
                                      "at": received["received_at"], "quarantined": kept.name,
                                      "kept": "the first copy's result"})

    def _reject(self, why: str, status: int, who: dict, **details) -> int:
        with self._lock:
            self.counts["rejected"] += 1
        self._log("store_refused", reason_code=why, status=f"0x{status:04X}", **who, **details)
        self._write_status()
        return status

    # --- processing -----------------------------------------------------------------------------
    def _recover(self) -> None:
        """Remove partial files of a previous run (never acknowledged or never renamed) and
        queue what was received but not processed, oldest first; re-queue the outbox."""
        for partial in [*self.folder(INCOMING).glob(".tmp-*"), *self.folder(RESULTS).glob("*/.tmp-*")]:
            partial.unlink(missing_ok=True)
        pending = sorted(self.folder(INCOMING).glob("*.dcm"), key=lambda p: (p.stat().st_mtime, p.name))
        for path in pending:
            self._pending[path.name] = {"source_sha256": study_record.file_digest(path), "received_at": None,
                                        "monotonic": None, "notified_by": self._notified_by()}
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
        paths = list(dict.fromkeys(p for p in batch if p.exists()))
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
        with self._lock:
            receipts = {str(p): dict(self._pending.get(p.name, {})) for p in paths}
        predictions, written = score_to_dicom(self.pipeline, paths, self.folder(RESULTS), self.secondary_capture,
                                              received=receipts)
        for path, prediction, result in zip(paths, predictions, written):
            self._finish(path, prediction, result, receipts[str(path)])

    def _finish(self, path: Path, prediction, result, receipt: dict) -> None:
        """Queue the new results for forwarding, move the source to done/ (failed/ when no
        result could be written, quarantine/ for a conflict found at restart), count and log."""
        if result.skipped:
            self._fail(path, result.skipped, prediction.status, result.source_sop_instance_uid)
            return
        if result.conflict:
            self._quarantine(path, path.stem, result.source_sop_instance_uid,
                             {**receipt, "study": study_folder_name(result.study_instance_uid),
                              "source_sha256": receipt.get("source_sha256") or "unknown",
                              "received_at": receipt.get("received_at") or study_record.utc_now()},
                             "other content under a SOPInstanceUID already answered (found at restart)")
            with self._lock:
                self._pending.pop(path.name, None)
                self.counts["conflicts"] += 1
            self._log("conflict", sop=hashed(result.source_sop_instance_uid), study=hashed(result.study_instance_uid),
                      reason="same SOPInstanceUID, other content: not answered and quarantined; the first copy's "
                      "result stands", quarantined=QUARANTINE)
            return
        for produced in (result.sr, result.sc):
            if produced is not None and self.forward is not None and not result.existed:
                self._to_outbox(produced)
        os.replace(path, self.folder(DONE) / path.name)
        with self._lock:
            self.counts[prediction.status] += 1
            self.counts["duplicates"] += int(result.existed)
            self._pending.pop(path.name, None)
            started = receipt.get("monotonic")
            latency = time.monotonic() - started if started is not None else None
            if latency is not None and not result.existed:
                self.latencies.append(latency)
        self._log("answered", sop=hashed(result.source_sop_instance_uid),
                  study=hashed(result.study_instance_uid), status=prediction.status, decision=prediction.decision,
                  probability=None if prediction.probability is None else round(prediction.probability, 4),
                  sr=result.sr.stem if result.sr else None, sc=result.sc.stem if result.sc else None,
                  already_answered=result.existed,
                  refusal=None if prediction.status == ACCEPTED else _rules_of(prediction),
                  invalid_identity_values=dict(Counter(result.invalid_identity)) or None,
                  library_warnings=result.library_warnings or None,
                  latency_ms=None if latency is None else round(latency * 1000, 1))

    def _fail(self, path: Path, reason: str, status: str = "error", sop_uid: str | None = None) -> None:
        """Keep the file in failed/ with the reason beside it (``<file>.why.txt``: it may quote
        header values, so it stays with the file, never in the log)."""
        try:
            os.replace(path, self.folder(FAILED) / path.name)
            (self.folder(FAILED) / f"{path.name}.why.txt").write_text(reason + "\n")
        except OSError:
            pass
        with self._lock:
            self.counts["errors"] += 1
            self._pending.pop(path.name, None)
        self._log("not_answered", sop=hashed(sop_uid) if sop_uid else _hashed_file(path), status=status,
                  reason=f"{reason.split(':')[0][:120]} (details in {FAILED}/<file>.why.txt)")

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
            self._sending.set()  # before a delivered file leaves the outbox, until its count is booked
            try:
                delivered = self._send(pending)
            finally:
                self._sending.clear()
            if delivered:
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
        tls = (self._forward_ssl, target.host) if self._forward_ssl is not None else None
        try:
            assoc = ae.associate(target.host, target.port, ae_title=target.ae_title, tls_args=tls)
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
                    acknowledged, acknowledged_monotonic = study_record.utc_now(), study_record.monotonic_now()
                    study = _study_of(path)
                    (self.folder(FORWARDED) / path.name).touch()
                    path.unlink(missing_ok=True)
                    if study:
                        study_record.record_forwarded(self.folder(RESULTS) / study_folder_name(study), path.name,
                                                      acknowledged, acknowledged_monotonic)
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
    def log_event(self, event: str, **fields) -> None:
        """Add one event to the node's log (for what happens around the node: library warnings)."""
        self._log(event, **fields)

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
        return {"state": self._state, "pid": os.getpid(), "updated": _now(),
                "uptime_seconds": round(time.monotonic() - self._started, 1),
                "ae_title": self.ae_title, "host": self.host, "port": self.port,
                "forward": str(self.forward) if self.forward else None, "secondary_capture": self.secondary_capture,
                "tls": self._server_ssl is not None, "forward_tls": self._forward_ssl is not None,
                "max_associations": self.max_associations, "live_associations": len(self._live),
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


def read_status(out_dir: str | Path) -> dict:
    """``status.json`` of a node folder, with ``alive``: whether a node holds the folder now.
    A node that was killed leaves "running" behind; it is reported as ``died`` (its lock is free
    or its process is gone), with the time of its last update."""
    out = Path(out_dir)
    try:
        status = json.loads((out / STATUS_JSON).read_text())
    except FileNotFoundError:
        raise NodeError(f"{out}: no {STATUS_JSON}: not the folder of a cxr-device node (serve --out)") from None
    except (OSError, ValueError) as err:
        raise NodeError(f"{out / STATUS_JSON}: cannot be read ({err})") from None
    alive = _folder_locked(out / LOCK_FILE) and _process_exists(status.get("pid"))
    status["alive"] = alive
    if status.get("state") == "running" and not alive:
        status["state"] = "died"
        status["note"] = (f"the node stopped without shutting down (process {status.get('pid')} is gone or no longer "
                          f"holds the folder; last update {status.get('updated')}); images it acknowledged but did not "
                          f"answer are in {INCOMING}/ and are processed at the next start")
    return status


def _folder_locked(lock_file: Path) -> bool:
    """True when another process holds the node folder's lock."""
    try:
        import fcntl
    except ImportError:
        return True  # not POSIX: only the pid can tell
    if not lock_file.exists():
        return False
    with open(lock_file, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _process_exists(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unanswerable(ds, sop_class: str, sop_uid: str) -> tuple[str, str] | None:
    """(reason code, reason) when a received dataset could never be answered, else None."""
    if str(ds.get("SOPClassUID", "")).strip("\0 ") != sop_class.strip("\0 "):
        return "sop_class_mismatch", "the dataset's SOPClassUID is not the SOP class of its presentation context"
    problem = uid_problem(ds, "SOPInstanceUID")
    if problem:
        return "no_sop_instance_uid", problem
    if str(ds.SOPInstanceUID).strip("\0 ") != sop_uid.strip("\0 "):
        return "sop_instance_mismatch", "the dataset's SOPInstanceUID is not the one the C-STORE request names"
    problem = uid_problem(ds, "StudyInstanceUID")
    if problem:
        return "no_study_instance_uid", f"{problem}: no study to answer into"
    return None


def _rules_of(prediction) -> str:
    """The rule ids (or the first words of the reason) an image was not read for: no values."""
    errors = [f["rule"] for f in prediction.findings if f.get("severity") == "error"]
    return ", ".join(errors) if errors else (prediction.reason or prediction.status).split(":")[0][:80]


def _hashed_file(path: Path) -> str:
    """The hashed SOP Instance UID of an incoming file (its name is the UID, or ``sop-<hash>``)."""
    return path.stem[4:] if path.stem.startswith("sop-") else hashed(path.stem)


def _study_of(path: Path) -> str:
    """The StudyInstanceUID of a result file ('' when it cannot be read)."""
    import pydicom

    try:
        return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
                   .get("StudyInstanceUID", ""))
    except Exception:  # noqa: BLE001 - a record of the time, never a reason to fail a delivery
        return ""


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
