"""``python -m langchain_ttc.cli``: the ``ttc`` command."""

import sys

from langchain_ttc.cli.main import main

sys.exit(main())
