import os
import sys

# The year partitions come from the registry files, read when the definitions are imported: a
# --registry given on the command line must be in place before that import.
if "--registry" in sys.argv[:-1]:
    os.environ["ETL_REGISTRY_DIR"] = sys.argv[sys.argv.index("--registry") + 1]

from etl.cli import main  # noqa: E402  (after the environment is set, on purpose)

raise SystemExit(main())
