"""Time server, stage 1: one thread per date/time request."""
import os
import threading
import time
from datetime import datetime

import sysv_ipc

QUEUE_KEY = 666
REQUEST = 1
STOP = 2
work_delay = float(os.getenv("TIMESERVER_DELAY", "0"))


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
    while True:
        text, kind = queue.receive(type=-STOP)
        if kind == STOP:
            break
        pid = read_pid(text)
        if pid is None:
            continue
        threading.Thread(target=answer, args=(queue, pid)).start()

    # wait for the threads still answering before the queue goes away
    for t in threading.enumerate():
        if t is not threading.current_thread():
            t.join()
    queue.remove()


main()
