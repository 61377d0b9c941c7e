# Exercise 2, stage 1: the date/time server starts a new thread for every request.
import os
import threading
import time

import sysv_ipc

KEY = 666
DELAY = float(os.environ.get("TIMESERVER_DELAY", "0"))

current_pid = None  # pid of the request being served


def parse_pid(message):
    """Returns the pid a request carries, or None if it is not a usable pid."""
    try:
        pid = int(message.decode())
    except ValueError:  # also catches bad UTF-8 and texts far too long for a number
        return None
    if pid < 1 or pid + 3 > 2**31 - 1:  # the reply type must fit a C int
        return None
    return pid


def serve(mq):
    time.sleep(DELAY)
    answer = time.ctime()
    mq.send(answer.encode(), type=current_pid + 3)


def main():
    global current_pid
    # a bigger receive buffer (8192 = the kernel's msgmax) so that a huge bogus
    # request can be read and thrown away instead of jamming the queue
    mq = sysv_ipc.MessageQueue(KEY, sysv_ipc.IPC_CREAT, max_message_size=8192)
    threads = []
    while True:
        # type=-2 gives requests (1) before the stop (2) and never takes a reply (pid + 3)
        message, mtype = mq.receive(type=-2)
        if mtype == 2:
            break
        pid = parse_pid(message)
        if pid is None:
            print("ignoring bad request:", message[:40])
            continue
        current_pid = pid
        t = threading.Thread(target=serve, args=(mq,))
        t.start()
        threads = [th for th in threads if th.is_alive()]
        threads.append(t)
    # let the requests already accepted get their answer, then clean up
    for t in threads:
        t.join()
    mq.remove()


if __name__ == "__main__":
    main()
