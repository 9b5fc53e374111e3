"""python -m isin_pipeline"""

import sys

from isin_pipeline.cli import main

sys.exit(main())
