"""Chroma benchmark: CHROMA_VECTOR.* through /rpc against direct chromadb calls with the same embedding function.

    .venv/bin/python bench/chroma.py            # 10,000 documents, 300 queries per path
    .venv/bin/python bench/chroma.py --quick    # 1,000 documents, 60 queries (smoke run)

One run starts, on free loopback ports, a Valkey, a ``chroma run`` server and the gateway under uvicorn (pointed at
that server with CHROMA_HOST/PORT), and stops them at the end. Both paths share the one Chroma server, so the
difference is exactly what the gateway adds: HTTP + envelope + validation + thread pool, and its embedding work
happening in the gateway process instead of the caller's. It measures:

* embedding throughput of the bundled model alone (in this process, no storage);
* adding the corpus in batches through ``CHROMA_VECTOR.add_documents`` and directly with ``collection.add``
  (embed + store), as documents per second;
* single-text queries (``n_results=10``) through ``CHROMA_VECTOR.query_documents`` and directly with
  ``collection.query`` on a held handle, interleaved so both see the same machine load; p50/p95 and the p50 ratio
  (target: RPC <= 1.2x direct);
* ``get_collection_info`` against ``collection.count()``: the gateway's fixed cost when nothing is embedded.

The machine is shared: the load average at start and end is printed with the table.
"""
from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from devstack import services  # noqa: E402
from devstack.processes import ManagedProcess, free_port  # noqa: E402

SUBJECTS = ["The supplier invoice", "The customer payment", "Our bank statement", "The VAT return",
            "The expense report", "The purchase order", "The payroll run", "The quarterly forecast",
            "The delivery note", "The credit note", "The journal entry", "The budget review", "The audit file",
            "The bank reconciliation", "The tax notice"]
VERBS = ["was approved", "was rejected", "is overdue", "was paid", "needs a second review", "was archived",
         "was sent to the accountant", "was booked in the ledger", "is missing a receipt", "was matched",
         "was corrected", "is waiting for a signature", "was exported to the ERP", "was disputed", "was refunded"]
DETAILS = ["after the end of the month", "by bank transfer", "for the Paris office", "in euros", "for the new client",
           "before the deadline", "with a partial amount", "for the marketing department", "in the previous quarter",
           "without the purchase order number", "for the German subsidiary", "with late fees", "by the CFO",
           "for the software subscription", "after the customer called"]
QUERIES = ["unpaid bills past their due date", "money received from a client via wire", "sales tax declaration",
           "staff salaries processing", "document sent to the bookkeeper", "refund issued to a customer",
           "approval by the finance director", "receipt not attached to the expense", "budget planning for next year",
           "invoice from a vendor in Germany"]


def corpus(count: int, seed: int = 7) -> tuple[list[str], list[dict]]:
    rng = random.Random(seed)
    documents, metadatas = [], []
    for index in range(count):
        documents.append(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(DETAILS)} (ref {index}).")
        metadatas.append({"source": rng.choice(["journal", "bank", "hr", "sales"]), "n": index})
    return documents, metadatas


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Gateway:
    """A minimal /rpc client on one keep-alive connection."""

    def __init__(self, address: str, token: str) -> None:
        import httpx

        self._client = httpx.Client(base_url=f"http://{address}", timeout=120,
                                    headers={"Authorization": f"Bearer {token}"})

    def call(self, method: str, *args, write: bool = False, timeout_ms: int = 15000):
        body = {"method": f"CHROMA_VECTOR.{method}", "args": list(args), "user_id": "bench", "timeout_ms": timeout_ms}
        if write:
            body["idempotency_key"] = uuid.uuid4().hex
        reply = self._client.post("/rpc", json=body).json()
        if not reply["ok"]:
            raise RuntimeError(f"{method} failed: {reply['error']}")
        return reply["data"]

    def close(self) -> None:
        self._client.close()


def start_services(run_dir: Path) -> tuple[list[ManagedProcess], str, int, str]:
    redis_port, chroma_port, gateway_port = free_port(), free_port(), free_port()
    token = secrets.token_urlsafe(24)
    processes = [services.valkey(redis_port, run_dir).start()]
    processes.append(services.chroma_server(chroma_port, run_dir / "chroma-data", run_dir).start())
    env = {
        **os.environ, "GATEWAY_MODE": "LOCAL", "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "CHROMA_HOST": "127.0.0.1", "CHROMA_PORT": str(chroma_port), "LISTENERS_SERVICE_TOKEN": token,
        "DATABASE_URL": f"sqlite:///{run_dir / 'gateway.sqlite3'}", "LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "NO_GCE_CHECK": "true",
    }
    subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput"], env=env, cwd=BASE_DIR,
                   check=True, capture_output=True)
    processes.append(services.asgi_server(gateway_port, run_dir, env, name="gateway").start())
    return processes, f"127.0.0.1:{gateway_port}", chroma_port, token


def expected_analysis(documents: list[str], metadatas: list[dict]) -> dict[str, int]:
    """The sizes analyze_collection must report, computed from the corpus itself."""
    from chroma.analysis import metadata_bytes
    from chroma.embedding import DIMENSION

    sizes = {
        "embeddings_size": len(documents) * DIMENSION * 4,
        "documents_size": sum(len(doc.encode()) for doc in documents),
        "metadata_size": sum(metadata_bytes(meta) for meta in metadatas),
        "document_count": len(documents),
    }
    return {"total_size": sizes["embeddings_size"] + sizes["documents_size"] + sizes["metadata_size"], **sizes}


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300, help="queries per path")
    parser.add_argument("--batch", type=int, default=500, help="documents per add call")
    parser.add_argument("--quick", action="store_true", help="1,000 documents and 60 queries (smoke run)")
    options = parser.parse_args()
    if options.quick:
        options.docs, options.queries = 1_000, 60

    os.environ.update({"HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"})
    import chromadb
    from chromadb.config import Settings

    from chroma.embedding import embed, get_embedding_function, loaded_model

    documents, metadatas = corpus(options.docs)
    rng = random.Random(11)
    queries = [rng.choice(QUERIES) + f" {rng.choice(DETAILS)}" for _ in range(options.queries + 20)]
    load_start = os.getloadavg()[0]
    rows: list[tuple[str, str, str, str]] = []

    loaded_model()
    sample = documents[: min(2_000, len(documents))]
    seconds = timed(lambda: embed(sample))
    rows.append(("embed only (bundled int8 MiniLM, this process)", f"{len(sample) / seconds:,.0f} docs/s", "", ""))

    run_dir = Path(tempfile.mkdtemp(prefix="bench-chroma-"))
    processes, address, chroma_port, token = start_services(run_dir)
    gateway = Gateway(address, token)
    try:
        client = chromadb.HttpClient(host="127.0.0.1", port=chroma_port, settings=Settings(anonymized_telemetry=False))
        function = get_embedding_function()

        def add_through_rpc() -> None:
            for start in range(0, len(documents), options.batch):
                end = start + options.batch
                gateway.call("add_documents", "bench_rpc", documents[start:end], metadatas[start:end],
                             [f"d{i}" for i in range(start, end)], write=True, timeout_ms=120_000)

        direct = client.create_collection("bench_direct", embedding_function=function)

        def add_directly() -> None:
            for start in range(0, len(documents), options.batch):
                end = start + options.batch
                direct.add(ids=[f"d{i}" for i in range(start, end)], documents=documents[start:end],
                           metadatas=metadatas[start:end])

        rpc_add, direct_add = timed(add_through_rpc), timed(add_directly)
        rows.append((f"add {len(documents):,} docs in batches of {options.batch} (embed + store)",
                     f"{len(documents) / rpc_add:,.0f} docs/s", f"{len(documents) / direct_add:,.0f} docs/s",
                     f"{rpc_add / direct_add:.2f}x time"))

        held = client.get_collection("bench_rpc", embedding_function=function)
        assert gateway.call("get_collection_info", "bench_rpc")["document_count"] == held.count() == len(documents)

        rpc_ms: list[float] = []
        direct_ms: list[float] = []
        for index, text in enumerate(queries):
            rpc_time = timed(lambda text=text: gateway.call("query_documents", "bench_rpc", [text], 10)) * 1000
            direct_time = timed(lambda text=text: held.query(query_texts=[text], n_results=10)) * 1000
            if index >= 20:  # warm-up: connection pools, handle caches, ONNX first runs
                rpc_ms.append(rpc_time)
                direct_ms.append(direct_time)
        rows.append(query_row(f"query 1 text, n_results=10 ({len(rpc_ms)} each)", rpc_ms, direct_ms))

        expected = expected_analysis(documents, metadatas)
        started = time.perf_counter()
        analysis = gateway.call("analyze_collection", "bench_rpc", timeout_ms=120_000)["analysis"]
        analysis_ms = (time.perf_counter() - started) * 1000
        exact = "exact" if analysis == expected else f"MISMATCH {analysis} != {expected}"
        rows.append((f"analyze_collection over {len(documents):,} docs (pages of 500)", f"{analysis_ms:,.0f} ms", "",
                     exact))

        rpc_ms, direct_ms = [], []
        for _ in range(len(queries)):
            rpc_ms.append(timed(lambda: gateway.call("get_collection_info", "bench_rpc")) * 1000)
            direct_ms.append(timed(held.count) * 1000)
        rows.append(query_row(f"get_collection_info vs count() ({len(rpc_ms)} each)", rpc_ms, direct_ms))
    finally:
        gateway.close()
        for process in reversed(processes):
            process.stop()

    print_table(rows, options, load_start)


def query_row(label: str, rpc_ms: list[float], direct_ms: list[float]) -> tuple[str, str, str, str]:
    rpc_p50, direct_p50 = statistics.median(rpc_ms), statistics.median(direct_ms)
    return (
        label,
        f"p50 {rpc_p50:.2f} ms, p95 {percentile(rpc_ms, 0.95):.2f} ms",
        f"p50 {direct_p50:.2f} ms, p95 {percentile(direct_ms, 0.95):.2f} ms",
        f"{rpc_p50 / direct_p50:.2f}x p50 ({rpc_p50 - direct_p50:+.2f} ms)",
    )


def print_table(rows: list[tuple[str, str, str, str]], options: argparse.Namespace, load_start: float) -> None:
    header = ("measurement", "through /rpc (gateway)", "direct chromadb", "rpc / direct")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    line = "  ".join("-" * width for width in widths)
    print()
    print(f"Chroma bench: {options.docs:,} documents, server mode (chroma run on loopback), {os.cpu_count()} CPUs, "
          f"load average {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    print(line)
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(line)


if __name__ == "__main__":
    main()
