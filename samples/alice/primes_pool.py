"""Session 4, Exercise 1: Prime or not ?  (reference solution)

Generates random integers in [10^3, 10^6] and tests their primality with the
worker processes of a multiprocessing.Pool: the first half of the numbers through
a synchronous method (pool.map), the second half through an asynchronous one
(pool.map_async). Only the pool work is timed: the numbers are generated before
the clock starts and the results are printed after it stops.

Environment: PRIMES_COUNT (how many integers, default 100000) and PRIMES_WORKERS
(pool size, default 4).
"""
import math
import multiprocessing
import os
import random
import time

LOW, HIGH = 10**3, 10**6


def is_prime(n):
    """Returns (n, True) if n is prime, (n, False) otherwise (the handout's test)."""
    if n < 2:
        return (n, False)
    if n == 2:
        return (n, True)
    if n % 2 == 0:
        return (n, False)

    sqrt_n = int(math.floor(math.sqrt(n)))
    for i in range(3, sqrt_n + 1, 2):
        if n % i == 0:
            return (n, False)
    return (n, True)


def main():
    count = int(os.environ.get("PRIMES_COUNT", "100000"))
    workers = int(os.environ.get("PRIMES_WORKERS", "4"))

    # generated before the clock starts: only the pool work is measured
    numbers = [random.randint(LOW, HIGH) for _ in range(count)]
    half = count // 2

    with multiprocessing.Pool(processes=workers) as pool:
        start = time.time()
        # synchronous: map blocks until every result of the first half is back
        sync_results = pool.map(is_prime, numbers[:half])
        # asynchronous: map_async returns at once; get() waits for the results
        pending = pool.map_async(is_prime, numbers[half:])
        async_results = pending.get()
        end = time.time()

    # printing happens after the clock has stopped
    results = sync_results + async_results
    primes = sum(1 for _, prime in results if prime)
    print(f"{count} numbers in [{LOW}, {HIGH}], {workers} worker processes")
    print(f"primes found: {primes}")
    print(f"map + map_async: {end - start:.4f} s")


if __name__ == "__main__":
    main()
