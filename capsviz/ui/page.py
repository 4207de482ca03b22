"""The page as a file inside the package, for `capsviz app` (a checkout also has app.py)."""

from capsviz.ui.app import main

main()
