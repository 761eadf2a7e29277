import gc
import os
import sys

# The year partitions come from the registry files, read when the definitions are imported: a
# --registry given on the command line must be in place before that import.
if "--registry" in sys.argv[:-1]:
    os.environ["ETL_REGISTRY_DIR"] = sys.argv[sys.argv.index("--registry") + 1]

# Importing dagster, pandas & co. makes ~240,000 objects that live as long as the process. The
# collector would walk them all again and again, during the imports (~0.5 s) and at every full
# collection of the run (the package workers, forked from here, inherit them too): they are set
# aside once imported (gc.freeze), and the collector sees only what the run makes.
gc.disable()
from etl.cli import main  # noqa: E402  (after the environment is set, on purpose)

gc.freeze()
gc.enable()

raise SystemExit(main())
