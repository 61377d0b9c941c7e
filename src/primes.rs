//! Exercise 1: primality tests over random integers, timed, in a pool.
