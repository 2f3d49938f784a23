"""The command line: the only code that parses argv, prints, and reads config from files and env."""
