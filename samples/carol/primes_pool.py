"""Exercise 1: Prime or not ?

Defect: the results are printed (every 50th one, so as not to flood the terminal)
before the clock is stopped, so the measured time includes the printing.
Otherwise: pool.map + pool.map_async, handout is_prime.
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
    half = count // 2

    with multiprocessing.Pool(processes=workers) as pool:
        start = time.time()
        print("*** Synchronous map")
        results = pool.map(is_prime, numbers[:half])
        print("*** Asynchronous map")
        for i, x in enumerate(pool.map_async(is_prime, numbers[half:]).get()):
            results.append(x)
            if i % 50 == 0:
                print(x)
        end = time.time()

    print("primes found:", sum(1 for n, p in results if p))
    print("total time: %.4f s" % (end - start))
