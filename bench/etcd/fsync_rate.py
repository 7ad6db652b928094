#!/usr/bin/env python3
"""Measures how many 4 KiB write + fdatasync rounds per second the disk under DIR sustains.

Usage: fsync_rate.py DIR [SECONDS]   (prints one line of JSON: {"fsyncs_per_second": ...})

The file is created in DIR (the same file system as the databases' data) and removed after.
"""
import json
import os
import sys
import time


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    path = os.path.join(sys.argv[1], "fsync-probe.dat")
    block = os.urandom(4096)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        count = 0
        start = time.monotonic()
        deadline = start + seconds
        while time.monotonic() < deadline:
            os.write(fd, block)
            os.fdatasync(fd)
            count += 1
        elapsed = time.monotonic() - start
    finally:
        os.close(fd)
        os.unlink(path)
    print(json.dumps({"fsyncs_per_second": round(count / elapsed, 1),
                      "seconds": round(elapsed, 2), "block_bytes": 4096}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
