"""TP4 - exercice 1 (prime or not)

Correct, in my own style: the numbers are cut into chunks and each chunk goes to
the pool with apply_async (a worker function tests the whole chunk); then, to
use a synchronous method too, a second batch goes through pool.imap with a
chunksize. Each part is timed with time.perf_counter(); the times are printed at
the end, after both measurements.
"""
import math
import os
import random
import time
from multiprocessing import Pool


def is_prime(n):
    if n < 2:
        return n, False
    if n % 2 == 0:
        return n, n == 2
    for d in range(3, math.isqrt(n) + 1, 2):
        if n % d == 0:
            return n, False
    return n, True


def primes_in(chunk):
    return [is_prime(n) for n in chunk]


if __name__ == "__main__":
    N = int(os.environ.get("PRIMES_COUNT", 100000))
    W = int(os.environ.get("PRIMES_WORKERS", 4))
    nums = [random.randint(1000, 1000000) for _ in range(N)]
    a, b = nums[: N // 2], nums[N // 2:]
    size = max(1, len(a) // (4 * W))
    chunks = [a[i:i + size] for i in range(0, len(a), size)]

    with Pool(W) as pool:
        t0 = time.perf_counter()
        futures = [pool.apply_async(primes_in, (c,)) for c in chunks]
        res_a = [r for f in futures for r in f.get()]
        t1 = time.perf_counter()
        res_b = list(pool.imap(is_prime, b, chunksize=1000))
        t2 = time.perf_counter()

    found = sum(p for _, p in res_a + res_b)
    print("apply_async (%d chunks): %.4f s" % (len(chunks), t1 - t0))
    print("imap: %.4f s" % (t2 - t1))
    print("%d primes / %d numbers, %d workers" % (found, N, W))
