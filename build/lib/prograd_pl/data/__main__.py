"""``python -m prograd_pl.data check [dataset=NAME ...] [data_root=PATH]``: is the data in place?"""

import sys

from .check import USAGE, main

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("check", "-h", "--help", "help"):
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
