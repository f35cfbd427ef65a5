"""``python -m portico_analytics``; also usable as the script given to spark-submit.

The import is absolute, not relative, so that this file also works when
spark-submit runs it as a plain script with the package on its --py-files.
"""

import sys

from portico_analytics.job import main

if __name__ == "__main__":
    sys.exit(main())
