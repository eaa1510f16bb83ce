import sys

from assay._cli import main

sys.exit(main())
