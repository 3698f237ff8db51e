"""TLS for a cluster: distributed's ``Security``, and the files its workers read.

The scheduler and the clients hold their credentials in memory. Workers are units
on pilots: they get the paths of their CA certificate, certificate and key, in a
directory of the session directory (mode 0700, the files 0600), never the key
material on a command line. Credentials that already are files (a ``Security``
made from paths) are used where they are.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from distributed.security import Security

from rp_executor.exceptions import BadParameter

log = logging.getLogger(__name__)

#: The worker's TLS settings (``Security.get_tls_config_for_role("worker")``), the
#: file each is written to when it is held in memory.
_FILES = {"ca_file": "ca.pem", "cert": "worker.pem", "key": "worker.key"}


def security_of(security: Any) -> Any:
    """The ``distributed.Security`` of a cluster: ``True`` (the default) makes a
    temporary one (:func:`temporary`), ``False`` or None means plain TCP (None is
    returned), a ``Security`` is used as it is.

    :raises BadParameter: anything else, or a Security without TLS credentials.
    """
    if security is True:
        return temporary()
    if security is False or security is None:
        return None
    if not isinstance(security, Security):
        raise BadParameter(f"DaskCluster: security must be True, False or a "
                           f"distributed.Security; got {security!r}",
                           attribute="security", value=security)
    config = security.get_tls_config_for_role("worker")
    missing = [k for k in _FILES if not config.get(k)]
    if missing:
        raise BadParameter(f"DaskCluster: the Security has no worker {missing[0]}; the "
                           "workers need a CA file, a certificate and a key",
                           attribute="security", value=security)
    return security


def temporary() -> Any:
    """A ``Security`` for every role of one cluster, as ``Security.temporary()``
    makes it (a new self-signed certificate and key, in memory, encryption
    required), with an elliptic-curve key (P-256) instead of RSA-2048: made in a
    millisecond instead of about 100 ms, which a cluster's start-up waits for."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dask-internal")])
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("dask-internal")]),
                           critical=False)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return Security(require_encryption=True, tls_ca_file=cert_pem,
                    tls_client_key=key_pem, tls_client_cert=cert_pem,
                    tls_scheduler_key=key_pem, tls_scheduler_cert=cert_pem,
                    tls_worker_key=key_pem, tls_worker_cert=cert_pem)


def worker_files(security: Any, directory: Path) -> dict[str, str]:
    """The paths of the workers' ``ca_file``, ``cert`` and ``key``: those held in
    memory are written into ``directory`` (made 0700; files 0600)."""
    paths = {}
    config = security.get_tls_config_for_role("worker")
    for key in _FILES:
        value = config[key]
        if "-----BEGIN" not in value:        # a path already
            paths[key] = os.path.abspath(value)
            continue
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        path = directory / _FILES[key]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(value)
        paths[key] = str(path)
    return paths


def remove_files(directory: Path) -> None:
    """Remove the credentials :func:`worker_files` wrote (when the cluster closes)."""
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
        log.debug("removed the TLS files in %s", directory)
