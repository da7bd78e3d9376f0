"""The front end: the command line, the shell, scripts, commands, their output and jobs."""
