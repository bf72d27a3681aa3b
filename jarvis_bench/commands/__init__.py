"""The scripts' implementations: each module has build_parser() and main(argv) -> int."""
