"""Time server, stage 2: date/time requests are served by a multiprocessing ThreadPool."""
import os
import time
from datetime import datetime
from multiprocessing.pool import ThreadPool

import sysv_ipc

QUEUE_KEY = 666
REQUEST = 1
STOP = 2
work_delay = float(os.getenv("TIMESERVER_DELAY", "0"))
pool_size = int(os.getenv("TIMESERVER_WORKERS", "4"))


def read_pid(text):
    """The pid in a request, or None for anything that is not a plain positive number."""
    text = text.strip()
    if not text.isdigit() or len(text) > 10:
        return None
    pid = int(text)
    if pid == 0 or pid + 3 > 2147483647:
        return None
    return pid


def answer(queue, pid):
    time.sleep(work_delay)
    now = datetime.now().isoformat()
    queue.send(now.encode(), type=pid + 3)


def main():
    queue = sysv_ipc.MessageQueue(QUEUE_KEY, sysv_ipc.IPC_CREAT, max_message_size=8192)
    pool = ThreadPool(pool_size)
    while True:
        text, kind = queue.receive(type=-STOP)
        if kind == STOP:
            break
        pid = read_pid(text)
        if pid is None:
            continue
        pool.apply_async(answer, (queue, pid))

    pool.close()  # no more tasks
    pool.join()  # wait for the ones already submitted
    queue.remove()


main()
