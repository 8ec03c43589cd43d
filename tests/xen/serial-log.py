#!/usr/bin/env python3
"""Read QEMU's serial output on stdin; write every line, prefixed with the seconds since
start, to LOGFILE; echo lines to stdout according to --echo:
  all    every line
  marks  the harness's own lines (XT-DOM0, XT, RESULT, RUN-EXIT, TIMING), Xen/Linux panics,
         and everything run.sh prints (between "run-start" and "RUN-EXIT")
  none   nothing
usage: serial-log.py LOGFILE [--echo all|marks|none]
"""
import re
import sys
import time

MARK = re.compile(r"XT-DOM0 |XT-DOMU |^XT |RESULT |RUN-EXIT|TIMING |BOOT |"
                  r"Panic|panic|Kernel panic|BUG:|Oops|FATAL|\(XEN\) \*\*\*")


def main():
    log_path = sys.argv[1]
    echo = "marks"
    if len(sys.argv) > 3 and sys.argv[2] == "--echo":
        echo = sys.argv[3]
    t0 = time.monotonic()
    in_run = False
    buf = b""
    with open(log_path, "w", encoding="utf-8") as log:

        def emit(raw):
            nonlocal in_run
            text = raw.decode("utf-8", "replace").rstrip("\r")
            line = "[%7.1f] %s" % (time.monotonic() - t0, text)
            log.write(line + "\n")
            log.flush()
            if "XT-DOM0" in text and "run-start" in text:
                in_run = True
            show = echo == "all" or (echo == "marks" and (in_run or MARK.search(text)))
            if text.startswith("RUN-EXIT"):
                in_run = False
            if show:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()

        for chunk in iter(lambda: sys.stdin.buffer.read1(4096), b""):
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                emit(raw)
        if buf:
            emit(buf)


if __name__ == "__main__":
    main()
