"""``python -m connector`` with a smaller checkpoint interval, for crash tests on small orgs.

Usage: ``python cli_runner.py ROWS ARGS…``. Checkpoints every ROWS rows instead of 200,000, so a
run over a few hundred records commits several times and a crash can land between checkpoints.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    import connector.sync
    from connector.cli import main

    rows = int(sys.argv.pop(1))
    defaults = connector.sync.run_extract.__kwdefaults__
    assert defaults is not None and "checkpoint_rows" in defaults
    defaults["checkpoint_rows"] = rows
    sys.argv[0] = "zoho-crm"
    main()
