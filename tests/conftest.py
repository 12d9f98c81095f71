pytest_plugins = ["tests.support.procs"]
