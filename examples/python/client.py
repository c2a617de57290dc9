#!/usr/bin/env python3
"""A complete fabrouter client in one file: upload an STL, read its mesh verdict, get a quote,
order the print and follow the job until it ends.

    python3 -m pip install -r examples/python/requirements.txt
    python3 examples/python/client.py --server http://127.0.0.1:50051 --token $FAB_TOKEN \\
        --lat 52.39 --lon 13.06 model.stl

The token may also come from the environment (FAB_TOKEN), the server from FAB_SERVER.
Exits 0 only when the job completed.

The API code is generated from ../../proto on first run (or by ./generate.sh) into gen/,
which is git-ignored; it is regenerated when a .proto file is newer than it.
"""

import argparse
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_DIR = HERE.parent.parent / "proto"
GEN_DIR = HERE / "gen"

# Bytes per upload message: well under gRPC's default 4 MiB message limit.
CHUNK_BYTES = 256 * 1024


def generated_is_fresh(protos):
    marker = GEN_DIR / "fabrouter" / "v1" / "jobs_pb2_grpc.py"
    return marker.exists() and all(p.stat().st_mtime <= marker.stat().st_mtime for p in protos)


def generate_api():
    """Runs protoc (from grpcio-tools) on proto/fabrouter/v1/*.proto when gen/ is missing or stale."""
    protos = sorted((PROTO_DIR / "fabrouter" / "v1").glob("*.proto"))
    if not protos:
        sys.exit(f"error: no .proto files under {PROTO_DIR}")
    if generated_is_fresh(protos):
        return
    try:
        from importlib.resources import files

        from grpc_tools import protoc
    except ImportError:
        sys.exit("error: grpcio-tools is missing: python3 -m pip install -r requirements.txt")
    # grpc_tools ships the well-known types (google/protobuf/timestamp.proto, ...) in _proto.
    well_known = files("grpc_tools") / "_proto"
    # Generate beside gen/ and rename it into place, so a client starting at the same moment
    # never imports half-written modules.
    tmp = Path(tempfile.mkdtemp(prefix=".gen-", dir=HERE))
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            *[str(p.relative_to(PROTO_DIR)) for p in protos],
        ]
    )
    if status != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        sys.exit(f"error: protoc failed ({status}) generating the API from {PROTO_DIR}")
    if not generated_is_fresh(protos):  # else another client just did it
        shutil.rmtree(GEN_DIR, ignore_errors=True)
        try:
            tmp.rename(GEN_DIR)
        except OSError:
            pass  # another client renamed its copy first
    shutil.rmtree(tmp, ignore_errors=True)


generate_api()
sys.path.insert(0, str(GEN_DIR))

import grpc  # noqa: E402

from fabrouter.v1 import common_pb2, designs_pb2, designs_pb2_grpc  # noqa: E402
from fabrouter.v1 import jobs_pb2, jobs_pb2_grpc  # noqa: E402


class Failed(Exception):
    """An error to print for the user, without a traceback."""


def word(enum, value, prefix):
    """JOB_STATE_COMPLETED -> completed: the generated enums know their proto names."""
    try:
        name = enum.Name(value)
    except ValueError:
        return "unknown"
    return name.removeprefix(prefix).lower()


def minutes(seconds):
    s = round(max(seconds, 0.0))
    return f"{s // 60}m{s % 60:02d}s"


def call(name, fn, *args, **kwargs):
    """Runs one RPC; a gRPC error becomes a readable one naming the call, its code and message."""
    try:
        return fn(*args, **kwargs)
    except grpc.RpcError as e:
        raise Failed(f"{name} failed: {e.code().name}: {e.details()}") from None


def connect(server):
    """One channel carries every service; TLS when the address is https://."""
    if server.startswith("https://"):
        return grpc.secure_channel(server.removeprefix("https://"), grpc.ssl_channel_credentials())
    return grpc.insecure_channel(server.removeprefix("http://"))


def upload_requests(path, size):
    """The upload stream: first the metadata (name, exact size, format), then chunks."""
    yield designs_pb2.UploadDesignRequest(
        metadata=designs_pb2.UploadMetadata(
            file_name=path.name,
            declared_size_bytes=size,
            format=designs_pb2.DESIGN_FORMAT_STL,
            # sha256 is optional: a hex digest the server checks.
        )
    )
    # Read lazily while gRPC sends, so the file is never held whole in memory.
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield designs_pb2.UploadDesignRequest(chunk=chunk)


def run(args):
    """The whole flow. True when the job completed, False when it failed or was cancelled."""
    path = Path(args.file)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise Failed(f"cannot read {path}: {e.strerror}") from None
    if not args.token:
        raise Failed("no token: pass --token or set FAB_TOKEN")

    channel = connect(args.server)
    designs = designs_pb2_grpc.DesignServiceStub(channel)
    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    # Every call carries `authorization: Bearer <token>`.
    auth = [("authorization", f"Bearer {args.token}")]

    # 1. Upload: a client stream (the generator above).
    design = call(
        "UploadDesign", designs.UploadDesign, upload_requests(path, size), metadata=auth, timeout=300
    )
    print(f"uploaded {design.file_name} as {design.name}")

    # 2. The mesh verdict: the server checked the model while it arrived.
    report = design.mesh_report
    e = report.extent_mm
    print(
        f"mesh verdict: {word(designs_pb2.Verdict, report.verdict, 'VERDICT_')} "
        f"({report.triangles} triangles, {e.x:.1f} x {e.y:.1f} x {e.z:.1f} mm)"
    )
    for f in report.findings:
        print(f"  {word(designs_pb2.Severity, f.severity, 'SEVERITY_')} {f.code}: {f.message}")
    if report.verdict == designs_pb2.VERDICT_NOT_PRINTABLE:
        raise Failed("the model is not printable; fix it (or try RepairDesign) first")

    # 3. Quote: the best printers for this design and customer, each with its reasons.
    spec = jobs_pb2.JobSpec(
        design=design.name,
        technology=common_pb2.TECHNOLOGY_FDM,
        customer_location=common_pb2.GeoPoint(lat_deg=args.lat, lon_deg=args.lon),
        quantity=1,
    )
    if args.material:
        spec.material.CopyFrom(common_pb2.Material(kind=args.material))  # any colour
    quote = call(
        "QuoteJob",
        jobs.QuoteJob,
        jobs_pb2.QuoteJobRequest(spec=spec, max_options=3),
        metadata=auth,
        timeout=120,
    )
    if not quote.options:
        for r in quote.rejections:
            print(f"  rejected {r.printer} [{r.code}]: {r.message}")
        raise Failed("no printer can take this job")
    best = quote.options[0]
    print(
        f"best option: {best.printer} at {best.makerspace}: {best.distance_km:.1f} km, "
        f"{best.price.amount_minor / 100:.2f} {best.price.currency}, ready in {minutes(best.eta_s)}"
    )
    for reason in best.reasons:
        print(f"  why: {reason}")

    # 4. Submit on the quoted printer. The idempotency key makes a retry (after a timeout, say)
    #    return the same job instead of printing twice: keep it until you have the answer.
    key = str(uuid.uuid4())
    submitted = call(
        "SubmitJob",
        jobs.SubmitJob,
        jobs_pb2.SubmitJobRequest(spec=spec, printer=best.printer, idempotency_key=key),
        metadata=auth,
        timeout=60,
    )
    if not submitted.jobs:
        raise Failed("SubmitJob returned no job")
    job = submitted.jobs[0]
    print(f"submitted {job.name} (idempotency key {key})")

    # 5. Watch: a server stream replaying the job's history, then live events until it ends.
    ended = (jobs_pb2.JOB_STATE_COMPLETED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED)
    state = jobs_pb2.JOB_STATE_UNSPECIFIED
    events = jobs.WatchJob(jobs_pb2.WatchJobRequest(name=job.name, from_sequence=0), metadata=auth)
    try:
        for event in events:
            state = event.state
            print(
                f"event #{event.sequence} {word(jobs_pb2.JobEventKind, event.kind, 'JOB_EVENT_KIND_')} "
                f"({word(jobs_pb2.JobState, state, 'JOB_STATE_')}, {event.progress_fraction * 100:.0f}%) "
                f"{event.message}".rstrip()
            )
            if state in ended:
                events.cancel()  # done: stop listening
                print(f"job {job.name} {word(jobs_pb2.JobState, state, 'JOB_STATE_')}")
                return state == jobs_pb2.JOB_STATE_COMPLETED
    except grpc.RpcError as e:
        raise Failed(f"WatchJob failed: {e.code().name}: {e.details()}") from None
    raise Failed(
        f"the watch ended while the job was still {word(jobs_pb2.JobState, state, 'JOB_STATE_')}; "
        f"follow it with `fab jobs watch {job.name}`"
    )


def main():
    parser = argparse.ArgumentParser(
        description="Upload an STL to fabrouter, order the best print and watch it"
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("FAB_SERVER", "http://127.0.0.1:50051"),
        help="router address: http://host:port, or https://host:port for TLS (env FAB_SERVER)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("FAB_TOKEN"),
        help="API token, a designer or marketplace token (env FAB_TOKEN)",
    )
    parser.add_argument("--lat", type=float, required=True, help="the customer's latitude")
    parser.add_argument("--lon", type=float, required=True, help="the customer's longitude")
    parser.add_argument("--material", help="required material, e.g. PLA (default: any)")
    parser.add_argument("file", help="the STL file to print")
    args = parser.parse_args()
    try:
        completed = run(args)
    except Failed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0 if completed else 1


if __name__ == "__main__":
    sys.exit(main())
