"""The on-premises connector: its data directory and secret store (`store`), and its command line."""
