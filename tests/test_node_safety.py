"""The node tells the truth: "stored" only for what it will answer, one answer per image and never a
mix of two images under one SOP Instance UID, rejections an admin can act on, the association limit
counted on live associations, a dead node reported as dead, and DICOM over TLS. Loopback only, every
wait bounded."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage, Verification

from cxr_device.cli import main
from cxr_device.runtime.bundle import load_bundle
from cxr_device.runtime.dicom_tls import TlsError, TlsFiles
from cxr_device.runtime.node import QUARANTINE, RESULTS, DicomNode, hashed, read_status
from cxr_device.runtime.pipeline import ACCEPTED, REFUSED

from . import test_dicom_results as shared_fixtures
from . import test_node as node_fixtures
from .test_dicom_results import PHI, read_sr, results_in
from .test_node import CALLED, HOST, TIMEOUT, _chest, _scu, send
from .tls_helpers import issue, make_ca

quick_bundle, node_factory = shared_fixtures.quick_bundle, node_fixtures.node_factory  # the same fixtures


def _log(node: DicomNode) -> list[dict]:
    return [json.loads(line) for line in (node.out / "node.log").read_text().splitlines()]


def _study(node: DicomNode, study_uid: str) -> dict:
    return json.loads((node.folder(RESULTS) / study_uid / "study.json").read_text())


# --- every store gets the status its fate deserves -------------------------------------------------
@pytest.mark.requirement("REQ-NODE-004")
@pytest.mark.parametrize("case, header, meta", [
    ("no_study_instance_uid", {"StudyInstanceUID": None}, {}),
    ("no_study_instance_uid", {"StudyInstanceUID": "not a uid"}, {}),
    ("sop_class_mismatch", {}, {"MediaStorageSOPClassUID": "1.2.840.10008.5.1.4.1.1.1"}),  # a DX sent as CR
    ("sop_instance_mismatch", {}, {"MediaStorageSOPInstanceUID": "1.2.826.0.1.3680043.8.498.1"}),
])
def test_an_image_that_can_never_be_answered_gets_a900_and_is_not_kept(node_factory, tmp_path, monkeypatch, case,
                                                                       header, meta):
    from pynetdicom import _config
    from pynetdicom.sop_class import ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation

    node = node_factory()
    bad = _chest(tmp_path, "bad.dcm", seed=1, **header)
    ds = pydicom.dcmread(bad)
    for keyword, value in meta.items():  # the request takes its class and instance from the file meta
        setattr(ds.file_meta, keyword, value)
    ds.save_as(bad)
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # the dataset's bytes as they are
    statuses = send(node.port, [bad], contexts=[DigitalXRayImageStorageForPresentation,
                                                ComputedRadiographyImageStorage], syntaxes=[ExplicitVRLittleEndian])
    assert statuses == [0xA900]
    assert node.wait_idle(TIMEOUT) and node.counts["received"] == 0 and node.counts["rejected"] == 1
    assert not list(node.folder("incoming").glob("*.dcm")) and not list(node.folder("failed").glob("*"))
    [refused] = [e for e in _log(node) if e["event"] == "store_refused"]
    assert refused["reason_code"] == case and refused["status"] == "0xA900"
    assert refused["sop"] == hashed(ds.file_meta.MediaStorageSOPInstanceUID) and refused["reason"]
    assert "not a uid" not in json.dumps(refused)


@pytest.mark.requirement("REQ-NODE-004")
def test_the_store_handler_refuses_a_dataset_whose_class_or_instance_differs_from_the_request(quick_bundle,
                                                                                                tmp_path):
    from cxr_device.runtime.node import _unanswerable

    ds = pydicom.dcmread(_chest(tmp_path, "x.dcm", seed=2))
    assert _unanswerable(ds, str(ds.SOPClassUID), str(ds.SOPInstanceUID)) is None
    assert _unanswerable(ds, "1.2.840.10008.5.1.4.1.1.1", str(ds.SOPInstanceUID))[0] == "sop_class_mismatch"
    assert _unanswerable(ds, str(ds.SOPClassUID), "1.2.3.4")[0] == "sop_instance_mismatch"
    del ds.StudyInstanceUID
    assert _unanswerable(ds, str(ds.SOPClassUID), str(ds.SOPInstanceUID))[0] == "no_study_instance_uid"


@pytest.mark.requirement("REQ-NODE-004")
def test_a_resent_identical_image_is_answered_once_and_logged_duplicate(node_factory, tmp_path):
    node = node_factory()
    image = _chest(tmp_path, "same.dcm", seed=3)
    assert send(node.port, [image, image]) == [0, 0]  # the second arrives before the first is processed
    assert node.wait_idle(TIMEOUT)
    assert send(node.port, [image]) == [0]  # and once more after it was answered
    assert node.wait_idle(TIMEOUT)
    assert len(results_in(node.folder(RESULTS), "SR")) == 1
    assert node.counts["received"] == 1 and node.counts["duplicates"] == 2 and node.counts[ACCEPTED] == 1
    assert [e["event"] for e in _log(node)].count("duplicate") == 2


@pytest.mark.requirement("REQ-NODE-004")
def test_other_content_under_an_answered_uid_is_refused_quarantined_and_never_mixed_in(node_factory, tmp_path):
    node = node_factory()
    first = _chest(tmp_path, "first.dcm", seed=4)
    ds = pydicom.dcmread(first)
    ct = pydicom.dcmread(first)
    ct.Modality = "CT"  # same SOPInstanceUID, other content: what a mis-configured modality does
    assert send(node.port, [ds, ct]) == [0, 0x0111]  # the conflict arrives before the first is processed
    assert node.wait_idle(TIMEOUT)
    assert send(node.port, [ct]) == [0x0111]  # and after
    [sr_path] = results_in(node.folder(RESULTS), "SR")
    sr = read_sr(sr_path)
    study = _study(node, ds.StudyInstanceUID)
    [image] = study["images"]
    assert image["status"] == ACCEPTED and sr["measurements"]  # study.json and the SR agree: the first copy
    assert len(study["conflicts"]) == 2 and all(c["sop_instance_uid"] == ds.SOPInstanceUID for c in study["conflicts"])
    assert len(list(node.folder(QUARANTINE).glob("*.dcm"))) == 1  # the same conflicting bytes twice: one file
    assert pydicom.dcmread(next(node.folder(QUARANTINE).glob("*.dcm")), stop_before_pixels=True).Modality == "CT"
    events = [e for e in _log(node) if e["event"] == "conflict"]
    assert len(events) == 2 and all(e["status"] == "0x0111" and e["sop"] == hashed(ds.SOPInstanceUID) for e in events)
    assert node.counts["conflicts"] == 2


# --- logs an admin can act on ---------------------------------------------------------------------
@pytest.mark.requirement("REQ-NODE-005")
def test_every_rejected_association_names_calling_and_called_ae_peer_and_reason(node_factory):
    node = node_factory(allow_ae=["PACS", "ROUTER"])
    for calling, called, accepted in (("EVIL", CALLED, False), ("PACS", "OTHER_AE", False), ("ROUTER", CALLED, True)):
        assoc = _scu(calling, [Verification]).associate(HOST, node.port, ae_title=called)
        assert assoc.is_established is accepted and assoc.is_rejected is not accepted, (calling, called)
        if accepted:
            assoc.release()
    rejected = [e for e in _log(node) if e["event"] == "association_rejected"]
    assert [(e["calling_ae"], e["called_ae"]) for e in rejected] == [("EVIL", CALLED), ("PACS", "OTHER_AE")]
    assert "calling AE" in rejected[0]["reason"] and "called AE" in rejected[1]["reason"]
    assert all(e["peer"] == HOST for e in rejected)


@pytest.mark.requirement("REQ-NODE-005")
def test_n_live_associations_all_get_in_and_the_next_is_rejected_as_transient(node_factory):
    node = node_factory(max_associations=2)
    for _ in range(3):  # a burst of short associations within the limit is never refused
        burst = [_scu(f"SENDER{k}", [Verification]).associate(HOST, node.port, ae_title=CALLED) for k in range(2)]
        assert all(a.is_established for a in burst)
        third = _scu("THIRD", [Verification]).associate(HOST, node.port, ae_title=CALLED)
        assert third.is_rejected and not third.is_established
        assert (third.acceptor.primitive.result, third.acceptor.primitive.result_source,
                third.acceptor.primitive.diagnostic) == (0x02, 0x03, 0x02)
        for assoc in burst:
            assoc.release()
        deadline = time.monotonic() + TIMEOUT
        while node.status()["live_associations"] and time.monotonic() < deadline:
            time.sleep(0.02)
    limit = [e for e in _log(node) if e["event"] == "association_rejected"]
    assert len(limit) == 3 and all("association limit" in e["reason"] for e in limit)


@pytest.mark.requirement("REQ-NODE-005")
def test_status_reports_a_killed_node_as_died(quick_bundle, tmp_path, capsys):
    out = tmp_path / "node"
    process = subprocess.Popen([sys.executable, "-m", "cxr_device", "serve", "--bundle", str(quick_bundle), "--out",
                                str(out), "--port", "0", "--host", HOST], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if (out / "status.json").exists() and json.loads((out / "status.json").read_text())["state"] == "running":
                break
            time.sleep(0.05)
        assert main(["status", "--node", str(out)]) == 0
        assert "running" in capsys.readouterr().out
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert json.loads((out / "status.json").read_text())["state"] == "running"  # what the kill left behind
    assert main(["status", "--node", str(out)]) == 1
    shown = capsys.readouterr().out
    assert "died" in shown and "incoming" in shown
    assert read_status(out)["alive"] is False
    assert main(["status", "--node", str(tmp_path)]) == 2


# --- DICOM over TLS ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_key, ca_cert = make_ca(folder)
    other, other_key, other_cert = make_ca(folder / "other", "untrusted CA")
    return {"ca": ca, "node": issue(folder, ca_key, ca_cert, "node"), "pacs": issue(folder, ca_key, ca_cert, "pacs"),
            "stranger": issue(folder / "other", other_key, other_cert, "stranger")}


def _client_context(pki: dict, who: str | None):
    import ssl

    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca"].cert))
    if who:
        context.load_cert_chain(str(pki[who].cert), str(pki[who].key))
    return context


@pytest.mark.requirement("REQ-NODE-006")
def test_tls_echo_and_store_work_plain_fails_and_mutual_tls_needs_a_signed_certificate(node_factory, pki, tmp_path):
    node = node_factory(tls=TlsFiles(pki["node"].cert, pki["node"].key, pki["ca"].cert), allow_ae=["PACS"])
    assoc = _scu("PACS", [Verification]).associate(HOST, node.port, ae_title=CALLED,
                                                   tls_args=(_client_context(pki, "pacs"), "localhost"))
    assert assoc.is_established and assoc.send_c_echo().Status == 0
    assoc.release()
    plain = _scu("PACS", [Verification]).associate(HOST, node.port, ae_title=CALLED)
    assert not plain.is_established
    for who in (None, "stranger"):  # no client certificate, or one another CA signed
        refused = _scu("PACS", [Verification]).associate(HOST, node.port, ae_title=CALLED,
                                                         tls_args=(_client_context(pki, who), "localhost"))
        assert not refused.is_established, who
    image = _chest(tmp_path, "tls.dcm", seed=5)
    assoc = _scu("PACS").associate(HOST, node.port, ae_title=CALLED, tls_args=(_client_context(pki, "pacs"),
                                                                               "localhost"))
    assert int(assoc.send_c_store(image).Status) == 0
    assoc.release()
    assert node.wait_idle(TIMEOUT) and len(results_in(node.folder(RESULTS), "SR")) == 1
    assert node.status()["tls"] is True


@pytest.mark.requirement("REQ-NODE-006")
def test_tls_1_1_is_refused(node_factory, pki):
    import ssl

    node = node_factory(tls=TlsFiles(pki["node"].cert, pki["node"].key))
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(pki["ca"].cert))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated: which is why the node refuses it
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        old.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    assoc = _scu("PACS", [Verification]).associate(HOST, node.port, ae_title=CALLED, tls_args=(old, "localhost"))
    assert not assoc.is_established


@pytest.mark.requirement("REQ-NODE-006")
def test_results_are_forwarded_over_tls_to_a_verified_destination(node_factory, pki, tmp_path):
    received: list[str] = []

    def on_store(event):
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0

    pacs = AE(ae_title="PACS")
    pacs.add_supported_context(ComprehensiveSRStorage)
    pacs.add_supported_context(SecondaryCaptureImageStorage)
    import ssl

    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(str(pki["pacs"].cert), str(pki["pacs"].key))
    server = pacs.start_server((HOST, 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)],
                               ssl_context=server_ssl)
    try:
        from cxr_device.runtime.node import Forward

        node = node_factory(forward=Forward("PACS", "localhost", server.server_address[1]),
                            forward_tls=TlsFiles(ca=pki["ca"].cert), forward_retry_seconds=0.2)
        assert send(node.port, [_chest(tmp_path, "fwd.dcm", seed=6)]) == [0]
        assert node.wait_idle(TIMEOUT)
    finally:
        server.shutdown()
    [sr] = results_in(node.folder(RESULTS), "SR")
    assert received == [pydicom.dcmread(sr, stop_before_pixels=True).SOPInstanceUID]
    study = _study(node, pydicom.dcmread(sr, stop_before_pixels=True).StudyInstanceUID)
    assert study["images"][0]["forwarded_at"] and study["last_forwarded_at"]


@pytest.mark.requirement("REQ-NODE-006")
def test_tls_options_that_cannot_work_are_refused_before_anything_listens(quick_bundle, pki, tmp_path, capsys):
    base = ["serve", "--bundle", str(quick_bundle), "--out", str(tmp_path / "n"), "--host", HOST, "--port", "0"]
    cases = ((["--tls-cert", str(pki["node"].cert)], "go together"),
             (["--tls-cert", str(pki["node"].cert), "--tls-key", str(pki["pacs"].key)], "matching private key"),
             (["--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(pki["node"].key)], "file not found"),
             (["--forward-tls-ca", str(pki["ca"].cert)], "need --forward"),
             (["--forward", "PACS@localhost:104", "--forward-tls-cert", str(pki["node"].cert)],
              "--forward-tls-ca is needed"),
             (["--forward", "PACS@localhost:104", "--forward-tls-ca", str(pki["ca"].cert), "--forward-tls-cert",
               str(pki["node"].cert)], "go together"))
    for extra, words in cases:
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, (extra, err)
    with pytest.raises(TlsError):
        DicomNode(load_bundle(quick_bundle), tmp_path / "m", port=0, host=HOST,
                  tls=TlsFiles(pki["node"].cert, pki["node"].key, tmp_path / "no-ca.pem"))


def test_nothing_identifying_reaches_the_log_or_status(node_factory, tmp_path):
    node = node_factory()
    ds = pydicom.dcmread(_chest(tmp_path, "phi.dcm", seed=7))
    ds.PatientID = "MRN-" + "7" * 72
    assert send(node.port, [ds]) == [0]
    assert node.wait_idle(TIMEOUT)
    text = (node.out / "node.log").read_text() + (node.out / "status.json").read_text()
    assert not any(p in text for p in (*PHI, ds.PatientID))
    [answered] = [e for e in _log(node) if e["event"] == "answered"]
    assert answered["invalid_identity_values"] == {"PatientID": 1}
    assert answered["status"] in (ACCEPTED, REFUSED)
    assert json.loads((node.out / "status.json").read_text())["pid"] == os.getpid()
