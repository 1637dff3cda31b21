"""The DICOM node over loopback: images in by C-STORE, one SR per image back in its study; refusals,
non-images, truncation, size and caller limits; 50 images from 4 concurrent associations; a kill
and restart mid-batch; forwarding with retries; the `serve` command. Every network wait is bounded."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import (
    ComprehensiveSRStorage,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    SecondaryCaptureImageStorage,
    Verification,
)

from cxr_device.cli import main
from cxr_device.runtime.bundle import load_bundle
from cxr_device.runtime.node import (
    DONE,
    INCOMING,
    RESULTS,
    DicomNode,
    NodeError,
    parse_forward,
)
from cxr_device.runtime.pipeline import ACCEPTED, REFUSED, UNREADABLE
from cxr_device.synth_dicom import write_synthetic_dicom

from . import test_dicom_results as shared_fixtures
from .test_dicom_results import PHI, read_sr, results_in

quick_bundle, demo_dicoms = shared_fixtures.quick_bundle, shared_fixtures.demo_dicoms  # the same fixtures

HOST, CALLED = "127.0.0.1", "CXR_DEVICE"
IMAGES = [DigitalXRayImageStorageForPresentation, ComputedRadiographyImageStorage, CTImageStorage,
          SecondaryCaptureImageStorage]
TIMEOUT = 60.0  # the longest any test waits for the node


@pytest.fixture
def node_factory(quick_bundle, tmp_path):
    """``make(**options)``: a started node on 127.0.0.1 and an ephemeral port, stopped at the end."""
    bundle = load_bundle(quick_bundle)
    nodes: list[DicomNode] = []

    def make(out: Path | None = None, **options) -> DicomNode:
        node = DicomNode(bundle, out or tmp_path / "node", port=0, host=HOST, **options)
        node.start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop(timeout=10)


def _scu(calling: str = "PACS", contexts=None, syntaxes=None) -> AE:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 15
    for sop_class in contexts or IMAGES:
        if syntaxes:
            ae.add_requested_context(sop_class, syntaxes)
        else:
            ae.add_requested_context(sop_class)
    return ae


def send(port: int, items, calling: str = "PACS", called: str = CALLED, contexts=None, syntaxes=None) -> list[int]:
    """C-STORE each file (or dataset) over one association; the statuses (-1: no response)."""
    assoc = _scu(calling, contexts, syntaxes).associate(HOST, port, ae_title=called)
    assert assoc.is_established, "association not established"
    try:
        statuses = []
        for item in items:
            status = assoc.send_c_store(item)
            statuses.append(int(status.Status) if status and "Status" in status else -1)
        return statuses
    finally:
        assoc.release()


def _chest(folder: Path, name: str, seed: int, study: str | None = None, **header) -> Path:
    pixels = (np.random.default_rng(seed).random((512, 512)) * 255).astype(np.uint8)
    if study:
        header["StudyInstanceUID"] = study
    return write_synthetic_dicom(folder / name, pixels, seed=seed, **header)


def _one_sr_per_source(results: Path, sources: list[Path]) -> dict[str, Path]:
    """Source SOPInstanceUID -> its SR; asserts exactly one SR per source, each in its study."""
    by_source: dict[str, list[Path]] = {}
    for path in results_in(results, "SR"):
        ds = pydicom.dcmread(path)
        referenced = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0] \
            .ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        by_source.setdefault(referenced, []).append(path)
        assert path.parent.name == ds.StudyInstanceUID
    expected = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in sources}
    assert set(by_source) == set(expected)
    assert all(len(v) == 1 for v in by_source.values()), {k: len(v) for k, v in by_source.items() if len(v) > 1}
    for uid, source in expected.items():
        src, sr = pydicom.dcmread(source, stop_before_pixels=True), pydicom.dcmread(by_source[uid][0])
        assert sr.StudyInstanceUID == src.StudyInstanceUID and sr.SeriesInstanceUID != src.SeriesInstanceUID
        assert (sr.PatientName, sr.PatientID, sr.AccessionNumber) == (src.PatientName, src.PatientID,
                                                                      src.AccessionNumber)
    return {uid: paths[0] for uid, paths in by_source.items()}


def _no_phi(node: DicomNode) -> None:
    for name in ("node.log", "status.json"):
        text = (node.out / name).read_text()
        assert text and not any(p in text for p in PHI), name


# --- 1. the demo's images through the node ---------------------------------------------------------
@pytest.mark.requirement("REQ-PRED-001", "REQ-NODE-001", "REQ-DICOM-003")
def test_demo_dicoms_get_one_sr_each_in_their_study_and_refusals_say_why(node_factory, demo_dicoms):
    node = node_factory()
    assert send(node.port, list(demo_dicoms.values())) == [0x0000] * 4
    assert node.wait_idle(TIMEOUT)
    results = node.folder(RESULTS)
    srs = _one_sr_per_source(results, list(demo_dicoms.values()))
    for name, path in demo_dicoms.items():
        sr = read_sr(srs[pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID])
        if name in ("lateral_chest", "ct_head"):
            rule = "view-position" if name == "lateral_chest" else "modality"
            assert sr["comments"][0].startswith("REFUSED") and any(c.startswith(f"{rule}:") for c in sr["comments"])
            assert sr["measurements"] == {}
        else:
            assert 0 <= sr["measurements"]["Probability"] <= 1 and sr["evaluations"]["Pneumonia"] in ("Present", "Absent")
    pa = pydicom.dcmread(demo_dicoms["pa_chest_opacity"], stop_before_pixels=True)
    study = json.loads((results / pa.StudyInstanceUID / "study.json").read_text())
    assert study["chosen"] == pa.SOPInstanceUID  # PA preferred over AP; the lateral is refused
    status = json.loads((node.out / "status.json").read_text())
    assert status["counts"]["received"] == 4 and status["counts"][ACCEPTED] == 2 and status["counts"][REFUSED] == 2
    assert status["queue"] == 0 and status["bundle_sha256"] == node.device.bundle_sha256
    assert not list(node.folder(INCOMING).iterdir()) and len(list(node.folder(DONE).iterdir())) == 4
    _no_phi(node)


# --- 2. what the node must not read ---------------------------------------------------------------
@pytest.mark.requirement("REQ-NODE-001")
def test_non_image_sop_class_gets_0122_and_the_node_serves_the_next_association(node_factory, demo_dicoms, tmp_path):
    node = node_factory()
    assert send(node.port, [demo_dicoms["pa_chest_opacity"]]) == [0]
    assert node.wait_idle(TIMEOUT)
    [sr] = results_in(node.folder(RESULTS), "SR")
    assert send(node.port, [sr], contexts=[ComprehensiveSRStorage]) == [0x0122]  # an SR is not an image
    echo = _scu(contexts=[Verification]).associate(HOST, node.port, ae_title=CALLED)
    assert echo.is_established and echo.send_c_echo().Status == 0
    echo.release()
    assert send(node.port, [demo_dicoms["ap_chest_clear"]]) == [0]  # still serving
    assert node.wait_idle(TIMEOUT) and node.counts[ACCEPTED] == 2 and node.counts["rejected"] == 1
    assert '"reason_code": "not_an_image"' in (node.out / "node.log").read_text()


def test_allow_list_and_called_ae_title_are_enforced_at_association(node_factory):
    node = node_factory(allow_ae=["PACS", "ROUTER"])
    for calling, called, accepted in (("EVIL", CALLED, False), ("PACS", "OTHER_AE", False), ("ROUTER", CALLED, True)):
        assoc = _scu(calling, [Verification]).associate(HOST, node.port, ae_title=called)
        assert assoc.is_established is accepted and assoc.is_rejected is not accepted, (calling, called)
        if accepted:
            assoc.release()
    assert '"calling_ae": "EVIL"' in (node.out / "node.log").read_text()


@pytest.mark.requirement("REQ-NODE-001")
def test_truncated_datasets_raw_stream_refused_decoded_short_pixels_answered_unreadable(node_factory, tmp_path,
                                                                                      monkeypatch):
    node = node_factory()
    whole = _chest(tmp_path, "whole.dcm", seed=5).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(whole[:len(whole) // 2])
    # (a) the raw, truncated byte stream (an SCU that streams files as they are): 0xC210, nothing kept
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    assert send(node.port, [cut], syntaxes=[ExplicitVRLittleEndian]) == [0xC210]
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", False)
    assert not list(node.folder(INCOMING).glob("*")) and node.counts["received"] == 0
    # (b) an SCU that parses the file first re-encodes it with the pixels it found: a well-formed
    # dataset whose Pixel Data is too short. Stored, and answered with an UNREADABLE SR.
    assert send(node.port, [cut]) == [0]
    assert node.wait_idle(TIMEOUT) and node.counts[UNREADABLE] == 1
    [sr] = results_in(node.folder(RESULTS), "SR")
    comments = read_sr(sr)["comments"]
    assert comments[0].startswith("UNREADABLE") and "pixel data" in comments[1]
    assert '"reason_code": "corrupt"' in (node.out / "node.log").read_text()


def test_datasets_over_the_size_limit_get_a700(node_factory, demo_dicoms):
    node = node_factory(max_dataset_bytes=100_000)
    assert send(node.port, [demo_dicoms["pa_chest_opacity"]]) == [0xA700]  # 263 kB
    assert node.counts["rejected"] == 1 and not list(node.folder(INCOMING).glob("*.dcm"))


# --- 3. load ------------------------------------------------------------------------------------
@pytest.mark.requirement("REQ-NODE-001")
def test_fifty_images_from_four_concurrent_associations_each_answered_once(node_factory, tmp_path):
    studies = [pydicom.uid.generate_uid(entropy_srcs=["load study", str(k)]) for k in range(5)]
    files = [_chest(tmp_path / "load", f"img{i:02d}.dcm", seed=100 + i, study=studies[i % 5],
                    ViewPosition="AP" if i % 3 else "PA") for i in range(50)]
    node = node_factory(max_associations=4)
    statuses: dict[int, list[int]] = {}

    def sender(k: int) -> None:
        statuses[k] = send(node.port, files[k::4], calling=f"MODALITY{k}")

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert sorted(sum(statuses.values(), [])) == [0] * 50
    assert node.wait_idle(TIMEOUT)
    _one_sr_per_source(node.folder(RESULTS), files)
    assert node.counts["received"] == 50 and node.counts[ACCEPTED] == 50 and node.counts["duplicates"] == 0
    for study in studies:
        summary = json.loads((node.folder(RESULTS) / study / "study.json").read_text())
        assert len(summary["images"]) == 10
        chosen = next(i for i in summary["images"] if i["sop_instance_uid"] == summary["chosen"])
        assert chosen["view"] == "PA"
    _no_phi(node)


# --- 4. killed and restarted mid-batch --------------------------------------------------------------
class _Killed(BaseException):
    """What a kill looks like to the worker thread: it stops right there."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.requirement("REQ-NODE-002")
def test_a_kill_mid_batch_then_a_restart_loses_nothing_and_answers_nothing_twice(quick_bundle, tmp_path,
                                                                                 monkeypatch):
    files = [_chest(tmp_path / "batch", f"k{i}.dcm", seed=200 + i) for i in range(10)]
    out = tmp_path / "node"
    bundle = load_bundle(quick_bundle)
    real_finish = DicomNode._finish
    finished = []

    def dies_on_the_third(self, path, prediction, result, *rest):
        if len(finished) == 2:  # the third file's SR is written, its source not yet moved: then the kill
            raise _Killed
        finished.append(path)
        real_finish(self, path, prediction, result, *rest)

    monkeypatch.setattr(DicomNode, "_finish", dies_on_the_third)
    first = DicomNode(bundle, out, port=0, host=HOST, batch_size=4)
    first.start()
    try:
        assert send(first.port, files) == [0] * 10  # receiving goes on while the worker is dead
        worker = first._threads[0]
        worker.join(TIMEOUT)
        assert not worker.is_alive()
    finally:
        first.stop(timeout=10)
    assert len(finished) == 2 and len(list((out / INCOMING).glob("*.dcm"))) == 8
    written_before_the_kill = len(results_in(out / RESULTS, "SR"))  # the two finished and 1+ of the batch
    assert 3 <= written_before_the_kill <= 10
    monkeypatch.setattr(DicomNode, "_finish", real_finish)
    second = DicomNode(bundle, out, port=0, host=HOST)
    second.start()
    try:
        assert second.counts["recovered"] == 8 and second.wait_idle(TIMEOUT)
    finally:
        second.stop(timeout=10)
    _one_sr_per_source(out / RESULTS, files)  # every received image: exactly one SR
    assert second.counts["duplicates"] == written_before_the_kill - 2  # found written, not written again
    assert second.counts[ACCEPTED] == 8
    assert not list((out / INCOMING).iterdir()) and len(list((out / DONE).iterdir())) == 10


@pytest.mark.requirement("REQ-NODE-002")
def test_a_file_that_cannot_be_answered_is_kept_in_failed_with_its_reason(node_factory, tmp_path):
    out = tmp_path / "node"
    (out / INCOMING).mkdir(parents=True)  # left by a previous run: no StudyInstanceUID to answer into
    _chest(out / INCOMING, "orphan.dcm", seed=9, StudyInstanceUID=None)
    node = node_factory(out)
    assert node.counts["recovered"] == 1 and node.wait_idle(TIMEOUT)
    assert node.counts["errors"] == 1 and not results_in(out / RESULTS, "SR")
    assert (out / "failed" / "orphan.dcm").is_file()
    assert "StudyInstanceUID" in (out / "failed" / "orphan.dcm.why.txt").read_text()
    assert '"event": "not_answered"' in (out / "node.log").read_text()
    _no_phi(node)


# --- 5. forwarding ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def test_results_are_forwarded_after_failures_and_never_twice(node_factory, demo_dicoms, tmp_path):
    port = _free_port()
    node = node_factory(forward=parse_forward(f"PACS@{HOST}:{port}"), forward_retry_seconds=0.1,
                        secondary_capture=True)
    assert send(node.port, [demo_dicoms["pa_chest_opacity"]]) == [0]
    log = node.out / "node.log"
    deadline = time.monotonic() + TIMEOUT
    while '"forward_failed"' not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert '"forward_failed"' in log.read_text()  # nobody listens yet: logged, kept in the outbox
    assert not node.wait_idle(0.2) and len(list(node.folder("outbox").glob("*.dcm"))) == 2  # the SR and the SC
    received: list[str] = []
    pacs = AE(ae_title="PACS")
    for sop_class in (ComprehensiveSRStorage, SecondaryCaptureImageStorage):
        pacs.add_supported_context(sop_class)
    server = pacs.start_server((HOST, port), block=False, evt_handlers=[
        (evt.EVT_C_STORE, lambda event: received.append(event.dataset.SOPInstanceUID) or 0x0000)])
    try:
        assert node.wait_idle(TIMEOUT)  # retried until delivered
        node.stop(timeout=10)
        again = DicomNode(node.pipeline.bundle, node.out, port=0, host=HOST,
                          forward=node.forward, forward_retry_seconds=0.1)
        again.start()
        assert send(again.port, [demo_dicoms["pa_chest_opacity"]]) == [0]  # a re-send: already answered
        assert again.wait_idle(TIMEOUT)
        again.stop(timeout=10)
    finally:
        server.shutdown()
    assert len(received) == 2 and len(set(received)) == 2  # the SR and the SC, each once
    assert {p.stem for p in results_in(node.folder(RESULTS), "SR") + results_in(node.folder(RESULTS), "OT")} \
        == set(received)
    assert again.counts["duplicates"] == 1 and again.counts["forwarded"] == 0


def test_idle_means_every_delivery_is_booked(node_factory, demo_dicoms, monkeypatch):
    """wait_idle once returned while a delivered result had left the outbox but was not yet counted
    (Orthanc interop, 1 of 2 forwarded): booking a delivery is slowed here, and idle must wait for it."""
    from cxr_device.runtime import node as node_module

    booked = node_module.study_record.record_forwarded

    def slow_booking(*args, **kwargs):
        time.sleep(0.5)
        return booked(*args, **kwargs)

    monkeypatch.setattr(node_module.study_record, "record_forwarded", slow_booking)
    pacs = AE(ae_title="PACS")
    pacs.add_supported_context(ComprehensiveSRStorage)
    port = _free_port()
    server = pacs.start_server((HOST, port), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)])
    try:
        node = node_factory(forward=parse_forward(f"PACS@{HOST}:{port}"), forward_retry_seconds=0.1)
        assert send(node.port, [demo_dicoms["pa_chest_opacity"]]) == [0]
        assert node.wait_idle(TIMEOUT)
        assert node.counts["forwarded"] == 1  # idle came after the delivery was booked
    finally:
        server.shutdown()


# --- 6. options and the serve command ----------------------------------------------------------------
def test_bad_options_a_port_in_use_and_a_shared_folder_are_refused(quick_bundle, tmp_path, capsys):
    base = ["serve", "--bundle", str(quick_bundle), "--out", str(tmp_path / "n"), "--host", HOST]
    for extra, words in ((["--forward", "PACS:104"], "expected AE@HOST:PORT"),
                         (["--forward", "PACS@host:99999"], "not between 1 and 65535"),
                         (["--ae-title", "A" * 17], "1 to 16 printable ASCII"),
                         (["--allow-ae", "bad\\ae"], "--allow-ae")):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert main(["serve", "--bundle", str(tmp_path / "nowhere"), "--out", str(tmp_path / "n")]) == 2
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        assert main([*base, "--port", str(busy.getsockname()[1])]) == 2
        err = capsys.readouterr().err
        assert "in use" in err and "Traceback" not in err
        with pytest.raises(NodeError, match="in use"):
            DicomNode(load_bundle(quick_bundle), tmp_path / "m", port=busy.getsockname()[1], host=HOST).start()
    first = DicomNode(load_bundle(quick_bundle), tmp_path / "shared", port=0, host=HOST)
    first.start()
    try:
        with pytest.raises(NodeError, match="another cxr-device node is using this folder"):
            DicomNode(load_bundle(quick_bundle), tmp_path / "shared", port=0, host=HOST).start()
    finally:
        first.stop(timeout=10)


def test_serve_command_answers_and_stops_cleanly_on_sigterm(quick_bundle, demo_dicoms, tmp_path):
    out = tmp_path / "served"
    process = subprocess.Popen(
        [sys.executable, "-m", "cxr_device", "serve", "--bundle", str(quick_bundle), "--out", str(out),
         "--port", "0", "--host", HOST, "--allow-ae", "PACS"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)
        reader.start()
        deadline = time.monotonic() + TIMEOUT
        while not any("listening" in line for line in lines) and time.monotonic() < deadline:
            assert process.poll() is None, "".join(lines)
            time.sleep(0.05)
        [listening] = [line for line in lines if "listening" in line]
        port = int(listening.split(f"{HOST}:")[1].split(";")[0])
        assert send(port, [demo_dicoms["pa_chest_opacity"]]) == [0]
        while not results_in(out / RESULTS, "SR") and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        reader.join(5)
    finally:
        if process.poll() is None:
            process.kill()
    assert len(results_in(out / RESULTS, "SR")) == 1
    events = [json.loads(line)["event"] for line in lines if line.startswith("{")]
    assert events[0] == "started" and "answered" in events and events[-1] == "stopped"
    assert "Traceback" not in "".join(lines) and not any(p in "".join(lines) for p in PHI)
    assert json.loads((out / "status.json").read_text())["state"] == "stopped"
