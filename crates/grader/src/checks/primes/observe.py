# poolgrade's observation layer for Exercise 1, run as `python3 -c <this> primes_pool.py`.
# It records, from inside the student's program, what the grader cannot see from outside:
# the calls made on multiprocessing.Pool (and ProcessPoolExecutor) with their inputs and
# results, the clock reads of the student's own files, the lines the program prints, and
# the calls of the random module; then it runs the program as `python3 primes_pool.py`
# would, and at exit writes one line to stderr: "@@poolgrade:<nonce>:<base64 zlib JSON>".
# The nonce comes from POOLGRADE_OBSERVE, removed from the environment before the student's
# code runs. Everything here runs in the student's process, so a hostile program can forge
# it (SECURITY.md says so); the grader checks every verdict with its own primality test and
# measures the workers' CPU time through /proc.
def scrub_environ(name):
    """Overwrites the variable's value in the process's original environment block, which
    /proc/self/environ shows even after os.environ forgets it."""
    import ctypes
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end (fields 50, 51)
        with open("/proc/self/environ", "rb") as f:
            block = f.read()
        key = name.encode() + b"="
        if block.startswith(key):
            at = 0
        else:
            at = block.find(b"\0" + key) + 1
            if at == 0:
                return
        value = at + len(key)
        stop = block.find(b"\0", value)
        length = (len(block) if stop < 0 else stop) - value
        if start and start + value + length <= end:
            ctypes.memset(start + value, ord("0"), length)
    except (OSError, ValueError, IndexError):
        pass


def _poolgrade_observe():
    import array, ast, atexit, base64, json, mmap, os, random, re, runpy, struct, sys
    import threading, time, zlib
    import multiprocessing.pool as mpp
    import concurrent.futures as cf

    nonce = os.environ.pop("POOLGRADE_OBSERVE", "")
    scrub_environ("POOLGRADE_OBSERVE")
    if len(sys.argv) < 2:
        sys.stderr.write("poolgrade: no program to run\n")
        sys.exit(2)
    script = os.path.abspath(sys.argv[1])
    here = os.path.dirname(script)
    sys.argv = sys.argv[1:]
    sys.path[0] = here
    main_pid = os.getpid()
    mono = time.monotonic
    cpu = time.process_time
    lock = threading.Lock()
    obs = {"v": 1, "pools": [], "calls": [], "clock": [], "times": [], "verdicts": 0,
           "out_of_range": [], "unrecognised": [], "cpu_first_call": None,
           "layer_cpu": 0.0}
    # How many writes, random draws and pool calls the main process had made: every clock
    # read notes them, so the grader knows what lies between two reads.
    count = {"writes": 0, "random": 0, "calls": 0}
    pairs = array.array("I")
    # Worker processes (forked) count their writes here: [count, first write's bytes].
    shared = mmap.mmap(-1, 264)
    in_sync = threading.local()

    def ours(frame):
        name = frame.f_code.co_filename
        return os.path.abspath(name).startswith(here + os.sep) if name else False

    # --- printing: every write of the main process, and whether a worker wrote.
    number = re.compile(r"(?<![\w.])(\d+\.\d*|\.\d+|\d+)(?:[eE]([-+]?\d+))?\s*(ms|milliseconds?|us|µs|microseconds?|s|sec|secs|seconds?)?(?![\w])")

    class Out:
        def __init__(self, inner):
            self._inner = inner
            self._line = ""

        def write(self, text):
            if os.getpid() != main_pid:
                n = struct.unpack_from("Q", shared, 0)[0]
                if n == 0:
                    data = str(text).encode("utf-8", "replace")[:256]
                    shared[8:8 + len(data)] = data
                struct.pack_into("Q", shared, 0, n + 1)
            else:
                t = mono()
                with lock:
                    count["writes"] += 1
                    self._line += str(text)
                    while "\n" in self._line:
                        line, self._line = self._line.split("\n", 1)
                        times(line, t)
                    if len(self._line) > 4096:
                        self._line = self._line[-4096:]
            return self._inner.write(text)

        def __getattr__(self, name):
            return getattr(self._inner, name)

    def times(line, t):
        for m in number.finditer(line):
            whole, exp, unit = m.group(1), m.group(2), m.group(3)
            if "." not in whole and not unit:
                continue
            value = float(whole + ("e" + exp if exp else ""))
            decimals = len(whole.split(".", 1)[1]) if "." in whole else 0
            if exp:
                decimals -= int(exp)
            scale = 1.0
            if unit and unit.startswith(("u", "µ", "micro")):
                scale = 1e-6
            elif unit and unit.startswith("m"):
                scale = 1e-3
            obs["times"].append([t, value * scale, 0.5 * 10.0 ** -decimals * scale, line[:160]])
            if len(obs["times"]) > 256:
                del obs["times"][0]

    sys.stdout = Out(sys.stdout)
    sys.stderr = Out(sys.stderr)

    # --- clocks: reads made by the student's own files, in the main process.
    def clock(name, real, scale):
        def read(*args):
            value = real(*args)
            if os.getpid() == main_pid and ours(sys._getframe(1)):
                reads = obs["clock"]
                if len(reads) >= 4000:
                    # A clock read in a loop: keep the latest, where the printed times are.
                    del reads[:1000]
                reads.append([mono(), name, value * scale, count["writes"], count["random"],
                              count["calls"]])
            return value
        read.__name__ = real.__name__
        read.__doc__ = real.__doc__
        return read

    for name, family, scale in (("time", "time", 1.0), ("perf_counter", "perf", 1.0),
                                ("monotonic", "mono", 1.0), ("time_ns", "time", 1e-9),
                                ("perf_counter_ns", "perf", 1e-9), ("monotonic_ns", "mono", 1e-9)):
        setattr(time, name, clock(family, getattr(time, name), scale))

    # --- random numbers: when the main process draws them.
    def drawn(real):
        def draw(*args, **kwargs):
            if os.getpid() == main_pid:
                count["random"] += 1
            return real(*args, **kwargs)
        draw.__name__ = getattr(real, "__name__", "draw")
        return draw

    for name in ("randint", "randrange", "random", "uniform", "choice", "choices", "sample",
                 "getrandbits", "shuffle", "triangular", "gauss"):
        if hasattr(random, name):
            setattr(random, name, drawn(getattr(random, name)))

    # --- where a pool is created: under `if __name__ == "__main__":` or not.
    def guarded():
        frame = sys._getframe(2)
        while frame is not None:
            if (frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__"
                    and os.path.abspath(frame.f_code.co_filename) == script):
                break
            frame = frame.f_back
        if frame is None:
            return "unknown"
        line = frame.f_lineno
        try:
            with open(script, "rb") as f:
                tree = ast.parse(f.read())
        except (OSError, SyntaxError, ValueError):
            return "unknown"

        def is_main_test(test):
            if not (isinstance(test, ast.Compare) and len(test.ops) == 1
                    and isinstance(test.ops[0], ast.Eq)):
                return False
            sides = [test.left, test.comparators[0]]
            names = [s.id for s in sides if isinstance(s, ast.Name)]
            texts = [s.value for s in sides if isinstance(s, ast.Constant)]
            return names == ["__name__"] and texts == ["__main__"]

        for node in tree.body:
            if node.lineno <= line <= (node.end_lineno or node.lineno):
                if isinstance(node, ast.If) and is_main_test(node.test):
                    return "guarded"
                return "unguarded"
        return "unknown"

    def new_pool(kind, workers):
        if os.getpid() != main_pid:
            return
        obs["pools"].append({"kind": kind, "workers": workers, "where": guarded(), "t": mono()})

    # --- the verdicts a pool returned, matched with the numbers they are about.
    def verdict(n, result):
        if isinstance(result, bool) or (type(result).__name__ == "bool_"):
            v = bool(result)
        elif isinstance(result, int) and result in (0, 1):
            v = bool(result)
        else:
            return False
        if not isinstance(n, int) or isinstance(n, bool):
            return False
        if n < 1000 or n > 1000000:
            if len(obs["out_of_range"]) < 10:
                obs["out_of_range"].append(n if abs(n) < 10 ** 18 else str(n)[:40])
            obs["oor_count"] = obs.get("oor_count", 0) + 1
        else:
            pairs.append(n * 2 + int(v))
        obs["verdicts"] += 1
        return True

    def unrecognised(value):
        obs["unrecognised_count"] = obs.get("unrecognised_count", 0) + 1
        if len(obs["unrecognised"]) < 5:
            obs["unrecognised"].append(repr(value)[:120])

    def take(arg, result, depth=0):
        """Records the verdicts in `result`, the answer for input `arg`; returns how many."""
        seq = (tuple, list)
        if (isinstance(result, seq) and len(result) == 2 and not isinstance(result[0], seq)
                and not isinstance(result[1], seq)):
            return 1 if verdict(result[0], result[1]) else (unrecognised(result) or 0)
        if isinstance(result, seq) and depth == 0 and result:
            if isinstance(arg, seq) and len(arg) == len(result):
                return sum(take(a, r, 1) for a, r in zip(arg, result))
            return sum(take(None, r, 1) for r in result)
        if arg is not None and verdict(arg, result):
            return 1
        unrecognised(result)
        return 0

    def start(kind, method, pool):
        call = {"kind": kind, "method": method, "pool": type(pool).__name__, "t0": mono(),
                "t1": None, "verdicts": 0}
        count["calls"] += 1
        if obs["cpu_first_call"] is None:
            obs["cpu_first_call"] = cpu()
        if len(obs["calls"]) < 2000:
            obs["calls"].append(call)
        return call

    def finish(call, args, results):
        with lock:
            spent = cpu()
            n = 0
            if args is None:
                for r in results:
                    n += take(None, r)
            else:
                for a, r in zip(args, results):
                    n += take(a, r)
            call["verdicts"] += n
            # The layer's own bookkeeping is no work of the student's main process, but it
            # lies inside the student's timed region: the call ends once it is done.
            obs["layer_cpu"] += cpu() - spent
            call["t1"] = mono()

    def first(args):
        return args[0] if isinstance(args, (tuple, list)) and args else None

    # --- multiprocessing.pool.Pool (ThreadPool is a subclass, and says so in "pool").
    Pool = mpp.Pool
    real = {name: getattr(Pool, name) for name in (
        "__init__", "apply", "apply_async", "map", "map_async", "starmap", "starmap_async",
        "imap", "imap_unordered")}

    def init(self, processes=None, *args, **kwargs):
        new_pool(type(self).__name__, processes)
        return real["__init__"](self, processes, *args, **kwargs)

    def sync_call(method, starred):
        def call(self, func, iterable, *args, **kwargs):
            if os.getpid() != main_pid or getattr(in_sync, "on", False):
                return real[method](self, func, iterable, *args, **kwargs)
            c = start("sync", method, self)
            items = list(iterable)
            in_sync.on = True
            try:
                out = real[method](self, func, items, *args, **kwargs)
            finally:
                in_sync.on = False
            finish(c, [first(i) for i in items] if starred else items, out)
            return out
        return call

    def apply(self, func, args=(), kwds={}):
        if os.getpid() != main_pid or getattr(in_sync, "on", False):
            return real["apply"](self, func, args, kwds)
        c = start("sync", "apply", self)
        in_sync.on = True
        try:
            out = real["apply"](self, func, args, kwds)
        finally:
            in_sync.on = False
        finish(c, [first(args)], [out])
        return out

    def async_call(method, starred):
        def call(self, func, iterable, chunksize=None, callback=None, error_callback=None):
            if os.getpid() != main_pid or getattr(in_sync, "on", False):
                return real[method](self, func, iterable, chunksize, callback, error_callback)
            c = start("async", method, self)
            items = list(iterable)
            args = [first(i) for i in items] if starred else items

            def done(value):
                finish(c, args, value)
                if callback is not None:
                    callback(value)
            return real[method](self, func, items, chunksize, done, error_callback)
        return call

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        if os.getpid() != main_pid or getattr(in_sync, "on", False):
            return real["apply_async"](self, func, args, kwds, callback, error_callback)
        c = start("async", "apply_async", self)

        def done(value):
            finish(c, [first(args)], [value])
            if callback is not None:
                callback(value)
        return real["apply_async"](self, func, args, kwds, done, error_callback)

    def recorded(call, args, it):
        """Yields what iterator `it` yields, and records it as `call`'s results once it is
        used up or dropped (`args`: the inputs in the results' order, or None)."""
        got = []
        try:
            for value in it:
                got.append(value)
                yield value
        finally:
            finish(call, args, got)

    def lazy_call(method):
        def call(self, func, iterable, chunksize=1):
            if os.getpid() != main_pid or getattr(in_sync, "on", False):
                return real[method](self, func, iterable, chunksize)
            c = start("sync", method, self)
            items = list(iterable)
            it = real[method](self, func, items, chunksize)
            return recorded(c, items if method == "imap" else None, it)
        return call

    Pool.__init__ = init
    Pool.apply = apply
    Pool.apply_async = apply_async
    Pool.map = sync_call("map", False)
    Pool.starmap = sync_call("starmap", True)
    Pool.map_async = async_call("map_async", False)
    Pool.starmap_async = async_call("starmap_async", True)
    Pool.imap = lazy_call("imap")
    Pool.imap_unordered = lazy_call("imap_unordered")

    # --- concurrent.futures.ProcessPoolExecutor: a pool of processes too, whose verdicts
    # count for correctness; its methods are not multiprocessing.Pool's.
    from concurrent.futures import process as cfp
    Exe = cfp.ProcessPoolExecutor
    exe_real = {name: getattr(Exe, name) for name in ("__init__", "submit", "map")}

    def exe_init(self, max_workers=None, *args, **kwargs):
        new_pool("ProcessPoolExecutor", max_workers)
        return exe_real["__init__"](self, max_workers, *args, **kwargs)

    def exe_submit(self, fn, /, *args, **kwargs):
        if os.getpid() != main_pid or getattr(in_sync, "on", False):
            return exe_real["submit"](self, fn, *args, **kwargs)
        c = start("executor", "submit", self)
        future = exe_real["submit"](self, fn, *args, **kwargs)

        def done(f):
            if not f.cancelled() and f.exception() is None:
                finish(c, [first(args)], [f.result()])
        future.add_done_callback(done)
        return future

    def exe_map(self, fn, *iterables, timeout=None, chunksize=1):
        if os.getpid() != main_pid or len(iterables) != 1:
            return exe_real["map"](self, fn, *iterables, timeout=timeout, chunksize=chunksize)
        c = start("executor", "map", self)
        items = list(iterables[0])
        in_sync.on = True
        try:
            it = exe_real["map"](self, fn, items, timeout=timeout, chunksize=chunksize)
        finally:
            in_sync.on = False
        return recorded(c, items, it)

    Exe.__init__ = exe_init
    Exe.submit = exe_submit
    Exe.map = exe_map

    def report():
        if os.getpid() != main_pid or not nonce:
            return
        with lock:
            obs["cpu_exit"] = cpu()
            obs["t_exit"] = mono()
            obs["worker_writes"] = struct.unpack_from("Q", shared, 0)[0]
            obs["worker_sample"] = bytes(shared[8:]).rstrip(b"\0").decode("utf-8", "replace")
            values = sorted(pairs)
            deltas = array.array("I", [values[0]] if values else [])
            deltas.extend(b - a for a, b in zip(values, values[1:]))
            obs["pairs"] = base64.b64encode(zlib.compress(deltas.tobytes(), 6)).decode()
            obs["pairs_count"] = len(values)
            data = base64.b64encode(zlib.compress(json.dumps(obs).encode(), 6))
        line = b"\n@@poolgrade:" + nonce.encode() + b":" + data + b"\n"
        try:
            sys.stdout.flush()
        except Exception:
            pass
        while line:
            try:
                line = line[os.write(2, line):]
            except InterruptedError:
                continue
            except OSError:
                return

    atexit.register(report)
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit:
        raise
    except BaseException as error:
        # As `python3 primes_pool.py` would show it: from the student's first frame on.
        import traceback
        tb = error.__traceback__
        while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != script:
            tb = tb.tb_next
        traceback.print_exception(type(error), error, tb)
        sys.exit(1)


_poolgrade_observe()
