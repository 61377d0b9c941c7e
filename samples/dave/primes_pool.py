"""Exercise 1: Prime or not ?

Defect: only a synchronous method (pool.map); no asynchronous submission at all.
Everything else is right: handout is_prime, one timed interval, printed after.
"""
import math
import os
import random
import time
import multiprocessing


def is_prime(n):
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


if __name__ == "__main__":
    count = int(os.environ.get("PRIMES_COUNT", "100000"))
    workers = int(os.environ.get("PRIMES_WORKERS", "4"))
    numbers = [random.randint(10**3, 10**6) for i in range(count)]

    with multiprocessing.Pool(processes=workers) as pool:
        start = time.time()
        results = pool.map(is_prime, numbers)
        end = time.time()

    print("primes found:", sum(1 for n, p in results if p), "out of", count)
    print("map: %.4f s" % (end - start))
