"""Write a local development CA and a server certificate for localhost into certs/.

    certs/ca.pem       the CA to trust (curl --cacert certs/ca.pem, requests verify=...)
    certs/server.pem   the server certificate chain nginx serves
    certs/server.key   its private key (mode 0600)

trustme makes short work of this; its CA key lives only in memory, so the CA written here can never
sign anything else. Keys are ECDSA P-256: smaller and faster handshakes than RSA, and every client
that speaks TLS 1.2 accepts them. Production mounts real certificates at the same paths instead.
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

import trustme
from cryptography import x509

# The uid nginx runs as in its image; when run as root we hand it the key, see chown below.
NGINX_UID = 10001
# Mozilla's profiles allow at most 366 days; renew a month before the end.
VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)


def still_valid(server_pem: Path) -> bool:
    """Whether the leaf certificate in ``server_pem`` exists and is not close to expiring."""
    if not server_pem.exists():
        return False
    leaf = x509.load_pem_x509_certificate(server_pem.read_bytes())
    return leaf.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > RENEW_BEFORE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("certs"))
    parser.add_argument(
        "--name",
        action="append",
        dest="names",
        help="host name or IP address for the certificate (repeatable)",
    )
    parser.add_argument(
        "--if-needed",
        action="store_true",
        help="do nothing while the present certificate is valid for 30 more days",
    )
    args = parser.parse_args()
    names = args.names or ["localhost", "127.0.0.1", "::1"]
    if args.if_needed and still_valid(args.dir / "server.pem"):
        return

    args.dir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA, organization_name="flask-stack development CA")
    now = datetime.datetime.now(datetime.UTC)
    cert = ca.issue_cert(
        *names, not_before=now - datetime.timedelta(minutes=5), not_after=now + VALIDITY
    )

    ca.cert_pem.write_to_path(str(args.dir / "ca.pem"))
    (args.dir / "server.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key = args.dir / "server.key"
    key.touch(mode=0o600)
    key.chmod(0o600)
    cert.private_key_pem.write_to_path(str(key))
    if os.geteuid() == 0:
        # As root the containers cannot read a 0600 key owned by root; give it to nginx's uid.
        # As an ordinary user, compose runs nginx as that user instead (NGINX_USER in the Makefile).
        os.chown(key, NGINX_UID, NGINX_UID)
    print(f"==> certs: wrote {args.dir}/ca.pem, server.pem, server.key for {', '.join(names)}")


if __name__ == "__main__":
    main()
