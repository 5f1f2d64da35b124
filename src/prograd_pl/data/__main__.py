"""``python -m prograd_pl.data <check|download|prepare|list> ...`` (the same as ``prograd-pl data ...``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
