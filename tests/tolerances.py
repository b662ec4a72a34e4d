"""How close two computations of the same pair must be when they run in different engine calls.

The transformers engine in float32 rounds a pair's forward pass differently with the batch it
shares (padding width, rows of other lengths), with its query prefix prefilled apart or fed with
the rest, with KV-cache surgery or a static cache, and with torch's thread count (a sum split in
another order): one call scoring three pairs and three calls scoring one each need not agree in
the last bits. A comparison of the *same* pairs across engine calls, batch layouts, processes or
thread counts (the library against the server, a chunked, cached or Ray run against a plain one,
an engine against a plain forward pass) uses these tolerances. A comparison of the same layout
replayed (a cache read back, a resumed run forming the same batches, the same call twice) stays
exact.

Measured with ``benchmarks/layout_spread.py`` (docs/benchmarks.md): the same pairs scored with
batch sizes 1 to 32 (SmolLM2-135M-Instruct, 32 DL19 pairs) and 1 to 64 (random-weight
Qwen2.5-shaped model, 64 pairs), shared query prefix on and off, reasoning off and on (think
budget 4), OMP_NUM_THREADS 1 and 2, float32 on CPU; the figure is the largest spread of one
pair's value over all those layouts:

    nice -n 5 python benchmarks/layout_spread.py --models smollm2
    nice -n 5 python benchmarks/layout_spread.py --models qwen --candidates 32 \\
        --batches 1 2 3 4 8 16 32 64 --reasoning-batches 1 4 64

Measured 2026-12-04 (torch 2.13.0+cpu, transformers 5.25.0, x86_64, a loaded 2-core machine):
SmolLM2, 32 pairs x 40 layouts: largest score spread 1.42e-6 (reasoning off; 1.37e-6 on), p(true)
8.5e-10, p(false) 1.6e-8, answer log-prob 2.67e-5; Qwen2.5-shaped, 64 pairs x 44 layouts: score
4.7e-7, log-prob 1.9e-6. No chain differed between layouts. (Issue 24's failure: 1.16e-6.)
"""

LAYOUT_TOL = 2e-5
"""Absolute tolerance for a score or probability (Rank1 score, p(true), p(false), a served
relevance score) of the same pair from two engine calls. About 14 times the largest
score spread measured (1.42e-6): the spread depends on the CPU's kernels (AVX2 or AVX-512, oneDNN)
and on the prompt, and the suite compares far more pairs than the measurement. It still tells a
real fault: a wrong prompt, answer token or closing text moves a score by 1e-4 or more
(tests/test_pointwise.py::test_the_closing_bytes_change_the_score)."""

LAYOUT_LOGPROB_TOL = 3e-4
"""Absolute tolerance for an answer log-probability (or the difference of two) of the same text
from two engine calls, or from the engine and a plain forward pass. Log-probs move more than
scores (the score is a sigmoid of their difference, at most a quarter of its change); 3e-4 is
about 11 times the largest log-prob spread measured (2.67e-5), the same margin as the scores'. The OpenAI-compatible test
server adds float32 rounding of the +100 logit bias (up to 3.8e-6 per log-prob), also well
inside it."""
