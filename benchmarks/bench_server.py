"""Throughput of ``thinkrank serve``: requests/s and documents/s at 1, 4 and 16 concurrent
clients, with micro-batching on (concurrent requests share engine calls) and off (one request
per engine call, ``--max-batch-requests 1``), on the same machine in the same run.

Each request is a real DL19 query with its BM25 top ``--docs`` passages. Both servers are real
``thinkrank serve`` processes on 127.0.0.1 with the same model and settings; the clients are
threads with their own HTTP connections, each sending its share of ``--requests`` requests
back to back. Every answer is checked (200, one result per document).

    python benchmarks/bench_server.py                         # SmolLM2-135M on CPU, reasoning off
    python benchmarks/bench_server.py --reasoning on --think-budget 32 --device cuda --out results/

The default model (SmolLM2-135M, offline) shows the serving machinery, not ranking quality.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import signal
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server_process import start_server  # noqa: E402  (the tests' launcher: thinkrank serve --port 0)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dl19"


def load_requests(docs_per_request: int) -> list[dict]:
    queries = [json.loads(line) for line in (DATA / "queries.jsonl").read_text().splitlines()]
    wanted: dict[str, list[str]] = {}
    for line in (DATA / "runs" / "bm25.trec").read_text().splitlines():
        qid, _, docid, rank, *_ = line.split()
        if int(rank) <= docs_per_request:
            wanted.setdefault(qid, []).append(docid)
    needed = {d for ds in wanted.values() for d in ds}
    texts = {}
    with (DATA / "corpus.jsonl").open() as corpus:
        for line in corpus:
            doc = json.loads(line)
            if doc["_id" if "_id" in doc else "id"] in needed:
                texts[doc.get("_id", doc.get("id"))] = doc["text"]
    return [{"query": q["text"], "documents": [texts[d] for d in wanted[q.get("_id", q.get("id"))] if d in texts]}
            for q in queries if q.get("_id", q.get("id")) in wanted]


def run_level(url: str, bodies: list[dict], clients: int, total: int) -> dict:
    """``total`` requests from ``clients`` threads; wall time, latencies, all answers checked."""
    latencies: list[float] = []

    def client(n: int) -> int:
        docs = 0
        with httpx.Client(base_url=url, timeout=3600) as http:
            for k in range(n, total, clients):
                body = bodies[k % len(bodies)]
                start = time.perf_counter()
                response = http.post("/v2/rerank", json=body)
                latencies.append(time.perf_counter() - start)
                assert response.status_code == 200, response.text
                assert len(response.json()["results"]) == len(body["documents"])
                docs += len(body["documents"])
        return docs

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        docs = sum(pool.map(client, range(clients)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "clients": clients, "requests": total, "documents": docs, "seconds": round(wall, 3),
        "requests_per_s": round(total / wall, 2), "docs_per_s": round(docs / wall, 2),
        "p50_ms": round(statistics.median(latencies) * 1000), "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000),
    }


def batch_counts(url: str) -> tuple[float, float]:
    """(requests summed over engine calls, engine calls) so far, from the server's own metrics."""
    text = httpx.get(url + "/metrics", timeout=30).text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith(("thinkrank_batch_requests_sum", "thinkrank_batch_requests_count"))}
    return values.get("thinkrank_batch_requests_sum", 0.0), values.get("thinkrank_batch_requests_count", 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="default: SmolLM2-135M (thinkrank.testing.smollm2_dir)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reasoning", choices=("on", "off"), default="off")
    ap.add_argument("--think-budget", type=int, default=32)
    ap.add_argument("--docs", type=int, default=4, help="documents per request (BM25 top-k)")
    ap.add_argument("--requests", type=int, default=48, help="requests per concurrency level")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--max-passage-tokens", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the servers
    if args.model is None:
        from thinkrank.testing import smollm2_dir

        args.model = str(smollm2_dir())
    bodies = load_requests(args.docs)
    common = ["--model", args.model, "--device", args.device, "--reasoning", args.reasoning,
              "--think-budget", str(args.think_budget), "--max-passage-tokens", str(args.max_passage_tokens),
              "--log-level", "warning", "--max-queue", "100000"]
    levels = [int(c) for c in args.clients.split(",")]
    rows = []
    for mode, extra in (("batched", []), ("one request at a time", ["--max-batch-requests", "1"])):
        server = start_server(*common, *extra)
        try:
            run_level(server.url, bodies[:2], 1, 2)  # warm-up: first calls allocate
            for clients in levels:
                summed, calls = batch_counts(server.url)
                row = run_level(server.url, bodies, clients, args.requests)
                summed_after, calls_after = batch_counts(server.url)
                row["mode"] = mode
                row["requests_per_call"] = round((summed_after - summed) / max(calls_after - calls, 1), 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            server.stop()
    table = render(rows, args)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_server.json").write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                                                 "rows": rows}, indent=2, default=str))
        (args.out / "bench_server.md").write_text(table + "\n")


def render(rows: list[dict], args: argparse.Namespace) -> str:
    import torch

    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"{platform.processor() or 'CPU'} ({os.cpu_count()} cores)"
    lines = [
        f"model {Path(args.model).name}, {args.device} ({device}), reasoning {args.reasoning}"
        + (f" (budget {args.think_budget})" if args.reasoning == "on" else "")
        + f", {args.docs} DL19 BM25 passages per request, {args.requests} requests per level",
        "",
        "| clients | mode | requests/s | documents/s | p50 latency | p95 latency | requests per engine call |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['clients']} | {r['mode']} | {r['requests_per_s']:.2f} | {r['docs_per_s']:.1f} | "
                     f"{r['p50_ms']} ms | {r['p95_ms']} ms | {r['requests_per_call']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
