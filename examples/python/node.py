#!/usr/bin/env python3
"""A fabrouter node written from proto/fabrouter/v1/network.proto alone: it registers one
printer, takes assignments, downloads and checks each design, reports progress and results
with the assignment's epoch, and keeps each result until the router acknowledges it.

The printer is simulated (it "prints" for --print-seconds); a real node would slice the design
and drive a printer where this one sleeps. It shows that a node built from the contract, in
another language, interoperates with fabd.

    python3 -m pip install -r examples/python/requirements.txt
    python3 examples/python/node.py --server http://127.0.0.1:50051 --node-id py \\
        --secret $NODE_SECRET --lat 52.52 --lon 13.405

The secret may also come from the environment (FAB_NODE_SECRET). With --jobs N the node exits
0 once N results are acknowledged.
"""

import argparse
import hashlib
import os
import queue
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from client import GEN_DIR, connect, generate_api  # noqa: E402  (same directory)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server", default=os.environ.get("FAB_SERVER", "http://127.0.0.1:50051"))
    p.add_argument("--node-id", required=True)
    p.add_argument("--secret", default=os.environ.get("FAB_NODE_SECRET"))
    p.add_argument("--printer-id", default="py-1")
    p.add_argument("--lat", type=float, required=True)
    p.add_argument("--lon", type=float, required=True)
    p.add_argument("--build-mm", type=float, default=200.0)
    p.add_argument("--print-seconds", type=float, default=2.0)
    p.add_argument("--jobs", type=int, default=0, help="exit after this many acknowledged results")
    args = p.parse_args()
    if not args.secret:
        sys.exit("error: the node secret is required (--secret or FAB_NODE_SECRET)")

    generate_api()
    sys.path.insert(0, str(GEN_DIR))
    import grpc

    from fabrouter.v1 import common_pb2, designs_pb2, designs_pb2_grpc, network_pb2, network_pb2_grpc

    channel = connect(args.server)
    auth = [("authorization", f"Bearer node:{args.node_id}:{args.secret}")]
    outbox = queue.Queue()

    def send(**msg):
        outbox.put(network_pb2.NodeMessage(**msg))

    def outgoing():
        while True:
            m = outbox.get()
            if m is None:
                return
            yield m

    printer = network_pb2.PrinterSpec(
        printer_id=args.printer_id,
        technology=common_pb2.TECHNOLOGY_FDM,
        build_x_mm=args.build_mm,
        build_y_mm=args.build_mm,
        build_z_mm=args.build_mm,
        nozzle_diameters_mm=[0.4],
        materials=[common_pb2.Material(kind="PLA", colour="black")],
        profiles=["prusaslicer-b"],
        location=common_pb2.GeoPoint(lat_deg=args.lat, lon_deg=args.lon),
        price=network_pb2.PriceModel(currency="EUR", per_hour_minor=200, per_gram_minor=5),
        makerspace="Python Lab",
        firmware_flavor="marlin2",
    )
    # NodeSession rule 1: the hello comes first.
    send(hello=network_pb2.NodeHello(agent_version="python-example", printers=[printer]))
    stream = network_pb2_grpc.NodeServiceStub(channel).NodeSession(outgoing(), metadata=auth)
    designs = designs_pb2_grpc.DesignServiceStub(channel)

    # Results not yet acknowledged, by (job, epoch): rule 4.
    unacknowledged = {}
    stopped = set()
    acknowledged = 0
    lock = threading.Lock()

    def status(state):
        send(printer_status=network_pb2.PrinterStatus(printer_id=args.printer_id, state=state))

    def download(a):
        digest = hashlib.sha256()
        for chunk in designs.DownloadDesign(
            designs_pb2.DownloadDesignRequest(name=a.design), metadata=auth
        ):
            digest.update(chunk.chunk)
        return digest.hexdigest() == a.design_sha256

    def work(a):
        """One assignment: ack, prepare, print, report; stops early when cancelled or fenced."""
        send(ack=network_pb2.AssignmentAck(job=a.job, epoch=a.epoch, accepted=True))
        progress = lambda f, phase: send(  # noqa: E731
            progress=network_pb2.JobProgress(job=a.job, epoch=a.epoch, fraction=f, phase=phase)
        )
        progress(0.0, "downloading")
        if not download(a):
            result = network_pb2.JobResult(
                job=a.job, epoch=a.epoch, success=False, printer_fault=True,
                reason="the downloaded design does not match its sha256",
            )
        else:
            status(network_pb2.PRINTER_STATE_PRINTING)
            steps = 4
            for i in range(1, steps + 1):
                time.sleep(args.print_seconds / steps)
                with lock:
                    if (a.job, a.epoch) in stopped:
                        status(network_pb2.PRINTER_STATE_IDLE)
                        return
                progress(i / steps, "printing")
            result = network_pb2.JobResult(job=a.job, epoch=a.epoch, success=True)
        with lock:
            unacknowledged[(a.job, a.epoch)] = result
        send(result=result)
        status(network_pb2.PRINTER_STATE_IDLE)
        print(f"{a.job} epoch {a.epoch}: result sent", flush=True)

    def heartbeats(interval):
        while True:
            time.sleep(interval)
            send(heartbeat=network_pb2.Heartbeat())

    try:
        for m in stream:
            kind = m.WhichOneof("msg")
            if kind == "welcome":
                print(f"welcome: lease {m.welcome.lease_s:.0f} s", flush=True)
                threading.Thread(
                    target=heartbeats, args=(m.welcome.heartbeat_interval_s,), daemon=True
                ).start()
                status(network_pb2.PRINTER_STATE_IDLE)
                with lock:
                    for r in unacknowledged.values():
                        send(result=r)
            elif kind == "assignment":
                print(f"{m.assignment.job} epoch {m.assignment.epoch}: assigned", flush=True)
                threading.Thread(target=work, args=(m.assignment,), daemon=True).start()
            elif kind in ("cancel", "fenced"):
                x = getattr(m, kind)
                with lock:
                    stopped.add((x.job, x.epoch))
                    unacknowledged.pop((x.job, x.epoch), None)
                print(f"{x.job} epoch {x.epoch}: {kind}", flush=True)
            elif kind == "result_ack":
                with lock:
                    known = unacknowledged.pop((m.result_ack.job, m.result_ack.epoch), None)
                if known is not None:
                    acknowledged += 1
                    print(f"{m.result_ack.job} epoch {m.result_ack.epoch}: result acknowledged", flush=True)
                if args.jobs and acknowledged >= args.jobs:
                    break
    except grpc.RpcError as e:
        sys.exit(f"error: the router ended the session: {e.code().name}: {e.details()}")
    finally:
        outbox.put(None)
        channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
