from adsearch.cli.main import _console_main

_console_main()
