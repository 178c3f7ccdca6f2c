"""The `videorec` command line: one module per subcommand."""
