"""Build time and peak memory of the registry index (KnownSubjects) for N subjects.

    python bench/detection/registry_scale.py 100000

Each fictitious subject has 9 identifiers (email, phone, first and last name, customer id,
postal address, birth date, device id), so every hash, chain and normalisation is indexed.
From 20,000 subjects the index is built by one process per core and its digests are cached
under $XDG_CACHE_HOME/gdpr-audit: run twice to see a cold and a warm load, or point
XDG_CACHE_HOME at an empty folder for a cold one. CPU time counts every process.
"""

import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "addon"))
from gdpr_audit.detectors.known import KnownSubjects  # noqa: E402
from gdpr_audit.policy import Subject  # noqa: E402


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    subjects = [Subject(f"gen-{i:06d}", (
        ("email", f"person.{i:06d}@example.org"), ("phone", f"+3361{i:08d}"[:12]),
        ("first_name", f"Prénom{i}"), ("last_name", f"Nom{i}"), ("customer_id", f"G-{i:06d}"),
        ("postal_address", f"{i % 300} rue de la Paix, {75000 + i % 20} Paris"),
        ("birth_date", "1990-01-01"), ("device_id", f"{i}.1768035600")), {})
        for i in range(count)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    start, cpu_start = time.perf_counter(), cpu()
    registry = KnownSubjects(subjects)
    elapsed, used = time.perf_counter() - start, cpu() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    print(f"{count} subjects: {elapsed:.1f} s build ({used:.1f} s CPU); {len(registry._keys)} "
          f"digest prefixes; peak RSS {peak} MiB (the subjects alone: {before} MiB; "
          f"largest worker: {worker} MiB)")


def cpu() -> float:
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


if __name__ == "__main__":
    main()
