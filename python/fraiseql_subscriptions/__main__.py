"""``python -m fraiseql_subscriptions``: see :mod:`fraiseql_subscriptions.cli`."""

import sys

from fraiseql_subscriptions.cli import main

sys.exit(main())
