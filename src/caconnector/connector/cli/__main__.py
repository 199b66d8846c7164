"""`python -m caconnector.connector.cli`: what the systemd unit and the manager's quickstart run."""

import sys

from caconnector.connector.cli import main

sys.exit(main())
