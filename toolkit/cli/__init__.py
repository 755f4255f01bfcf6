"""The `qwdeploy` command line: a click group whose sub-commands load on use."""
