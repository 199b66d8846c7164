"""Local CA issuance speed: CSR checks plus signing plus the SQLite index, per CA key type.

Prints throughput and latency percentiles for each CA key type, and the ratio of each to the ec-p256 CA
(the default) measured in the same process. A figure, not a pass/fail:

    .venv/bin/python bench/local_enroll.py [--count N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from caconnector.backends.base import BackendContext, EnrollRequest
from caconnector.backends.configs import LocalConfig
from caconnector.backends.local import LocalBackendType
from caconnector.pki.csr import load_csr


def _csr_pem(index: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = f"host{index}.bench.test"
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(Encoding.PEM)
    )


def _run(key_type: str, csrs: list[bytes], workdir: Path) -> list[float]:
    factory = LocalBackendType()
    context = BackendContext(name=f"bench-{key_type}", state_dir=workdir / key_type)
    config = factory.provision(LocalConfig(keytype=key_type), context)  # type: ignore[arg-type]
    ca = factory.open(config, context)
    latencies = []
    for pem in csrs:
        started = time.perf_counter()
        ca.enroll(EnrollRequest(csr=load_csr(pem), request_id=str(uuid.uuid4())))
        latencies.append(time.perf_counter() - started)
    return latencies


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    csrs = [_csr_pem(i) for i in range(args.count)]
    with tempfile.TemporaryDirectory() as tmp:
        results = {kt: _run(kt, csrs, Path(tmp)) for kt in ("ec-p256", "ec-p384", "rsa-2048", "ed25519")}
    baseline = sum(results["ec-p256"])
    print(f"local CA issuance, {args.count} CSRs (EC P-256) per CA key type")
    print(f"{'CA key':<10} {'cert/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'time vs ec-p256':>16}")
    for key_type, latencies in results.items():
        total = sum(latencies)
        print(
            f"{key_type:<10} {len(latencies) / total:>8.0f} {statistics.median(latencies) * 1000:>8.2f} "
            f"{_percentile(latencies, 0.99) * 1000:>8.2f} {total / baseline:>16.2f}"
        )


if __name__ == "__main__":
    main()
