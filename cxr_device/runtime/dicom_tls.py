"""DICOM over TLS for the node (PS3.15 Annex B, the BCP 195 profile): the SSL contexts pynetdicom uses.

- TLS 1.2 or later only; for TLS 1.2, forward-secret AEAD cipher suites only (ECDHE/DHE with
  AES-GCM or ChaCha20-Poly1305, as BCP 195 / RFC 9325 recommends); TLS 1.3's suites are all AEAD.
- The node (:func:`server_context`) presents ``cert`` / ``key``; with a CA bundle every caller
  must present a certificate signed by it (mutual TLS), and the AE allow-list still applies.
- Forwarding (:func:`client_context`) verifies the destination's certificate against a CA bundle
  and its host name, and presents the node's own certificate when given (for a PACS that asks).

Files are PEM. Errors name the file and what is wrong with it.
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from ..errors import CxrDeviceError

#: TLS 1.2 suites allowed (OpenSSL names): forward secrecy and authenticated encryption only.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"


class TlsError(CxrDeviceError):
    """A certificate, key or CA file cannot be used."""


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files of one end of a TLS association."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def describe(self) -> str:
        """How the node's log and status describe it (file names, no secrets)."""
        return ", ".join(f"{k} {v.name}" for k, v in (("cert", self.cert), ("key", self.key), ("ca", self.ca)) if v)


def _base(protocol: int) -> ssl.SSLContext:
    """A context that trusts nothing by default (no system CAs): only the files the site names."""
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def _files_exist(files: TlsFiles, option: str) -> None:
    for name, path in (("cert", files.cert), ("key", files.key), ("ca", files.ca)):
        if path is not None and not Path(path).is_file():
            raise TlsError(f"{option}-{name} {path}: file not found")


def _load_chain(context: ssl.SSLContext, files: TlsFiles, option: str) -> None:
    try:
        context.load_cert_chain(str(files.cert), str(files.key))
    except ssl.SSLError as err:
        raise TlsError(f"{option}-cert {files.cert} / {option}-key {files.key}: not a PEM certificate and its "
                       f"matching private key ({err.reason or err})") from None


def _load_ca(context: ssl.SSLContext, ca: Path, option: str) -> None:
    try:
        context.load_verify_locations(cafile=str(ca))
    except (ssl.SSLError, ValueError) as err:
        raise TlsError(f"{option}-ca {ca}: not a PEM CA certificate bundle ({err})") from None


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The node's TLS context: its certificate and key; with ``files.ca``, mutual TLS."""
    if files.cert is None or files.key is None:
        raise TlsError("--tls-cert and --tls-key go together: give both (PEM files) to serve DICOM over TLS")
    _files_exist(files, "--tls")
    context = _base(ssl.PROTOCOL_TLS_SERVER)
    _load_chain(context, files, "--tls")
    if files.ca is not None:
        _load_ca(context, files.ca, "--tls")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """The forwarder's TLS context: the destination verified against ``files.ca`` (host name
    included); the node's own certificate presented when ``cert`` and ``key`` are given."""
    if files.ca is None:
        raise TlsError("--forward-tls-ca is needed to forward over TLS: the PACS's certificate must be verified")
    if (files.cert is None) != (files.key is None):
        raise TlsError("--forward-tls-cert and --forward-tls-key go together: give both or neither")
    _files_exist(files, "--forward-tls")
    context = _base(ssl.PROTOCOL_TLS_CLIENT)  # certificate and host name verified
    _load_ca(context, files.ca, "--forward-tls")
    if files.cert is not None:
        _load_chain(context, files, "--forward-tls")
    return context
