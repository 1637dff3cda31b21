"""The node with the tools hospitals use: DCMTK's storescu and echoscu (plain and over TLS) deliver
to it, dsrdump reads its SR, dciodvfy (dicom3tools) finds no error in the results of a standard-valid
image, and Orthanc, as the PACS, files the forwarded SR under its source's patient and study - the
over-long PatientID a real RIS sends included. `.ci/run` installs the tools with apt-get; a test
skips, saying so, only when a tool is not installed."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request

import pydicom
import pytest

from cxr_device.runtime.dicom_tls import TlsFiles
from cxr_device.runtime.node import RESULTS, Forward

from . import test_dicom_results as shared_fixtures
from . import test_node as node_fixtures
from .test_dicom_results import dciodvfy_errors, results_in
from .test_node import CALLED, HOST, TIMEOUT, _chest
from .tls_helpers import issue, make_ca

quick_bundle, node_factory = shared_fixtures.quick_bundle, node_fixtures.node_factory  # the same fixtures
pytestmark = pytest.mark.requirement("REQ-NODE-008")


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {package}; .ci/run installs it)")
    return path


def run(*argv: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_key, ca_cert = make_ca(folder)
    return {"ca": ca, "node": issue(folder, ca_key, ca_cert, "node"), "pacs": issue(folder, ca_key, ca_cert, "pacs")}


def test_storescu_delivers_dsrdump_reads_the_sr_and_dciodvfy_finds_no_error(node_factory, tmp_path):
    storescu, dsrdump = tool("storescu", "dcmtk"), tool("dsrdump", "dcmtk")
    dciodvfy = tool("dciodvfy", "dicom3tools")
    node = node_factory(secondary_capture=True)
    images = [_chest(tmp_path, f"img{i}.dcm", seed=40 + i, PatientAge="004Y") for i in range(3)]
    done = run(storescu, "-aet", "PACS", "-aec", CALLED, HOST, node.port, *images)
    assert done.returncode == 0, done.stdout + done.stderr
    assert node.wait_idle(TIMEOUT) and node.counts["received"] == 3
    results = results_in(node.folder(RESULTS), "SR") + results_in(node.folder(RESULTS), "OT")
    assert len(results) == 6
    for result in results:
        assert dciodvfy and dciodvfy_errors(result) == [], result.name
    shown = run(dsrdump, results_in(node.folder(RESULTS), "SR")[0])
    assert shown.returncode == 0 and "Pneumonia" in shown.stdout and "Probability" in shown.stdout


def test_storescu_is_told_when_an_image_will_not_be_answered(node_factory, tmp_path):
    storescu = tool("storescu", "dcmtk")
    node = node_factory()
    no_study = _chest(tmp_path, "no-study.dcm", seed=50, StudyInstanceUID=None)
    done = run(storescu, "-v", "-aet", "PACS", "-aec", CALLED, HOST, node.port, no_study)
    assert done.returncode != 0 and "Error: DataSetDoesNotMatchSOPClass" in done.stdout + done.stderr, done.stderr
    assert node.counts["received"] == 0 and node.counts["rejected"] == 1


def test_echoscu_and_storescu_over_tls_and_plain_refused_on_the_tls_port(node_factory, pki, tmp_path):
    echoscu, storescu = tool("echoscu", "dcmtk"), tool("storescu", "dcmtk")
    node = node_factory(tls=TlsFiles(pki["node"].cert, pki["node"].key, pki["ca"].cert))
    tls = ["+tls", pki["pacs"].key, pki["pacs"].cert, "+cf", pki["ca"].cert]
    echoed = run(echoscu, *tls, "-aet", "PACS", "-aec", CALLED, HOST, node.port)
    assert echoed.returncode == 0, echoed.stdout + echoed.stderr
    plain = run(echoscu, "-aet", "PACS", "-aec", CALLED, HOST, node.port, timeout=TIMEOUT)
    assert plain.returncode != 0
    stored = run(storescu, *tls, "-aet", "PACS", "-aec", CALLED, HOST, node.port, _chest(tmp_path, "t.dcm", seed=51))
    assert stored.returncode == 0, stored.stdout + stored.stderr
    assert node.wait_idle(TIMEOUT) and len(results_in(node.folder(RESULTS), "SR")) == 1
    anonymous = run(echoscu, "+tla", "+cf", pki["ca"].cert, "-aet", "PACS", "-aec", CALLED, HOST, node.port)
    assert anonymous.returncode != 0  # mutual TLS: a caller without a certificate is refused


# --- Orthanc as the PACS -------------------------------------------------------------------------
@pytest.fixture
def orthanc(tmp_path):
    binary = tool("Orthanc", "orthanc")
    dicom_port, http_port = _free_port(), _free_port()
    config = {"Name": "cxr-device-test", "StorageDirectory": str(tmp_path / "orthanc-db"),
              "IndexDirectory": str(tmp_path / "orthanc-db"), "DicomAet": "ORTHANC", "DicomPort": dicom_port,
              "HttpPort": http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
              "DicomCheckCalledAet": True, "Plugins": [], "DicomModalities": {}, "HttpServerEnabled": True,
              "StorageCompression": False, "LogExportedResources": False}
    path = tmp_path / "orthanc.json"
    path.write_text(json.dumps(config))
    log = open(tmp_path / "orthanc.log", "w")
    process = subprocess.Popen([binary, str(path)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://{HOST}:{http_port}"
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{base}/system", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log.close()
                pytest.fail(f"Orthanc did not start: {(tmp_path / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.1)
    yield {"base": base, "port": dicom_port}
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _lookup(base: str, uid: str) -> str:
    request = urllib.request.Request(f"{base}/tools/lookup", data=uid.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        [found] = [r for r in json.loads(response.read()) if r["Type"] == "Instance"]
    return found["ID"]


def test_orthanc_files_the_forwarded_sr_under_the_source_patient_and_study(node_factory, orthanc, tmp_path):
    storescu = tool("storescu", "dcmtk")
    long_id = "MRN-" + "7" * 72  # what a real RIS sends; LO allows 64
    images = [_chest(tmp_path, "long-id.dcm", seed=60, PatientID=long_id, PatientAge="004Y"),
              _chest(tmp_path, "plain.dcm", seed=61, PatientAge="004Y")]
    sent = run(storescu, "-aet", "MODALITY", "-aec", "ORTHANC", HOST, orthanc["port"], *images)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    node = node_factory(forward=Forward("ORTHANC", HOST, orthanc["port"]), forward_retry_seconds=0.2)
    assert run(storescu, "-aet", "PACS", "-aec", CALLED, HOST, node.port, *images).returncode == 0
    assert node.wait_idle(TIMEOUT) and node.counts["forwarded"] == 2
    base = orthanc["base"]
    for image in images:
        source = pydicom.dcmread(image, stop_before_pixels=True)
        [sr_path] = [p for p in results_in(node.folder(RESULTS), "SR")
                     if p.parent.name == source.StudyInstanceUID]
        sr = pydicom.dcmread(sr_path, stop_before_pixels=True)
        source_study = _get(f"{base}/instances/{_lookup(base, source.SOPInstanceUID)}/study")
        sr_study = _get(f"{base}/instances/{_lookup(base, sr.SOPInstanceUID)}/study")
        assert sr_study["ID"] == source_study["ID"]  # the same study, hence the same patient
        assert sr_study["ParentPatient"] == source_study["ParentPatient"]
        assert sr_study["MainDicomTags"]["StudyInstanceUID"] == source.StudyInstanceUID
        assert sr_study["PatientMainDicomTags"]["PatientID"] == source.PatientID
    patients = _get(f"{base}/patients")
    assert len(patients) == 2  # two patients, no third one made up of a blank or truncated ID
