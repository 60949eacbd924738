"""sslyze against nginx's TLS listener: Mozilla's intermediate profile, and the classic attacks.

nginx runs here with a certificate the way production gets one from a public CA: a leaf signed by
an INTERMEDIATE CA, valid for 90 days, with `server.pem` holding leaf + intermediate. sslyze
trusts only the root (custom_ca_file), so path validation passes only if nginx serves the chain
complete. (The shared stack's trustme certificate is signed by the root directly, is valid for
decades -- the profile allows 366 days -- and has a critical subjectAltName next to a non-empty
subject, which strict RFC 5280 verifiers such as sslyze's refuse. Those are properties of the
test certificate, not of nginx, so this module issues its own.)

sslyze's own checker (`check_server_against_tls_configuration`, profile 5.7 "intermediate")
judges protocols, cipher suites, curves, certificate type/signature/lifespan and the
vulnerabilities it scans for (compression, insecure renegotiation, Heartbleed, CCS injection,
ROBOT, fallback SCSV, extended master secret). The test then states the issue's points
explicitly, so that a change in sslyze's checker cannot silently drop one.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sslyze import (
    CertificateInfoExtraArgument,
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)

from tests.support.containers import _LAUNCHERS, Launcher, Tls
from tests.support.http import new_session
from tests.support.waiting import wait_until


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca_path_length: int | None,
    days: int,
) -> x509.Certificate:
    """An RFC 5280 / CA/Browser Forum shaped certificate (ECDSA P-256, SHA-256).

    Built by hand rather than with trustme: trustme marks subjectAltName critical next to a
    non-empty subject, which strict verifiers (cryptography's, used by sslyze; rustls) refuse.
    """
    now = datetime.datetime.now(datetime.UTC)
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    is_ca = ca_path_length is not None
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_cert.subject if issuer_cert else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.BasicConstraints(ca=is_ca, path_length=ca_path_length if is_ca else None),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        # A CA signs certificates and CRLs; a server certificate only signs its handshakes.
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not is_ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        ).add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def production_like_tls() -> Iterator[Tls]:
    """Root CA -> intermediate CA -> 90-day leaf for localhost/127.0.0.1; nginx gets leaf+inter."""
    directory = Path(tempfile.mkdtemp(prefix="flask-stack-adv-tls-"))
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _certificate("flask-stack adv root CA", root_key, None, ca_path_length=1, days=3650)
    inter = _certificate(
        "flask-stack adv intermediate CA", inter_key, (root, root_key), ca_path_length=0, days=1825
    )
    leaf = _certificate("localhost", leaf_key, (inter, inter_key), ca_path_length=None, days=90)
    pem = serialization.Encoding.PEM
    yield Tls.write(
        directory,
        ca_pem=root.public_bytes(pem),
        chain_pem=leaf.public_bytes(pem) + inter.public_bytes(pem),
        key_pem=leaf_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_nginx(docker_client, network, stack, production_like_tls, db_password) -> Iterator:
    """An nginx with the production-like certificate, in front of the shared API."""
    launch = Launcher(docker_client, network, production_like_tls, db_password)
    _LAUNCHERS.append(launch)  # container logs attached to failures, as for `launcher`
    try:
        nginx = launch.nginx("nginx-sslyze", upstream="api:8000")
        view = launch.stack(stack.api, nginx)
        yield view
    finally:
        launch.cleanup()


def test_chain_is_served_complete_for_an_ordinary_client(tls_nginx):
    # The control for the sslyze verdict below: a client trusting only the root connects.
    def answers() -> bool:
        with new_session(str(tls_nginx.ca)) as session:
            return session.get(tls_nginx.url("/healthz"), timeout=5).status_code == 200

    wait_until(answers, 30, what="nginx to serve TLS with the intermediate chain")


# sslyze loads its bundled Mozilla trust store too; one of its roots has a non-positive serial.
@pytest.mark.filterwarnings(
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)
@pytest.mark.timeout(180, func_only=True)
def test_sslyze_mozilla_intermediate_compliance(tls_nginx, figures):
    commands = set(SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER) | {
        ScanCommand.SESSION_RESUMPTION,
        ScanCommand.TLS_1_3_EARLY_DATA,
    }
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(
            hostname="localhost", port=tls_nginx.https_port, ip_address="127.0.0.1"
        ),
        scan_commands=commands,
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=tls_nginx.ca)
        ),
    )
    scanner = Scanner(per_server_concurrent_connections_limit=4, concurrent_server_scans_limit=1)
    scanner.queue_scans([request])
    [result] = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    scans = result.scan_result
    assert scans is not None
    for command in commands:
        attempt = getattr(scans, command.value)
        assert attempt.status == ScanCommandAttemptStatusEnum.COMPLETED, (
            command,
            attempt.error_reason,
            attempt.error_trace,
        )

    profile = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    issues: dict[str, str] = {}
    try:
        check_server_against_tls_configuration(result, profile)
    except ServerNotCompliantWithTlsConfiguration as exc:
        issues = exc.issues

    versions = {
        name: getattr(scans, field).result.is_tls_version_supported
        for name, field in [
            ("SSLv2", "ssl_2_0_cipher_suites"),
            ("SSLv3", "ssl_3_0_cipher_suites"),
            ("TLSv1.0", "tls_1_0_cipher_suites"),
            ("TLSv1.1", "tls_1_1_cipher_suites"),
            ("TLSv1.2", "tls_1_2_cipher_suites"),
            ("TLSv1.3", "tls_1_3_cipher_suites"),
        ]
    }
    suites = sorted(
        accepted.cipher_suite.openssl_name
        for field in ("tls_1_2_cipher_suites", "tls_1_3_cipher_suites")
        for accepted in getattr(scans, field).result.accepted_cipher_suites
    )
    renegotiation = scans.session_renegotiation.result
    [deployment] = scans.certificate_info.result.certificate_deployments
    figures["sslyze"] = {
        "profile": "Mozilla intermediate 5.7",
        "compliant": not issues,
        "issues": issues,
        "protocols": sorted(name for name, on in versions.items() if on),
        "cipher_suites": suites,
        "compression": scans.tls_compression.result.supports_compression,
        "secure_renegotiation": renegotiation.supports_secure_renegotiation,
        "client_renegotiation_dos": renegotiation.is_vulnerable_to_client_renegotiation_dos,
        "chain_served": len(deployment.received_certificate_chain),
        "early_data": scans.tls_1_3_early_data.result.supports_early_data,
    }

    assert not issues, f"not compliant with Mozilla intermediate: {issues}"
    assert {name for name, on in versions.items() if on} == {"TLSv1.2", "TLSv1.3"}, versions
    allowed = set(profile.ciphers.openssl) | set(profile.ciphersuites)
    weak = [suite for suite in suites if suite not in allowed]
    assert not weak, f"suites outside the profile: {weak}"
    assert not any(
        marker in suite for suite in suites for marker in ("CBC", "RC4", "3DES", "NULL", "EXPORT")
    )
    assert not scans.tls_compression.result.supports_compression
    assert renegotiation.supports_secure_renegotiation
    assert not renegotiation.is_vulnerable_to_client_renegotiation_dos
    assert not scans.heartbleed.result.is_vulnerable_to_heartbleed
    assert not scans.openssl_ccs_injection.result.is_vulnerable_to_ccs_injection
    assert scans.tls_fallback_scsv.result.supports_fallback_scsv
    assert scans.tls_extended_master_secret.result.supports_ems_extension
    assert not scans.tls_1_3_early_data.result.supports_early_data  # no replayable 0-RTT
    # Chain: leaf + intermediate, in order, validated (hostname included) against the root alone,
    # root not sent.
    assert len(deployment.received_certificate_chain) == 2, deployment.received_certificate_chain
    assert deployment.received_chain_has_valid_order
    assert deployment.verified_certificate_chain is not None
    assert len(deployment.verified_certificate_chain) == 3
    assert not deployment.received_chain_contains_anchor_certificate
    assert not deployment.verified_chain_has_sha1_signature
    # Resumption through the session cache works; tickets are off (conf.d/tls.conf).
    resumption = scans.session_resumption.result
    assert resumption.session_id_successful_resumptions_count > 0
    assert resumption.tls_ticket_successful_resumptions_count == 0
